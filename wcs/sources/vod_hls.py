"""Any file as HLS VOD, made on request: a playlist from the MP4's index alone,
each segment remuxed to MPEG-TS from its own byte ranges, nothing transcoded
and nothing written.

The index (sample tables, segment plan) is built once per file version on the
file threads and kept (at most :data:`MAX_INDEXES` and :data:`MAX_INDEX_BYTES`,
least recently used out);
a segment is read and muxed on the file threads too, so the reactor only
routes. B-frame files play as stored (TS carries PTS and DTS).
"""

from __future__ import annotations

import hashlib
import math
import os
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from twisted.internet.defer import Deferred, fail, gatherResults, maybeDeferred, succeed
from twisted.python.failure import Failure

from wcs.errors import NotFound, WcsError, WrongFormat
from wcs.media import boxes, h264, tswriter
from wcs.media.mp4index import Segment, Track, plan, read_tracks
from wcs.sources import S3_PREFIX, Sources, local, s3

#: Indexes kept, and the bytes their tables may hold together (a 2 h file's: ~10 MB).
MAX_INDEXES = 1000
MAX_INDEX_BYTES = 256 * 2**20
#: Bytes a sample costs in an index's tables (offset, size, decode time, offset to show).
SAMPLE_BYTES = 24
#: Largest ``moov`` read (a 10 h file's is tens of MB).
MAX_MOOV = 64 * 2**20
#: Bytes first fetched of an S3 object (its first boxes, often its ``moov``).
FIRST_BYTES = 256 * 1024
#: An S3 segment's samples less than this apart are fetched in one request.
GAP = 256 * 1024
#: A segment's samples are read in one span when they lie within this many bytes
#: (four file threads: at most four such spans in memory at once).
ONE_READ = 8 * 2**20
CLOCK = 90_000


@dataclass
class VodIndex:
    """One file version's playlist plan."""

    location: str  # the canonical location (``sub/file.mp4``, ``s3/bucket/key``)
    path: Path | None  # a local file's, or None: an S3 object's (``remote``)
    video: Track | None
    audio: Track | None
    avc: h264.AvcConfig | None
    segments: list[Segment]
    etag: str
    modified: float  # the file's change time (Unix s)
    target: int  # #EXT-X-TARGETDURATION
    remote: s3.S3Location | None = None

    @property
    def weight(self) -> int:
        """Bytes its tables hold, about."""
        samples = sum(len(track) for track in (self.video, self.audio) if track is not None)
        return samples * SAMPLE_BYTES + len(self.segments) * 128

    def playlist(self, query: str = "") -> bytes:
        """The VOD playlist; ``query`` (``?token=...``) follows each segment's name."""
        lines = [
            "#EXTM3U",
            "#EXT-X-VERSION:3",
            "#EXT-X-PLAYLIST-TYPE:VOD",
            f"#EXT-X-TARGETDURATION:{self.target}",
            "#EXT-X-MEDIA-SEQUENCE:0",
            "#EXT-X-INDEPENDENT-SEGMENTS",
        ]
        for number, segment in enumerate(self.segments):
            lines.append(f"#EXTINF:{segment.duration:.3f},")
            lines.append(f"{number}.ts{query}")
        lines.append("#EXT-X-ENDLIST")
        return ("\n".join(lines) + "\n").encode("ascii")


