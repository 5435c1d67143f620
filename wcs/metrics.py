"""What this process has done, counted where the work is done, for ``/metrics``.

Hot paths only bump plain integers (a dictionary add, tens of nanoseconds) or
register an object whose own counters they already keep (an RTP stream's
``packets``/``octets``); nothing is formatted until a scrape. :data:`METERS`
is the process's one set, as ``prometheus_client``'s default registry is:
the code that sends, reads or fails reaches it without being handed it.

:func:`families` turns the meters and the live state a
:class:`StateReader` reads (sessions, streams, viewers) into
``prometheus_client`` metric families; :func:`to_wire` and :func:`from_wire`
carry them in a worker's load report so that any worker answers ``/metrics``
for all of them, each sample labelled with its ``worker``.
"""

from __future__ import annotations

import re
import weakref
from bisect import bisect_left
from collections import Counter
from collections.abc import Callable, Iterable
from typing import Any, Protocol

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from twisted.application import service
from twisted.internet.interfaces import IDelayedCall, IReactorTime

#: Reactor lag buckets (seconds).
LAG_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
#: Most distinct failure reasons kept; later new ones count as "other".
MAX_REASONS = 64
#: Most distinct REST routes kept (routes are the API's own paths; a bound all the same).
MAX_ROUTES = 128


#: Reads what one sender has sent so far: (packets, bytes).
Reader = Callable[[Any], tuple[int, int]]


def own_counts(sender: Any) -> tuple[int, int]:
    """For senders that keep ``packets`` and ``octets`` themselves."""
    return sender.packets, sender.octets


class Traffic:
    """Packets and bytes one provider sent: senders still open (read at scrape
    time from their own counters) plus the totals of those that ended."""

    def __init__(self) -> None:
        self._open: weakref.WeakKeyDictionary[Any, Reader] = weakref.WeakKeyDictionary()
        self.ended_packets = 0
        self.ended_octets = 0

    def opened(self, sender: Any, read: Reader = own_counts) -> None:
        self._open[sender] = read

    def closed(self, sender: Any) -> None:
        """Fold an ended sender's counts into the totals (once)."""
        read = self._open.pop(sender, None)
        if read is not None:
            packets, octets = read(sender)
            self.ended_packets += packets
            self.ended_octets += octets

    def add(self, packets: int, octets: int) -> None:
        """Count what was sent by something that keeps no counters of its own."""
        self.ended_packets += packets
        self.ended_octets += octets

    def totals(self) -> tuple[int, int]:
        packets, octets = self.ended_packets, self.ended_octets
        for sender, read in list(self._open.items()):
            more = read(sender)
            packets += more[0]
            octets += more[1]
        return packets, octets


class Running:
    """Objects of a kind alive now (transcoders): counted, never held."""

    def __init__(self) -> None:
        self._alive: weakref.WeakSet[Any] = weakref.WeakSet()

    def started(self, thing: object) -> None:
        self._alive.add(thing)

    def __len__(self) -> int:
        return len(self._alive)


class Recent:
    """Keys seen in the last :attr:`window` seconds (HLS viewers: a player
    fetches its playlist every few seconds, and never says it left)."""

    def __init__(self, window: float = 30.0, most: int = 100_000) -> None:
        self.window = window
        self.most = most
        self._seen: dict[Any, float] = {}

    def seen(self, key: Any, now: float) -> None:
        self._seen.pop(key, None)
        self._seen[key] = now  # (kept in order of last sight: the oldest first)
        if len(self._seen) > self.most:
            self.count(now)
            while len(self._seen) > self.most:
                del self._seen[next(iter(self._seen))]

    def by(self, now: float, part: Callable[[Any], str]) -> dict[str, int]:
        """How many were seen within the window, by ``part`` of their key."""
        self.count(now)
        counts: Counter[str] = Counter(part(key) for key in self._seen)
        return dict(counts)

    def count(self, now: float) -> int:
        """How many were seen within the window (the older ones are forgotten)."""
        for key, when in list(self._seen.items()):
            if now - when <= self.window:
                break
            del self._seen[key]
        return len(self._seen)


