"""Viewers over ICE-TCP without a browser (``testkit/ice_tcp.py``): the fast path
delivers every packet over TCP, and a TCP viewer that never reads costs the
server a bounded amount while the others play on, then is ended."""

from __future__ import annotations

import asyncio
import time

import pytest

from testkit.cheap_viewers import CheapViewer, Counter, packet_rate, watch
from testkit.harness import run
from wcs.webrtc.icetcp import SEND_BUFFER


def rss_kib(pid: int) -> int:
    total = 0
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS:"):
            total = int(line.split()[1])
    return total


def tree_rss(server) -> int:
    """The server's processes' resident memory, KiB (supervisor and workers)."""
    import subprocess

    pids = [server.process.pid] + [
        int(p) for p in subprocess.run(["pgrep", "-P", str(server.process.pid)],
                                       capture_output=True, text=True).stdout.split()]
    return sum(rss_kib(pid) for pid in pids)


async def watching(ws_url: str, name: str, viewers: list[CheapViewer], seconds: float,
                   on_connected=None) -> None:
    counter = Counter()
    stop = asyncio.Event()
    tasks = [asyncio.ensure_future(watch(ws_url, name, counter, stop, timeout=120, viewer=v))
             for v in viewers]
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and not all(v.connected_at for v in viewers):
        await asyncio.sleep(0.1)
    if on_connected is not None:
        await on_connected()
    await asyncio.sleep(seconds)
    stop.set()
    await asyncio.gather(*tasks, return_exceptions=True)
    counter.stop()


def send_buffers(port: int) -> list[int]:
    """The send buffer sizes (bytes) of the server's connections on ``port``."""
    import re
    import subprocess

    shown = subprocess.run(["ss", "-tmnH", "state", "established", f"( sport = :{port} )"],
                           capture_output=True, text=True, timeout=10, check=True).stdout
    return [int(size) for size in re.findall(r"\btb(\d+)", shown)]


def test_tcp_viewers_get_every_packet_of_a_broadcast(start_server, media):
    server = start_server(media_dir=str(media), vod_live_loop="true")
    rate = packet_rate(media / "live.mp4")
    viewers = [CheapViewer(transport="TCP") for _ in range(5)] + [CheapViewer()]
    marks: dict[str, float] = {}

    async def mark() -> None:
        marks["start"] = time.monotonic()
        marks["counted"] = sum(v.rtp for v in viewers[:5])

    run(watching(server.ws_url, "vod-live://live.mp4", viewers, 6.0, mark), timeout=90)
    assert all(v.connected_at for v in viewers), [v.statuses + v.infos for v in viewers]
    assert all(v.statuses[:2] == ["PENDING", "PLAYING"] for v in viewers)
    assert all(len(v.ssrcs) == 2 for v in viewers)  # audio and video
    got = sum(v.rtp for v in viewers[:5]) - marks["counted"]
    expected = rate * 5 * 6.0
    assert got >= 0.9 * expected, (got, expected)


@pytest.mark.heavy  # a flood into a socket nobody reads
def test_a_tcp_viewer_that_never_reads_is_bounded_and_others_play_on(start_server, media):
    """Its socket fills; the server refuses whole packets for it (nothing queues),
    its consent checks go unanswered and its play ends FAILED; meanwhile the
    viewers beside it (TCP and UDP) get every packet."""
    server = start_server(media_dir=str(media), vod_live_loop="true")
    rate = packet_rate(media / "live.mp4")
    deaf = CheapViewer(transport="TCP", deaf=True)
    others = [CheapViewer(transport="TCP"), CheapViewer()]
    samples: list[tuple[float, int, int]] = []

    buffers: list[int] = []

    async def watch_memory() -> None:
        start = time.monotonic()
        counted = sum(v.rtp for v in others)
        for second in range(40):  # ~40 s: past the consent checks' 30 s
            await asyncio.sleep(1.0)
            if second == 5:  # the deaf one's socket is full by now
                buffers.extend(send_buffers(server.ports["ice_tcp_port"]))
            samples.append((time.monotonic() - start, tree_rss(server),
                            sum(v.rtp for v in others) - counted))
            if deaf.statuses[-1:] == ["FAILED"]:
                break

    run(watching(server.ws_url, "vod-live://live.mp4", [deaf, *others], 0.0, watch_memory),
        timeout=180)
    assert deaf.connected_at and all(v.connected_at for v in others)
    assert deaf.statuses[-1] == "FAILED", (deaf.statuses, deaf.infos)
    assert "connection was lost" in deaf.infos[-1], deaf.infos
    seconds, _, got = samples[-1]
    assert got >= 0.9 * rate * len(others) * seconds, (got, rate, seconds)  # others unharmed
    first_rss, last_rss = samples[1][1], max(rss for _, rss, _ in samples)
    assert last_rss - first_rss < 20 * 1024, samples  # nothing queued for it (KiB)
    # nor in the kernel: each ICE-TCP socket's send buffer is capped (ss's skmem "tb")
    assert len(buffers) == 2 and max(buffers) <= 2 * SEND_BUFFER, buffers
    assert "Traceback" not in server.log()
