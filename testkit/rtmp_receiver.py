"""A real RTMP server on loopback: ffmpeg listening (``-listen 1``) for one
publisher, copying what it receives, as it arrives, to an FLV file; and an
RTMPS one, stunnel terminating TLS in front of it (ffmpeg cannot listen on
rtmps://, and stunnel in front of an RTMP server is how RTMPS ingest is run)."""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

from testkit.harness import free_port


def wait_listening(process: subprocess.Popen[bytes], port: int,
                   log: Callable[[], str]) -> None:
    """Return once ``process`` listens on ``port`` (TCP, IPv4); fail saying why."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"{process.args[0]} ended at once: {log()}")
        with open("/proc/net/tcp") as table:
            if f":{port:04X} 00000000:0000 0A" in table.read():
                return
        time.sleep(0.05)
    raise AssertionError(f"{process.args[0]} did not listen on {port}: {log()}")


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
        wait_listening(self.process, self.port, self.log)
        return self

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


class TlsFront:
    """``rtmps://127.0.0.1:<port>/<app>``: stunnel with ``cert``/``key`` in front of
    ``receiver`` (started here too)."""

    def __init__(self, receiver: FfmpegReceiver, cert: Path, key: Path) -> None:
        self.receiver = receiver
        self.cert = cert
        self.key = key
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None
        self.log_path = receiver.out.with_suffix(".stunnel.log")

    @property
    def url(self) -> str:
        return f"rtmps://127.0.0.1:{self.port}/{self.receiver.app}"

    def start(self) -> TlsFront:
        stunnel = shutil.which("stunnel4") or shutil.which("stunnel")
        assert stunnel, "stunnel4 is missing: scripts/install.sh --test installs it"
        self.receiver.start()
        config = self.receiver.out.with_suffix(".stunnel.conf")
        config.write_text("foreground = yes\npid =\ndebug = notice\n[rtmps]\n"
                          f"accept = 127.0.0.1:{self.port}\n"
                          f"connect = 127.0.0.1:{self.receiver.port}\n"
                          f"cert = {self.cert}\nkey = {self.key}\n")
        log = self.log_path.open("wb")
        self.process = subprocess.Popen([stunnel, str(config)], stdout=log,
                                        stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        wait_listening(self.process, self.port, self.log)
        return self

    def kill(self) -> None:
        self.receiver.kill()
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(5)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
