"""Shared reactor timers for every pump on a clock.

Each pump used to sleep on a reactor timer of its own until its next sample:
a personal play woke the reactor about 70 times a second, and each wake-up (a
Twisted ``DelayedCall``, asyncio's ``TimerHandle``, two heap operations and an
``epoll`` return) cost about as much as reading the sample. Here a call joins a
timer already set for at most :data:`JOIN` seconds before the moment it asked
for, and sets one of its own only when there is none: with many plays a timer
serves all the pumps due within those 10 ms, and no call ever runs late. A pump
sends what is due within its lead plus :data:`JOIN`, so a call run early finds
its sample due; a sample goes at most that much early, the rhythm of a play's
frames is kept within it (a fixed grid of ticks would have sent 30 fps video in
gaps of 20 and 40 ms).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from weakref import WeakKeyDictionary

from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger

log = Logger()

#: How much earlier than asked a call may run, to share a timer already set (s).
JOIN = 0.01


class Beat:
    """A call waiting for its timer: :meth:`cancel` and :meth:`active`, as a
    reactor's ``IDelayedCall`` has them."""

    __slots__ = ("_call", "_done", "_timer")

    def __init__(self, call: Callable[[], object], timer: _Timer) -> None:
        self._call = call
        self._done = False
        self._timer: _Timer | None = timer  # let go once done: no cycle for the collector

    def active(self) -> bool:
        return not self._done

    def cancel(self) -> None:
        if not self._done:
            self._done = True
            self._call = _nothing  # let go of whoever asked (a pump, its stream)
            timer, self._timer = self._timer, None
            if timer is not None:
                timer.cancelled()

    def ring(self) -> None:
        if not self._done:
            self._done = True
            self._timer = None
            call, self._call = self._call, _nothing
            call()


class _Timer:
    """One reactor timer and the calls it runs, in the order they came."""

    __slots__ = ("_metronome", "at", "beats", "call", "live")

    def __init__(self, at: float, metronome: Metronome) -> None:
        self.at = at
        self.beats: list[Beat] = []
        self.live = 0  # calls not cancelled
        self.call: IDelayedCall | None = None
        self._metronome = metronome

    def cancelled(self) -> None:
        """A call was cancelled: a timer left with none is taken off the reactor."""
        self.live -= 1
        if self.live == 0 and self.call is not None:
            self._metronome._drop(self)


class Metronome:
    """The shared timers of one clock (a reactor, or a test's ``Clock``)."""

    def __init__(self, clock: IReactorTime) -> None:
        self._clock = clock
        # timers by the JOIN-long slot their moment falls in: a call looks in its
        # own slot and the one before
        self._slots: dict[int, list[_Timer]] = {}

    def call_later(self, delay: float, call: Callable[[], object]) -> Beat:
        """Run ``call`` ``delay`` s from now, or up to :data:`JOIN` before."""
        now = self._clock.seconds()
        at = now + max(0.0, delay)
        slot = math.floor(at / JOIN)
        best: _Timer | None = None
        for near in (slot, slot - 1):
            for timer in self._slots.get(near, ()):
                if at - JOIN <= timer.at <= at and (best is None or timer.at > best.at):
                    best = timer
        if best is None:
            best = _Timer(at, self)
            self._slots.setdefault(slot, []).append(best)
            best.call = self._clock.callLater(at - now, self._ring, best)
        beat = Beat(call, best)
        best.beats.append(beat)
        best.live += 1
        return beat

    def _forget(self, timer: _Timer) -> None:
        slot = math.floor(timer.at / JOIN)
        timers = self._slots.get(slot)
        if timers is not None and timer in timers:
            timers.remove(timer)
            if not timers:
                del self._slots[slot]

    def _drop(self, timer: _Timer) -> None:
        self._forget(timer)
        if timer.call is not None and timer.call.active():
            timer.call.cancel()
        timer.call = None
        timer.beats = []

    def _ring(self, timer: _Timer) -> None:
        self._forget(timer)
        timer.call = None  # ringing: a call cancelled now cancels no reactor timer
        beats, timer.beats = timer.beats, []
        for beat in beats:
            try:
                beat.ring()
            except Exception:  # one call's bug does not cost the others their turn
                log.failure("a paced call failed")

    def __len__(self) -> int:
        """Calls waiting."""
        return sum(t.live for timers in self._slots.values() for t in timers)


_metronomes: WeakKeyDictionary[IReactorTime, Metronome] = WeakKeyDictionary()


def of(clock: IReactorTime) -> Metronome:
    """The one metronome of ``clock``."""
    metronome = _metronomes.get(clock)
    if metronome is None:
        metronome = _metronomes[clock] = Metronome(clock)
    return metronome


def _nothing() -> None:
    """What a beat calls once it is cancelled or rung."""
