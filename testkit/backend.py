"""The operator's backend for REST hooks: a real HTTP server on loopback, in
a thread of the test process, that records every call and answers as the
test says (allow, refuse, rewrite a name, hang, answer too much)."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from testkit.harness import free_port

#: A rule: (method, body) -> (HTTP status, JSON answer or None, seconds to wait first).
Rule = Callable[[str, dict[str, Any]], tuple[int, Any, float]]


def allow_all(method: str, body: dict[str, Any]) -> tuple[int, Any, float]:
    return 200, None, 0.0


class _Server(ThreadingHTTPServer):
    request_queue_size = 1024  # hundreds of hooks may arrive at once
    daemon_threads = True


class Backend:
    """``url`` takes ``<url>/<method>`` POSTs; ``calls`` holds (method, body)."""

    def __init__(self, rule: Rule = allow_all) -> None:
        self.rule = rule
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self._stopping = threading.Event()
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/app"
        backend = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = min(int(self.headers.get("Content-Length") or 0), 1 << 20)
                body = json.loads(self.rfile.read(length) or b"{}")
                method = self.path.rsplit("/", 1)[-1]
                backend.calls.append((method, body))
                status, answer, delay = backend.rule(method, body)
                if delay:  # hang, but never past the test (stop() wakes it)
                    backend._stopping.wait(min(delay, 60.0))
                data = (answer if isinstance(answer, bytes)
                        else json.dumps(answer).encode() if answer is not None else b"")
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except OSError:
                    pass  # the server gave up waiting and closed

            def log_message(self, *args: Any) -> None:
                pass

        self._server = _Server(("127.0.0.1", self.port), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def start(self) -> Backend:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        self._server.shutdown()
        self._server.server_close()

    def bodies(self, method: str) -> list[dict[str, Any]]:
        return [body for name, body in self.calls if name == method]

    def wait_for(self, method: str, count: int = 1, timeout: float = 10.0) -> list[dict]:
        """The bodies of ``method`` once there are ``count`` of them."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = self.bodies(method)
            if len(found) >= count:
                return found
            time.sleep(0.05)
        raise AssertionError(f"backend got {len(self.bodies(method))} {method} calls, "
                             f"not {count}: {[name for name, _ in self.calls]}")
