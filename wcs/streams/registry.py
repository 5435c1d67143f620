"""The one stream registry: finds or creates the stream a name means.

It owns names and ids: one live broadcast per ``vod-live://`` name (shared,
opened once even while a remote source is still opening), a personal stream
per ``vod://`` play, one published stream per name. Opening what a name
points at is the sources' job; the registry only hands over the location.
"""

from __future__ import annotations

from collections.abc import Callable

from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure

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
from wcs.sources import OpenedMedia, Sources
from wcs.streams import uri as uris
from wcs.streams.stream import PublishedStream, VodStream

log = Logger()

Stream = VodStream | PublishedStream


class StreamRegistry:
    """Finds or creates streams for front doors; owns their lifecycles.

    ``loop`` is whether live broadcasts loop unless told otherwise
    (``vod_live_loop``); ``timeout`` how long (s) one outlives its last viewer
    (``vod_stream_timeout``); ``limits`` caps the broadcasts running at once.
    """

    def __init__(self, sources: Sources, clock: IReactorTime, *, loop: bool = False,
                 timeout: float = 0.0, limits: Limits = Limits()) -> None:
        self.sources = sources
        self.clock = clock
        self.loop = loop
        self.timeout = timeout
        self.limits = limits
        self.streams: dict[str, VodStream] = {}
        self.live: dict[str, VodStream] = {}  # by the name viewers play
        #: by the one spelling of their uri: what a play of any alias joins (a REST
        #: startup under a name of its own may run another broadcast of one file)
        self.broadcasts: dict[str, VodStream] = {}
        self.published: dict[str, PublishedStream] = {}
        self._opening: dict[str, list[Deferred[VodStream]]] = {}  # by that spelling
        self._starting: set[str] = set()  # names REST startups are opening

    def open(self, name: str) -> Deferred[Stream]:
        """The stream a viewer of ``name`` should subscribe to; fails with a
        :class:`~wcs.errors.WcsError` saying why there is none."""
        existing = self.live.get(name)
        if existing is not None and not existing.closed:
            return succeed(existing)
        published = self.published.get(name)
        if published is not None:
            return succeed(published)
        try:
            parsed = uris.parse(name)
            if parsed.scheme == uris.PERSONAL:
                return self._create(parsed, name, live=False)
            if parsed.scheme != uris.LIVE:
                raise NotFound(STREAM_NOT_FOUND)
            uri = self._canonical(parsed)  # every alias of a file: one broadcast
        except WcsError:
            return fail()
        key = str(uri)
        existing = self.broadcasts.get(key)
        if existing is not None and not existing.closed:
            return succeed(existing)
        if key in self._opening:  # another viewer is opening the same broadcast
            waiting: Deferred[VodStream] = Deferred()
            self._opening[key].append(waiting)
            return waiting
        try:
            self._check_broadcasts()
        except WcsError:
            return fail()
        return self._create(uri, key, live=True, loop=self.loop)

    def _check_broadcasts(self, startup: bool = False) -> None:
        """Raise :class:`LimitReached` if one more broadcast would be too many."""
        running = [stream for stream in self.streams.values() if stream.live]
        if len(running) + len(self._opening) + len(self._starting) >= \
                self.limits.max_broadcasts:
            raise LimitReached("vod-live broadcasts running", "max_broadcasts",
                               self.limits.max_broadcasts)
        started = sum(stream.persistent for stream in running) + len(self._starting)
        if startup and started >= self.limits.max_rest_startups:
            raise LimitReached("REST-started broadcasts running", "max_rest_startups",
                               self.limits.max_rest_startups)

    def _canonical(self, parsed: uris.StreamUri) -> uris.StreamUri:
        return uris.StreamUri(parsed.scheme, self.sources.canonical(parsed.path))

    def startup(self, uri: str, name: str, loop: bool | None = None) -> Deferred[VodStream]:
        """Start a live broadcast of ``uri`` under ``name``, with or without viewers."""
        try:
            parsed = uris.parse(uri)
            if parsed.scheme != uris.LIVE:
                raise Unsupported("startup only creates live VOD: 'uri' must be vod-live://...")
            self._check_name(name, f"a stream named {name!r} already exists")
            canonical = self._canonical(parsed)
            self._check_broadcasts(startup=True)
        except WcsError:
            return fail()
        self._starting.add(name)

        def started(result: VodStream | Failure) -> VodStream | Failure:
            self._starting.discard(name)
            return result

        return self._create(canonical, name, live=True, persistent=True,
                            loop=self.loop if loop is None else loop).addBoth(started)

    def check_publishable(self, name: str) -> None:
        """Raise unless a page may publish under ``name`` now."""
        self._check_name(name, f"Stream {name!r} is already being published")

    def publish(self, name: str, info: MediaInfo,
                request_keyframe: Callable[[], None]) -> PublishedStream:
        """Register a published stream; its name must be free."""
        self.check_publishable(name)
        stream = PublishedStream(name, info, request_keyframe, self._unpublished, self.clock)
        self.published[name] = stream
        log.info("stream {id} published as {name!r}", id=stream.id, name=name)
        return stream

    def _check_name(self, name: str, taken: str) -> None:
        problem = uris.stream_name_problem(name)
        if problem is not None:
            raise InvalidName.because(problem)
        if name in self.published or name in self.live or name in self._starting:
            raise NameTaken(taken, name)

    def _unpublished(self, stream: PublishedStream) -> None:
        if self.published.get(stream.name) is stream:
            del self.published[stream.name]
            log.info("stream {id} ({name!r}) unpublished", id=stream.id, name=stream.name)

    def find(self, *, name: str | None = None, uri: str | None = None,
             stream_id: str | None = None) -> list[VodStream]:
        """VOD streams matching every criterion given (all of them without one)."""
        return [stream for stream in self.streams.values()
                if (name is None or stream.name == name)
                and (uri is None or str(stream.uri) == uri)
                and (stream_id is None or stream.id == stream_id)]

    def _create(self, parsed: uris.StreamUri, name: str, *, live: bool, loop: bool = False,
                persistent: bool = False) -> Deferred[VodStream]:
        key = str(parsed)
        shared = live and not persistent  # plays of the uri wait for this one
        if shared:
            self._opening[key] = []

        def opened(media: OpenedMedia) -> VodStream:
            stream = VodStream(parsed, name, media, self.clock, self._gone, live=live,
                               loop=loop, timeout=self.timeout, persistent=persistent)
            self.streams[stream.id] = stream
            if live:
                self.live[name] = stream
                self.broadcasts.setdefault(key, stream)  # what plays of the uri join
            log.info("stream {id} created for {uri} as {name!r}{loop}", id=stream.id,
                     uri=str(parsed), name=name, loop=" (looping)" if loop else "")
            return stream

        def settle(result: VodStream | Failure) -> VodStream | Failure:
            for waiting in self._opening.pop(key, []) if shared else []:
                if isinstance(result, Failure):
                    waiting.errback(result)
                else:
                    waiting.callback(result)
            return result

        opening = self.sources.open(parsed.path, str(parsed))
        return opening.addCallback(opened).addBoth(settle)

    def _gone(self, stream: VodStream) -> None:
        if self.live.get(stream.name) is stream:
            del self.live[stream.name]
        if self.broadcasts.get(str(stream.uri)) is stream:
            del self.broadcasts[str(stream.uri)]
        if self.streams.pop(stream.id, None) is not None:
            log.info("stream {id} ({uri}) released after sending {video} video and {audio} "
                     "audio samples", id=stream.id, uri=str(stream.uri),
                     video=stream.pump.sent["video"], audio=stream.pump.sent["audio"])

    def available(self, name: str) -> Deferred[tuple[bool, str]]:
        """For ``availableStream``: can ``name`` be played right now, and why not?"""
        if name in self.live or name in self.published:
            return succeed((True, "Available"))
        try:
            parsed = uris.parse(name)
        except WcsError as error:
            return succeed((False, error.info))
        if parsed.scheme not in (uris.PERSONAL, uris.LIVE):
            return succeed((False, STREAM_NOT_FOUND))

        def refused(failure: Failure) -> tuple[bool, str]:
            failure.trap(WcsError)
            return False, failure.value.info

        return self.sources.check(parsed.path).addCallbacks(lambda info: (True, info), refused)

    def close_all(self) -> None:
        for stream in [*self.streams.values(), *self.published.values()]:
            stream.terminate("Server shutdown")
