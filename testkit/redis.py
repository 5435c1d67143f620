"""Debian's ``redis-server`` on loopback, in a folder of its own, nothing saved."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from testkit.harness import free_port, wait_for_port


class RedisServer:
    """A real Redis for one test run; :meth:`stop` ends it."""

    def __init__(self) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise AssertionError("redis-server is missing: run scripts/test.sh, which installs it")
        self.port = free_port()
        self.folder = Path(tempfile.mkdtemp(prefix="wcsvod-redis-"))
        self.process = subprocess.Popen(
            [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", str(self.folder), "--loglevel", "warning"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for_port(self.port, time.monotonic() + 10, self.process)
        self.url = f"redis://127.0.0.1:{self.port}/0"

    def flush(self) -> None:
        """Forget everything (between tests that share the server)."""
        subprocess.run(["redis-cli", "-p", str(self.port), "flushall"], check=True,
                       stdout=subprocess.DEVNULL)

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(10)
        shutil.rmtree(self.folder, ignore_errors=True)
