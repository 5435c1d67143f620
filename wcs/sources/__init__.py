"""Opening a source: a stream's location in, an opened media out.

A location is what follows ``vod://`` or ``vod-live://``: a file under the
media folder, or ``s3/BUCKET/KEY``. Whatever it is, the caller gets an
:class:`OpenedMedia` (what it carries, its samples, whether the next one can
be read without waiting, and ``close``) and never learns where it came from.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, NoReturn, TypeVar, cast

from twisted.internet.defer import Deferred, fail, gatherResults, maybeDeferred, succeed
from twisted.logger import Logger

from wcs.errors import InvalidName, LimitReached, WcsError, WrongFormat
from wcs.media.mp4 import Mp4File
from wcs.media.sample import MediaInfo, Sample
from wcs.sources import local, playlist, s3
from wcs.sources.opus_cache import OpusCache
from wcs.sources.playlist import PlaylistMedia
from wcs.sources.ranged import RangedFile

log = Logger()

#: Locations under this prefix are S3 objects: ``s3/BUCKET/KEY``.
S3_PREFIX = "s3/"

T = TypeVar("T")
#: Where work that touches the disk runs: ``run(f, *args)`` → a Deferred of
#: ``f(*args)``. The server hands a bounded thread pool; tests may run it inline.
Runner = Callable[..., Deferred]


class OpenedMedia:
    """An MP4 ready to be read, local or still downloading."""

    #: One file: one picture size (a playlist's may change at a join).
    changes_size = False

    def __init__(self, reader: Mp4File, remote: RangedFile | None = None) -> None:
        self._reader = reader
        self._remote = remote

    @property
    def info(self) -> MediaInfo:
        return self._reader.info

    def samples(
        self,
        loop: bool = False,
        *,
        period: float | None = None,
        position: float = 0.0,
        wants_opus: Callable[[], bool] = lambda: True,
        wants_aac: Callable[[], bool] = lambda: True,
    ) -> Iterator[Sample]:
        """Its samples (see :meth:`Mp4File.samples`); Opus only while
        ``wants_opus()``, AAC only if ``wants_aac()`` (or nobody takes Opus)."""
        return self._reader.samples(
            loop=loop,
            period=period,
            position=position,
            wants_opus=wants_opus,
            wants_aac=wants_aac,
        )

    def prepare_join(self, position: float, loop: bool) -> Deferred[None]:
        """Ready to be read from ``position`` (s into a broadcast, loops
        included): a local file is; a download first fetches what a reader
        starting there reads first (and keeps following the reader after)."""
        if self._remote is None:
            return succeed(None)
        remote = self._remote
        waits = [
            remote.ensure(offset, length)
            for offset, length in self._reader.join_ranges(position, loop)
        ]
        return gatherResults(waits, consumeErrors=True).addCallbacks(
            lambda _: None, lambda failure: failure.value.subFailure
        )

    @property
    def reencoded(self) -> bool:
        """Whether its video is re-encoded as it is read (B-frames): reading it
        ahead of time costs an encoder's work at once."""
        return self._reader.has_b_frames

    def keyframe_time(self, position: float) -> float:
        """Where a reader sought to ``position`` (s into the file) starts: the
        keyframe at or before it, from the index."""
        return self._reader.keyframe_time(position)

    def pass_length(self) -> float:
        """One pass's length (s), the same for every reader of the file."""
        return self._reader.pass_length()

    def ready(self) -> bool:
        """Whether the next sample can be read without waiting for a download;
        raises the source's error once the data it needs will never come."""
        return self._remote is None or self._remote.ready()

    def close(self) -> None:
        self._reader.close()
        if self._remote is not None:
            self._remote.close()


#: What a source opens: a file, or a playlist of files (``NAME.m3u``, or a REST list).
Media = OpenedMedia | PlaylistMedia


