"""The one stream registry: finds or creates the stream a name means.

It owns names and ids: one live broadcast per ``vod-live://`` name (shared,
opened once even while a remote source is still opening), a personal stream
per ``vod://`` play, one published stream per name. Opening what a name
points at is the sources' job; the registry only hands over the location.

Names are the whole server's: every stream is an entry of the
:class:`~wcs.cluster.directory.Directory`, which says whether a name is free
anywhere, when a broadcast began (so this worker reads it from the same
moment as every other), and where a published stream comes from (so it is
relayed here once, whoever plays it). Local streams are this worker's copies.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol, TypeVar, cast

from twisted.internet.defer import Deferred, fail, maybeDeferred, succeed
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure

from wcs.cluster.directory import Directory, LocalDirectory, answered
from wcs.cluster.store import MEDIA, PUBLISHED, TRANSPORT, Entry, relayed
from wcs.errors import (
    STREAM_NOT_FOUND,
    InvalidName,
    LimitReached,
    NameTaken,
    NotFound,
    Unsupported,
    WcsError,
)
from wcs.limits import Limits
from wcs.media.sample import MediaInfo
from wcs.sources import Media, Sources, playlist
from wcs.sources.playlist import PlaylistMedia
from wcs.streams import uri as uris
from wcs.streams.channels import Channels
from wcs.streams.controls import Controls
from wcs.streams.ladder import NO_LADDER, Ladder
from wcs.streams.media_sessions import MediaSessions
from wcs.streams.queries import StreamQueries
from wcs.streams.renditions import Renditions
from wcs.streams.snapshots import Snapshots
from wcs.streams.stream import JOIN_FROM_START, PublishedStream, Stream, VodStream

log = Logger()

T = TypeVar("T")


class Relay(Protocol):
    """How published streams travel between workers (:mod:`wcs.cluster.relay`)."""

    address: str

    def subscribe(self, entry: Entry, stream: PublishedStream) -> Deferred[None]:
        """Feed ``stream`` with what is published as ``entry`` elsewhere: fires
        once its description has come (``stream.info``; ``stream.ask_publisher``
        then asks the publishing page for a keyframe), fails if it cannot."""


class StreamRegistry:
    """Finds or creates streams for front doors; owns their lifecycles.

    ``loop`` is whether live broadcasts loop unless told otherwise
    (``vod_live_loop``); ``timeout`` how long (s) one outlives its last viewer
    (``vod_stream_timeout``); ``limits`` caps the broadcasts running at once.
    ``directory`` is the whole server's names (this process's own by default);
    ``relay`` brings published streams from other workers.

    Its parts each do one job beside it: :attr:`queries` (the whole server's
    streams and plays, for REST and the cluster), :attr:`renditions` (other
    picture sizes), :attr:`snapshots` (pictures) and :attr:`controls` (a
    personal play's seek and pause); front doors reach them
    through the registry.
    """

    def __init__(
        self,
        sources: Sources,
        clock: IReactorTime,
        *,
        loop: bool = False,
        timeout: float = 0.0,
        limits: Limits = Limits(),
        directory: Directory | None = None,
        relay: Relay | None = None,
        transcoding: bool = True,
        ladder: Ladder = NO_LADDER,
        adaptive: bool = True,
    ) -> None:
        self.sources = sources
        self.clock = clock
        self.loop = loop
        self.timeout = timeout
        self.limits = limits
        self.directory: Directory = directory if directory is not None else LocalDirectory()
        self.directory.listen(self._terminated)
        self.relay = relay
        self.streams: dict[str, VodStream] = {}  # by id, the entry's
        self.live: dict[str, VodStream] = {}  # by the name viewers play
        #: by the one spelling of their uri: what a play of any alias joins (a REST
        #: startup under a name of its own may run another broadcast of one file)
        self.broadcasts: dict[str, VodStream] = {}
        self.published: dict[str, PublishedStream] = {}  # here or relayed from elsewhere
        #: the pages' plays and publications this worker serves
        self.media = MediaSessions(self.directory.worker)
        self._opening: dict[str, list[Deferred[Stream]]] = {}  # by uri or name
        self._starting: set[str] = set()  # names REST startups are opening
        #: Told ``(token, info)`` when another node refused a media socket of ours.
        self.on_transport_refused: Callable[[str, str], None] = lambda token, info: None
        self.queries = StreamQueries(self.directory, self.media, self.viewers, self.running)
        self.renditions = Renditions(clock, transcoding, ladder, adaptive)
        self.snapshots = Snapshots(
            self.directory, self.media, self.open, self.queries.media_sessions, self._work, clock
        )
        self.controls = Controls(self.directory, self.media, self.queries.media_sessions)
        self.channels = Channels(self.directory, self.live.get, sources, clock)

    def open(self, name: str) -> Deferred[Stream]:
        """The stream a viewer of ``name`` should subscribe to; fails with a
        :class:`~wcs.errors.WcsError` saying why there is none."""
        existing = self.live.get(name)
        if existing is not None and not existing.closed:
            return succeed(existing)
        published = self.published.get(name)
        if published is not None and not published.closed:
            return succeed(published)
        try:
            parsed = uris.parse(name)
            if parsed.scheme == uris.PERSONAL:
                return self._personal(parsed, name)
            if parsed.scheme == uris.LIVE:
                parsed = self._canonical(parsed)  # every alias of a file: one broadcast
                key = str(parsed)
                existing = self.broadcasts.get(key)
                if existing is not None and not existing.closed:
                    return succeed(existing)
            else:
                key = name
        except WcsError:
            return fail()
        if key in self._opening:  # another viewer is opening the same stream
            waiting: Deferred[Stream] = Deferred()
            self._opening[key].append(waiting)
            return waiting
        if parsed.scheme == uris.LIVE:
            try:
                self._check_broadcasts()
            except WcsError:
                return fail()
            return self._shared(key, lambda: self._join_live(parsed))
        return self._shared(key, lambda: self._join_named(name))

    def _shared(self, key: str, make: Callable[[], Deferred[Stream]]) -> Deferred[Stream]:
        """Make the stream ``key`` means once; plays arriving meanwhile wait for it."""
        self._opening[key] = []

        def settle(result: Stream | Failure) -> Stream | Failure:
            for waiting in self._opening.pop(key, []):
                if isinstance(result, Failure):
                    waiting.errback(result)
                else:
                    waiting.callback(result)
            return result

        return maybeDeferred(make).addBoth(settle)

    def _join_live(self, parsed: uris.StreamUri) -> Deferred[Stream]:
        """A play of ``vod-live://``: the server's broadcast of the file, read here."""
        key = str(parsed)

        def opened(media: Media) -> Deferred[Stream]:
            entry = self._entry(key, key, media, loop=self.loop)
            # (an Entry is an Entry or None: Deferred is invariant)
            live = cast("Deferred[Entry | None]", self.directory.live(entry))
            return self._agree(answered(live), media)

        return self.sources.open(parsed.path, key).addCallback(opened)

    def _join_named(self, name: str) -> Deferred[Stream]:
        """A plain name: a REST startup or a publication, perhaps of another worker."""

        def found(entry: Entry | None) -> Deferred[Stream]:
            if entry is None:
                raise NotFound(STREAM_NOT_FOUND)
            if relayed(entry):
                return self._relayed(entry)
            self._check_broadcasts()
            parsed = uris.parse(entry.uri)
            return self.sources.open(parsed.path, entry.uri).addCallback(
                lambda media: self._agree(answered(self.directory.hold(entry.id)), media)
            )

        return answered(self.directory.lookup(name)).addCallback(found)

    def _agree(
        self, agreeing: Deferred[Entry | None], media: Media, persistent: bool = False
    ) -> Deferred[Stream]:
        """Serve the entry the directory settles on with ``media`` (closed if
        there is none, or if this worker serves it already)."""

        def agreed(entry: Entry | None) -> Stream | Deferred[Stream]:
            if entry is None:
                media.close()
                raise NotFound(STREAM_NOT_FOUND)
            if relayed(entry) and entry.owner != self.directory.worker:
                media.close()  # a playlist channel another worker serves
                return self._relayed(entry)
            existing = self.streams.get(entry.id)
            if existing is not None and not existing.closed:
                media.close()
                return existing
            late = self.clock.seconds() - entry.start
            if late <= JOIN_FROM_START:
                return self._serve(entry, media, persistent)
            # under way elsewhere: what a reader from its "now" needs first
            return media.prepare_join(late, entry.loop).addCallbacks(
                lambda _: self._serve_once(entry, media, persistent), failed
            )

        def failed(failure: Failure) -> Failure:
            media.close()
            return failure

        return agreeing.addCallbacks(agreed, failed)

    def _serve_once(self, entry: Entry, media: Media, persistent: bool) -> Stream:
        """:meth:`_serve`, unless another play made this worker's copy meanwhile."""
        existing = self.streams.get(entry.id)
        if existing is not None and not existing.closed:
            media.close()
            return existing
        return self._serve(entry, media, persistent)

    def _entry(
        self,
        name: str,
        uri: str,
        media: Media,
        *,
        loop: bool = False,
        persistent: bool = False,
        shared: bool = True,
    ) -> Entry:
        channel = isinstance(media, PlaylistMedia)  # served here, relayed to the others
        return Entry(
            name,
            uri=uri,
            start=self.clock.seconds(),
            loop=loop or channel,
            persistent=persistent,
            shared=shared,
            relay=self.relay.address if channel and self.relay is not None else "",
            has_audio=media.info.audio is not None,
            has_video=media.info.video is not None,
            bitrate=media.info.bitrate,
        )

    def _serve(self, entry: Entry, media: Media, persistent: bool) -> VodStream:
        uri = uris.parse(entry.uri)
        stream = VodStream(
            uri,
            entry.name,
            media,
            self.clock,
            self._gone,
            live=True,
            loop=entry.loop,
            timeout=self.timeout,
            persistent=persistent,
            start=entry.start,
            stream_id=entry.id,
        )
        self.streams[stream.id] = stream
        self.live[entry.name] = stream
        self.broadcasts.setdefault(entry.uri, stream)  # what plays of the uri join
        log.info(
            "stream {id} created for {uri} as {name!r}{loop}{late}",
            id=stream.id,
            uri=entry.uri,
            name=entry.name,
            loop=" (looping)" if entry.loop else "",
            late=f", {self.clock.seconds() - entry.start:.1f} s after it began"
            if entry.owner != self.directory.worker
            else "",
        )
        return stream

    def _personal(self, parsed: uris.StreamUri, name: str) -> Deferred[Stream]:
        """A ``vod://`` play: a stream of its own, listed with the server's."""
        if parsed.path.endswith(playlist.SUFFIX):
            raise Unsupported(
                f"a playlist is a channel: play it as vod-live://{parsed.path}, not vod://"
            )

        def opened(media: Media) -> Deferred[Stream]:
            entry = self._entry(name, str(parsed), media, shared=False)

            def listed(entry: Entry | None) -> Stream:
                assert entry is not None
                stream = VodStream(parsed, name, media, self.clock, self._gone, stream_id=entry.id)
                self.streams[stream.id] = stream
                log.info("stream {id} created for {uri}", id=stream.id, uri=str(parsed))
                return stream

            def failed(failure: Failure) -> Failure:
                media.close()
                return failure

            return answered(self.directory.claim(entry)).addCallbacks(listed, failed)

        return self.sources.open(parsed.path, str(parsed)).addCallback(opened)

    def _relayed(self, entry: Entry) -> Deferred[Stream]:
        """A stream published on another worker: fetched once, for every viewer here."""
        if self.relay is None or not entry.relay:
            raise NotFound(STREAM_NOT_FOUND)
        stream = PublishedStream(
            entry.name, None, _nothing, self._unpublished, self.clock, stream_id=entry.id
        )

        def relayed(_: None) -> Stream:
            self.published[entry.name] = stream
            answered(self.directory.hold(entry.id)).addErrback(lambda _: None)  # logged
            log.info(
                "stream {id} ({name!r}) relayed from {relay}",
                id=stream.id,
                name=entry.name,
                relay=entry.relay,
            )
            return stream

        return self.relay.subscribe(entry, stream).addCallback(relayed)

    def _check_broadcasts(self, startup: bool = False) -> None:
        """Raise :class:`LimitReached` if one more broadcast would be too many."""
        running = [stream for stream in self.streams.values() if stream.live]
        if len(running) + len(self._opening) + len(self._starting) >= self.limits.max_broadcasts:
            raise LimitReached(
                "vod-live broadcasts running", "max_broadcasts", self.limits.max_broadcasts
            )
        started = sum(stream.persistent for stream in running) + len(self._starting)
        if startup and started >= self.limits.max_rest_startups:
            raise LimitReached(
                "REST-started broadcasts running",
                "max_rest_startups",
                self.limits.max_rest_startups,
            )

    def _canonical(self, parsed: uris.StreamUri) -> uris.StreamUri:
        return uris.StreamUri(parsed.scheme, self.sources.canonical(parsed.path))

    def startup(
        self,
        uri: str | None,
        name: str,
        loop: bool | None = None,
        playlist: list[str] | None = None,
    ) -> Deferred[VodStream]:
        """Start a live broadcast of ``uri`` under ``name``, with or without
        viewers; or, with ``playlist``, a channel of those files back to back."""
        try:
            if playlist is not None:
                names = self.sources.checked_names(playlist)
                canonical = uris.StreamUri(uris.LIVE, name)
            else:
                assert uri is not None
                parsed = uris.parse(uri)
                if parsed.scheme != uris.LIVE:
                    raise Unsupported("startup only creates live VOD: 'uri' must be vod-live://...")
                canonical = self._canonical(parsed)
            self._check_name(name, f"a stream named {name!r} already exists")
            self._check_broadcasts(startup=True)
        except WcsError:
            return fail()
        self._starting.add(name)
        key = str(canonical)

        def opened(media: Media) -> Deferred[Stream]:
            entry = self._entry(
                name, key, media, persistent=True, loop=self.loop if loop is None else loop
            )

            def claimed(entry: Entry | None) -> Entry:
                if entry is None:
                    raise NameTaken(f"a stream named {name!r} already exists", name)
                return entry

            return self._agree(
                answered(self.directory.claim(entry)).addCallback(claimed),
                media,
                persistent=True,
            )

        def started(result: VodStream | Failure) -> VodStream | Failure:
            self._starting.discard(name)
            return result

        opening = (
            self.sources.open(canonical.path, key)
            if playlist is None
            else self.sources.playlist(names, f"{name!r}")
        )
        return opening.addCallback(opened).addCallback(_broadcast).addBoth(started)

    def check_publishable(self, name: str) -> None:
        """Raise unless a page may publish under ``name`` now (as far as this
        worker knows: :meth:`publish` asks the whole server)."""
        self._check_name(name, f"Stream {name!r} is already being published")

    def publish(
        self, name: str, info: MediaInfo, request_keyframe: Callable[[], None]
    ) -> Deferred[PublishedStream]:
        """Register a published stream; its name must be free everywhere."""
        try:
            self.check_publishable(name)
        except WcsError:
            return fail()
        taken = NameTaken(f"Stream {name!r} is already being published", name)
        entry = Entry(
            name,
            kind=PUBLISHED,
            relay=self.relay.address if self.relay else "",
            start=self.clock.seconds(),
            has_audio=info.audio is not None,
            has_video=info.video is not None,
        )
        self._starting.add(name)

        def claimed(entry: Entry | None) -> PublishedStream:
            self._starting.discard(name)
            if entry is None:
                raise taken
            stream = PublishedStream(
                name, info, request_keyframe, self._unpublished, self.clock, stream_id=entry.id
            )
            self.published[name] = stream
            log.info("stream {id} published as {name!r}", id=stream.id, name=name)
            return stream

        def failed(failure: Failure) -> Failure:
            self._starting.discard(name)
            return failure

        return answered(self.directory.claim(entry)).addCallbacks(claimed, failed)

    def _check_name(self, name: str, taken: str) -> None:
        problem = uris.stream_name_problem(name)
        if problem is not None:
            raise InvalidName.because(problem)
        if name in self.published or name in self.live or name in self._starting:
            raise NameTaken(taken, name)

    def _unpublished(self, stream: PublishedStream) -> None:
        if self.published.get(stream.name) is stream:
            del self.published[stream.name]
            self.directory.release(stream.id)
            log.info("stream {id} ({name!r}) unpublished", id=stream.id, name=stream.name)

    def find(
        self, *, name: str | None = None, uri: str | None = None, stream_id: str | None = None
    ) -> list[VodStream]:
        """This worker's VOD streams matching every criterion given (all without one)."""
        return [
            stream
            for stream in self.streams.values()
            if (name is None or stream.name == name)
            and (uri is None or str(stream.uri) == uri)
            and (stream_id is None or stream.id == stream_id)
        ]

    def _terminated(self, entry_ids: list[str], info: str) -> None:
        for entry_id in entry_ids:
            if entry_id.startswith(MEDIA + TRANSPORT):
                self.on_transport_refused(entry_id.removeprefix(MEDIA + TRANSPORT), info)
                continue
            if entry_id.startswith(MEDIA):
                self.media.stop(entry_id.removeprefix(MEDIA), info)
                continue
            stream = self.streams.get(entry_id)
            if stream is not None:
                log.info(
                    "stream {id} ({name!r}) terminated: {info}",
                    id=stream.id,
                    name=stream.name,
                    info=info,
                )
                stream.terminate(info)

    def _gone(self, stream: VodStream) -> None:
        if self.live.get(stream.name) is stream:
            del self.live[stream.name]
        if self.broadcasts.get(str(stream.uri)) is stream:
            del self.broadcasts[str(stream.uri)]
        if self.streams.pop(stream.id, None) is not None:
            self.directory.release(stream.id)
            log.info(
                "stream {id} ({uri}) released after sending {video} video and {audio} "
                "audio samples",
                id=stream.id,
                uri=str(stream.uri),
                video=stream.sent["video"],
                audio=stream.sent["audio"],
            )

    def available(self, name: str) -> Deferred[tuple[bool, str]]:
        """For ``availableStream``: can ``name`` be played right now, and why not?"""
        if name in self.live or name in self.published:
            return succeed((True, "Available"))
        try:
            parsed = uris.parse(name)
        except WcsError as error:
            return succeed((False, error.info))
        if parsed.scheme == "":
            return answered(self.directory.lookup(name)).addCallback(
                lambda entry: (
                    (True, "Available") if entry is not None else (False, STREAM_NOT_FOUND)
                )
            )

        def refused(failure: Failure) -> tuple[bool, str]:
            failure.trap(WcsError)
            error = failure.value
            assert isinstance(error, WcsError)
            return False, error.info

        return self.sources.check(parsed.path).addCallbacks(lambda info: (True, info), refused)

    def _work(self, work: Callable[..., T], *args: Any) -> Deferred[T]:
        """Heavy work off the reactor, in the sources' pool (a snapshot's decoding)."""
        return self.sources.work(work, *args)

    def viewers(self) -> dict[str, int]:
        """This worker's viewers of each stream it serves, by id."""
        viewers = {stream.id: stream.viewers for stream in self.streams.values()}
        viewers.update({stream.id: len(stream.broadcast) for stream in self.published.values()})
        return viewers

    def running(self) -> int:
        """How many streams this worker serves (VOD and published)."""
        return len(self.streams) + len(self.published)

    def published_stream(self, name: str) -> PublishedStream | VodStream | None:
        """The stream published here (or relayed here) as ``name``, or the
        playlist channel served here as ``name``: what other workers relay."""
        published = self.published.get(name)
        if published is not None:
            return published
        live = self.live.get(name)
        return live if live is not None and live.playlist is not None else None

    def close_all(self) -> None:
        streams: list[Stream] = [*self.streams.values(), *self.published.values()]
        for stream in streams:
            stream.terminate("Server shutdown")


def _broadcast(stream: Stream) -> VodStream:
    """What a REST startup agreed on: always a broadcast of a file."""
    assert isinstance(stream, VodStream)
    return stream


def _nothing() -> None:
    """A relayed stream's keyframe requests go up the relay, not to a page."""
