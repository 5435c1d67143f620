"""Pacing on a fake clock: every sample when it is due, waits, stalls and errors."""

from __future__ import annotations

import av
from twisted.internet.task import Clock

from wcs.errors import SourceUnavailable, WrongFormat
from wcs.media import pump
from wcs.media.pump import Pump
from wcs.media.sample import Sample


def samples(count: int, step: float = 0.1) -> list[Sample]:
    return [Sample("video", b"%d" % n, n * 9000, 90000, n * step, keyframe=n == 0)
            for n in range(count)]


class Run:
    def __init__(self, source, ready=None):
        self.clock = Clock()
        self.clock.advance(1000.0)  # a wall clock that is not at zero
        self.sent: list[tuple[float, Sample]] = []
        self.ended: list[str | None] = []
        self.pump = Pump(iter(source), self.clock, "test", self._send, self.ended.append, ready)

    def _send(self, sample: Sample) -> None:
        self.sent.append((self.clock.seconds() - 1000.0, sample))

    def advance(self, seconds: float, step: float = 0.01) -> None:
        for _ in range(round(seconds / step)):
            self.clock.advance(step)


def test_each_sample_goes_out_when_due_and_the_end_is_told():
    run = Run(samples(5))
    run.pump.start()
    run.clock.advance(0)
    assert [s.data for _, s in run.sent] == [b"0"]
    run.advance(0.5)
    assert [s.data for _, s in run.sent] == [b"0", b"1", b"2", b"3", b"4"]
    for (at, sample) in run.sent:
        assert sample.time - pump.EARLY <= at < sample.time + 0.011
    assert run.ended == [None]
    assert run.pump.sent["video"] == 5


def test_a_late_reactor_catches_up_in_bursts_that_yield_between_them():
    run = Run(samples(200, step=0.001))
    turns: list[int] = []
    inner = run.pump._run

    def one_turn() -> None:
        before = len(run.sent)
        inner()
        turns.append(len(run.sent) - before)

    run.pump._run = one_turn  # type: ignore[method-assign]
    run.pump.start()
    run.clock.advance(0)
    run.clock.advance(1.0)  # one late wake-up, with nearly 0.2 s of samples overdue
    assert len(run.sent) == 200 and run.ended == [None]
    assert max(turns) == pump.BURST and len(turns) >= 200 // pump.BURST


def test_a_sample_is_told_how_long_before_its_moment_it_goes():
    """What a sender report maps RTP time by: the moment each sample was due,
    whether the wake-up came early (to share a timer) or late (a busy reactor)."""
    run = Run(samples(30, step=0.033))
    told: list[tuple[float, float]] = []
    run.pump._send = lambda sample: told.append(  # type: ignore[method-assign]
        (sample.time, run.clock.seconds() - 1000.0 + pump.ahead()))
    run.pump.start()
    run.clock.advance(0)
    run.advance(0.5, step=0.007)
    run.clock.advance(0.3)  # late
    run.advance(0.3, step=0.007)
    assert len(told) == 30
    for due, mapped in told:
        assert abs(mapped - due) < 1e-9, (due, mapped)
    assert pump.ahead() == 0.0  # outside a delivery


def test_stop_is_silent_and_final():
    run = Run(samples(5))
    run.pump.start()
    run.clock.advance(0)
    run.pump.stop()
    run.advance(1.0)
    assert len(run.sent) == 1 and run.ended == []
    assert run.clock.getDelayedCalls() == []


def test_a_source_that_is_not_ready_pauses_the_timeline():
    ready = [True]
    run = Run(samples(4, step=1.0), ready=lambda: ready[0])
    run.pump.start()
    run.clock.advance(0)  # sample 0 sent, sample 1 already read
    ready[0] = False
    run.advance(4.0)
    assert len(run.sent) == 2  # sample 2 waits for its data, nothing is skipped
    ready[0] = True
    run.advance(0.5)
    assert len(run.sent) == 2  # the 3 s pause moved every deadline on
    run.advance(3.0)
    assert [s.data for _, s in run.sent] == [b"0", b"1", b"2", b"3"]
    assert 3.9 < run.sent[2][0] - run.sent[1][0] < 4.1
    assert 0.9 < run.sent[3][0] - run.sent[2][0] < 1.1


def test_a_source_stalled_too_long_ends_the_stream():
    run = Run(samples(3), ready=lambda: False)
    run.pump.start()
    run.advance(pump.STALL_LIMIT + 0.2, step=pump.RETRY)
    assert run.ended == ["Source stalled"] and run.sent == []


def test_readiness_that_fails_ends_with_its_reason():
    def ready():
        raise SourceUnavailable("S3 download failed")

    run = Run(samples(3), ready=ready)
    run.pump.start()
    run.clock.advance(0)
    assert run.ended == ["S3 download failed"]


def failing(error: Exception):
    yield from samples(2)
    raise error


