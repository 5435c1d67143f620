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

import math
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import replace
from typing import NamedTuple

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure

from wcs.errors import (
    INTERNAL_ERROR,
    STREAM_NOT_FOUND,
    BadRequest,
    Conflict,
    NotFound,
    Unsupported,
    WcsError,
)
from wcs.media import h264
from wcs.media.pump import Pump
from wcs.media.sample import MediaInfo, Sample, from_keyframe
from wcs.sources import Media
from wcs.sources.playlist import PlaylistMedia
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
#: Least time (s) between two seeks of one play: a seek asked for sooner waits,
#: and one asked for while another waits replaces it.
SEEK_INTERVAL = 0.1


class Seeked(NamedTuple):
    """Where a seek went: the keyframe it plays from (s into the file) and the
    time (s on the play's timeline, as its samples carry it) of that frame."""

    position: float
    timestamp: float


class SizeWatch:
    """Tells whoever asks when a stream's picture size changes, read from its
    keyframes' SPS (a page's browser changes it as its bandwidth allows; a
    playlist's files may differ): the ``resize`` event its WebRTC plays send."""

    info: MediaInfo | None

    def __init__(self) -> None:
        self._size_watchers: list[Callable[[int, int], None]] = []

    def _sized(self, keyframe: bytes) -> None:
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