class Sources:
    """Opens locations: local files under ``media_dir``, S3 objects through ``s3``.

    ``cache_dir`` holds the partial downloads of S3 objects (each deleted on
    close); ``progressive`` false downloads an object whole before it plays
    (WCS's ``vod_mp4_container_new=false``). ``opus`` keeps local files' audio
    transcoded once, so that later plays of a file do not transcode again.

    Opening and checking a local file (its boxes read, its ``moov`` parsed) runs
    through ``run``, off the reactor; at most ``max_pending`` at once, more are
    refused at once with the limit named rather than queued.
    """

    def __init__(
        self,
        media_dir: Path,
        s3_client: s3.S3Client,
        cache_dir: Path,
        progressive: bool = True,
        opus: OpusCache | None = None,
        run: Runner = maybeDeferred,
        max_pending: int = 64,
        max_playlist_items: int = 1000,
    ) -> None:
        self.media_dir = media_dir
        self.s3 = s3_client
        self.cache_dir = cache_dir
        self.progressive = progressive
        self.opus = opus
        self.run = run
        self.max_pending = max_pending
        self.max_playlist_items = max_playlist_items
        self.pending = 0

    def open(self, location: str, label: str) -> Deferred[Media]:
        """Open ``location``; fails with a :class:`~wcs.errors.WcsError` saying why.
        A playlist file (``NAME.m3u``) opens as the list of its files."""
        opening: Deferred[Any]
        if location.endswith(playlist.SUFFIX) and not location.startswith(S3_PREFIX):
            reading: Deferred[list[str]] = self.work(self._read_playlist, location)
            opening = reading.addCallback(lambda names: self.playlist(names, label))
        else:
            opening = self._open_file(location, label)
        return cast("Deferred[Media]", opening)

    def _open_file(self, location: str, label: str) -> Deferred[OpenedMedia]:
        if location.startswith(S3_PREFIX):
            return maybeDeferred(self._open_s3, location, label)
        return self.work(self._open_local, location, label)

    def work(self, work: Callable[..., T], *args: Any) -> Deferred[T]:
        """``work(*args)`` on the file threads (opening, checking, decoding a
        snapshot), at most ``max_pending`` waiting at once: more are refused."""
        if self.pending >= self.max_pending:
            return maybeDeferred(_refuse, self.max_pending)
        self.pending += 1

        def done(result: object) -> object:
            self.pending -= 1
            return result

        return self.run(work, *args).addBoth(done)

    def _read_playlist(self, location: str) -> list[str]:
        """The names a playlist file in the media folder lists (at most 1 MiB read)."""
        path = local.resolve(self.media_dir, location)
        with path.open("rb") as handle:
            data = handle.read(playlist.MAX_PLAYLIST_BYTES + 1)
        if len(data) > playlist.MAX_PLAYLIST_BYTES:
            raise WrongFormat(f"a playlist is at most {playlist.MAX_PLAYLIST_BYTES} bytes")
        try:
            text = data.decode("utf-8-sig")
        except UnicodeDecodeError:
            raise WrongFormat("a playlist is UTF-8 text, one file name a line") from None
        return playlist.parse(text, self.max_playlist_items)

    def checked_names(self, names: list[str]) -> list[str]:
        """``names`` as a playlist lists them, each checked as a play of it would
        be (nothing read); raises naming the first that cannot be."""
        if len(names) > self.max_playlist_items:
            raise LimitReached(
                "files in one playlist", "max_playlist_items", self.max_playlist_items
            )
        checked = []
        for number, name in enumerate(names, 1):
            try:
                if name.endswith(playlist.SUFFIX):
                    raise InvalidName.because("a playlist cannot name a playlist")
                checked.append(self.canonical(name))
            except WcsError as error:
                error.info = f"playlist item {number} ({name[:200]!r}): {error.info}"
                raise
        return checked

    def playlist(self, names: list[str], label: str) -> Deferred[PlaylistMedia]:
        """The files ``names`` lists, back to back and looping, as one medium:
        every name checked first (one that cannot be played refuses the list)."""
        try:
            names = self.checked_names(names)
        except WcsError:
            return fail()

        def item(name: str) -> Deferred[Any]:
            return self._open_file(name, f"{label} {name}")

        return item(names[0]).addCallback(lambda first: PlaylistMedia(names, first, item, label))

    def _open_local(self, location: str, label: str) -> OpenedMedia:
        path = local.resolve(self.media_dir, location)
        media = Mp4File(path, label)
        opus = self.opus
        if media.audio is not None and opus is not None:
            replay = opus.replay(path, make=False)
            if replay is not None:
                media.replay_opus(replay)
                log.info("{label}: audio from the Opus cache", label=label)
            else:  # cached for later readers once one transcodes (a WebRTC viewer came)
                media.on_transcoding = lambda: opus.make(path)
                media.find_opus = lambda: opus.replay(path, make=False)
        return OpenedMedia(media)

    def _open_s3(self, location: str, label: str) -> Deferred[OpenedMedia]:
        opening = s3.open_object(
            self.s3, s3.parse(location), self.cache_dir, label, self.progressive
        )
        return opening.addCallback(lambda opened: OpenedMedia(*opened))

    def canonical(self, location: str) -> str:
        """The one spelling of what ``location`` points at (``./x.mp4``,
        ``sub/../x.mp4`` and a symlink to it are all ``x.mp4``), after the same
        checks an open makes; raises why it cannot be played."""
        if location.startswith(S3_PREFIX):
            return str(s3.parse(location))
        real = local.resolve(self.media_dir, location)
        return real.relative_to(self.media_dir.resolve()).as_posix()

    def check(self, location: str) -> Deferred[str]:
        """For ``availableStream``: the info if ``location`` can be played now,
        or the reason it cannot. Local files are opened and checked (off the
        reactor); S3 objects only by name (they are fetched when played)."""
        if location.startswith(S3_PREFIX):
            return maybeDeferred(_s3_by_name, location)
        return self.work(self._check_local, location)

    def _check_local(self, location: str) -> str:
        Mp4File(local.resolve(self.media_dir, location), location, announce=False).close()
        return "Available"

    def close(self) -> None:
        """Stop background work (the audio cache's job)."""
        if self.opus is not None:
            self.opus.close()


def _refuse(limit: int) -> NoReturn:
    raise LimitReached("files being opened at once", "max_pending_opens", limit)


def _s3_by_name(location: str) -> str:
    s3.parse(location)
    return "Available (S3 objects are checked when played)"
