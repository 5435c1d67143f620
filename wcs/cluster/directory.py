"""What a worker's registry asks of the whole server: the :class:`Directory`.

A single process keeps the shared state itself (:class:`LocalDirectory`); a
worker among several asks its supervisor (:mod:`wcs.cluster.hub`). Either way
every answer is a Deferred and the registry never learns which it is.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol, TypeVar

from twisted.internet.defer import Deferred, fail, maybeDeferred, succeed
from twisted.logger import Logger
from twisted.python.failure import Failure

from wcs.cluster.store import Entry, Load, Store
from wcs.errors import ClusterUnavailable, NotFound, WcsError

log = Logger()

T = TypeVar("T")


def answered(asking: Deferred[T]) -> Deferred[T]:
    """A step of the directory, whose failure (the supervisor or Redis not
    answering) is a :class:`ClusterUnavailable` that says so."""

    def unanswered(failure: Failure) -> Failure:
        if failure.check(WcsError):
            return failure
        log.error("the server's names did not answer: {why}", why=failure.getErrorMessage())
        raise ClusterUnavailable(failure.getErrorMessage() or repr(failure.value))

    return asking.addErrback(unanswered)


#: What a worker does when entries end for everyone: ``(entry ids, info)``.
Terminated = Callable[[list[str], str], None]


class Directory(Protocol):
    """The whole server's entries, as one worker (``worker``) sees them."""

    worker: str

    def listen(self, terminated: Terminated) -> None:
        """Call ``terminated`` when entries this worker may serve end for everyone."""

    def live(self, entry: Entry) -> Deferred[Entry]:
        """The running broadcast of ``entry.uri`` (this worker now holds it), or
        ``entry`` itself, which starts it."""

    def claim(self, entry: Entry) -> Deferred[Entry | None]:
        """Add ``entry``, held by this worker; None if its name is taken anywhere."""

    def lookup(self, name: str) -> Deferred[Entry | None]:
        """The shared entry called ``name``."""

    def hold(self, entry_id: str) -> Deferred[Entry | None]:
        """This worker serves the entry too; None if it has just ended."""

    def release(self, entry_id: str) -> None:
        """This worker no longer serves the entry (nothing to wait for)."""

    def report(self, viewers: dict[str, int], load: Load) -> None:
        """This worker's viewers by entry id, and its load (nothing to wait for)."""

    def select(
        self, name: str | None = None, uri: str | None = None, entry_id: str | None = None
    ) -> Deferred[list[Entry]]:
        """VOD entries matching every criterion given (all of them without one)."""

    def terminate(self, entry_ids: list[str], info: str) -> Deferred[list[Entry]]:
        """End entries for everyone; every worker serving one is told ``info``."""

    def stop(self, media_ids: list[str], info: str) -> None:
        """Every worker stops its plays and publications of these ids (nothing to
        wait for: each page hears it)."""

    def loads(self) -> Deferred[list[Load]]:
        """Every worker's last reported load."""

    def secret(self) -> Deferred[str]:
        """The secret the server's relays share."""

    def answer(self, what: str, answerer: Callable[[Any], Any]) -> None:
        """Answer other workers' question ``what`` (JSON in, JSON or a Deferred out)."""

    def ask(self, worker: str, what: str, argument: Any) -> Deferred[Any]:
        """Another worker of this machine's answer; fails with its refusal."""

    def ask_all(self, what: str, argument: Any) -> Deferred[list[Any]]:
        """The answers of every other worker of this machine."""


class LocalDirectory:
    """A :class:`Directory` over a store this process reaches itself: a
    :class:`Store` in memory, or a cluster's
    :class:`~wcs.cluster.redis_store.RedisStore` (whose steps answer later)."""

    def __init__(self, store: Any = None, worker: str = "0") -> None:
        self.store = store if store is not None else Store()
        self.worker = worker

    def listen(self, terminated: Terminated) -> None:
        self.store.listen(self.worker, terminated)

    def live(self, entry: Entry) -> Deferred[Entry]:
        return maybeDeferred(self.store.live, self.worker, entry)

    def claim(self, entry: Entry) -> Deferred[Entry | None]:
        return maybeDeferred(self.store.claim, self.worker, entry)

    def lookup(self, name: str) -> Deferred[Entry | None]:
        return maybeDeferred(self.store.lookup, name)

    def hold(self, entry_id: str) -> Deferred[Entry | None]:
        return maybeDeferred(self.store.hold, self.worker, entry_id)

    def release(self, entry_id: str) -> None:
        _quietly(maybeDeferred(self.store.release, self.worker, entry_id), "release")

    def report(self, viewers: dict[str, int], load: Load) -> None:
        _quietly(maybeDeferred(self.store.report, self.worker, viewers, load), "report")

    def select(
        self, name: str | None = None, uri: str | None = None, entry_id: str | None = None
    ) -> Deferred[list[Entry]]:
        return maybeDeferred(self.store.select, name, uri, entry_id)

    def terminate(self, entry_ids: list[str], info: str) -> Deferred[list[Entry]]:
        return maybeDeferred(self.store.terminate, entry_ids, info)

    def stop(self, media_ids: list[str], info: str) -> None:
        _quietly(maybeDeferred(self.store.stop, media_ids, info), "stop")

    def loads(self) -> Deferred[list[Load]]:
        return maybeDeferred(self.store.loads)

    def secret(self) -> Deferred[str]:
        return maybeDeferred(self.store.secret)

    def answer(self, what: str, answerer: Callable[[Any], Any]) -> None:
        """No other worker asks (a process alone on its machine)."""

    def ask(self, worker: str, what: str, argument: Any) -> Deferred[Any]:
        return fail(NotFound(f"worker {worker} is not one of this machine's"))

    def ask_all(self, what: str, argument: Any) -> Deferred[list[Any]]:
        return succeed([])


def _quietly(done: Deferred[Any], what: str) -> None:
    """A step nobody waits for: a failure is logged, not left unhandled."""
    done.addErrback(
        lambda failure: log.warn(
            "cluster {what} failed: {why}", what=what, why=failure.getErrorMessage()
        )
    )
