"""One reactor timer per tick for every pump on a clock.

Each pump used to sleep on a reactor timer of its own until its next sample:
a personal play woke the reactor about 70 times a second, and each wake-up (a
Twisted ``DelayedCall``, asyncio's ``TimerHandle``, two heap operations and an
``epoll`` return) cost about as much as reading the sample. Here the wake-ups
are rounded up to the next tick of a grid on the clock (every :data:`TICK`
seconds, the same grid for every pump), and each tick is one reactor timer
that runs every call due then, in the order they were asked for. A pump sends
what is due within its lead (:data:`TICK`), so rounding up never makes a sample
late; it may go up to a tick early.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from weakref import WeakKeyDictionary

from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger

log = Logger()

#: The grid's step (s): one Opus frame.
TICK = 0.02


class Beat:
    """A call waiting for its tick: :meth:`cancel` and :meth:`active`, as a
    reactor's ``IDelayedCall`` has them."""

    __slots__ = ("_call", "_done", "_metronome", "_tick")

    def __init__(self, call: Callable[[], object], metronome: Metronome, tick: int) -> None:
        self._call = call
        self._done = False
        self._metronome = metronome
        self._tick = tick

    def active(self) -> bool:
        return not self._done

    def cancel(self) -> None:
        if not self._done:
            self._done = True
            self._call = _nothing  # let go of whoever asked (a pump, its stream)
            self._metronome._cancelled(self._tick)

    def ring(self) -> None:
        if not self._done:
            self._done = True
            call, self._call = self._call, _nothing
            call()


class Metronome:
    """The ticks of one clock (a reactor, or a test's ``Clock``)."""

    def __init__(self, clock: IReactorTime) -> None:
        self._clock = clock
        self._ticks: dict[int, list[Beat]] = {}  # tick number → calls due then
        self._timers: dict[int, IDelayedCall] = {}  # tick number → its reactor timer
        self._live: dict[int, int] = {}  # tick number → calls not cancelled

    def call_later(self, delay: float, call: Callable[[], object]) -> Beat:
        """Run ``call`` at the first tick at least ``delay`` s from now."""
        now = self._clock.seconds()
        # the tick at or after the moment (a float's last bit does not cost a tick)
        tick = math.ceil((now + max(0.0, delay)) / TICK - 1e-9)
        beat = Beat(call, self, tick)
        beats = self._ticks.get(tick)
        if beats is None:
            beats = self._ticks[tick] = []
            self._live[tick] = 0
            self._timers[tick] = self._clock.callLater(
                max(0.0, tick * TICK - now), self._ring, tick
            )
        beats.append(beat)
        self._live[tick] += 1
        return beat

    def _cancelled(self, tick: int) -> None:
        """A call was cancelled: a tick left with none rings no reactor timer."""
        live = self._live.get(tick)
        if live is None:
            return  # it is ringing now
        if live > 1:
            self._live[tick] = live - 1
            return
        del self._ticks[tick], self._live[tick]
        timer = self._timers.pop(tick)
        if timer.active():
            timer.cancel()

    def _ring(self, tick: int) -> None:
        self._timers.pop(tick, None)
        self._live.pop(tick, None)
        for beat in self._ticks.pop(tick, ()):
            try:
                beat.ring()
            except Exception:  # one call's bug does not cost the others their tick
                log.failure("a paced call failed")

    def __len__(self) -> int:
        """Calls waiting."""
        return sum(self._live.values())


_metronomes: WeakKeyDictionary[IReactorTime, Metronome] = WeakKeyDictionary()


def of(clock: IReactorTime) -> Metronome:
    """The one metronome of ``clock``."""
    metronome = _metronomes.get(clock)
    if metronome is None:
        metronome = _metronomes[clock] = Metronome(clock)
    return metronome


def _nothing() -> None:
    """What a beat calls once it is cancelled or rung."""
