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
        assert sample.time - pump.LEAD <= at < sample.time + 0.011
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
