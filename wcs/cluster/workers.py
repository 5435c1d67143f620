"""Worker processes under one ``twistd wcsvod``: the supervisor's side.

The supervisor binds every listening socket itself and each worker inherits
them: the kernel hands each new connection to whichever worker accepts first,
which is the least busy one (a busy worker comes back to ``accept`` later).
``SO_REUSEPORT`` would instead give each worker a socket of its own and spread
connections by a hash of their addresses, busy or not, and drop the queue of a
worker that dies; with one shared socket nothing queued is lost when a worker is
replaced, and a port below 1024 is bound once.

Each worker also gets one end of a socket pair, on which it asks the
supervisor's :class:`~wcs.cluster.hub.Hub` for the server's names. Its log comes
back as JSON events on its standard output and goes on in the supervisor's log,
marked with the worker. A worker that dies is started again (after a pause that
grows while it keeps dying at once); stopping the supervisor stops them all.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import sys
from collections.abc import Sequence
from dataclasses import dataclass

from twisted.application import service
from twisted.internet import protocol
from twisted.internet.defer import Deferred, DeferredList, succeed
from twisted.internet.interfaces import IReactorCore, IReactorSocket, IReactorTime
from twisted.logger import Logger, eventFromJSON, globalLogPublisher
from twisted.python.failure import Failure

from wcs.cluster.hub import Hub
from wcs.logs import WORKER_KEY, WORKER_PREFIX_KEY, mark_worker

log = Logger()

#: Seconds a stopping worker gets before it is killed.
STOP_GRACE = 10.0
#: Restart pauses (s): the first, and the most it grows to for a worker that
#: keeps dying within ``STEADY`` seconds of its start.
RESTART_FIRST, RESTART_MOST, STEADY = 0.5, 30.0, 10.0
#: Where a worker finds its socket pair to the hub, and the first listener.
HUB_FD, FIRST_LISTENER_FD = 3, 4


@dataclass(frozen=True)
class Listener:
    """A socket workers accept on: its port key, and the address bound; with
    ``first_only``, only worker 1 does (what must be served from one place)."""

    key: str
    host: str
    port: int
    backlog: int
    first_only: bool = False


def bind(listener: Listener) -> socket.socket:
    """Bind and listen now, in the supervisor (so a port in use stops the start)."""
    family = socket.AF_INET6 if ":" in listener.host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((listener.host, listener.port))
    sock.listen(listener.backlog)
    sock.setblocking(False)
    return sock


class Supervisor(service.Service):
    """Runs ``count`` workers, each started as ``command`` plus where its
    descriptors are, and keeps them running until it stops."""

    def __init__(
        self,
        reactor: IReactorCore,
        command: Sequence[str],
        count: int,
        listeners: Sequence[Listener],
        hub: Hub,
        node: str = "",
    ) -> None:
        """``node`` prefixes the workers' ids in a cluster (``node/1.1``)."""
        self.reactor = reactor
        self.node = node
        self.command = list(command)
        self.count = count
        self.listeners = list(listeners)
        self.hub = hub
        self.sockets: dict[str, socket.socket] = {}
        self.workers: dict[int, WorkerProcess] = {}
        self.generation = 0
        self.stopping = False
        self._pauses: dict[int, float] = {}

    def privilegedStartService(self) -> None:
        super().privilegedStartService()
        for listener in self.listeners:
            self.sockets[listener.key] = bind(listener)

    def startService(self) -> None:
        super().startService()
        if not self.sockets:
            self.privilegedStartService()
        log.info("starting {n} worker processes", n=self.count)
        for index in range(1, self.count + 1):
            self.spawn(index)

    def spawn(self, index: int) -> None:
        """Start worker ``index`` with its socket pair and the listeners."""
        if self.stopping:
            return
        self.generation += 1
        worker = (
            f"{self.node}/{index}.{self.generation}" if self.node else f"{index}.{self.generation}"
        )
        ours, theirs = socket.socketpair()
        factory = protocol.ServerFactory()
        factory.protocol = self.hub.protocol
        IReactorSocket(self.reactor).adoptStreamConnection(ours.fileno(), socket.AF_UNIX, factory)
        ours.close()
        fds: dict[int, int | str] = {0: "w", 1: "r", 2: "r", HUB_FD: theirs.fileno()}
        arguments = ["--worker", worker, "--hub-fd", str(HUB_FD)]
        for number, listener in enumerate(self.listeners, FIRST_LISTENER_FD):
            if listener.first_only and index != 1:
                continue
            fds[number] = self.sockets[listener.key].fileno()
            arguments += ["--listen", f"{listener.key}={number}"]
        process = WorkerProcess(self, index, worker)
        self.reactor.spawnProcess(  # type: ignore[attr-defined]
            process, self.command[0], self.command + arguments, env=os.environ.copy(), childFDs=fds
        )
        theirs.close()
        self.workers[index] = process

    def ended(self, process: WorkerProcess, reason: Failure) -> None:
        if self.workers.get(process.index) is process:
            del self.workers[process.index]
        if self.stopping:
            return
        clock: IReactorTime = self.reactor  # type: ignore[assignment]
        lived = clock.seconds() - process.started
        pause = (
            RESTART_FIRST
            if lived > STEADY
            else min(RESTART_MOST, self._pauses.get(process.index, RESTART_FIRST / 2) * 2)
        )
        self._pauses[process.index] = pause
        log.error(
            "worker {worker} (pid {pid}) ended ({reason}); a new one starts in {pause} s",
            worker=process.worker,
            pid=process.pid,
            reason=reason.getErrorMessage(),
            pause=pause,
        )
        clock.callLater(pause, self.spawn, process.index)

    def stopService(self) -> Deferred[list[tuple[bool, None]]] | Deferred[None]:
        """Ask every worker to stop (its viewers hear so); kill those that do not."""
        super().stopService()
        self.stopping = True
        waiting = []
        for process in list(self.workers.values()):
            waiting.append(process.stop())
        for sock in self.sockets.values():
            sock.close()
        self.sockets.clear()
        return DeferredList(waiting) if waiting else succeed(None)