class VodStream(SizeWatch):
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
        media: Media,
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
        super().__init__()
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
        self.broadcast = Broadcast(self.label, history=live)
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
        # a personal play's controls: paused, and the seek waiting to be done
        self.paused = False
        self._lead = 0.0  # its player's
        self._seek_wanted: tuple[float, Deferred[Seeked]] | None = None
        self._seek_call: IDelayedCall | None = None
        self._seeking = False  # a download fetches where a seek reads
        self._sought_at = -math.inf
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

    def _wants_aac(self) -> bool:
        """A broadcast's late joiner may take AAC from its cached GOP on: it is
        always read. A personal play's viewers are there before it is read."""
        return self.live or self.broadcast.wants("aac")

    @property
    def playlist(self) -> PlaylistMedia | None:
        """The list it plays, for a playlist channel."""
        return self.media if isinstance(self.media, PlaylistMedia) else None

    def _send(self) -> Callable[[Sample], None]:
        """What the pump hands samples to: with a medium whose picture size may
        change, each keyframe's size is read first (the ``resize`` event)."""
        if not self.media.changes_size:
            return self.broadcast.send
        send = self.broadcast.send

        def sized(sample: Sample) -> None:
            if sample.kind == "video" and sample.keyframe:
                self._sized(sample.data)
            send(sample)

        return sized

    def subscribe(self, subscriber: Subscriber) -> None:
        """Start sending to ``subscriber``: a personal stream starts now, a
        live one is joined at its current GOP (read from its "now" first if no
        one watched)."""
        if self.closed:  # it ended while this viewer was connecting: say how
            subscriber.closed(*self.ending)
            return
        cancel_call(self._timer)
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
        self._lead = lead
        if self.pump is not None:
            if not self.paused:
                self.pump.start(lead=lead)
        elif not self._preparing:
            self._watched(lead)

    def _watched(self, lead: float) -> None:
        """Someone watches: read from the timeline's "now" (less ``lead``, for a
        player that holds that much before it shows anything)."""
        cancel_call(self._over)
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
                loop=self.loop,
                period=self._period,
                position=position,
                wants_opus=self._wants_opus,
                wants_aac=self._wants_aac,
            )
        else:
            samples = self.media.samples(
                loop=self.loop, wants_opus=self._wants_opus, wants_aac=self._wants_aac
            )
        pump = self.pump = Pump(
            samples,
            self.clock,
            self.label,
            self._send(),
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

    # --- a personal play's controls

    def _controlled(self) -> None:
        """Raise why this stream cannot be sought or paused now."""
        if self.live:
            raise Unsupported(
                "Seek and pause are for personal vod:// plays: "
                "a vod-live:// broadcast runs on its own clock"
            )
        if self.closed:
            raise NotFound("the play has ended")
        if self.pump is None and not self._seeking:
            raise Conflict("the play has not started yet")

    def position(self) -> float:
        """Where its viewer is in the file (s): what is due less its player's lead."""
        pump = self.pump
        at = pump.position() if pump is not None else None
        return min(self.info.duration, max(0.0, (at or 0.0) - self._lead))

    def seek(self, position: float) -> Deferred[Seeked]:
        """Play from the keyframe at or before ``position`` (s into the file),
        its timestamps going on from the last sent so that the player keeps
        decoding (a paused play shows that frame and stays paused). Seeks come
        at most every ``SEEK_INTERVAL``: one asked for while another waits
        replaces it, and the replaced one fails with :class:`Conflict`."""
        self._controlled()
        duration = self.info.duration
        if not (math.isfinite(position) and 0 <= position < duration):
            raise BadRequest(
                f"position {position:g} s is outside the file: give 0 to {duration:.3f} s"
            )
        seeking: Deferred[Seeked] = Deferred()
        if self._seek_wanted is not None:
            replaced = self._seek_wanted[1]
            replaced.errback(Conflict(f"the seek to {self._seek_wanted[0]:g} s was replaced"))
        self._seek_wanted = (position, seeking)
        self._next_seek()
        return seeking

    def _next_seek(self) -> None:
        """Do the waiting seek when the last is ``SEEK_INTERVAL`` old (and done)."""
        if self._seek_wanted is None or self._seeking or self._seek_call is not None:
            return
        wait = self._sought_at + SEEK_INTERVAL - self.clock.seconds()
        self._seek_call = self.clock.callLater(max(0.0, wait), self._seek)

    def _seek(self) -> None:
        self._seek_call = None
        if self._seek_wanted is None or self.closed:
            return
        (position, seeking), self._seek_wanted = self._seek_wanted, None
        self._seeking = True
        self._sought_at = self.clock.seconds()
        pump, self.pump = self.pump, None
        after = 0.0  # where the new samples start on the play's timeline
        if pump is not None:
            if pump.last_time is not None:
                fps = self.info.video.fps if self.info.video is not None else 0.0
                after = pump.last_time + (1 / fps if fps else 0.02)
            self._sent += pump.sent
            pump.close()
        keyframe = self.media.keyframe_time(position)

        def ready(_: object) -> Seeked:
            self._seeking = False
            if self.closed:
                raise NotFound("the play has ended")
            if self._period is None:  # (reads the last GOP: a download has it by now)
                self._period = self.media.pass_length()
            samples = self.media.samples(
                period=self._period,
                position=position,
                wants_opus=self._wants_opus,
                wants_aac=self._wants_aac,
            )
            pump = self.pump = Pump(
                from_keyframe(samples) if self.info.video is not None else samples,
                self.clock,
                self.label,
                self.broadcast.send,
                self._ended,
                self.media.ready,
                continue_at=after,
            )
            if self.paused:
                pump.show_first()
            else:
                pump.start(lead=self._lead)
            log.info(
                "{label}: sought to {position:.3f} s (keyframe {keyframe:.3f} s)",
                label=self.label,
                position=position,
                keyframe=keyframe,
            )
            self._next_seek()
            return Seeked(keyframe, after)

        def failed(failure: Failure) -> Failure:
            self._seeking = False
            if not self.closed:
                info = failure.value.info if isinstance(failure.value, WcsError) else INTERNAL_ERROR
                self._ended(info)
            return failure

        self.media.prepare_join(position, False).addCallbacks(ready, failed).chainDeferred(seeking)

    def pause(self) -> None:
        """Stop sending where it is (the player keeps its last picture)."""
        self._controlled()
        self.paused = True
        if self.pump is not None:
            self.pump.pause()

    def resume(self) -> None:
        """Go on from where it was paused. A player that plays media as it
        comes (no lead: WebRTC) gets timestamps moved by the pause, as its
        clock went on; a buffering one (MSE) gets them unbroken."""
        self._controlled()
        if not self.paused:
            return
        self.paused = False
        if self.pump is not None:
            self.pump.resume(lead=self._lead, move_timestamps=not self._lead)

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
        cancel_call(self._timer)
        cancel_call(self._over)
        cancel_call(self._seek_call)
        self._timer = self._over = self._seek_call = None
        if self._seek_wanted is not None:
            wanted, self._seek_wanted = self._seek_wanted[1], None
            wanted.errback(NotFound("the play has ended"))
        pump, self.pump = self.pump, None
        if pump is not None:
            self._sent += pump.sent
            pump.close()
        self.media.close()
        self._size_watchers = []
        on_gone, self._on_gone = self._on_gone, _gone
        on_gone(self)


def cancel_call(call: IDelayedCall | None) -> None:
    """Cancel a delayed call if it is still to come."""
    if call is not None and call.active():
        call.cancel()


class PublishedStream(SizeWatch):
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
        super().__init__()
        self.id = stream_id or str(uuid.uuid4())
        self.name = name
        self.info = info
        self.broadcast = Broadcast(f"published {name!r}")
        self.ask_publisher = request_keyframe
        self._clock = clock
        self._asked_at: float | None = None
        self._on_gone = on_gone
        self.closed = False
        #: Why it ended, when it failed by itself (not stopped by its publisher).
        self.failure: str | None = None
        #: Called when its last viewer leaves (a relayed stream lets go of its relay).
        self.idle: Callable[[], None] = _nothing

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