class VodHls:
    """Playlists and segments of the media folder's files."""

    def __init__(self, sources: Sources) -> None:
        self.sources = sources
        self._indexes: OrderedDict[tuple[str, int, int], VodIndex] = OrderedDict()
        self._opening: dict[tuple[str, int, int], Deferred[VodIndex]] = {}
        self.weight = 0  # bytes the kept indexes hold

    def index(self, location: str) -> Deferred[VodIndex]:
        """The index of ``location`` (what follows ``vod://``), built once per version."""
        try:
            return self._index(location)
        except WcsError as error:
            return fail(error)

    def _index(self, location: str) -> Deferred[VodIndex]:
        if location.startswith(S3_PREFIX):
            remote = s3.parse(location)
            # (an object's version is known by its size: one replaced by another of
            # the very same size keeps its index until it is let go)
            return self.sources.s3.get_range(remote, 0, FIRST_BYTES - 1).addCallback(
                lambda first: self._kept(
                    (str(remote), first[1], 0), lambda: self._build_s3(remote, *first)
                )
            )
        path = local.resolve(self.sources.media_dir, location)
        try:
            status = path.stat()
        except OSError:
            raise NotFound() from None
        canonical = self.sources.canonical(location)
        return self._kept(
            (str(path), status.st_size, status.st_mtime_ns),
            lambda: self.sources.work(build_index, canonical, path),
        )

    def _kept(
        self, key: tuple[str, int, int], build: Callable[[], Deferred[VodIndex]]
    ) -> Deferred[VodIndex]:
        """The index kept under ``key``, or the one ``build`` makes (once, however
        many ask meanwhile)."""
        found = self._indexes.get(key)
        if found is not None:
            self._indexes.move_to_end(key)
            return succeed(found)
        opening = self._opening.get(key)
        if opening is None:
            opening = self._opening[key] = build()

            def built(index: VodIndex) -> VodIndex:
                self._indexes[key] = index
                self.weight += index.weight
                while len(self._indexes) > 1 and (
                    len(self._indexes) > MAX_INDEXES or self.weight > MAX_INDEX_BYTES
                ):
                    _key, old = self._indexes.popitem(last=False)
                    self.weight -= old.weight
                return index

            def done(result: object) -> object:
                self._opening.pop(key, None)
                return result

            opening.addCallback(built).addBoth(done)
        waiting: Deferred[VodIndex] = Deferred()
        opening.addBoth(_pass_on, waiting)
        return waiting

    def segment(self, index: VodIndex, number: int) -> Deferred[bytes]:
        """Segment ``number`` of ``index`` as TS."""
        if not 0 <= number < len(index.segments):
            return maybeDeferred(_no_segment, number, len(index.segments))
        if index.remote is None:
            return self.sources.work(make_segment, index, number)
        remote = index.remote
        runs = _runs(_spans(index, index.segments[number]))
        fetching = [self.sources.s3.get_range(remote, a, b - 1) for a, b in runs]
        return (
            gatherResults(fetching, consumeErrors=True)
            .addErrback(_first_error)
            .addCallback(
                lambda bodies: self.sources.work(
                    _mux,
                    index,
                    number,
                    _from_blocks(
                        [(a, body) for (a, _), (body, _) in zip(runs, bodies, strict=True)]
                    ),
                )
            )
        )

    def _build_s3(self, remote: s3.S3Location, first: bytes, size: int) -> Deferred[VodIndex]:
        """Find the object's ``moov`` (its top-level box headers fetched where the
        first bytes do not hold them), fetch it, and plan (a file thread)."""
        walker = boxes.walk(size)
        found: list[boxes.Box] = []

        def step(header: bytes | None) -> Deferred[VodIndex]:
            try:
                offset = walker.send(header) if header is not None else next(walker)
                while offset + min(boxes.HEADER, size - offset) <= len(first):
                    offset = walker.send(first[offset : offset + boxes.HEADER])
            except StopIteration as done:
                found.extend(done.value)
                return fetch_moov()
            return self.sources.s3.get_range(
                remote, offset, min(size, offset + boxes.HEADER) - 1
            ).addCallback(lambda got: step(got[0]))

        def fetch_moov() -> Deferred[VodIndex]:
            moov = next(box for box in found if box.kind == "moov")
            if moov.size > MAX_MOOV:
                raise WrongFormat(f"its index (moov) is larger than {MAX_MOOV >> 20} MiB")
            if moov.offset + moov.size <= len(first):
                data: Deferred[tuple[bytes, int]] = succeed(
                    (first[moov.offset :][: moov.size], size)
                )
            else:
                data = self.sources.s3.get_range(remote, moov.offset, moov.offset + moov.size - 1)
            return data.addCallback(
                lambda got: self.sources.work(index_of, str(remote), got[0], size, remote)
            )

        try:
            return step(None)
        except WcsError as error:
            return fail(error)


def _pass_on(result: object, waiting: Deferred) -> object:
    """Every caller of one build gets its result (a failure handled by each)."""
    if isinstance(result, Failure):
        waiting.errback(result)
        return None
    waiting.callback(result)
    return result


def _no_segment(number: int, count: int) -> bytes:
    raise NotFound(f"no segment {number}: the file has segments 0 to {count - 1}")


def build_index(location: str, path: Path) -> VodIndex:
    """Read ``path``'s boxes and ``moov``, and plan its segments (a file thread)."""
    with path.open("rb") as handle:
        status = os.fstat(handle.fileno())
        found = boxes.check_layout(handle, status.st_size)
        moov = next(box for box in found if box.kind == "moov")
        if moov.size > MAX_MOOV:
            raise WrongFormat(f"its index (moov) is larger than {MAX_MOOV >> 20} MiB")
        handle.seek(moov.offset)
        data = handle.read(moov.size)
    identity = f"{location}\0{status.st_size}\0{status.st_mtime_ns}\0{status.st_ino}"
    return index_of(location, data, status.st_size, None, path, identity, status.st_mtime)


