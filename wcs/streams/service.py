"""The streams' side of a running server, as a service: every second this
process's viewers and load go to the whole server (its directory);
when the server stops, every stream ends cleanly (its viewers hear "Server
shutdown") and so does the sources' background work.
"""

from __future__ import annotations

import time

from twisted.application import service
from twisted.internet import task

from wcs.metrics import METERS
from wcs.sources import Sources
from wcs.streams.registry import StreamRegistry

#: How often a worker tells the whole server its viewers and its load (s).
REPORT_INTERVAL = 1.0


class StreamsService(service.Service):
    """Reports this process's viewers and load to the whole server every
    ``REPORT_INTERVAL``; ends every stream cleanly when the server stops (viewers
    get STOPPED), and the sources' background work."""

    def __init__(self, registry: StreamRegistry, sources: Sources) -> None:
        self.registry = registry
        self.sources = sources
        self._reporter = task.LoopingCall(self._report)
        self._cpu = CpuMeter()

    def startService(self) -> None:
        super().startService()
        self._reporter.start(REPORT_INTERVAL)

    def _report(self) -> None:
        hls = METERS.hls_viewers.by(self.registry.clock.seconds(), lambda key: key[1])
        self.registry.queries.report(cpu=self._cpu.share(), hls=hls)

    def stopService(self) -> None:
        super().stopService()
        if self._reporter.running:
            self._reporter.stop()
        self.registry.close_all()
        self.sources.close()


class CpuMeter:
    """This process's CPU time between two readings, as a share of one core."""

    def __init__(self) -> None:
        self._last = (time.monotonic(), time.process_time())

    def share(self) -> float:
        now = (time.monotonic(), time.process_time())
        wall, cpu = now[0] - self._last[0], now[1] - self._last[1]
        self._last = now
        return round(cpu / wall, 3) if wall > 0 else 0.0
