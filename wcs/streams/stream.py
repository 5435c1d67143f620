"""One stream's life: its subscribers, its source, and when it ends.

- A :class:`VodStream` plays an opened media: paced by a pump, fanned out to
  its subscribers. Personal ones (``vod://``) play from the start for their
  one viewer and end with it; live ones (``vod-live://``) run on their own
  clock, may loop, and outlive their last viewer by the timeout when the
  file is longer than that.
- A :class:`PublishedStream` carries what a page publishes to whoever plays
  its name, and ends when the publisher stops.

A stream that ends lets go at once of what it holds (its pump, its media and
the decoders behind them, its subscribers, its callbacks), so that it is
freed by reference counting, never left to the garbage collector.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import replace

from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger

from wcs.errors import INTERNAL_ERROR, STREAM_NOT_FOUND, WcsError
from wcs.media import h264
from wcs.media.pump import Pump
from wcs.media.sample import MediaInfo, Sample
from wcs.sources import OpenedMedia
from wcs.streams import uri as uris
from wcs.streams.fanout import Broadcast
from wcs.streams.subscriber import Subscriber

log = Logger()

#: What WCS's REST API calls a VOD stream that runs.
PROCESSED = "PROCESSED_LOCAL"
#: A broadcast that began less than this (s) ago is read from its start, the
#: samples already due sent at once (as a late joiner's GOP is).
JOIN_FROM_START = 1.0
#: Least time (s) between two keyframe requests to a publishing page.
KEYFRAME_INTERVAL = 0.5


class VodStream:
    """One capture of one file: a paced source fanned out to its subscribers."""

    #: How it ended, for a viewer that arrives after (one still connecting).
    ending: tuple[str | None, bool] = (STREAM_NOT_FOUND, True)

    def __init__(self, uri: uris.StreamUri, name: str, media: OpenedMedia,
                 clock: IReactorTime, on_gone: Callable[[VodStream], None], *,
                 live: bool = False, loop: bool = False, timeout: float = 0.0,
                 persistent: bool = False, start: float | None = None,
                 stream_id: str | None = None) -> None:
        """``start`` (the clock's seconds): when the broadcast began, if it began
        elsewhere (the whole server's broadcast, read here from where it is
        now); ``stream_id`` the id it has there."""
        self.id = stream_id or str(uuid.uuid4())
        self.uri = uri
        self.name = name
        self.media = media
        self.info: MediaInfo = media.info
        self.status = PROCESSED
        self.live = live
        self.loop = loop
        self.timeout = timeout
        self.persistent = persistent
        self.clock = clock
        self._on_gone = on_gone
        label = f"{uri} [{self.id[:8]}]"
        self.broadcast = Broadcast(label, cache_gop=live)
        #: When a sample of time 0 is due: the broadcast's start, shared by
        #: every worker that serves it.
        if start is None:
            start = clock.seconds()
        self.start = start
        position = clock.seconds() - start
        if position > JOIN_FROM_START:  # a broadcast under way: read from its now
            samples = media.samples(loop=loop, period=media.pass_length(),
                                    position=position)
        else:
            samples = media.samples(loop=loop)
        self.pump = Pump(samples, clock, label, self.broadcast.send, self._ended,
                         media.ready, start=self.start if live else None)
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
        if self.closed:  # it ended while this viewer was connecting: say how
            subscriber.closed(*self.ending)
            return
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self.broadcast.add(subscriber)
        # a lead read at once from a re-encoded file would be a burst of x264 work on
        # the reactor: such a file is paced from its first sample, as before
        self.pump.start(lead=0.0 if self.media.reencoded else getattr(subscriber, "lead", 0.0))

    def request_keyframe(self) -> None:
        """A viewer lost its picture: a file's next keyframe comes within a GOP."""

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
        self.ending = (info, False)
        self.close()
        broadcast.finish(info, failed=False)

    def _ended(self, reason: str | None) -> None:
        log.info("stream {id} ({uri}) reached its end{reason}", id=self.id, uri=str(self.uri),
                 reason=f": {reason}" if reason else "")
        broadcast = self.broadcast
        self.ending = (reason, reason is not None)
        self.close()
        broadcast.finish(reason, failed=reason is not None)

    def close(self) -> None:
        """Release everything now: the pump and its samples, the media (its
        decoders' threads end with it), the timer, and the registry's callback."""
        if self.closed:
            return
        self.closed = True
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None
        self.pump.close()
        self.media.close()
        on_gone, self._on_gone = self._on_gone, _gone
        on_gone(self)


class PublishedStream:
    """A stream a page publishes: fanned out live to whoever plays its name."""

    #: How it ended, for a viewer that arrives after (one still connecting).
    ending: tuple[str | None, bool] = (STREAM_NOT_FOUND, True)

    def __init__(self, name: str, info: MediaInfo | None,
                 request_keyframe: Callable[[], None],
                 on_gone: Callable[[PublishedStream], None], clock: IReactorTime,
                 stream_id: str | None = None) -> None:
        """``info`` may come later, for a stream relayed from another worker
        (which also sets ``ask_publisher`` to its way of asking for a keyframe)."""
        self.id = stream_id or str(uuid.uuid4())
        self.name = name
        self.info = info
        self.broadcast = Broadcast(f"published {name!r}", cache_gop=True)
        self.ask_publisher = request_keyframe
        self._clock = clock
        self._asked_at: float | None = None
        self._on_gone = on_gone
        self.closed = False
        #: Why it ended, when it failed by itself (not stopped by its publisher).
        self.failure: str | None = None
        #: Called when its last viewer leaves (a relayed stream lets go of its relay).
        self.idle: Callable[[], None] = _nothing
        self._size_watchers: list[Callable[[int, int], None]] = []

    def send(self, sample: Sample) -> None:
        """One sample from the publisher, to everyone (nothing once it has stopped).

        A bug in the fan-out ends the stream FAILED, logged with its traceback
        (``failure`` says why); the publisher sees ``closed`` and stops."""
        if self.closed:
            return
        if sample.kind == "video" and sample.keyframe:
            self._sized(sample.data)
        try:
            self.broadcast.send(sample)
        except Exception:
            log.failure("stream {id} ({name!r}) failed", id=self.id, name=self.name)
            self._end(INTERNAL_ERROR, failed=True)

    def _sized(self, keyframe: bytes) -> None:
        """The picture size, from a keyframe's SPS (a page's is known only then,
        and its browser changes it as its bandwidth and CPU allow)."""
        video = self.info.video if self.info is not None else None
        if video is None:
            return
        try:
            size = h264.annexb_picture_size(keyframe)
        except WcsError:
            return  # only carried here: the viewers' decoders judge it
        if size is not None and size != (video.width, video.height):
            assert self.info is not None
            self.info = replace(self.info, video=replace(video, width=size[0], height=size[1]))
            for told in list(self._size_watchers):
                told(*size)

    def watch_size(self, told: Callable[[int, int], None]) -> None:
        """Call ``told(width, height)`` whenever the picture size changes."""
        self._size_watchers.append(told)

    def unwatch_size(self, told: Callable[[int, int], None]) -> None:
        if told in self._size_watchers:
            self._size_watchers.remove(told)

    def subscribe(self, subscriber: Subscriber) -> None:
        if self.closed:  # it ended while this viewer was connecting: say how
            subscriber.closed(*self.ending)
            return
        self.broadcast.add(subscriber)
        if not self.broadcast.has_gop() and subscriber.keyframe_wanted():
            self.request_keyframe()  # browsers send IDRs only when asked

    def request_keyframe(self) -> None:
        """Ask the publishing page for a keyframe, at most once every
        ``KEYFRAME_INTERVAL`` seconds however many viewers ask."""
        now = self._clock.seconds()
        if self._asked_at is None or now - self._asked_at >= KEYFRAME_INTERVAL:
            self._asked_at = now
            self.ask_publisher()

    def unsubscribe(self, subscriber: Subscriber | None) -> None:
        if subscriber is not None:
            self.broadcast.remove(subscriber)
        if not self.broadcast and not self.closed:
            self.idle()

    def terminate(self, info: str) -> None:
        """The publisher stopped (or was stopped): every viewer gets STOPPED."""
        self._end(info, failed=False)

    def end(self, info: str, failed: bool) -> None:
        """End as its source says (a relay: stopped, or failed with why)."""
        self._end(info, failed)

    def _end(self, info: str, failed: bool) -> None:
        if self.closed:
            return
        self.closed = True
        self.ending = (info, failed)
        if failed:
            self.failure = info
        self.broadcast.finish(info, failed=failed)
        self.ask_publisher = self.idle = _nothing
        self._size_watchers = []
        on_gone, self._on_gone = self._on_gone, _gone
        on_gone(self)


def _nothing() -> None:
    """What a stream that ended asks of its publisher."""


def _gone(_stream: object) -> None:
    """What a stream that ended tells the registry again: nothing."""
