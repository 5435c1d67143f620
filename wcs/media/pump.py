"""Pacing on the reactor: each sample goes out when the wall clock reaches it.

Deadlines are ``start + sample time`` rather than accumulated sleeps, so
timer jitter never adds up to drift. Pumps wake on their clock's
:mod:`~wcs.media.metronome`, sharing reactor timers. Whatever goes wrong, reading a sample or
handing it on, ends the pump through ``on_end`` with a reason (a bug's with
its traceback in the log): a stream never just stops being paced.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator

import av
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from wcs.errors import INTERNAL_ERROR, WcsError
from wcs.media import metronome
from wcs.media.sample import Sample, shifted
from wcs.metrics import METERS

log = Logger()

#: Samples are sent this much before they are due (absorbs timer latency).
LEAD = 0.005
#: What a turn sends: what is due within the lead, and within the time its
#: wake-up may come early to share another pump's timer.
EARLY = LEAD + metronome.JOIN
#: Float error a deadline may be off by and still be due (a tick rounded to the
#: clock's float may fall a hair before ``due - LEAD``).
EPSILON = 1e-6
#: Most samples sent in one reactor turn when catching up.
BURST = 64
#: How often a pump whose source is not ready looks again (s).
RETRY = 0.05
#: How long a source may keep the pump waiting before the stream fails (s).
STALL_LIMIT = 15.0

_ahead = 0.0


def ahead() -> float:
    """How long before its due moment the sample a pump is handing on goes (s;
    negative when late, 0 outside a pump's delivery). A sender report maps RTP
    time to when a sample was due, not to when the metronome let it go or a
    busy reactor got to it."""
    return _ahead


class Pump:
    """Reads samples lazily and hands each to ``send`` when it is due.

    ``on_end`` gets ``None`` at the end of the samples, or the info of the
    error that stopped them, once. :meth:`close` lets go of the samples (and
    the decoders and threads behind them) and of the callbacks, so that
    nothing the pump held waits for the garbage collector.
    """

    def __init__(
        self,
        samples: Iterator[Sample],
        clock: IReactorTime,
        label: str,
        send: Callable[[Sample], None],
        on_end: Callable[[str | None], None],
        ready: Callable[[], bool] | None = None,
        start: float | None = None,
        continue_at: float | None = None,
    ) -> None:
        """``start`` (the clock's seconds) is when a sample of time 0 is due,
        for a timeline decided elsewhere (another worker's broadcast); by
        default it is when the first sample is read. ``continue_at`` (s) moves
        every sample's times so that the first is sent at that time: a play
        read again from elsewhere in its file (a seek) goes on from where its
        player is, with timestamps that keep rising."""
        self._samples = samples
        self._clock = clock
        self.label = label
        self._send = send
        self._on_end = on_end
        self._ready = ready
        self._waiting_since: float | None = None
        self._pending: Sample | None = None
        self._metronome = metronome.of(clock)
        self._call: metronome.Beat | None = None
        self._start: float | None = start
        self._lead = 0.0
        self._continue_at = continue_at
        #: Seconds added to each sample's times as it is sent.
        self.offset = 0.0
        #: When :meth:`pause` stopped it (the clock's seconds), while paused.
        self.paused_at: float | None = None
        #: The latest time (s, as sent) of any sample sent.
        self.last_time: float | None = None
        self.running = False
        self.ended = False
        self.sent: Counter[str] = Counter()

    def start(self, lead: float = 0.0) -> None:
        """Pace from now; the first ``lead`` seconds of samples (on a first
        start) go out at once, for a player that waits for that much."""
        if self.running or self.ended:
            return
        self._lead = lead if self._start is None else 0.0
        self.running = True
        self._call = self._metronome.call_later(0, self._run)

    def pause(self) -> None:
        """Stop sending until :meth:`resume`; the next sample stays pending."""
        if self.paused_at is None and not self.ended:
            self.stop()
            self.paused_at = self._clock.seconds()

    def resume(self, lead: float = 0.0, move_timestamps: bool = False) -> None:
        """Go on from where :meth:`pause` stopped, each sample due that much
        later; with ``move_timestamps`` its times are moved by the pause too (a
        player that plays media as it arrives, whose clock went on). A pump
        paused before it paced anything starts as :meth:`start` does."""
        if self.paused_at is None or self.ended:
            return
        gap = self._clock.seconds() - self.paused_at
        self.paused_at = None
        if move_timestamps:
            self.offset += gap
        if self._start is not None:
            self._start += gap
        self.start(lead)

    def show_first(self) -> None:
        """Send, now, the samples up to the first video one (a play paused
        where it was sought to shows that picture) and stay paused; pacing
        starts with :meth:`resume`."""
        if self.ended:
            return
        if self.paused_at is None:
            self.pause()
        for _ in range(BURST):
            if self._pending is None and not self._read():
                return
            assert self._pending is not None
            sample, self._pending = self._pending, None
            self._deliver(sample)
            if sample.kind == "video" or self.ended:
                return

    def catch_up(self, most: int = 20 * BURST) -> None:
        """Send, within this call, the samples already due (at most ``most``): a
        stream read from a moment already past, so that its GOP is cached
        before a subscriber joins. Pacing starts with :meth:`start`."""
        if self.running or self.ended:
            return
        self.running = True
        try:
            for _ in range(most // BURST):
                sent = sum(self.sent.values())
                self._run()
                if self._call is not None and self._call.active():
                    self._call.cancel()
                self._call = None
                if self.ended or sum(self.sent.values()) - sent < BURST:
                    break  # nothing more is due yet (or the source must wait)
        finally:
            self.running = False

    def position(self) -> float | None:
        """The time (s, the samples' own, before ``offset``) due now, or where
        it was paused; None before it has paced anything."""
        if self._start is None:
            return None
        at = self.paused_at if self.paused_at is not None else self._clock.seconds()
        return at - self._start

    def stop(self) -> None:
        """Stop pacing; nobody is told (whoever stops us tells the subscribers)."""
        self.running = False
        if self._call is not None and self._call.active():
            self._call.cancel()
        self._call = None

    def close(self) -> None:
        """Stop for good and release the source's samples now (closing the
        reader closes its transcoders), and the callbacks, which point back at
        whoever owns this pump."""
        self.stop()
        self.ended = True
        samples, self._samples = self._samples, iter(())
        self._pending = None
        self._send = self._on_end = _ignore
        self._ready = None
        close = getattr(samples, "close", None)
        if close is not None:
            try:
                close()
            except Exception:
                log.failure("{label}: closing the source failed", label=self.label)

    def _run(self) -> None:
        self._call = None
        try:
            self._turn()
        except Exception:
            log.failure("{label}: stream failed", label=self.label)
            if not self.ended:
                self._finish(INTERNAL_ERROR)

    def _turn(self) -> None:
        """Send what is due, then sleep until the next sample is."""
        now = self._clock.seconds()
        for _ in range(BURST):
            if self._pending is None and not (self._source_ready(now) and self._read()):
                return
            assert self._pending is not None
            if self._start is None:
                self._start = now - self._pending.time - self._lead
            due = self._start + self._pending.time
            if due > now + EARLY + EPSILON:
                break
            sample, self._pending = self._pending, None
            self._deliver(sample, due - now)
            if not self.running:
                return
        delay = 0.0
        if self._pending is not None:
            assert self._start is not None  # set above, once a sample was pending
            delay = max(0.0, self._start + self._pending.time - now - LEAD)
        self._call = self._metronome.call_later(delay, self._run)

    def _deliver(self, sample: Sample, early: float = 0.0) -> None:
        """Hand one sample on, moved to its place on the play's timeline;
        ``early`` (s) is how long before it is due it goes."""
        global _ahead
        if self._continue_at is not None:  # the first sample read since a seek
            self.offset += self._continue_at - sample.time
            self._continue_at = None
        if self.offset:
            sample = shifted(sample, self.offset)
        if self.last_time is None or sample.time > self.last_time:
            self.last_time = sample.time
        self.sent[sample.kind] += 1
        METERS.samples_read[sample.kind] += 1
        # (restored, not zeroed: a delivery that sets off another pump's keeps its own)
        outer, _ahead = _ahead, early
        try:
            self._send(sample)
        finally:
            _ahead = outer

    def _read(self) -> bool:
        """Read the next sample into ``_pending``; False (the pump ended) at the
        end of the samples or when reading failed."""
        try:
            self._pending = next(self._samples)
        except StopIteration:
            self._finish(None)
            return False
        except (WcsError, av.FFmpegError, OSError) as error:
            log.warn("{label}: source failed: {error}", label=self.label, error=error)
            self._finish(error.info if isinstance(error, WcsError) else "Source read failed")
            return False
        return True

    def _source_ready(self, now: float) -> bool:
        """Whether the next sample can be read without waiting (a download may
        lag); if not, look again soon, and give up after ``STALL_LIMIT``."""
        if self._ready is None:
            return True
        try:
            ready = self._ready()
        except WcsError as error:
            self._finish(error.info)
            return False
        if ready:
            if self._waiting_since is not None and self._start is not None:
                self._start += now - self._waiting_since  # resume where we paused
            self._waiting_since = None
            return True
        if self._waiting_since is None:
            self._waiting_since = now
        elif now - self._waiting_since > STALL_LIMIT:
            self._finish("Source stalled")
            return False
        self._call = self._metronome.call_later(RETRY, self._run)
        return False

    def _finish(self, reason: str | None) -> None:
        self.stop()
        self.ended = True
        self._on_end(reason)


def _ignore(*_args: object) -> None:
    """What a closed pump calls instead of its owner."""
