"""The session caps of one server, counted where every worker's sessions meet.

Each worker accepts WebSocket sessions on its own, but ``max_sessions`` and
``max_sessions_per_address`` are the server's: with several workers the
supervisor keeps one :class:`Admissions` and every worker asks it before it
answers a handshake (over the hub), so 150 sessions from one address leave
exactly ``max_sessions_per_address`` open however the kernel spread them. A
single process asks its own (:class:`LocalAdmission`). Counts are kept by
worker, so a worker that dies gives its sessions back at once.
"""

from __future__ import annotations

from collections import Counter
from typing import Protocol

from twisted.internet.defer import Deferred, succeed

from wcs.errors import LimitReached


class Admissions:
    """Sessions open by worker and client address, against the two caps; and
    slots of other whole-server caps (RTMP pushes running), by worker."""

    def __init__(
        self, max_sessions: int, max_sessions_per_address: int, max_pushes: int = 100
    ) -> None:
        self.max_sessions = max_sessions
        self.max_sessions_per_address = max_sessions_per_address
        self._by_worker: dict[str, Counter[str]] = {}
        self._by_address: Counter[str] = Counter()
        self.total = 0
        #: what each kind of slot is, its key and its cap (the refusal names them)
        self.slots = {"push": ("streams pushed to RTMP", "max_pushes", max_pushes)}
        self._taken: dict[str, Counter[str]] = {}  # by worker: slots by kind
        self._slots: Counter[str] = Counter()

    def take(self, worker: str, kind: str) -> str:
        """One more slot of ``kind`` for ``worker``: "" if the cap allows, else
        the refusal's info."""
        what, key, cap = self.slots[kind]
        if self._slots[kind] >= cap:
            return LimitReached(what, key, cap).info
        self._slots[kind] += 1
        self._taken.setdefault(worker, Counter())[kind] += 1
        return ""

    def give(self, worker: str, kind: str) -> None:
        """A slot ``worker`` took is free again (one it never took: nothing)."""
        mine = self._taken.get(worker)
        if mine is not None and mine[kind] > 0:
            mine[kind] -= 1
            self._slots[kind] -= 1

    def in_use(self, kind: str) -> int:
        return self._slots[kind]

    def enter(self, worker: str, address: str) -> str:
        """Count one more session of ``address`` on ``worker``: "" if it may
        open, else the refusal's info (naming the cap's key)."""
        if self.total >= self.max_sessions:
            return LimitReached(
                "sessions open on this server", "max_sessions", self.max_sessions
            ).info
        if self._by_address[address] >= self.max_sessions_per_address:
            return LimitReached(
                "sessions open from one address",
                "max_sessions_per_address",
                self.max_sessions_per_address,
            ).info
        self._count(worker, address, 1)
        return ""

    def leave(self, worker: str, address: str) -> None:
        """One session of ``address`` on ``worker`` closed (one never counted: nothing)."""
        if self._by_worker.get(worker, Counter())[address] > 0:
            self._count(worker, address, -1)

    def move(self, address: str, source: str, target: str) -> None:
        """A connection of ``address`` went from ``source`` to ``target`` (a media
        socket handed to the worker of its session): still one session."""
        if self._by_worker.get(source, Counter())[address] > 0:
            self._count(source, address, -1)
            self._count(target, address, 1)

    def drop(self, worker: str) -> None:
        """``worker`` is gone, and every session and slot it held with it."""
        self._slots -= self._taken.pop(worker, Counter())
        for address, count in self._by_worker.pop(worker, Counter()).items():
            self._by_address[address] -= count
            self.total -= count
            if self._by_address[address] <= 0:
                del self._by_address[address]

    def open_from(self, address: str) -> int:
        return self._by_address[address]

    def _count(self, worker: str, address: str, step: int) -> None:
        mine = self._by_worker.setdefault(worker, Counter())
        mine[address] += step
        self._by_address[address] += step
        self.total += step
        if mine[address] <= 0:
            del mine[address]
            if not mine:
                del self._by_worker[worker]
        if self._by_address[address] <= 0:
            del self._by_address[address]


class Admission(Protocol):
    """The whole server's session caps, as a front door asks them before it
    answers a WebSocket handshake or a WHEP/WHIP offer."""

    def enter(self, address: str) -> Deferred[str]:
        """ "" if one more session from ``address`` may open, else the refusal's info."""

    def leave(self, address: str) -> None:
        """A session from ``address`` closed."""


class LocalAdmission:
    """A single process's sessions, counted here (the signalling's admission)."""

    def __init__(self, admissions: Admissions) -> None:
        self.admissions = admissions

    def enter(self, address: str) -> Deferred[str]:
        return succeed(self.admissions.enter("", address))

    def leave(self, address: str) -> None:
        self.admissions.leave("", address)

    def take(self, kind: str) -> Deferred[str]:
        return succeed(self.admissions.take("", kind))

    def give(self, kind: str) -> None:
        self.admissions.give("", kind)