def test_a_source_error_ends_the_stream_with_its_info():
    run = Run(failing(WrongFormat("file is truncated")))
    run.pump.start()
    run.advance(0.5)
    assert len(run.sent) == 2
    assert run.ended == ["File has wrong format: file is truncated"]


def test_a_decoder_or_io_error_ends_the_stream_plainly():
    for error in (av.InvalidDataError(1094995529, "bad"), OSError("gone")):
        run = Run(failing(error))
        run.pump.start()
        run.advance(0.5)
        assert run.ended == ["Source read failed"]


def failures(events: list[dict]) -> list[str]:
    """The log failures among ``events``, as their tracebacks' last lines."""
    return [event["log_failure"].getErrorMessage() for event in events
            if "log_failure" in event]


def test_a_bug_in_the_source_ends_the_stream_failed_with_its_traceback_logged():
    from twisted.logger import capturedLogs

    with capturedLogs() as events:
        run = Run(failing(KeyError("a bug")))
        run.pump.start()
        run.advance(0.5)
    assert len(run.sent) == 2
    assert run.ended == [pump.INTERNAL_ERROR]
    assert failures(events) == ["'a bug'"]
    assert run.clock.getDelayedCalls() == []  # and nothing keeps running


def test_a_bug_where_samples_go_ends_the_stream_and_other_pumps_go_on():
    from twisted.logger import capturedLogs

    clock = Clock()
    ended: list[str | None] = []
    healthy: list[Sample] = []

    def broken(sample: Sample) -> None:
        if sample.data == b"1":
            raise ValueError("fan-out bug")

    with capturedLogs() as events:
        bad = Pump(iter(samples(5)), clock, "bad", broken, ended.append)
        good = Pump(iter(samples(5)), clock, "good", healthy.append, lambda _: None)
        bad.start()
        good.start()
        for _ in range(60):
            clock.advance(0.01)
    assert ended == [pump.INTERNAL_ERROR]  # once, when the bug hit
    assert len(healthy) == 5
    assert failures(events) == ["fan-out bug"]


def test_an_owner_that_fails_at_the_end_is_logged_not_told_twice():
    from twisted.logger import capturedLogs

    told: list[str | None] = []

    def owner(reason: str | None) -> None:
        told.append(reason)
        raise RuntimeError("owner bug")

    with capturedLogs() as events:
        clock = Clock()
        broken = Pump(iter(samples(1)), clock, "t", lambda _: None, owner)
        broken.start()
        clock.advance(0)
    assert told == [None]
    assert failures(events) == ["owner bug"]


def test_close_lets_go_of_the_source_and_the_callbacks_at_once():
    import gc
    import weakref

    class Owner:
        def __init__(self) -> None:
            self.pump = Pump(self.read(), Clock(), "t", self.send, self.ended)
            self.closed_source = False

        def read(self):
            try:
                yield from samples(5)
            finally:
                self.closed_source = True

        def send(self, sample: Sample) -> None:
            pass

        def ended(self, reason: str | None) -> None:
            pass

    gc.disable()
    try:
        owner = Owner()
        owner.pump.start()
        owner.pump._clock.advance(0)  # reading: the source is suspended mid-way
        owner.pump.close()
        assert owner.closed_source  # closing the reader closes its decoders now
        gone = weakref.ref(owner)
        del owner
        assert gone() is None, "the pump and its owner were left in a reference cycle"
    finally:
        gc.enable()


def test_a_lead_sends_that_much_at_once_then_paces():
    run = Run(samples(30))  # a sample every 0.1 s
    run.pump.start(lead=1.0)
    run.clock.advance(0)
    assert [s.data for _, s in run.sent] == [b"%d" % n for n in range(11)]  # 0.0 .. 1.0 s
    run.advance(0.5)
    assert len(run.sent) == 16  # then one every 0.1 s: 1.5 s of media after 0.5 s
    run.pump.stop()
    run.pump.start(lead=5.0)  # a later start keeps the timeline: no second lead
    run.clock.advance(0)
    assert len(run.sent) == 16


def test_catching_up_sends_what_is_due_at_once_and_paces_the_rest_once_started():
    clock = Clock()
    clock.advance(1000.0)
    sent: list[Sample] = []
    # a timeline that began 20 s ago, read from 15 s: 5 s of 100 samples a second are due
    source = [Sample("video", b"", 0, 90000, 15 + n / 100, keyframe=n == 0) for n in range(1000)]
    paced = Pump(iter(source), clock, "t", sent.append, lambda reason: None, start=980.0)
    paced.catch_up()
    due = 501 + int(pump.EARLY * 100)  # and those due within the lead
    assert len(sent) == due and not clock.getDelayedCalls()  # due ones, in this call
    paced.catch_up()  # nothing more is due: nothing more goes
    assert len(sent) == due
    paced.start()
    clock.advance(0.1)
    clock.advance(0.1)
    assert due + 18 <= len(sent) <= due + 21  # then paced: 0.2 s of them
