"""The shared ticks pumps wake on: one reactor timer per tick, never early."""

from __future__ import annotations

from twisted.internet.task import Clock

from wcs.media import metronome
from wcs.media.metronome import TICK, Metronome


def test_calls_due_in_one_tick_share_one_reactor_timer_and_run_in_the_order_asked():
    clock = Clock()
    clock.advance(1000.0)
    beats = Metronome(clock)
    ran: list[tuple[str, float]] = []
    for name, delay in (("a", 0.0031), ("b", 0.0009), ("c", 0.01)):
        beats.call_later(delay, lambda name=name: ran.append((name, clock.seconds())))
    assert len(clock.getDelayedCalls()) == 1 and len(beats) == 3
    clock.advance(TICK - 1e-4)
    assert ran == []
    clock.advance(1e-4)
    assert [name for name, _ in ran] == ["a", "b", "c"]
    assert not clock.getDelayedCalls() and len(beats) == 0


def test_a_call_is_never_run_before_it_was_asked_for_and_at_most_a_tick_after():
    clock = Clock()
    clock.advance(3.14159)
    beats = Metronome(clock)
    for delay in (0.0, 0.0001, 0.004, 0.0099, 0.02, 0.1234):
        asked = clock.seconds() + delay
        ran: list[float] = []
        beats.call_later(delay, lambda: ran.append(clock.seconds()))
        while not ran:
            clock.advance(0.0005)
        assert asked - 1e-9 <= ran[0] <= asked + TICK + 0.0005


def test_a_tick_whose_calls_were_all_cancelled_leaves_no_reactor_timer():
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
    clock.advance(1.0)
    assert ran == []


def test_a_failing_call_costs_the_others_nothing_and_a_call_may_cancel_a_later_one():
    clock = Clock()
    beats = Metronome(clock)
    ran: list[str] = []

    def broken() -> None:
        raise RuntimeError("a bug")

    later = beats.call_later(0.001, lambda: ran.append("cancelled"))
    beats.call_later(0.001, broken)
    beats.call_later(0.001, later.cancel)
    beats.call_later(0.001, lambda: ran.append("after"))
    # (``later`` came first, so it rang before the call that cancels it)
    clock.advance(TICK)
    assert ran == ["cancelled", "after"]
    cancelled = beats.call_later(0.001, lambda: ran.append("not run"))
    beats.call_later(0.0, cancelled.cancel)
    beats.call_later(0.001, lambda: ran.append("run"))
    clock.advance(TICK)
    assert ran == ["cancelled", "after", "run"]
    assert len(beats) == 0 and not clock.getDelayedCalls()


def test_a_call_made_while_its_tick_rings_gets_a_timer_of_its_own():
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
