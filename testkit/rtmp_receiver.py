"""A real RTMP server on loopback: ffmpeg listening (``-listen 1``) for one
publisher, copying what it receives, as it arrives, to an FLV file."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

from testkit.harness import free_port


class FfmpegReceiver:
    """``rtmp://127.0.0.1:<port>/<app>/<key>``, received into ``out``."""

    def __init__(self, out: Path, app: str = "live", key: str = "rtmp_show",
                 wait: float = 60.0) -> None:
        self.out = out
        self.app = app
        self.key = key
        self.port = free_port()
        self.wait = wait
        self.process: subprocess.Popen[bytes] | None = None
        self.log_path = out.with_suffix(".log")

    @property
    def url(self) -> str:
        """What a push is given: the server and application (the key is added)."""
        return f"rtmp://127.0.0.1:{self.port}/{self.app}"

    def start(self) -> FfmpegReceiver:
        log = self.log_path.open("wb")
        self.process = subprocess.Popen(
            ["ffmpeg", "-hide_banner", "-nostdin", "-loglevel", "info", "-y",
             "-listen", "1", "-timeout", str(int(self.wait)),
             "-i", f"rtmp://127.0.0.1:{self.port}/{self.app}/{self.key}",
             "-c", "copy", "-f", "flv", "-flush_packets", "1", str(self.out)],
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:  # listening once a probe would connect
            if self.process.poll() is not None:
                raise AssertionError(f"ffmpeg ended at once: {self.log()}")
            with open("/proc/net/tcp") as table:
                if f":{self.port:04X} 00000000:0000 0A" in table.read():
                    return self
            time.sleep(0.05)
        raise AssertionError(f"ffmpeg did not listen on {self.port}: {self.log()}")

    def finished(self, timeout: float = 30.0) -> int:
        """Wait for ffmpeg to end (its publisher gone); its exit code."""
        assert self.process is not None
        return self.process.wait(timeout)

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(5)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
