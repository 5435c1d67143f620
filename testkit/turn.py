"""Debian's coturn (``turnserver``) on loopback, with ``use-auth-secret``: the TURN
server a viewer behind a UDP-blocking network relays through."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from testkit.harness import free_port, wait_for_port


class TurnServer:
    """A real coturn for one test; :meth:`stop` ends it. It relays between
    loopback addresses (``allow-loopback-peers``), which it refuses by default."""

    def __init__(self, secret: str = "wcsvod-turn-secret-for-tests") -> None:
        binary = shutil.which("turnserver")
        if binary is None:
            raise AssertionError("turnserver is missing: run scripts/test.sh, which installs coturn")
        self.secret = secret
        self.port = free_port()
        relay = free_port()
        self.folder = Path(tempfile.mkdtemp(prefix="wcsvod-coturn-"))
        self.log_path = self.folder / "turn.log"
        self.process = subprocess.Popen(
            [binary, "-n", "--listening-ip=127.0.0.1", "--relay-ip=127.0.0.1",
             f"--listening-port={self.port}", f"--min-port={relay}",
             f"--max-port={relay + 40}", "--use-auth-secret",
             f"--static-auth-secret={secret}", "--realm=wcsvod", "--fingerprint",
             "--no-tls", "--no-dtls", "--no-cli", "--allow-loopback-peers",
             "--no-multicast-peers", f"--pidfile={self.folder / 'turn.pid'}",
             f"--log-file={self.log_path}", "--simple-log", "--verbose"],
            stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        wait_for_port(self.port, time.monotonic() + 15, self.process)

    def url(self, transport: str = "tcp") -> str:
        return f"turn:127.0.0.1:{self.port}?transport={transport}"

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(5)
        shutil.rmtree(self.folder, ignore_errors=True)
