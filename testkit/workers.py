"""Choosing which worker accepts a connection, for tests of the cross-worker case.

With ``workers`` above 1 every worker accepts on the same listening socket and
the kernel gives each connection to whichever calls ``accept`` first. A test
that needs a connection on a given worker pauses every other one (``SIGSTOP``)
until that connection has been answered: a paused worker cannot accept, so
the running one does, deterministically. :class:`Steering` does it for a page
in a browser: a loopback TCP relay in front of the server's port that, for its
n-th connection, pauses the workers a plan names; the page's bytes go through
unchanged (it is the test's relay, not the server's).
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import os
import re
import signal
import socket
import threading
import time
from collections.abc import Callable, Iterator

from testkit.rest_client import call


def worker_pids(server) -> dict[int, int]:  # type: ignore[no-untyped-def]
    """Each worker's pid by its number (1, 2, ...), as REST ``cluster/workers`` lists them."""
    status, workers, _ = call(server.http_url, "/rest-api/cluster/workers")
    assert status == 200, workers
    return {int(w["worker"].rpartition("/")[2].split(".")[0]): w["pid"] for w in workers}


def worker_count(server) -> int:  # type: ignore[no-untyped-def]
    """How many workers the server started (1: a process alone)."""
    found = re.search(r"starting (\d+) worker processes", server.log())
    return int(found[1]) if found else 1


def wait_for_workers(server, count: int | None = None,  # type: ignore[no-untyped-def]
                     timeout: float = 20.0) -> dict[int, int]:
    """The workers' pids once ``count`` of them (all, by default) have reported."""
    count = count if count is not None else worker_count(server)
    deadline = time.monotonic() + timeout
    pids: dict[int, int] = {}
    while time.monotonic() < deadline:
        pids = worker_pids(server)
        if len(pids) >= count:
            return pids
        time.sleep(0.2)
    raise AssertionError(f"only workers {sorted(pids)} reported within {timeout} s")


@contextlib.contextmanager
def paused(*pids: int) -> Iterator[None]:
    """Those processes stopped (``SIGSTOP``) for the block, then continued."""
    for pid in pids:
        os.kill(pid, signal.SIGSTOP)
    try:
        yield
    finally:
        for pid in pids:
            os.kill(pid, signal.SIGCONT)


@contextlib.contextmanager
def only(server, number: int) -> Iterator[None]:  # type: ignore[no-untyped-def]
    """Only worker ``number`` can accept connections during the block."""
    others = [pid for n, pid in wait_for_workers(server).items() if n != number]
    with paused(*others):
        yield


def token_worker(token: str) -> int:
    """The number of the worker that gave out an ``authToken`` (``...@N.G``)."""
    return int(token.rpartition("@")[2].rpartition("/")[2].split(".")[0])


class Steering:
    """A relay on a loopback port of its own to the server's ``port``: its
    n-th connection (from 1) reaches the server while only worker
    ``plan(n)`` runs (None: any). Connections are copied through byte for byte."""

    #: Most time a connection's workers stay paused waiting for its first answer.
    HOLD = 5.0

    def __init__(self, server, plan: Callable[[int], int | None], port_key: str = "ws.port"  # type: ignore[no-untyped-def]
                 ) -> None:
        self.server = server
        self.plan = plan
        self.target = ("127.0.0.1", server.ports[port_key])
        self.listener = socket.socket()
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(64)
        self.port = self.listener.getsockname()[1]
        self.count = 0
        self.landed: list[int | None] = []  # the worker each connection was steered to
        self.pids = wait_for_workers(server)
        self._closing = False
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True, name="steering").start()

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    def _accept(self) -> None:
        while not self._closing:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            with self._lock:  # one connection steered at a time
                self.count += 1
                number = self.plan(self.count)
                self.landed.append(number)
                try:
                    upstream = self._connect(client, number)
                except OSError:
                    client.close()
                    continue
            for source, sink in ((client, upstream), (upstream, client)):
                thread = threading.Thread(target=_copy, args=(source, sink), daemon=True)
                thread.start()
                self._threads.append(thread)

    def _connect(self, client: socket.socket, number: int | None) -> socket.socket:
        """Connect upstream while only worker ``number`` can accept (the others
        paused before the connection exists, so none of them can take it from
        the queue); its first bytes (the handshake's answer) say it has."""
        if number is None:
            return socket.create_connection(self.target, timeout=10)
        others = [pid for n, pid in self.pids.items() if n != number]
        with paused(*others):
            upstream = socket.create_connection(self.target, timeout=10)
            client.settimeout(self.HOLD)
            upstream.settimeout(self.HOLD)
            request = client.recv(65536)  # the upgrade request, sent at once by a browser
            upstream.sendall(request)
            answer = upstream.recv(65536)  # answered by the one running worker
            client.sendall(answer)
        client.settimeout(None)
        upstream.settimeout(None)
        return upstream

    def close(self) -> None:
        self._closing = True
        self.listener.close()


def _copy(source: socket.socket, sink: socket.socket) -> None:
    try:
        while data := source.recv(65536):
            sink.sendall(data)
    except OSError:
        pass
    finally:
        for each in (source, sink):
            try:
                each.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


def answered_by(server, path: str, status: int) -> set[str]:  # type: ignore[no-untyped-def]
    """Workers whose access log (``access_log=true``) shows ``path`` answered
    with ``status``."""
    pattern = re.compile(rf"\[worker (\d)\] .*\"POST {re.escape(path)} HTTP/1.1\" {status} ")
    return set(pattern.findall(server.log()))


def on_both(server, path: str, body: object, status: int, tries: int = 10  # type: ignore[no-untyped-def]
            ) -> list[tuple]:
    """The same REST call, 8 at once, until each worker has answered it with
    ``status`` (a busy worker accepts later: calls at once reach both)."""
    answers: list[tuple] = []
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        for _ in range(tries):
            answers += pool.map(lambda _: call(server.http_url, path, body), range(8))
            deadline = time.monotonic() + 1
            while time.monotonic() < deadline:  # the workers' logs reach ours
                if answered_by(server, path, status) == {"1", "2"}:
                    return answers
                time.sleep(0.1)
    raise AssertionError(f"{path}: not answered {status} by both workers")
