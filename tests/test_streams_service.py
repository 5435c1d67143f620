"""The streams' service: what ends every stream when the server stops."""

from __future__ import annotations

import time

from twisted.internet.task import Clock

from wcs.streams.service import CpuMeter, StreamsService


def test_stopping_the_streams_service_ends_every_stream_then_the_sources():
    """What tells every viewer "Server shutdown" when the server stops."""
    done: list[str] = []

    class Queries:
        def report(self, **load: object) -> None:
            done.append("report")

    class Registry:
        clock = Clock()
        queries = Queries()

        def close_all(self) -> None:
            done.append("streams")

    class Sources:
        def close(self) -> None:
            done.append("sources")

    streams = StreamsService(Registry(), Sources())  # type: ignore[arg-type]
    streams._reporter.clock = Registry.clock  # (no reactor in this process)
    streams.startService()
    streams.stopService()
    assert done == ["report", "streams", "sources"]


def test_the_cpu_meter_gives_a_share_of_one_core():
    # the share is CPU over wall time, whatever else the machine runs: the
    # test's own clocks around the meter's give the same ratio
    wall, cpu = time.monotonic(), time.process_time()
    meter = CpuMeter()
    end = time.process_time() + 0.3  # long enough that a preemption between the
    while time.process_time() < end:  # test's clock readings and the meter's is small
        pass
    share = meter.share()
    expected = (time.process_time() - cpu) / (time.monotonic() - wall)
    assert 0 < share <= 1.05
    assert abs(share - expected) < 0.03, (share, expected)