def index_of(
    location: str,
    moov: bytes,
    size: int,
    remote: s3.S3Location | None,
    path: Path | None = None,
    identity: str = "",
    modified: float = 0.0,
) -> VodIndex:
    """The index of a file or object from its ``moov`` (a file thread)."""
    tracks = read_tracks(moov)
    video = next((t for t in tracks if t.kind == "video" and len(t)), None)
    audio = next((t for t in tracks if t.kind == "audio" and len(t)), None)
    if video is not None and video.codec not in ("avc1", "avc3"):
        raise WrongFormat(f"video is {video.codec}, not H.264")
    if audio is not None and audio.codec != "mp4a":
        raise WrongFormat(f"audio is {audio.codec}, not AAC")
    if video is None and audio is None:
        raise WrongFormat("no audio or video track")
    avc = h264.parse_avcc(video.config) if video is not None else None
    segments = plan(video, audio)
    identity = identity or f"{location}\0{size}"
    etag = hashlib.sha256(identity.encode()).hexdigest()[:20]
    target = max(1, math.ceil(max((s.duration for s in segments), default=1.0)))
    return VodIndex(location, path, video, audio, avc, segments, etag, modified, target, remote)


def _spans(index: VodIndex, segment: Segment) -> list[tuple[int, int]]:
    """(offset, size) of every sample of ``segment``."""
    spans = []
    if index.video is not None:
        spans += [(index.video.offsets[i], index.video.sizes[i]) for i in segment.video]
    if index.audio is not None:
        spans += [(index.audio.offsets[i], index.audio.sizes[i]) for i in segment.audio]
    return spans


def make_segment(index: VodIndex, number: int) -> bytes:
    """Read segment ``number``'s samples and mux them (a file thread)."""
    assert index.path is not None
    with index.path.open("rb") as handle:
        return _mux(index, number, _reader(handle.fileno(), _spans(index, index.segments[number])))


def _mux(index: VodIndex, number: int, read: Read) -> bytes:
    segment = index.segments[number]
    video = _video_frames(index, segment, read)
    audio = _audio_frames(index, segment, read)
    return tswriter.segment(number, video, audio, index.video is not None, index.audio is not None)


def _runs(spans: list[tuple[int, int]], gap: int = GAP) -> list[tuple[int, int]]:
    """The spans as ``[start, end)`` runs, neighbours less than ``gap`` apart merged."""
    runs: list[list[int]] = []
    for offset, size in sorted(spans):
        if runs and offset - runs[-1][1] < gap:
            runs[-1][1] = max(runs[-1][1], offset + size)
        else:
            runs.append([offset, offset + size])
    return [(a, b) for a, b in runs]


def _from_blocks(blocks: list[tuple[int, bytes]]) -> Read:
    """A sample's bytes from the runs fetched (each ``(start, body)``)."""

    def read(offset: int, size: int) -> bytes:
        for start, body in blocks:
            if start <= offset and offset + size <= start + len(body):
                return body[offset - start : offset - start + size]
        raise WrongFormat("object is truncated (a sample lies past its end)")

    return read


def _first_error(failure: Failure) -> Failure:
    """A gathered fetch's own failure, not the gathering's wrapper."""
    inner = getattr(failure.value, "subFailure", None)
    return inner if inner is not None else failure


Read = Callable[[int, int], bytes]


def _reader(fd: int, spans: list[tuple[int, int]]) -> Read:
    """A function giving a sample's bytes: one read of the whole span when the
    segment's samples lie close together, else one read each."""
    if not spans:
        return lambda offset, size: b""
    low = min(offset for offset, _ in spans)
    high = max(offset + size for offset, size in spans)
    if high - low <= ONE_READ:
        block = os.pread(fd, high - low, low)
        view = memoryview(block)

        def from_block(offset: int, size: int) -> bytes:
            data = bytes(view[offset - low : offset - low + size])
            if len(data) != size:
                raise WrongFormat("file is truncated (a sample lies past its end)")
            return data

        return from_block

    def each(offset: int, size: int) -> bytes:
        data = os.pread(fd, size, offset)
        if len(data) != size:
            raise WrongFormat("file is truncated (a sample lies past its end)")
        return data

    return each


def _ticks(value: int, scale: int) -> int:
    return (value * CLOCK + scale // 2) // scale


def _video_frames(index: VodIndex, segment: Segment, read: Read) -> list[tswriter.Frame]:
    track, avc = index.video, index.avc
    if track is None or avc is None:
        return []
    frames = []
    keys = set(track.sync) if track.sync is not None else None
    for position, i in enumerate(segment.video):
        data, is_idr = h264.to_annexb(read(track.offsets[i], track.sizes[i]), avc)
        if position == 0 and not is_idr:  # a segment's first picture decodes alone
            data = avc.parameter_sets + data
        frames.append(
            tswriter.Frame(
                data,
                _ticks(track.pts(i), track.timescale),
                _ticks(track.dts[i] - track.shift, track.timescale),
                keys is None or i in keys,
            )
        )
    return frames


def _audio_frames(index: VodIndex, segment: Segment, read: Read) -> list[tswriter.Frame]:
    track = index.audio
    if track is None:
        return []
    frames = []
    for i in segment.audio:
        pts = _ticks(track.pts(i), track.timescale)
        frames.append(
            tswriter.Frame(
                tswriter.adts(read(track.offsets[i], track.sizes[i]), track.config), pts, pts
            )
        )
    return frames
