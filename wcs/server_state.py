"""What ``/metrics`` shows of a process's live state, and the whole server's
families (each worker's asked now, labelled by its number)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from typing import Any

from prometheus_client.core import Metric
from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IReactorTime

from wcs.metrics import METERS, families, from_wire, labelled, merged
from wcs.signalling.websocket import SignallingFactory
from wcs.streams.registry import StreamRegistry


class ServerState:
    """What ``/metrics`` shows of this process's live state."""

    def __init__(
        self,
        registry: StreamRegistry,
        signalling: SignallingFactory,
        clock: IReactorTime,
        http_sessions: Callable[[], int] = lambda: 0,
    ) -> None:
        self.registry = registry
        self.signalling = signalling
        self.clock = clock
        self.http_sessions = http_sessions

    def sessions(self) -> int:
        """Sessions a ``connection`` established (an MSE media socket is none),
        and WHEP/WHIP sessions (each one play or publication)."""
        websocket = sum(session.established for session in self.signalling.sessions.values())
        return websocket + self.http_sessions()

    def streams(self) -> dict[str, int]:
        """By kind: ``vod`` (a play's own), ``vod-live``, ``published`` (here
        or relayed from another worker), ``rendition`` (a resized copy)."""
        kinds = Counter(stream.uri.scheme for stream in self.registry.streams.values())
        kinds["published"] = len(self.registry.published)
        kinds["rendition"] = len(self.registry.renditions)
        return dict(kinds)

    def viewers(self) -> dict[str, int]:
        """By provider: WebRTC, MSE, WHEP, RTMP (pushes) and HLS (players that
        fetched a playlist in the last 30 s)."""
        providers = Counter({"WebRTC": 0, "MSE": 0, "WHEP": 0, "RTMP": 0})
        providers.update(
            media.provider
            for media in self.registry.media.all()
            if not media.published and not media.ended  # an ended push stays listed
        )
        providers["HLS"] = METERS.hls_viewers.count(self.clock.seconds())
        return dict(providers)


def server_metrics(
    registry: StreamRegistry, state: ServerState, worker: str
) -> Deferred[list[Metric]]:
    """Every family of this server: this process's, or with workers each
    worker's (asked now), labelled ``worker``."""
    own = families(METERS, state)
    if not worker:
        return succeed(own)

    def combine(answers: list[Any]) -> list[Metric]:
        groups = [labelled(own, {"worker": _number(worker)})]
        groups += [from_wire(wire, {"worker": _number(other)}) for other, wire in answers]
        return merged(groups)

    return registry.directory.ask_all("metrics", None).addCallback(combine)


def _number(worker_id: str) -> str:
    """A worker's number (``[node/]N.generation`` → ``N``)."""
    return worker_id.rpartition("/")[2].split(".")[0]
