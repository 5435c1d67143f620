"""Test harness: the real server as a ``twistd`` child, a raw WebSocket client,
and the checks that keep network tests on loopback."""

from __future__ import annotations

import base64
import json
import os
import random
import re
import signal
import socket
import struct
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
VENV_BIN = Path(sys.executable).parent
WEBSDK = REPO / "node_modules" / "@flashphoner" / "websdk"
CHROMIUM = Path("/usr/bin/chromium")
#: Caps raised for load runs, whose thousands of viewers all come from 127.0.0.1.
LOAD_LIMITS = {"max_sessions": "100000", "max_sessions_per_address": "100000",
               "ws_message_rate": "100000"}


def own_network_namespace() -> None:
    """Move this process (and all it starts from now on) into a network
    namespace of its own with only ``lo``, up: each parallel test process gets
    its own loopback, so their servers' ports and traffic never meet."""
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    if libc.unshare(0x40000000) != 0:  # CLONE_NEWNET
        error = ctypes.get_errno()
        raise AssertionError(f"unshare(CLONE_NEWNET) failed: {os.strerror(error)}; run the "
                             "tests through scripts/test.sh (as root or in a user namespace)")
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    require_loopback_only()


def require_loopback_only() -> None:
    """Fail (never skip) unless this process sits in a namespace with only ``lo``."""
    names = sorted(name for _index, name in socket.if_nameindex())
    if names != ["lo"]:
        raise AssertionError(
            f"network tests must run in a loopback-only namespace, found {names}; "
            "run them through scripts/test.sh")


# Ports Chromium refuses to connect to (net/base/port_util.cc, kRestrictedPorts)
# from 10000 up: a server given one is unreachable from the browser tests
# ("net::ERR_UNSAFE_PORT"; a CI run drew 10080).
CHROMIUM_UNSAFE = frozenset({10080})


def _below_ephemeral() -> Iterator[int]:
    """Ports under the kernel's ephemeral range, from a random start, each once.

    ``bind(0)`` hands out ephemeral ports: the same one can come back for two
    keys of one server, and any client socket opened before the server binds
    can take it (a full suite's CI run lost a server start that way).
    """
    try:
        low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        low = 32768
    first = 10000
    span = max(low - first, 1000)
    start = random.randrange(span)
    for step in range(span):
        port = first + (start + step) % span
        if port not in CHROMIUM_UNSAFE:
            yield port


_PORTS = _below_ephemeral()


def free_port() -> int:
    """A loopback port nobody listens on, never handed out twice by this process."""
    for port in _PORTS:
        with socket.socket() as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise AssertionError("no free loopback port left below the ephemeral range")


