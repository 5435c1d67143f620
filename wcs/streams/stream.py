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
from collections import Counter
from collections.abc import Callable
from dataclasses import replace

from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure

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
    """One capture of one file: a paced source fanned out to its subscribers.

    A live broadcast runs on its timeline (``start``: when its sample of time 0
    is due) whether or not anyone watches, but it reads only while someone
    does: with no subscriber it holds no pump, reads nothing and transcodes
    nothing; its first subscriber (a viewer, an HLS packager, a snapshot, a
    push) starts it reading at the keyframe at or before "now" on that
    timeline (what is already due is read at once, into the GOP cache) and
    then joins as any late joiner does, so it sees what it would have seen had
    the file been read all along. Its AAC is transcoded to Opus only while a
    subscriber takes Opus (WebRTC).
    """

    #: How it ended, for a viewer that arrives after (one still connecting).
    ending: tuple[str | None, bool] = (STREAM_NOT_FOUND, True)

    def __init__(
        self,
        uri: uris.StreamUri,
        name: str,
        media: OpenedMedia,
        clock: IReactorTime,
        on_gone: Callable[[VodStream], None],
        *,
        live: bool = False,
        loop: bool = False,
        timeout: float = 0.0,
        persistent: bool = False,
        start: float | None = None,
        stream_id: str | None = None,
    ) -> None:
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
        self.label = f"{uri} [{self.id[:8]}]"
        self.broadcast = Broadcast(self.label, cache_gop=live)
        #: When a sample of time 0 is due: the broadcast's start, shared by
        #: every worker that serves it.
        if start is None:
            start = clock.seconds()
        self.start = start
        #: The pump while someone watches (None: nothing is read).
        self.pump: Pump | None = None
        self._sent: Counter[str] = Counter()  # by earlier pumps
        self._period: float | None = None
        self._preparing = False
        self._joining: list[Subscriber] = []  # waiting for the reading to catch up
        self._timer: IDelayedCall | None = None  # the timeout after the last viewer
        self._over: IDelayedCall | None = None  # the end of an unwatched, unlooped pass
        self.closed = False
        if live:
            self._unwatched()

    @property
    def viewers(self) -> int:
        return len(self.broadcast)

    @property
    def sent(self) -> Counter[str]:
        """Samples sent so far, by kind."""
        return self._sent + (self.pump.sent if self.pump is not None else Counter())

    def _wants_opus(self) -> bool:
        return self.broadcast.wants("opus")

    def subscribe(self, subscriber: Subscriber) -> None:
        """Start sending to ``subscriber``: a personal stream starts now, a
        live one is joined at its current GOP (read from its "now" first if no
        one watched)."""
        if self.closed:  # it ended while this viewer was connecting: say how
            subscriber.closed(*self.ending)
            return
        _cancel(self._timer)
        self._timer = None
        # a lead read at once from a re-encoded file would be a burst of x264 work on
        # the reactor: such a file is paced from its first sample, as before
        lead = 0.0 if self.media.reencoded else getattr(subscriber, "lead", 0.0)
        if self.live and self.pump is None:
            self._joining.append(subscriber)
            if not self._preparing:
                self._watched(lead)
            return
        self.broadcast.add(subscriber)
        if self.pump is not None:
            self.pump.start(lead=lead)
        elif not self._preparing:
            self._watched(lead)

    def _watched(self, lead: float) -> None:
        """Someone watches: read from the timeline's "now" (less ``lead``, for a
        player that holds that much before it shows anything)."""
        _cancel(self._over)
        self._over = None
        position = self.clock.seconds() - self.start - lead if self.live else 0.0
        if position <= JOIN_FROM_START:  # from the start: what is due goes at once
            self._read(0.0, lead)
            return
        self._preparing = True  # a download first fetches what that reader needs

        def ready(_: object) -> None:
            self._preparing = False
            if not self.closed and (self.broadcast or self._joining):
                self._read(position, lead)

        def failed(failure: Failure) -> None:
            self._preparing = False
            if not self.closed:
                info = failure.value.info if isinstance(failure.value, WcsError) else INTERNAL_ERROR
                self._ended(info)

        self.media.prepare_join(position, self.loop).addCallbacks(ready, failed)

    def _read(self, position: float, lead: float) -> None:
        if position > 0:
            if self._period is None:
                self._period = self.media.pass_length()
            samples = self.media.samples(
                loop=self.loop, period=self._period, position=position, wants_opus=self._wants_opus
            )
        else:
            samples = self.media.samples(loop=self.loop, wants_opus=self._wants_opus)
        pump = self.pump = Pump(
            samples,
            self.clock,
            self.label,
            self.broadcast.send,
            self._ended,
            self.media.ready,
            start=self.start if self.live else None,
        )
        if self.live:  # what is due is cached first; the subscribers join it as late joiners
            pump.catch_up()
            joining, self._joining = self._joining, []
            for subscriber in joining:
                if self.closed:
                    subscriber.closed(*self.ending)
                else:
                    self.broadcast.add(subscriber)
            if self.closed or not self.broadcast:
                if not self.closed:
                    self._unwatched()
                return
        pump.start(lead=lead)

    def request_keyframe(self) -> None:
        """A viewer lost its picture: a file's next keyframe comes within a GOP."""

    def unsubscribe(self, subscriber: Subscriber | None) -> None:
        """``subscriber`` leaves (``None``: a viewer that never joined gave up)."""
        if subscriber is not None:
            self.broadcast.remove(subscriber)
            if subscriber in self._joining:
                self._joining.remove(subscriber)
        if self.broadcast or self._joining or self.closed:
            return
        if not self.live:
            self.close()
            return
        self._unwatched()
        if self.persistent:
            return
        if self.timeout > 0 and (self.loop or self.info.duration > self.timeout):
            log.info(
                "stream {id} ({uri}) has no viewer; kept for {t} s",
                id=self.id,
                uri=str(self.uri),
                t=self.timeout,
            )
            self._timer = self.clock.callLater(self.timeout, self.close)
        else:
            self.close()

    def _unwatched(self) -> None:
        """No one watches: stop reading (the reader and its transcoder go), and
        end when an unlooped file's pass would have ended."""
        pump, self.pump = self.pump, None
        if pump is not None:
            self._sent += pump.sent
            pump.close()
            self.broadcast.forget()  # the GOP and history are of a past moment now
        if not self.loop and self._over is None:
            left = self.start + self.info.duration - self.clock.seconds()
            self._over = self.clock.callLater(max(0.0, left), self._ended, None)

    def terminate(self, info: str) -> None:
        """Stop for everyone; each viewer is told ``info`` (and STOPPED)."""
        self.ending = (info, False)
        self._finish()

    def _ended(self, reason: str | None) -> None:
        if self.closed:
            return
        log.info(
            "stream {id} ({uri}) reached its end{reason}",
            id=self.id,
            uri=str(self.uri),
            reason=f": {reason}" if reason else "",
        )
        self.ending = (reason, reason is not None)
        self._finish()

    def _finish(self) -> None:
        """Close, then tell every subscriber (and any still joining) how it ended."""
        broadcast, joining, self._joining = self.broadcast, self._joining, []
        self.close()
        broadcast.finish(*self.ending)
        for subscriber in joining:
            subscriber.closed(*self.ending)

    def close(self) -> None:
        """Release everything now: the pump and its samples, the media (its
        decoders' threads end with it), the timers, and the registry's callback."""
        if self.closed:
            return
        self.closed = True
        _cancel(self._timer)
        _cancel(self._over)
        self._timer = self._over = None
        pump, self.pump = self.pump, None
        if pump is not None:
            self._sent += pump.sent
            pump.close()
        self.media.close()
        on_gone, self._on_gone = self._on_gone, _gone
        on_gone(self)


def _cancel(call: IDelayedCall | None) -> None:
    if call is not None and call.active():
        call.cancel()


class PublishedStream:
    """A stream a page publishes: fanned out live to whoever plays its name."""

    #: How it ended, for a viewer that arrives after (one still connecting).
    ending: tuple[str | None, bool] = (STREAM_NOT_FOUND, True)

    def __init__(
        self,
        name: str,
        info: MediaInfo | None,
        request_keyframe: Callable[[], None],
        on_gone: Callable[[PublishedStream], None],
        clock: IReactorTime,
        stream_id: str | None = None,
    ) -> None:
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


#: What a play subscribes to: a file's stream or a published one.
Stream = VodStream | PublishedStream
