"""Sending each HTTP request of a browser to the worker a test names.

:class:`testkit.workers.Steering` pins a WebSocket, a connection, to a worker
and keeps the others paused until it is answered. An HTTP client such as a
browser's ``fetch`` sends several requests over one kept-alive connection, and
a request that one worker forwards to another (a WHEP ``DELETE`` for a session
the other holds) cannot be answered while that other one is paused.
:class:`RequestSteering` is a loopback relay in front of the server's HTTP port
that asks for ``Connection: close`` on every request (the only bytes it
changes), so the browser opens a connection per request, and connects each one
upstream while only the worker ``plan(method, path)`` names can accept it: the
others are paused only until that worker has accepted (its process holds the
connection's socket, as ``/proc`` shows), and the request itself is served with
every worker running.
"""

from __future__ import annotations

import os
import re
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from testkit.workers import paused, wait_for_workers

#: Most time a worker is given to accept a connection while the others are paused.
ACCEPT_WITHIN = 5.0
_CONNECTION = re.compile(rb"^connection:[^\r\n]*\r\n", re.IGNORECASE | re.MULTILINE)


@dataclass
class Steered:
    method: str
    path: str
    worker: int | None  # the worker that accepted it (None: left to the kernel)
    status: int = 0  # the server's answer, once read


def _socket_inode(server_port: int, client_port: int) -> int:
    """The inode of the server's end of a loopback TCP connection (0 until accepted)."""
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            local, remote = fields[1], fields[2]
            if (int(local.rpartition(":")[2], 16) == server_port
                    and int(remote.rpartition(":")[2], 16) == client_port):
                return int(fields[9])
    return 0


def _holds(pid: int, inode: int) -> bool:
    """Whether process ``pid`` has the socket ``inode`` open."""
    wanted = f"socket:[{inode}]"
    try:
        descriptors = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return False
    for fd in descriptors:
        try:
            if os.readlink(f"/proc/{pid}/fd/{fd}") == wanted:
                return True
        except OSError:
            continue
    return False


class RequestSteering:
    """A relay on a loopback port of its own to the server's HTTP port; each
    request goes over a connection of its own, accepted by worker
    ``plan(method, path)`` (None: whichever the kernel gives it to)."""

    def __init__(self, server, plan: Callable[[str, str], int | None],  # type: ignore[no-untyped-def]
                 port_key: str = "http.port") -> None:
        self.plan = plan
        self.server_port = server.ports[port_key]
        self.pids = wait_for_workers(server)
        self.listener = socket.socket()
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(64)
        self.port = self.listener.getsockname()[1]
        self.steered: list[Steered] = []
        self.errors: list[str] = []
        self._lock = threading.Lock()
        self._closing = False
        threading.Thread(target=self._accept, daemon=True, name="request-steering").start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _accept(self) -> None:
        while not self._closing:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self._relay, args=(client,), daemon=True).start()

    def _relay(self, client: socket.socket) -> None:
        try:
            client.settimeout(10)
            head = b""
            while b"\r\n\r\n" not in head:
                data = client.recv(65536)
                if not data:  # a connection the browser opened ahead and never used
                    client.close()
                    return
                head += data
            header, _, rest = head.partition(b"\r\n\r\n")
            method, path = header.split(b"\r\n", 1)[0].decode("latin-1").split(" ")[:2]
            header = _CONNECTION.sub(b"", header + b"\r\n") + b"Connection: close\r\n"
            with self._lock:  # one connection steered at a time
                number = self.plan(method, path)
                upstream = self._connect(number)
            steered = Steered(method, path, number)
            self.steered.append(steered)
            client.settimeout(None)
            upstream.sendall(header + b"\r\n" + rest)
            threading.Thread(target=_copy, args=(client, upstream), daemon=True).start()
            _copy(upstream, client, steered)
        except Exception as failure:  # the test reads these: nothing is lost silently
            self.errors.append(f"{type(failure).__name__}: {failure}")
            client.close()

    def _connect(self, number: int | None) -> socket.socket:
        """A connection upstream that worker ``number`` has accepted."""
        if number is None:
            return socket.create_connection(("127.0.0.1", self.server_port), timeout=10)
        others = [pid for n, pid in self.pids.items() if n != number]
        with paused(*others):
            upstream = socket.create_connection(("127.0.0.1", self.server_port), timeout=10)
            client_port = upstream.getsockname()[1]
            deadline = time.monotonic() + ACCEPT_WITHIN
            while True:
                inode = _socket_inode(self.server_port, client_port)
                if inode and _holds(self.pids[number], inode):
                    break
                if time.monotonic() > deadline:
                    upstream.close()
                    raise AssertionError(f"worker {number} did not accept a connection "
                                         f"within {ACCEPT_WITHIN} s")
                time.sleep(0.002)
        upstream.settimeout(None)
        return upstream

    def close(self) -> None:
        self._closing = True
        self.listener.close()


def _copy(source: socket.socket, sink: socket.socket, steered: Steered | None = None) -> None:
    try:
        while data := source.recv(65536):
            if steered is not None and not steered.status:
                found = re.match(rb"HTTP/1\.[01] (\d{3})", data)
                steered.status = int(found[1]) if found else -1
            sink.sendall(data)
    except OSError:
        pass
    finally:
        for each in (source, sink):
            try:
                each.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