class WorkerProcess(protocol.ProcessProtocol):
    """One worker: its log goes on in ours; its end is reported to the supervisor."""

    def __init__(self, supervisor: Supervisor, index: int, worker: str) -> None:
        self.supervisor = supervisor
        self.index = index
        self.worker = worker
        clock: IReactorTime = supervisor.reactor  # type: ignore[assignment]
        self.started = clock.seconds()
        self.pid: int | None = None
        self._out = b""
        self._finished: list[Deferred[None]] = []
        self.done = False

    def connectionMade(self) -> None:
        self.pid = self.transport.pid  # type: ignore[union-attr]
        self.transport.closeStdin()  # type: ignore[union-attr]
        log.info("worker {worker} started (pid {pid})", worker=self.worker, pid=self.pid)

    def outReceived(self, data: bytes) -> None:
        """JSON log events, each a record separator, the JSON and a newline
        (JSON has none inside): an event is complete at its newline, and goes
        on at once (waiting for the next separator held a lone line back until
        the worker logged again)."""
        self._out += data
        *records, self._out = self._out.split(b"\n")
        for record in records:
            self._relog(record.lstrip(b"\x1e"))

    def _relog(self, record: bytes) -> None:
        if not record.strip():
            return
        try:
            event = eventFromJSON(record.decode("utf-8", "replace"))
        except (ValueError, json.JSONDecodeError):
            self._line(record.decode("utf-8", "replace").strip())
            return
        event["worker"] = self.worker
        _unflattened(event)
        globalLogPublisher(mark_worker(event, self.worker, f"[worker {self.index}] "))

    def errReceived(self, data: bytes) -> None:
        for line in data.decode("utf-8", "replace").splitlines():
            if line.strip():
                self._line(line)

    def _line(self, line: str) -> None:
        """A line the worker wrote that is not a log event (a crash's traceback)."""
        log.warn(
            "[worker {worker}] {line}",
            worker=self.worker,
            line=line,
            **{WORKER_KEY: self.worker, WORKER_PREFIX_KEY: "[worker {worker}] "},
        )

    def processEnded(self, reason: Failure) -> None:
        self.done = True
        if self._out:
            self._relog(self._out)
        for waiting in self._finished:
            waiting.callback(None)
        self.supervisor.ended(self, reason)

    def stop(self) -> Deferred[None]:
        """SIGTERM now, SIGKILL after ``STOP_GRACE``; fires once it has ended."""
        finished: Deferred[None] = Deferred()
        if self.done:
            return succeed(None)
        self._finished.append(finished)
        self._signal(signal.SIGTERM)
        clock: IReactorTime = self.supervisor.reactor  # type: ignore[assignment]
        kill = clock.callLater(STOP_GRACE, self._signal, signal.SIGKILL)
        finished.addBoth(lambda result: kill.cancel() if kill.active() else None)
        return finished

    def _signal(self, number: int) -> None:
        try:
            self.transport.signalProcess(number)  # type: ignore[union-attr]
        except Exception:  # already gone
            pass


def _unflattened(event: dict) -> None:
    """Number fields with a format spec formatted again from their values:
    Twisted's JSON carries each field also pre-formatted through ``!s``, and
    the spec then applied to that string (``{delay:g}`` of 1.0 gave "1.0")."""
    flattened = event.get("log_flattened")
    if not isinstance(flattened, dict):
        return
    for key in list(flattened):
        field, _, rest = key.partition("!")
        conversion, _, spec = rest.partition(":")
        value = event.get(field)
        if (
            spec
            and conversion in ("", "s")
            and isinstance(value, (int, float))
            and not isinstance(value, bool)
        ):
            try:
                flattened[key] = format(value, spec)
            except ValueError:
                pass


def python_command() -> list[str]:
    """How a worker is started: this Python, the worker module."""
    return [sys.executable, "-m", "wcs.worker"]
