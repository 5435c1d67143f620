"""A slow link in the test's own network namespace: what the server sends from
one port goes through a rate limit (an HTB class and a 50-packet queue on ``lo``;
``netem`` is not available here), and ``lift`` opens it again."""

from __future__ import annotations

import re
import subprocess

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
    """What the server sends from ``port`` goes through ``rate`` (a 50-packet queue)."""

    def __init__(self, port: int, rate: str = LIMIT) -> None:
        self.port = port
        self.rate = rate

    def __enter__(self) -> Throttle:
        tc("qdisc", "add", "dev", "lo", "root", "handle", "1:", "htb")
        tc("class", "add", "dev", "lo", "parent", "1:", "classid", "1:10", "htb",
           "rate", self.rate, "ceil", self.rate)
        tc("qdisc", "add", "dev", "lo", "parent", "1:10", "handle", "10:", "pfifo", "limit", "50")
        tc("filter", "add", "dev", "lo", "parent", "1:", "protocol", "ip", "prio", "1", "u32",
           "match", "ip", "sport", str(self.port), "0xffff", "flowid", "1:10")
        return self

    def lift(self) -> None:
        tc("filter", "del", "dev", "lo", "parent", "1:", "protocol", "ip", "prio", "1")

    def __exit__(self, *exc: object) -> None:
        subprocess.run(["tc", "qdisc", "del", "dev", "lo", "root"], capture_output=True)
