"""Shared timers for pumps: a call joins a timer set just before its moment,
never runs late, and a timer nobody waits for leaves the reactor."""

from __future__ import annotations

import gc
import random

from twisted.internet.task import Clock

from wcs.media import metronome
from wcs.media.metronome import JOIN, Metronome


def test_a_call_joins_a_timer_set_up_to_join_before_its_moment_and_runs_in_order():
    clock = Clock()
    clock.advance(1000.0)
    beats = Metronome(clock)
    ran: list[tuple[str, float]] = []
    for name, delay in (("a", 0.003), ("b", 0.003 + JOIN * 0.9), ("c", 0.003 + JOIN * 0.5)):
        beats.call_later(delay, lambda name=name: ran.append((name, clock.seconds())))
    assert len(clock.getDelayedCalls()) == 1 and len(beats) == 3
    clock.advance(0.003)
    assert [name for name, _ in ran] == ["a", "b", "c"]
    assert not clock.getDelayedCalls() and len(beats) == 0


def test_a_call_never_joins_a_later_timer_nor_one_more_than_join_before():
    clock = Clock()
    beats = Metronome(clock)
    ran: list[str] = []
    beats.call_later(0.05, lambda: ran.append("set"))
    beats.call_later(0.049, lambda: ran.append("earlier"))  # the one set is later: its own
    beats.call_later(0.05 + JOIN * 1.5, lambda: ran.append("too far"))  # its own too
    assert len(clock.getDelayedCalls()) == 3
    clock.advance(0.049)
    assert ran == ["earlier"]
    clock.advance(0.001)
    assert ran == ["earlier", "set"]
    clock.advance(JOIN * 1.5)
    assert ran == ["earlier", "set", "too far"]


def test_many_calls_at_random_moments_each_run_within_join_before_their_moment():
    clock = Clock()
    beats = Metronome(clock)
    rng = random.Random(7)
    asked: list[tuple[float, list[float]]] = []
    for _ in range(2000):
        delay = rng.uniform(0, 1.0)
        ran: list[float] = []
        beats.call_later(delay, lambda ran=ran: ran.append(clock.seconds()))
        asked.append((delay, ran))
    timers = len(clock.getDelayedCalls())
    # 2,000 calls on few timers: asked in random order, a call earlier than the
    # timers near it sets its own, so about two per JOIN (a pump asks in order)
    assert timers <= 2.5 / JOIN
    while clock.getDelayedCalls():
        clock.advance(min(c.getTime() for c in clock.getDelayedCalls()) - clock.seconds())
    for delay, ran in asked:
        assert len(ran) == 1 and delay - JOIN - 1e-9 <= ran[0] <= delay + 1e-9


def test_a_timer_whose_calls_were_all_cancelled_leaves_the_reactor():
    clock = Clock()
    beats = Metronome(clock)
    ran: list[str] = []
    first = beats.call_later(0.05, lambda: ran.append("first"))
    second = beats.call_later(0.05, lambda: ran.append("second"))
    first.cancel()
    assert len(clock.getDelayedCalls()) == 1 and not first.active() and second.active()
    second.cancel()
    second.cancel()  # twice is once
    assert not clock.getDelayedCalls() and len(beats) == 0
    beats.call_later(0.05, lambda: ran.append("third"))  # a fresh timer, not the dropped one
    clock.advance(1.0)
    assert ran == ["third"]


def test_a_failing_call_costs_the_others_nothing_and_a_call_may_cancel_another():
    clock = Clock()
    beats = Metronome(clock)
    ran: list[str] = []

    def broken() -> None:
        raise RuntimeError("a bug")

    beats.call_later(0.001, broken)
    cancelled = beats.call_later(0.001, lambda: ran.append("not run"))
    beats.call_later(0.0005, cancelled.cancel)  # earlier than that timer: one of its own
    beats.call_later(0.001, lambda: ran.append("run"))
    clock.advance(0.0005)  # the 0.5 ms call has a timer of its own: nothing joins later ones
    clock.advance(0.0005)
    assert ran == ["run"]
    assert len(beats) == 0 and not clock.getDelayedCalls()


def test_a_call_made_while_its_timer_rings_gets_a_timer_of_its_own():
    clock = Clock()
    beats = Metronome(clock)
    ran: list[float] = []

    def again() -> None:
        ran.append(clock.seconds())
        if len(ran) < 3:
            beats.call_later(0.0, again)

    beats.call_later(0.0, again)
    clock.advance(0)
    assert ran == [0.0, 0.0, 0.0]  # each on a fresh reactor timer (a reactor's next turn)
    assert len(beats) == 0 and not clock.getDelayedCalls()


def test_each_clock_has_one_metronome():
    one, other = Clock(), Clock()
    assert metronome.of(one) is metronome.of(one)
    assert metronome.of(one) is not metronome.of(other)


def test_rung_and_cancelled_calls_leave_no_cycle_for_the_collector():
    """A thousand plays coming and going must not leave their beats and timers
    for the garbage collector (a release test counts what it frees)."""
    clock = Clock()
    beats = Metronome(clock)
    gc.collect()
    gc.disable()
    try:
        for n in range(50):
            kept = beats.call_later(0.01 * (n % 5), lambda: None)
            dropped = beats.call_later(0.01 * (n % 5) + 0.001, lambda: None)
            dropped.cancel()
            alone = beats.call_later(1.0 + n, lambda: None)
            alone.cancel()  # its timer leaves the reactor
            clock.advance(0.05)
            assert not kept.active()
        del kept, dropped, alone
        gc.set_debug(gc.DEBUG_SAVEALL)
        gc.collect()
        found = [o for o in gc.garbage if type(o).__module__ == "wcs.media.metronome"]
    finally:
        gc.set_debug(0)
        gc.garbage.clear()
        gc.enable()
    assert found == []
