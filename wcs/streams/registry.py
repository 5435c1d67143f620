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

import base64
import os
from collections.abc import Callable
from typing import Any, Protocol, TypeVar

from twisted.internet.defer import Deferred, fail, gatherResults, maybeDeferred, succeed
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure

from wcs.cluster.directory import Directory, LocalDirectory
from wcs.cluster.store import MEDIA, PUBLISHED, TRANSPORT, Entry, Load
from wcs.errors import (
    STREAM_NOT_FOUND,
    ClusterUnavailable,
    InvalidName,
    LimitReached,
    NameTaken,
    NotFound,
    Unsupported,
    WcsError,
)
from wcs.limits import Limits
from wcs.media import resize, snapshot
from wcs.media.sample import MediaInfo, Sample
from wcs.sources import OpenedMedia, Sources
from wcs.streams import uri as uris
from wcs.streams.media_sessions import MediaSession, MediaSessions
from wcs.streams.rendition import Rendition
from wcs.streams.snapshot import Grab
from wcs.streams.stream import JOIN_FROM_START, PublishedStream, VodStream

log = Logger()

Stream = VodStream | PublishedStream
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
    ) -> None:
        self.sources = sources
        self.clock = clock
        self.transcoding = transcoding
        #: streams at another picture size, by (source stream id, size)
        self.renditions: dict[tuple[str, tuple[int, int]], Rendition] = {}
        self.loop = loop
        self.timeout = timeout
        self.limits = limits
        self.directory: Directory = directory if directory is not None else LocalDirectory()
        self.directory.listen(self._terminated)
        self.directory.answer("snapshot", self._snapshot_asked)
        self.directory.answer("media", lambda _: [media.as_dict() for media in self.media.all()])
        self.directory.answer("viewers", lambda _: [self.directory.worker, self._viewers()])
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
        self._cpu = 0.0  # this process's share of a core, last measured
        self._metrics: list[Any] = []  # its metric families (wcs.metrics.to_wire), last read
        self._hls: dict[str, int] = {}  # HLS players by stream name, last counted
        #: Told ``(token, info)`` when another node refused a media socket of ours.
        self.on_transport_refused: Callable[[str, str], None] = lambda token, info: None

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

    def _asked(self, asking: Deferred[T]) -> Deferred[T]:
        """A step of the directory, whose failure (the supervisor or Redis not
        answering) is a :class:`ClusterUnavailable` that says so."""

        def unanswered(failure: Failure) -> Failure:
            if failure.check(WcsError):
                return failure
            log.error("the server's names did not answer: {why}", why=failure.getErrorMessage())
            raise ClusterUnavailable(failure.getErrorMessage() or failure.type.__name__)

        return asking.addErrback(unanswered)

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

        def opened(media: OpenedMedia) -> Deferred[Stream]:
            entry = self._entry(key, key, media, loop=self.loop)
            return self._agree(self._asked(self.directory.live(entry)), media)

        return self.sources.open(parsed.path, key).addCallback(opened)

    def _join_named(self, name: str) -> Deferred[Stream]:
        """A plain name: a REST startup or a publication, perhaps of another worker."""

        def found(entry: Entry | None) -> Deferred[Stream]:
            if entry is None:
                raise NotFound(STREAM_NOT_FOUND)
            if entry.kind == PUBLISHED:
                return self._relayed(entry)
            self._check_broadcasts()
            parsed = uris.parse(entry.uri)
            return self.sources.open(parsed.path, entry.uri).addCallback(
                lambda media: self._agree(self._asked(self.directory.hold(entry.id)), media)
            )

        return self._asked(self.directory.lookup(name)).addCallback(found)

    def _agree(
        self, agreeing: Deferred[Entry | None], media: OpenedMedia, persistent: bool = False
    ) -> Deferred[Stream]:
        """Serve the entry the directory settles on with ``media`` (closed if
        there is none, or if this worker serves it already)."""

        def agreed(entry: Entry | None) -> Stream | Deferred[Stream]:
            if entry is None:
                media.close()
                raise NotFound(STREAM_NOT_FOUND)
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

    def _serve_once(self, entry: Entry, media: OpenedMedia, persistent: bool) -> Stream:
        """:meth:`_serve`, unless another play made this worker's copy meanwhile."""
        existing = self.streams.get(entry.id)
        if existing is not None and not existing.closed:
            media.close()
            return existing
        return self._serve(entry, media, persistent)

    def _entry(self, name: str, uri: str, media: OpenedMedia, **fields: object) -> Entry:
        return Entry(
            name,
            uri=uri,
            start=self.clock.seconds(),
            has_audio=media.info.audio is not None,
            has_video=media.info.video is not None,
            bitrate=media.info.bitrate,
            **fields,
        )  # type: ignore[arg-type]

    def _serve(self, entry: Entry, media: OpenedMedia, persistent: bool) -> VodStream:
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

        def opened(media: OpenedMedia) -> Deferred[Stream]:
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

            return self._asked(self.directory.claim(entry)).addCallbacks(listed, failed)

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
            self._asked(self.directory.hold(entry.id)).addErrback(lambda _: None)  # logged
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
        key = str(canonical)

        def opened(media: OpenedMedia) -> Deferred[Stream]:
            entry = self._entry(
                name, key, media, persistent=True, loop=self.loop if loop is None else loop
            )

            def claimed(entry: Entry | None) -> Entry:
                if entry is None:
                    raise NameTaken(f"a stream named {name!r} already exists", name)
                return entry

            return self._agree(
                self._asked(self.directory.claim(entry)).addCallback(claimed),
                media,
                persistent=True,
            )

        def started(result: VodStream | Failure) -> VodStream | Failure:
            self._starting.discard(name)
            return result

        opening = self.sources.open(canonical.path, key)
        return opening.addCallback(opened).addBoth(started)

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

        return self._asked(self.directory.claim(entry)).addCallbacks(claimed, failed)

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

    def entries(
        self, *, name: str | None = None, uri: str | None = None, stream_id: str | None = None
    ) -> Deferred[list[Entry]]:
        """The whole server's VOD streams matching every criterion given, with
        their viewers: this machine's workers' counted now (the others are
        asked), other nodes' as last reported."""
        here = self.directory.worker

        def counted(results: list[Any]) -> list[Entry]:
            entries, neighbours = results
            for worker, viewers in [(here, self._viewers()), *neighbours]:
                for entry in entries:
                    if entry.id in viewers:
                        entry.viewers[worker] = viewers[entry.id]
            return entries

        asking = gatherResults(
            [self.directory.select(name, uri, stream_id), self.directory.ask_all("viewers", None)],
            consumeErrors=True,
        )
        asking.addErrback(lambda failure: failure.value.subFailure)
        return self._asked(asking).addCallback(counted)

    def terminate(self, entries: list[Entry], info: str) -> Deferred[list[Entry]]:
        """Stop ``entries`` everywhere: each worker's viewers get STOPPED with ``info``."""
        return self._asked(self.directory.terminate([entry.id for entry in entries], info))

    def media_sessions(
        self, media_id: str | None = None, name: str | None = None, published: bool | None = None
    ) -> Deferred[list[MediaSession]]:
        """The whole server's plays and publications matching every criterion
        given: this machine's as they are now (its other workers are asked),
        other nodes' as last reported."""
        here = self.directory.worker
        node = here.rpartition("/")[0]

        def gathered(results: list[Any]) -> list[MediaSession]:
            loads, neighbours = results
            found = [
                *self.media.all(),
                *(MediaSession(**media) for answer in neighbours for media in answer),
                *(
                    MediaSession(**media)
                    for load in loads
                    if load.worker.rpartition("/")[0] != node
                    for media in load.media
                ),
            ]
            return sorted(
                (
                    media
                    for media in found
                    if (media_id is None or media.id == media_id)
                    and (name is None or media.name == name)
                    and (published is None or media.published == published)
                ),
                key=lambda media: media.created,
            )

        loads = self.directory.loads() if node else succeed([])
        asking = gatherResults([loads, self.directory.ask_all("media", None)], consumeErrors=True)
        asking.addErrback(lambda failure: failure.value.subFailure)
        return self._asked(asking).addCallback(gathered)

    def stop_media(self, found: list[MediaSession], info: str) -> None:
        """End these plays and publications wherever they are; each page is told."""
        elsewhere = [media.id for media in found if media.worker != self.directory.worker]
        for media in found:
            if media.worker == self.directory.worker:
                self.media.stop(media.id, info)
        if elsewhere:
            self.directory.stop(elsewhere, info)

    def transport_refused(self, token: str, info: str) -> None:
        """A media socket came here for a session of another node: tell every
        node (the session's ends the plays that wait for it, with ``info``)."""
        self.directory.stop([TRANSPORT + token], info)

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

    def report(
        self,
        cpu: float | None = None,
        metrics: list[Any] | None = None,
        hls: dict[str, int] | None = None,
    ) -> None:
        """Tell the directory this worker's viewers of each stream, and its load
        (``cpu``, a share of one core, its ``metrics`` and ``hls`` players by
        stream name, when measured)."""
        if cpu is not None:
            self._cpu = cpu
        if metrics is not None:
            self._metrics = metrics
        if hls is not None:
            self._hls = hls
        viewers = self._viewers()
        self.directory.report(viewers, self._load(viewers))

    def _viewers(self) -> dict[str, int]:
        """This worker's viewers of each stream it serves, by id."""
        viewers = {stream.id: stream.viewers for stream in self.streams.values()}
        viewers.update({stream.id: len(stream.broadcast) for stream in self.published.values()})
        return viewers

    def _load(self, viewers: dict[str, int]) -> Load:
        worker = self.directory.worker
        return Load(
            worker,
            node=worker.rpartition("/")[0],
            pid=os.getpid(),
            viewers=sum(viewers.values()),
            cpu=self._cpu,
            streams=len(self.streams) + len(self.published),
            media=[media.as_dict() for media in self.media.all()],
            metrics=self._metrics,
            hls=self._hls,
        )

    def snapshot(self, name: str, stream: Stream | None = None) -> Deferred[bytes]:
        """A PNG of the current picture of ``stream``, or of the stream ``name``
        means (opened for it if it does not run here); decoded off the reactor."""
        opening: Deferred[Stream] = succeed(stream) if stream is not None else self.open(name)

        def grab(stream: Stream) -> Deferred[list[Sample]]:
            if stream.info is not None and stream.info.video is None:
                stream.unsubscribe(None)
                raise Unsupported("No picture: the stream has no video")
            taker = Grab(self.clock)
            stream.subscribe(taker)
            taker.joined()

            def left(result: object) -> object:
                stream.unsubscribe(taker)
                return result

            return taker.done.addBoth(left)

        return opening.addCallback(grab).addCallback(
            lambda samples: self.sources.work(snapshot.png, samples)
        )

    def media_snapshot(self, media_id: str, name: str | None = None) -> Deferred[tuple[str, bytes]]:
        """(stream name, PNG) of the picture the play or publication ``media_id``
        has now, on whichever worker of this machine it runs (a personal play's
        own frame); else of the stream ``name`` if given."""
        stream = self.media.stream(media_id)
        if stream is not None:
            named = name or stream.name
            return self.snapshot(named, stream).addCallback(lambda png: (named, png))
        here = self.directory.worker

        def found(sessions: list[MediaSession]) -> Deferred[tuple[str, bytes]]:
            elsewhere = [
                media
                for media in sessions
                if media.worker != here
                and media.worker.rpartition("/")[0] == here.rpartition("/")[0]
            ]
            if elsewhere:
                asking = self.directory.ask(
                    elsewhere[0].worker, "snapshot", {"media": media_id, "name": name}
                )
                return asking.addCallback(
                    lambda answer: (answer["name"], base64.b64decode(answer["png"]))
                )
            if name is not None:
                return self.snapshot(name).addCallback(lambda png: (name, png))
            where = (
                f" (it is on worker {sessions[0].worker}, of another node: ask that node)"
                if sessions
                else ""
            )
            raise NotFound(f"no play or publication {media_id} runs on this server{where}")

        return self.media_sessions(media_id).addCallback(found)

    def _snapshot_asked(self, question: dict[str, Any]) -> Deferred[dict[str, str]]:
        """Another worker asks for the picture of one of our plays."""
        media_id, name = str(question.get("media", "")), question.get("name")
        if self.media.stream(media_id) is None:
            return fail(NotFound(f"no play or publication {media_id} runs here"))
        return self.media_snapshot(media_id, name if isinstance(name, str) else None).addCallback(
            lambda taken: {"name": taken[0], "png": base64.b64encode(taken[1]).decode("ascii")}
        )

    def sized(self, stream: Stream, width: int, height: int) -> Stream | Rendition:
        """``stream`` as a play asking for ``width`` x ``height`` (0: any) gets it: the
        stream itself, or its rendition at the fitted size (made once, shared);
        raises :class:`~wcs.errors.Unsupported` when transcoding is disabled."""
        video = stream.info.video if stream.info is not None else None
        size = resize.fitted((video.width, video.height), (width, height)) if video else None
        if size is None:
            return stream
        if not self.transcoding:
            stream.unsubscribe(None)  # as a viewer that never joined
            raise Unsupported("Transcoding required, but disabled")
        key = (stream.id, size)
        existing = self.renditions.get(key)
        if existing is not None and not existing.closed:
            return existing
        post = getattr(self.clock, "callFromThread", None) or (lambda f, *a: f(*a))
        rendition = Rendition(stream, size, post, self._rendition_gone)
        self.renditions[key] = rendition
        log.info(
            "rendition {label} started (encoders running: {n})",
            label=rendition.label,
            n=len(self.renditions),
        )
        return rendition

    def _rendition_gone(self, rendition: Rendition) -> None:
        if self.renditions.get(rendition.key) is rendition:
            del self.renditions[rendition.key]

    def loads(self) -> Deferred[list[Load]]:
        """Every worker's load (this one's as it is now, the others' as last reported)."""
        here = self.directory.worker

        def ours_now(loads: list[Load]) -> list[Load]:
            own = self._load(self._viewers())
            return [own, *(load for load in loads if load.worker != here)]

        return self._asked(self.directory.loads()).addCallback(ours_now)

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
            return self._asked(self.directory.lookup(name)).addCallback(
                lambda entry: (
                    (True, "Available") if entry is not None else (False, STREAM_NOT_FOUND)
                )
            )

        def refused(failure: Failure) -> tuple[bool, str]:
            failure.trap(WcsError)
            return False, failure.value.info

        return self.sources.check(parsed.path).addCallbacks(lambda info: (True, info), refused)

    def close_all(self) -> None:
        for stream in [*self.streams.values(), *self.published.values()]:
            stream.terminate("Server shutdown")


def _nothing() -> None:
    """A relayed stream's keyframe requests go up the relay, not to a page."""
