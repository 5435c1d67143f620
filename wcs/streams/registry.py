"""The one stream registry: every VOD stream, its id, status and viewers.

- A personal stream (``vod://``) belongs to the viewer that asked for it,
  plays from the start for that viewer only, and ends with its viewer.
- A live stream (``vod-live://``) is one broadcast of a file, shared by every
  viewer of its name; it runs on its own clock, may loop, and outlives its
  last viewer by ``vod_stream_timeout`` ms when the file is longer than that.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure

from wcs.config import Settings
from wcs.media import local, s3
from wcs.media.errors import MediaError
from wcs.media.fanout import Broadcast
from wcs.media.mp4 import Mp4File
from wcs.media.pump import Pump
from wcs.media.ranged import RangedFile
from wcs.media.sample import MediaInfo, Sample, Subscriber
from wcs.streams import uri as uris

log = Logger()

STREAM_NOT_FOUND = "Stream not found"


class NameTaken(Exception):
    """A live stream already runs under that name."""
STATUS = "PROCESSED_LOCAL"


class VodStream:
    """One capture of one file: a paced source fanned out to its subscribers."""

    def __init__(self, uri: uris.StreamUri, name: str, media: Mp4File, clock: IReactorTime,
                 on_gone: Callable[[VodStream], None], *, live: bool = False,
                 loop: bool = False, timeout: float = 0.0, persistent: bool = False,
                 ready: Callable[[], bool] | None = None,
                 closers: tuple[Callable[[], None], ...] = ()) -> None:
        self.id = str(uuid.uuid4())
        self.uri = uri
        self.name = name
        self.media = media
        self.info: MediaInfo = media.info
        self.status = STATUS
        self.live = live
        self.loop = loop
        self.timeout = timeout
        self.persistent = persistent
        self.clock = clock
        self._on_gone = on_gone
        label = f"{uri} [{self.id[:8]}]"
        self.broadcast = Broadcast(label, cache_gop=live)
        self.pump = Pump(media.samples(loop=loop), clock, label, self.broadcast.send,
                         self._ended, ready)
        self._closers = closers
        self._timer: IDelayedCall | None = None
        self.closed = False
        if live:
            self.pump.start()

    @property
    def viewers(self) -> int:
        return len(self.broadcast)

    def subscribe(self, subscriber: Subscriber) -> None:
        """Start sending to ``subscriber``: a personal stream starts now, a
        live one is joined at its current GOP."""
        if self.closed:
            subscriber.finished(STREAM_NOT_FOUND, True)
            return
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self.broadcast.add(subscriber)
        self.pump.start()

    def unsubscribe(self, subscriber: Subscriber | None) -> None:
        """``subscriber`` leaves (``None``: a viewer that never joined gave up)."""
        if subscriber is not None:
            self.broadcast.remove(subscriber)
        if self.broadcast or self.closed:
            return
        if not self.live:
            self.close()
        elif self.persistent:
            return
        elif self.timeout > 0 and (self.loop or self.info.duration > self.timeout):
            log.info("stream {id} ({uri}) has no viewer; kept for {t} s", id=self.id,
                     uri=str(self.uri), t=self.timeout)
            self._timer = self.clock.callLater(self.timeout, self.close)
        else:
            self.close()

    def terminate(self, info: str) -> None:
        """Stop for everyone; each viewer is told ``info`` (and STOPPED)."""
        broadcast = self.broadcast
        self.close()
        broadcast.finish(info, failed=False)

    def _ended(self, reason: str | None) -> None:
        log.info("stream {id} ({uri}) reached its end{reason}", id=self.id, uri=str(self.uri),
                 reason=f": {reason}" if reason else "")
        broadcast = self.broadcast
        self.close()
        broadcast.finish(reason, failed=reason is not None)

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self.pump.stop()
        self.media.close()
        for closer in self._closers:
            closer()
        self._on_gone(self)


class PublishedStream:
    """A stream a browser publishes: fanned out live to whoever plays its name."""

    live = True
    loop = False

    def __init__(self, name: str, info: MediaInfo, request_keyframe: Callable[[], None],
                 on_gone: Callable[[PublishedStream], None]) -> None:
        self.id = str(uuid.uuid4())
        self.name = name
        self.uri = uris.StreamUri("", name)
        self.info = info
        self.status = "PUBLISHING"
        self.broadcast = Broadcast(f"published {name!r}", cache_gop=True)
        self._request_keyframe = request_keyframe
        self._on_gone = on_gone
        self.closed = False

    @property
    def viewers(self) -> int:
        return len(self.broadcast)

    def send(self, sample: Sample) -> None:
        self.broadcast.send(sample)

    def subscribe(self, subscriber: Subscriber) -> None:
        if self.closed:
            subscriber.finished(STREAM_NOT_FOUND, True)
            return
        self.broadcast.add(subscriber)
        if not self.broadcast.has_gop():
            self._request_keyframe()  # browsers send IDRs only when asked

    def unsubscribe(self, subscriber: Subscriber | None) -> None:
        if subscriber is not None:
            self.broadcast.remove(subscriber)

    def terminate(self, info: str) -> None:
        """The publisher stopped (or was stopped): every viewer gets STOPPED."""
        if self.closed:
            return
        self.closed = True
        self.broadcast.finish(info, failed=False)
        self._on_gone(self)


class StreamRegistry:
    """Finds or creates streams for front doors; owns their lifecycles."""

    def __init__(self, settings: Settings, clock: IReactorTime) -> None:
        self.settings = settings
        self.clock = clock
        self.streams: dict[str, VodStream] = {}
        self.live: dict[str, VodStream] = {}
        self._opening: dict[str, list[Deferred[VodStream]]] = {}
        self.published: dict[str, PublishedStream] = {}
        self.s3 = s3.S3Client(settings.aws_s3_credentials, settings.aws_s3_endpoint,
                              settings.aws_s3_request_timeout / 1000.0)

    def open(self, name: str) -> VodStream | Deferred[VodStream]:
        """The stream a viewer of ``name`` should subscribe to (a Deferred while
        a remote source opens). Fails with :class:`MediaError` and its info."""
        existing = self.live.get(name)
        if existing is not None and not existing.closed:
            return existing
        published = self.published.get(name)
        if published is not None:
            return published
        if name in self._opening:  # another viewer is opening the same broadcast
            waiting: Deferred[VodStream] = Deferred()
            self._opening[name].append(waiting)
            return waiting
        parsed = uris.parse(name)
        if parsed.scheme == uris.PERSONAL:
            return self._create(parsed, name, live=False)
        if parsed.scheme == uris.LIVE:
            return self._create(parsed, name, live=True, loop=self.settings.vod_live_loop)
        raise MediaError(STREAM_NOT_FOUND)

    def startup(self, uri: str, name: str,
                loop: bool | None = None) -> VodStream | Deferred[VodStream]:
        """Start a live broadcast of ``uri`` under ``name``, with or without viewers.

        Raises :class:`NameTaken`, or :class:`MediaError` for the uri.
        """
        parsed = uris.parse(uri)
        if parsed.scheme != uris.LIVE:
            raise MediaError("only vod-live:// streams can be started")
        if name in self.live or name in self._opening:
            raise NameTaken(name)
        return self._create(parsed, name, live=True, persistent=True,
                            loop=self.settings.vod_live_loop if loop is None else loop)

    def publish(self, name: str, info: MediaInfo,
                request_keyframe: Callable[[], None]) -> PublishedStream:
        """Register a published stream; its name must be free."""
        if name in self.published or name in self.live or name in self._opening:
            raise NameTaken(name)
        stream = PublishedStream(name, info, request_keyframe, self._unpublished)
        self.published[name] = stream
        log.info("stream {id} published as {name!r}", id=stream.id, name=name)
        return stream

    def _unpublished(self, stream: PublishedStream) -> None:
        if self.published.get(stream.name) is stream:
            del self.published[stream.name]
            log.info("stream {id} ({name!r}) unpublished", id=stream.id, name=stream.name)

    def find(self, *, name: str | None = None, uri: str | None = None,
             stream_id: str | None = None) -> list[VodStream]:
        """Streams matching every criterion given."""
        return [stream for stream in self.streams.values()
                if (name is None or stream.name == name)
                and (uri is None or str(stream.uri) == uri)
                and (stream_id is None or stream.id == stream_id)]

    def _create(self, parsed: uris.StreamUri, name: str, *, live: bool, loop: bool = False,
                persistent: bool = False) -> VodStream | Deferred[VodStream]:
        options = {"live": live, "loop": loop, "persistent": persistent}
        if not parsed.path.startswith("s3/"):
            media = Mp4File(local.resolve(self.settings.media_dir, parsed.path), str(parsed))
            return self._start(parsed, name, media, **options)
        location = s3.parse(parsed.path)
        opening = s3.open_object(self.s3, location, self.settings.state_dir / "s3-cache",
                                 str(parsed), self.settings.vod_mp4_container_new)
        if live:
            self._opening[name] = []

        def opened(pair: tuple[Mp4File, RangedFile]) -> VodStream:
            media, remote = pair
            return self._start(parsed, name, media, ready=remote.ready,
                               closers=(remote.close,), **options)

        def settle(result: object) -> object:
            for waiting in self._opening.pop(name, []) if live else []:
                if isinstance(result, Failure):
                    waiting.errback(result)
                else:
                    waiting.callback(result)
            return result

        return opening.addCallback(opened).addBoth(settle)

    def _start(self, parsed: uris.StreamUri, name: str, media: Mp4File,
               **options: object) -> VodStream:
        stream = VodStream(parsed, name, media, self.clock, self._gone,
                           timeout=self.settings.vod_stream_timeout / 1000.0,
                           **options)  # type: ignore[arg-type]
        self.streams[stream.id] = stream
        if stream.live:
            self.live[name] = stream
        log.info("stream {id} created for {uri} as {name!r}{loop}", id=stream.id,
                 uri=str(parsed), name=name, loop=" (looping)" if stream.loop else "")
        return stream

    def _gone(self, stream: VodStream) -> None:
        if self.live.get(stream.name) is stream:
            del self.live[stream.name]
        if self.streams.pop(stream.id, None) is not None:
            log.info("stream {id} ({uri}) released after sending {video} video and {audio} "
                     "audio samples", id=stream.id, uri=str(stream.uri),
                     video=stream.pump.sent["video"], audio=stream.pump.sent["audio"])

    def available(self, name: str) -> tuple[bool, str]:
        """For ``availableStream``: can ``name`` be played right now?"""
        if name in self.live or name in self.published:
            return True, "Available"
        try:
            parsed = uris.parse(name)
            if parsed.scheme in (uris.PERSONAL, uris.LIVE):
                if parsed.path.startswith("s3/"):
                    s3.parse(parsed.path)
                    return True, "Available (S3 objects are checked when played)"
                Mp4File(local.resolve(self.settings.media_dir, parsed.path), name).close()
                return True, "Available"
        except MediaError as error:
            return False, error.info
        return False, STREAM_NOT_FOUND

    def close_all(self) -> None:
        for stream in [*self.streams.values(), *self.published.values()]:
            stream.terminate("Server shutdown")