class Lag:
    """A histogram of how late the reactor ran a timer (seconds)."""

    def __init__(self) -> None:
        self.counts = [0] * (len(LAG_BUCKETS) + 1)
        self.sum = 0.0

    def observe(self, seconds: float) -> None:
        self.counts[bisect_left(LAG_BUCKETS, seconds)] += 1
        self.sum += seconds


class Meters:
    """Every count of one process."""

    def __init__(self) -> None:
        self.sent: dict[str, Traffic] = {}
        self.samples_read: Counter[str] = Counter()  # by kind: video, audio
        self.transcoders: dict[str, Running] = {}
        self.s3_bytes = 0
        self.s3_errors = 0
        self.failures: Counter[str] = Counter()
        self.rest: Counter[tuple[str, int]] = Counter()
        self.lag = Lag()
        self.hls_viewers = Recent()  # (address, stream name) fetching playlists
        #: ICE-TCP connections by what became of them: claimed (by a peer of this
        #: worker), handed (to another worker's), refused (garbage, strangers, silence)
        self.ice_tcp: Counter[str] = Counter()
        #: WebRTC viewers moved by their bandwidth, by (direction, the step moved to)
        self.abr_moves: Counter[tuple[str, str]] = Counter()

    def traffic(self, provider: str) -> Traffic:
        found = self.sent.get(provider)
        if found is None:
            found = self.sent[provider] = Traffic()
        return found

    def transcoding(self, kind: str, transcoder: object) -> None:
        running = self.transcoders.get(kind)
        if running is None:
            running = self.transcoders[kind] = Running()
        running.started(transcoder)

    def failed(self, info: str | None) -> None:
        """A FAILED status, counted by its reason without the parts that name
        a file, a value or a number (``Limit reached: ...`` → ``Limit reached``)."""
        reason = reason_of(info)
        if reason not in self.failures and len(self.failures) >= MAX_REASONS:
            reason = "other"
        self.failures[reason] += 1

    def answered(self, route: str, status: int) -> None:
        if (route, status) not in self.rest and len(self.rest) >= MAX_ROUTES:
            route = "other"
        self.rest[(route, status)] += 1


METERS = Meters()


def reason_of(info: str | None) -> str:
    """The fixed part of a WCS info: up to the first colon, quote, bracket or digit."""
    head = re.split(r"[:'\"(\[0-9]", info or "", maxsplit=1)[0].strip().rstrip(".,")
    return head[:60] or "unknown"


class StateReader(Protocol):
    """What is live in this process now, as ``/metrics`` shows it."""

    def sessions(self) -> int: ...
    def streams(self) -> dict[str, int]: ...
    def viewers(self) -> dict[str, int]: ...


