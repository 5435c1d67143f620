"""Which step of its ladder a WebRTC viewer's link can carry, from its browser's feedback.

A :class:`Chooser` reads what a browser says of its link, as an SFU does: its
REMB (the receive-side estimate Chrome sends several times a second once it
has one) and its receiver reports (the packets lost since the last one, with
the rate sent meanwhile). It answers with the step the viewer should be on:

- **down, at once**, when the estimate falls under what its step needs and
  the link shows congestion (loss, or a REMB that fell: Chrome's estimate
  drops to about 0.85 of what a congested link carries within a second), to
  the highest step that fits. An estimate merely lower than the need is not
  enough: Chrome's first REMBs are its start-up guess, not the link's limit;
- **up, when the estimate has room** for the step above for a few seconds;
- **up on trial** otherwise: Chrome's REMB never says more than 1.5 times what
  it receives, so from a low rendition it cannot show room for the source.
  After a quiet while on a lower step (no loss, REMB at its ceiling) the
  viewer tries the step above; if that brings it down again soon, the next
  trial waits twice as long.

It only decides; :class:`~wcs.streams.adaptive.AdaptiveView` moves the viewer.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence

#: What a step's audio needs on top of its video (Opus over RTP).
AUDIO_NEED = 64_000
#: An estimate under this share of the step's need, with congestion, moves down
#: (not one overuse: Chrome's first answer to a delay, on a busy machine as on a
#: slow link, is 0.85 of what it receives).
UNDER = 0.8
#: A REMB under this share of the highest of the last ``FELL_WITHIN`` s fell.
FELL = 0.9
FELL_WITHIN = 3.0
#: Seconds from the start in which only loss is congestion: a receiver's first
#: estimates rise and fall as it learns (aiortc's as Chrome's).
SETTLING = 6.0
#: How long a lossy link counts as congestion; and the reports whose loss is
#: averaged (random loss of a few percent puts 5 % in one report of 60 packets
#: one time in four; congestion's loss lasts).
LOSSY_FOR = 2.0
#: The share of packets lost, on average over the reports of the last
#: ``LOSSY_FOR`` s, that counts as a lossy link.
LOSSY = 0.05
#: A step fits an estimate of at least its need over this share.
FITS = 0.85
#: The estimate must have room for the step above (its need times this) ...
ROOM = 1.15
#: ... for this many seconds, before the viewer goes up.
ROOM_FOR = 3.0
#: REMB at this multiple of the rate received says the link is not what limits it.
CEILING = 1.3
#: Seconds on a step, without loss, before the first trial of the step above.
TRIAL_AFTER = 15.0
#: Most seconds between trials (each failed one doubles the wait).
TRIAL_MOST = 120.0
#: A move down this soon after going up means the step above did not fit.
TRIAL_FAILS_WITHIN = 10.0
#: A REMB older than this is not the link's estimate any more.
REMB_FRESH = 3.0


class Chooser:
    """One viewer's step, from ``needs`` (bits/s each step needs, the source first,
    then each rendition, highest first; the source's 0 when not known, as for a
    publisher's stream: then it is what the viewer is sent) and its browser's feedback."""

    def __init__(self, needs: Sequence[int], now: float, index: int = 0) -> None:
        self.needs = list(needs)
        self._measure_source = not self.needs[0]
        self.index = index
        self._remb: tuple[float, int] | None = None  # (when, bits/s)
        self._rembs: deque[tuple[float, int]] = deque(maxlen=64)  # the last few seconds'
        self._rate = 0.0  # bits/s sent, as of the last report
        self._lossy_at = -1e9  # when the reports last said the link lost packets
        self._losses: deque[tuple[float, float]] = deque(maxlen=16)  # (when, share lost)
        self._room_since: float | None = None
        self._on_step_since = now
        self._started = now
        self._went_up_at = -1e9
        self._trial_wait = TRIAL_AFTER

    def moved(self, index: int, now: float) -> None:
        """The viewer is on step ``index`` now."""
        if index == self.index:
            return
        if index < self.index:
            self._went_up_at = now
        elif now - self._went_up_at < TRIAL_FAILS_WITHIN:  # down soon after up: no fit
            self._trial_wait = min(self._trial_wait * 2, TRIAL_MOST)
        else:
            self._trial_wait = TRIAL_AFTER
        self.index = index
        self._on_step_since = now
        self._room_since = None
        self._rate = 0.0

    def feedback(
        self, now: float, remb: int | None, loss: float | None, rate: float | None
    ) -> int | None:
        """Take one piece of feedback; answer the step to move to (None: stay)."""
        if remb is not None:
            self._remb = (now, remb)
            self._rembs.append(self._remb)
            while self._rembs and now - self._rembs[0][0] > FELL_WITHIN:
                self._rembs.popleft()
        if rate is not None:
            self._rate = rate + AUDIO_NEED
            if self.index == 0 and self._measure_source and rate > 0:
                old = self.needs[0]
                self.needs[0] = int(self._rate if not old else (old + self._rate) / 2)
        if loss is not None:
            self._losses.append((now, loss))
            while now - self._losses[0][0] > LOSSY_FOR:
                self._losses.popleft()
            loss = sum(share for _, share in self._losses) / len(self._losses)
            if loss >= LOSSY:
                self._lossy_at = now
        estimate = self.estimate(now, loss)
        if estimate is None:
            return None
        need = self.needs[self.index]
        if not need:
            return None  # not known yet
        if self._congested(now):
            # while the receiver settles its REMB is no measure (aiortc's said 264
            # kb/s 4 s into a play with 3 % loss): only what got through is
            low = estimate if now - self._started >= SETTLING else self._carried(loss)
            if low is not None and low < need * UNDER:
                fitting = self._fitting(low)
                return fitting if fitting > self.index else None
        return self._upward(now, estimate)

    def estimate(self, now: float, loss: float | None = None) -> float | None:
        """Bits/s the link carries, as far as the browser says (with ``loss``, the
        share lost lately: then what got through caps it)."""
        fresh = self._remb is not None and now - self._remb[0] < REMB_FRESH
        remb = self._remb[1] if fresh and self._remb is not None else None
        carried = self._carried(loss)
        if carried is not None:
            return carried if remb is None else min(remb, carried)
        return remb

    def _carried(self, loss: float | None) -> float | None:
        """What got through of what was sent, when the link loses packets."""
        if loss is not None and loss >= LOSSY and self._rate:
            return self._rate * (1 - loss)
        return None

    def _congested(self, now: float) -> bool:
        """Whether the link shows it carries less than it is sent: loss, or a fall."""
        if now - self._lossy_at < LOSSY_FOR:
            return True
        if self._remb is None or len(self._rembs) < 2 or now - self._started < SETTLING:
            return False
        return self._remb[1] < FELL * max(value for _, value in self._rembs)

    def _fitting(self, estimate: float) -> int:
        """The highest step that fits ``estimate`` (the lowest when none does)."""
        for index, need in enumerate(self.needs):
            if need * FITS <= estimate:
                return index
        return len(self.needs) - 1

    def _upward(self, now: float, estimate: float) -> int | None:
        if self.index == 0 or now - self._lossy_at < ROOM_FOR:
            self._room_since = None
            return None
        if estimate >= self.needs[self.index - 1] * ROOM:
            if self._room_since is None:
                self._room_since = now
            if now - self._room_since >= ROOM_FOR:
                return self.index - 1
            return None
        self._room_since = None
        at_ceiling = self._rate > 0 and estimate >= self._rate * CEILING
        if at_ceiling and now - self._on_step_since >= self._trial_wait:
            return self.index - 1  # a trial: REMB cannot show room above its ceiling
        return None
