"""Pacing on the reactor: each sample goes out when the wall clock reaches it.

Deadlines are ``start + sample time`` rather than accumulated sleeps, so
timer jitter never adds up to drift.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator

import av
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger

from wcs.media.errors import MediaError
from wcs.media.sample import Sample, Subscriber

log = Logger()

#: Samples are sent this much before they are due (absorbs timer latency).
LEAD = 0.005
#: Most samples sent in one reactor turn when catching up.
BURST = 64


class Pump:
    """Reads samples lazily and fans each out to every subscriber when due."""

    def __init__(self, samples: Iterator[Sample], clock: IReactorTime, label: str,
                 on_end: Callable[[str | None], None] | None = None) -> None:
        self._samples = samples
        self._clock = clock
        self.label = label
        self._on_end = on_end
        self.subscribers: list[Subscriber] = []
        self._pending: Sample | None = None
        self._call: IDelayedCall | None = None
        self._start: float | None = None
        self.running = False
        self.sent: Counter[str] = Counter()

    def add(self, subscriber: Subscriber) -> None:
        self.subscribers.append(subscriber)

    def remove(self, subscriber: Subscriber) -> None:
        if subscriber in self.subscribers:
            self.subscribers.remove(subscriber)

    def start(self) -> None:
        if self.running:
            return
        self.running = True
        self._call = self._clock.callLater(0, self._run)

    def stop(self) -> None:
        """Stop pacing; subscribers are not told (whoever stops us tells them)."""
        self.running = False
        if self._call is not None and self._call.active():
            self._call.cancel()
        self._call = None

    def _run(self) -> None:
        self._call = None
        now = self._clock.seconds()
        for _ in range(BURST):
            if self._pending is None:
                try:
                    self._pending = next(self._samples)
                except StopIteration:
                    self._finish(None)
                    return
                except (MediaError, av.FFmpegError, OSError) as error:
                    log.warn("{label}: source failed: {error}", label=self.label, error=error)
                    self._finish(getattr(error, "info", None) or "Source read failed")
                    return
            if self._start is None:
                self._start = now - self._pending.time
            due = self._start + self._pending.time
            if due > now + LEAD:
                break
            sample, self._pending = self._pending, None
            self._emit(sample)
            if not self.running:
                return
        delay = 0.0 if self._pending is None else max(0.0, self._start + self._pending.time - now - LEAD)
        self._call = self._clock.callLater(delay, self._run)

    def _emit(self, sample: Sample) -> None:
        self.sent[sample.kind] += 1
        for subscriber in list(self.subscribers):
            try:
                subscriber.deliver(sample)
            except Exception:
                log.failure("{label}: subscriber failed; dropped", label=self.label)
                self.remove(subscriber)
                subscriber.finished("Internal error")

    def _finish(self, reason: str | None) -> None:
        self.stop()
        for subscriber in list(self.subscribers):
            subscriber.finished(reason)
        self.subscribers.clear()
        if self._on_end is not None:
            self._on_end(reason)
