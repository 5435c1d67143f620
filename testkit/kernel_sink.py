"""Receivers the kernel counts: RTP to a set of UDP ports dropped and counted by
an nftables rule as it comes in, before any socket or process sees it.

On loopback the receivers' delivery (the UDP lookup, the socket queue, waking the
reader, the reader itself) runs on the sending CPU or beside it, so a benchmark's
counting clients cost the server's cores about as much as the sending does. A
viewer whose port is in the set finishes ICE and DTLS as any peer, and its STUN
still reaches its socket (consent checks go on); its RTP and RTCP are counted at
the prerouting hook and dropped there. The counters say packets and bytes as the
kernel saw them: a UDP GSO datagram is one packet of all its segments' bytes (as
a NIC with segmentation offload takes it), so packets are worked out from the
payload bytes by the caller.

Needs ``nft`` and a network namespace of the benchmark's own (it adds a table
there and removes it on :meth:`KernelSink.close`).
"""

from __future__ import annotations

import json
import subprocess

TABLE = "wcsvod_sink"
#: What a UDP packet's headers add to what nftables counts (IPv4 + UDP).
HEADERS = 28

RULES = f"""
table inet {TABLE} {{
  set ports {{ type inet_service; }}
  chain pre {{
    type filter hook prerouting priority raw; policy accept;
    udp dport @ports @th,64,8 & 0xc0 == 0x80 @th,72,8 200-207 counter drop comment "rtcp"
    udp dport @ports @th,64,8 & 0xc0 == 0x80 counter drop comment "rtp"
  }}
}}
"""


class KernelSink:
    """The nftables table: ports added as viewers connect, counters read."""

    def __init__(self) -> None:
        subprocess.run(["nft", "-f", "-"], input=RULES.encode(), check=True)
        self.ports: set[int] = set()

    def add(self, ports: list[int]) -> None:
        """From now on, RTP to these local ports is counted and dropped."""
        fresh = sorted(set(ports) - self.ports)
        if fresh:
            listed = ", ".join(str(port) for port in fresh)
            subprocess.run(
                ["nft", "add", "element", "inet", TABLE, "ports", f"{{ {listed} }}"], check=True
            )
            self.ports.update(fresh)

    def counters(self) -> dict[str, tuple[int, int]]:
        """``{"rtp": (packets, bytes), "rtcp": (...)}`` as counted so far (bytes
        with their IP and UDP headers, one set per packet as the kernel saw it)."""
        listed = subprocess.run(
            ["nft", "-j", "list", "chain", "inet", TABLE, "pre"],
            check=True,
            capture_output=True,
        ).stdout
        found: dict[str, tuple[int, int]] = {}
        for entry in json.loads(listed)["nftables"]:
            rule = entry.get("rule")
            if rule is None:
                continue
            counter = next(e["counter"] for e in rule["expr"] if "counter" in e)
            found[rule["comment"]] = (counter["packets"], counter["bytes"])
        return found

    def payload(self) -> tuple[int, int]:
        """RTP (packets as the kernel saw them, UDP payload bytes) so far."""
        packets, size = self.counters()["rtp"]
        return packets, size - HEADERS * packets

    def close(self) -> None:
        subprocess.run(["nft", "delete", "table", "inet", TABLE], check=False)