def families(meters: Meters, state: StateReader | None) -> list[Metric]:
    """This process's metric families."""
    out: list[Metric] = []
    if state is not None:
        out.append(
            GaugeMetricFamily(
                "wcsvod_sessions",
                "Sessions: WebSocket sessions established, WHEP and WHIP sessions",
                value=state.sessions(),
            )
        )
        streams = GaugeMetricFamily("wcsvod_streams", "Streams running, by kind", labels=["kind"])
        for kind, count in sorted(state.streams().items()):
            streams.add_metric([kind], count)
        out.append(streams)
        viewers = GaugeMetricFamily(
            "wcsvod_viewers", "Viewers, by media provider", labels=["provider"]
        )
        for provider, count in sorted(state.viewers().items()):
            viewers.add_metric([provider], count)
        out.append(viewers)
    packets = CounterMetricFamily(
        "wcsvod_sent_packets",
        "Media packets (RTP packets, MSE or RTMP messages, HLS segments) sent, by provider",
        labels=["provider"],
    )
    octets = CounterMetricFamily(
        "wcsvod_sent_bytes", "Media bytes sent, by provider", labels=["provider"]
    )
    for provider, traffic in sorted(meters.sent.items()):
        sent_packets, sent_octets = traffic.totals()
        packets.add_metric([provider], sent_packets)
        octets.add_metric([provider], sent_octets)
    samples = CounterMetricFamily(
        "wcsvod_samples_read", "Samples read from sources, by kind", labels=["kind"]
    )
    for kind, count in sorted(meters.samples_read.items()):
        samples.add_metric([kind], count)
    transcodes = GaugeMetricFamily(
        "wcsvod_transcodes", "Transcoders running, by kind", labels=["kind"]
    )
    for kind, running in sorted(meters.transcoders.items()):
        transcodes.add_metric([kind], len(running))
    failures = CounterMetricFamily(
        "wcsvod_failures", "FAILED statuses sent, by reason", labels=["reason"]
    )
    for reason, count in sorted(meters.failures.items()):
        failures.add_metric([reason], count)
    rest = CounterMetricFamily(
        "wcsvod_rest_requests",
        "REST requests answered, by route and HTTP status",
        labels=["route", "status"],
    )
    for (route, status), count in sorted(meters.rest.items()):
        rest.add_metric([route, str(status)], count)
    lag = HistogramMetricFamily(
        "wcsvod_reactor_lag_seconds", "How late the reactor ran a timer due every quarter second"
    )
    running_total, buckets = 0, []
    for bound, count in zip((*LAG_BUCKETS, float("inf")), meters.lag.counts, strict=True):
        running_total += count
        buckets.append(("+Inf" if bound == float("inf") else repr(bound), running_total))
    lag.add_metric([], buckets, meters.lag.sum)
    ice_tcp = CounterMetricFamily(
        "wcsvod_ice_tcp_connections",
        "Connections to the ICE-TCP port, by outcome (claimed, handed, refused)",
        labels=["outcome"],
    )
    for outcome, count in sorted(meters.ice_tcp.items()):
        ice_tcp.add_metric([outcome], count)
    moves = CounterMetricFamily(
        "wcsvod_abr_moves",
        "WebRTC viewers moved by their bandwidth, by direction (up, down) and step moved to",
        labels=["direction", "rendition"],
    )
    for (direction, step), count in sorted(meters.abr_moves.items()):
        moves.add_metric([direction, step], count)
    out += [
        ice_tcp,
        moves,
        packets,
        octets,
        samples,
        transcodes,
        failures,
        rest,
        CounterMetricFamily(
            "wcsvod_s3_fetched_bytes", "Bytes fetched from S3", value=meters.s3_bytes
        ),
        CounterMetricFamily("wcsvod_s3_errors", "S3 requests that failed", value=meters.s3_errors),
        lag,
    ]
    return out


def to_wire(metrics: Iterable[Metric]) -> list[list[Any]]:
    """Families as JSON-able lists, for a worker's load report."""
    return [
        [m.name, m.documentation, m.type, [[s.name, s.labels, s.value] for s in m.samples]]
        for m in metrics
    ]


def from_wire(wire: list[list[Any]], labels: dict[str, str]) -> list[Metric]:
    """Families from :func:`to_wire`, each sample given ``labels`` too."""
    out = []
    for name, documentation, kind, samples in wire:
        metric = Metric(name, documentation, kind)
        for sample_name, sample_labels, value in samples:
            metric.add_sample(sample_name, {**sample_labels, **labels}, value)
        out.append(metric)
    return out


def merged(groups: Iterable[list[Metric]]) -> list[Metric]:
    """One family per name, holding the samples of every group (worker)."""
    by_name: dict[str, Metric] = {}
    for group in groups:
        for metric in group:
            into = by_name.get(metric.name)
            if into is None:
                into = by_name[metric.name] = Metric(metric.name, metric.documentation, metric.type)
            into.samples.extend(metric.samples)
    return list(by_name.values())


def labelled(metrics: list[Metric], labels: dict[str, str]) -> list[Metric]:
    return from_wire(to_wire(metrics), labels)


#: How often the reactor's lag is probed (s).
LAG_PROBE = 0.25


class ReactorLag(service.Service):
    """Probes how late the reactor runs a timer, into :attr:`Meters.lag`."""

    def __init__(self, clock: IReactorTime, meters: Meters = METERS) -> None:
        self.clock = clock
        self.meters = meters
        self._call: IDelayedCall | None = None

    def startService(self) -> None:
        super().startService()
        self._arm()

    def _arm(self) -> None:
        self._call = self.clock.callLater(LAG_PROBE, self._tick, self.clock.seconds() + LAG_PROBE)

    def _tick(self, due: float) -> None:
        self.meters.lag.observe(max(0.0, self.clock.seconds() - due))
        self._arm()

    def stopService(self) -> None:
        super().stopService()
        if self._call is not None and self._call.active():
            self._call.cancel()
        self._call = None
