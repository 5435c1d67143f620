"""A slow link in the test's own network namespace: what the server sends from
one port goes through a rate limit (an HTB class and a 50-packet queue on ``lo``;
``netem`` is not available here), and ``lift`` opens it again."""

from __future__ import annotations

import fcntl
import re
import subprocess
import tempfile
from pathlib import Path
from typing import IO

LIMIT = "500kbit"


def server_udp_port(page) -> int:
    """The server's UDP port for the page's last peer connection (its answer's candidate)."""
    sdp = page.evaluate("window.__remoteSdps[window.__remoteSdps.length - 1]")
    for line in sdp.splitlines():
        found = re.match(r"a=candidate:\S+ 1 udp \d+ 127\.0\.0\.1 (\d+) typ host", line, re.I)
        if found:
            return int(found[1])
    raise AssertionError(f"no UDP candidate on 127.0.0.1 in the answer:\n{sdp}")


def tc(*args: str) -> None:
    subprocess.run(["tc", *args], check=True, capture_output=True, text=True)


class Throttle:
    """What the server sends from each of ``ports`` goes through ``rate`` of its own
    (an HTB class with a 50-packet queue each). One at a time in the namespace (a
    lock file): the root qdisc of ``lo`` is shared; traffic from other ports passes
    HTB unshaped."""

    LOCK = Path(tempfile.gettempdir()) / "wcsvod-throttle.lock"

    def __init__(self, *ports: int, rate: str = LIMIT) -> None:
        self.ports = ports
        self.rate = rate
        self._lock: IO[bytes] | None = None

    def __enter__(self) -> Throttle:
        self._lock = open(self.LOCK, "wb")
        fcntl.flock(self._lock, fcntl.LOCK_EX)
        tc("qdisc", "add", "dev", "lo", "root", "handle", "1:", "htb")
        for index, port in enumerate(self.ports):
            leaf = 10 + index
            tc("class", "add", "dev", "lo", "parent", "1:", "classid", f"1:{leaf}", "htb",
               "rate", self.rate, "ceil", self.rate)
            tc("qdisc", "add", "dev", "lo", "parent", f"1:{leaf}", "handle", f"{leaf}:",
               "pfifo", "limit", "50")
            tc("filter", "add", "dev", "lo", "parent", "1:", "protocol", "ip", "prio", "1",
               "u32", "match", "ip", "sport", str(port), "0xffff", "flowid", f"1:{leaf}")
        return self

    def lift(self) -> None:
        tc("filter", "del", "dev", "lo", "parent", "1:", "protocol", "ip", "prio", "1")

    def __exit__(self, *exc: object) -> None:
        subprocess.run(["tc", "qdisc", "del", "dev", "lo", "root"], capture_output=True)
        if self._lock is not None:
            self._lock.close()  # (and its lock with it)
            self._lock = None