def wait_for_port(port: int, deadline: float, process: subprocess.Popen[bytes],
                  host: str = "127.0.0.1") -> None:
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"{process.args[0]} exited early with code "
                                 f"{process.returncode}")
        try:
            with socket.create_connection((host, port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise AssertionError(f"server did not listen on {port} in time")


def _as_from_a_terminal() -> None:
    """Ctrl-C's SIGINT back to its default for the child. A test run started in
    the background (CI: ``nohup ... &``) ignores SIGINT, and every child would
    inherit that: twistd, seeing it ignored, rightly leaves it so, and a test of
    what Ctrl-C does would send a signal nobody hears."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


class ServerProcess:
    """``twistd -n wcsvod`` with a properties file written for the test."""

    def __init__(self, workdir: Path, settings: Mapping[str, str],
                 wrap: list[str] | None = None) -> None:
        self.workdir = workdir
        self.wrap = wrap or []
        self.ports = {key: free_port()
                      for key in ("ws.port", "wss.port", "http.port", "https.port",
                                  "hls.port", "hls.ssl.port", "ice_tcp_port")}
        values = {
            **{key: str(port) for key, port in self.ports.items()},
            "bind_address": "127.0.0.1",
            "ip": "127.0.0.1",
            "state_dir": str(workdir / "state"),
            **settings,  # otherwise the README's defaults: workers=auto, two on CI
        }
        self.host = values["bind_address"]
        self.config = workdir / "flashphoner.properties"
        self.config.write_text("".join(f"{k}={v}\n" for k, v in values.items()))
        self.log_path = workdir / "server.log"
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def ws_url(self) -> str:
        return f"ws://{self.host}:{self.ports['ws.port']}"

    @property
    def wss_url(self) -> str:
        return f"wss://{self.host}:{self.ports['wss.port']}"

    @property
    def http_url(self) -> str:
        return f"http://{self.host}:{self.ports['http.port']}"

    @property
    def hls_url(self) -> str:
        return f"http://{self.host}:{self.ports['hls.port']}"

    def start(self) -> ServerProcess:
        log = self.log_path.open("wb")
        self.process = subprocess.Popen(
            [*self.wrap, str(VENV_BIN / "twistd"), "-n", "--pidfile=", "wcsvod", "--config",
             str(self.config)],
            cwd=self.workdir, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            preexec_fn=_as_from_a_terminal)
        deadline = time.monotonic() + 20
        try:
            for key in ("ws.port", "http.port"):
                wait_for_port(self.ports[key], deadline, self.process, self.host)
            self._wait_for_workers(deadline)
        except AssertionError as failure:
            raise AssertionError(f"{failure}; its log ends:\n{self.log()[-3000:]}") from None
        return self

    def _wait_for_workers(self, deadline: float) -> None:
        """With workers, until every one runs: the supervisor listens at once,
        its workers a second later, and a test should meet the whole server."""
        blind = time.monotonic() + 3.0  # (a log sent elsewhere, --logfile, says nothing)
        while time.monotonic() < deadline:
            text = self.log_path.read_text(errors="replace")
            found = re.search(r"starting (\d+) worker processes", text)
            if found is None and ("wcsvod running on" in text or
                                  (not text and time.monotonic() > blind)):
                return  # one process
            if found is not None and len(re.findall(r"worker \S+ running \(pid",
                                                    text)) >= int(found[1]):
                return
            if self.process is not None and self.process.poll() is not None:
                raise AssertionError(f"twistd exited early with code {self.process.returncode}")
            time.sleep(0.05)
        raise AssertionError("the workers did not all start in time")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)

    def saw(self, text: str, timeout: float = 10.0) -> bool:
        """Whether ``text`` is in the log within ``timeout`` s (a worker's line
        comes through the supervisor a moment after it is logged)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.log_path.exists() and text in self.log_path.read_text(errors="replace"):
                return True
            time.sleep(0.05)
        return False

    def per_worker(self, text: str) -> dict[str, int]:
        """How many log lines hold ``text``, by the worker that logged them
        ("" for a process alone, or the supervisor)."""
        counts: dict[str, int] = {}
        for line in self.log().splitlines():
            if text in line:
                found = re.search(r"\[worker (\d+)\] ", line)
                worker = found[1] if found else ""
                counts[worker] = counts.get(worker, 0) + 1
        return counts

    def log(self, settle: float = 0.15, most: float = 2.0) -> str:
        """The log so far, once it has not grown for ``settle`` s (``most`` s at
        most): a worker's lines reach the supervisor's log a moment after they
        happen, through a pipe, so what was just done may not be written yet."""
        deadline = time.monotonic() + most
        size = -1
        while time.monotonic() < deadline:
            now = self.log_path.stat().st_size if self.log_path.exists() else 0
            if now == size:
                break
            size = now
            time.sleep(settle)
        return self.log_path.read_text(errors="replace")


def handshake(host: str, port: str, path: str, headers: Mapping[str, str] = {}) -> bytes:
    key = base64.b64encode(os.urandom(16)).decode()
    extra = "".join(f"{name}: {value}\r\n" for name, value in headers.items())
    return (f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
            f"Sec-WebSocket-Version: 13\r\n{extra}\r\n").encode()


def split_url(url: str) -> tuple[str, str, str]:
    host_port = url.split("://", 1)[1].split("/", 1)
    host, port = host_port[0].rsplit(":", 1)
    return host, port, "/" + (host_port[1] if len(host_port) > 1 else "")


def encode_frame(payload: bytes, opcode: int = 1) -> bytes:
    """A masked client frame, as RFC 6455 requires of clients."""
    mask = os.urandom(4)
    header = bytes([0x80 | opcode])
    length = len(payload)
    if length < 126:
        header += bytes([0x80 | length])
    elif length < 65536:
        header += bytes([0x80 | 126]) + struct.pack("!H", length)
    else:
        header += bytes([0x80 | 127]) + struct.pack("!Q", length)
    whole = int.from_bytes(mask * (length // 4 + 1), "big") >> (8 * (4 - length % 4))
    masked = (int.from_bytes(payload, "big") ^ whole).to_bytes(length, "big") if length else b""
    return header + mask + masked


class RawWebSocket:
    """A deliberately minimal client that can send anything, even bad frames."""

    def __init__(self, url: str, timeout: float = 5.0, receive_buffer: int = 0,
                 source: str | None = None, headers: Mapping[str, str] = {}) -> None:
        """``receive_buffer``, if set, shrinks the socket's receive buffer before it
        connects (a client that reads slowly fills it at once); ``source`` is the
        local address to connect from (any of 127/8 is this machine); ``headers``
        are added to the handshake (an ``Origin``, say)."""
        host, port, path = split_url(url)
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if receive_buffer:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
        if source is not None:
            self.sock.bind((source, 0))
        self.sock.settimeout(timeout)
        self.sock.connect((host, int(port)))
        if url.startswith("wss://"):  # the server's own (self-signed) certificate
            import ssl

            context = ssl.create_default_context()
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
            self.sock = context.wrap_socket(self.sock, server_hostname=host)
        self.sock.sendall(handshake(host, port, path, headers))
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = self.sock.recv(4096)
            if not chunk:
                raise ConnectionError("closed during handshake")
            head += chunk
        status = head.split(b"\r\n", 1)[0]
        if b" 101 " not in status:
            raise ConnectionError(f"handshake refused: {status!r}")
        self.buffer = head.split(b"\r\n\r\n", 1)[1]

    def send_frame(self, payload: bytes, opcode: int = 1) -> None:
        self.sock.sendall(encode_frame(payload, opcode))

    def send_json(self, message: str, *data: Any) -> None:
        self.send_frame(json.dumps({"message": message, "data": list(data)}).encode())

    def _read(self, count: int) -> bytes:
        while len(self.buffer) < count:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("connection closed")
            self.buffer += chunk
        out, self.buffer = self.buffer[:count], self.buffer[count:]
        return out

    def receive(self) -> tuple[int, bytes]:
        """The next frame as (opcode, payload); the server never masks."""
        first, second = self._read(2)
        length = second & 0x7F
        if length == 126:
            length = struct.unpack("!H", self._read(2))[0]
        elif length == 127:
            length = struct.unpack("!Q", self._read(8))[0]
        return first & 0x0F, self._read(length)

    def receive_json(self, skip: tuple[str, ...] = ("ping",),
                     timeout: float = 5.0) -> dict[str, Any]:
        """The next text message, skipping server pings (which it answers)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            opcode, payload = self.receive()
            if opcode == 8:
                raise ConnectionError(f"server closed: {payload!r}")
            if opcode != 1:
                continue
            message = json.loads(payload)
            if message.get("message") in skip:
                self.send_json("pong", None)
                continue
            return message
        raise TimeoutError(f"no message but {skip} within {timeout} s")

    def close(self) -> None:
        self.sock.close()


def run(coroutine: Any, timeout: float = 120.0) -> Any:
    """Run ``coroutine`` on an event loop in a thread of its own (Playwright's
    sync API keeps an event loop running in the main thread once a browser is
    up), for at most ``timeout`` seconds.

    Bounded even when the coroutine fails or times out: what it leaves running
    is cancelled and given 10 s, then abandoned with its (daemon) thread, so a
    client that will not stop (an aiortc close waiting on a peer that is gone)
    can never hang the test run; the coroutine's own error is raised.
    """
    import asyncio
    import threading

    outcome: dict[str, Any] = {}

    def main() -> None:
        loop = asyncio.new_event_loop()
        try:
            task = loop.create_task(coroutine)
            done, _ = loop.run_until_complete(asyncio.wait([task], timeout=timeout))
            if task in done:
                error = task.exception()
                outcome["error" if error else "result"] = error or task.result()
            else:
                outcome["error"] = TimeoutError(f"still running after {timeout:g} s")
            left = [each for each in asyncio.all_tasks(loop) if not each.done()]
            for each in left:
                each.cancel()
            if left:
                loop.run_until_complete(asyncio.wait(left, timeout=10))
        except BaseException as error:  # the loop itself broke
            outcome.setdefault("error", error)
        finally:
            outcome["finished"] = True
            loop.close()

    thread = threading.Thread(target=main, daemon=True, name="client-loop")
    thread.start()
    thread.join(timeout + 30)
    if "error" in outcome:
        raise outcome["error"]
    if "result" not in outcome:
        raise TimeoutError(f"the client loop did not stop within {timeout + 30:g} s")
    return outcome["result"]
