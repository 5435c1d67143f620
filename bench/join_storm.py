"""A join storm: 1,000 WebRTC viewers arriving within 10 s at one broadcast.

Each viewer's session and offer are made first (the client's own certificate and
ICE sockets cost it milliseconds a peer, which would otherwise slow the storm);
then the plays go, ``--rate`` a second, and each viewer notes when its
``playStream`` went and when PLAYING came (ICE and DTLS done, on whichever worker
the connection landed). Printed: how many played, time to PLAYING at the 50th,
90th and 99th percentile and the slowest, the server's CPU during the storm, and
what the viewers received in the 5 s after it (packets delivered against expected).

Run with ``scripts/bench.sh bench/join_storm.py [--viewers 1000] [--rate 100]``;
``--smoke`` storms ten viewers.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.live_fanout import SELF
from bench.providers import NAME, start_broadcast
from testkit.cheap_viewers import CheapViewer, Counter, packet_rate, watch
from testkit.harness import LOAD_LIMITS, ServerProcess, require_loopback_only, run
from testkit.procfs import proc_stat, tree_times
from tools.makemedia import make_mp4

AFTER = 5.0


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


async def storm(server: ServerProcess, viewers: int, rate: float, packets: float) -> None:
    assert server.process is not None
    counter = Counter()
    stop = asyncio.Event()
    views = [CheapViewer() for _ in range(viewers)]
    gos = [asyncio.Event() for _ in range(viewers)]
    tasks = []
    for index in range(viewers):  # sessions and offers first, 50 a second
        tasks.append(
            asyncio.ensure_future(
                watch(server.ws_url, NAME, counter, stop, 600, views[index], gos[index])
            )
        )
        if index % 50 == 49:
            await asyncio.sleep(1.0)
    await asyncio.sleep(3.0)
    user0, system0, _ = tree_times(server.process.pid)
    me0, _ = proc_stat(SELF)
    began = time.monotonic()
    for index, go in enumerate(gos):  # the storm
        go.set()
        await asyncio.sleep(max(0.0, began + (index + 1) / rate - time.monotonic()))
    for _ in range(600):
        if all(v.playing_at or "FAILED" in v.statuses for v in views):
            break
        await asyncio.sleep(0.1)
    ended = time.monotonic()
    user1, system1, rss = tree_times(server.process.pid)
    me1, _ = proc_stat(SELF)
    counted0 = sum(v.rtp for v in views)
    await asyncio.sleep(AFTER)
    counted1 = sum(v.rtp for v in views)
    played = [v for v in views if v.playing_at is not None]
    waits = [v.playing_at - v.requested_at for v in played]  # type: ignore[operator]
    failed = [v.infos[-1:] for v in views if "FAILED" in v.statuses]
    stop.set()
    await asyncio.gather(*tasks, return_exceptions=True)
    counter.stop()
    print(
        f"{viewers} viewers, {rate:g} a second: {len(played)} played, {len(failed)} failed"
        + (f" (e.g. {failed[0]})" if failed else "")
    )
    if waits:
        print(
            f"time to PLAYING: p50 {statistics.median(waits):.2f} s, "
            f"p90 {percentile(waits, 0.9):.2f} s, p99 {percentile(waits, 0.99):.2f} s, "
            f"slowest {max(waits):.2f} s"
        )
    storm_seconds = ended - began
    print(
        f"storm: {storm_seconds:.1f} s from the first play to the last PLAYING, server CPU "
        f"{(user1 + system1 - user0 - system0) / storm_seconds * 100:.0f}% of a core "
        f"({(user1 + system1 - user0 - system0) * 1000 / max(1, len(played)):.1f} ms a join), "
        f"RSS {rss / 2**20:.0f} MiB; the viewers' own process "
        f"{(me1 - me0) / storm_seconds * 100:.0f}% of a core"
    )
    expected = packets * len(played) * AFTER
    print(
        f"the {AFTER:g} s after: {(counted1 - counted0) / expected * 100 if expected else 0:.1f}% "
        "of the expected packets delivered"
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--viewers", type=int, default=1000)
    parser.add_argument("--rate", type=float, default=100.0, help="plays a second")
    parser.add_argument("--smoke", action="store_true", help="ten viewers")
    args = parser.parse_args()
    if args.smoke:
        global AFTER
        args.viewers, args.rate, AFTER = 10, 10.0, 1.0
    require_loopback_only()
    folder = Path(tempfile.mkdtemp(prefix="wcsvod-storm-"))
    clip = make_mp4(folder / "clip.mp4", seconds=60, profile="baseline", bitrate="450k")
    server = ServerProcess(
        Path(tempfile.mkdtemp()),
        {"media_dir": str(folder), "vod_live_loop": "true", **LOAD_LIMITS},
    ).start()
    try:
        start_broadcast(server)
        run(storm(server, args.viewers, args.rate, packet_rate(clip)), timeout=900)
    finally:
        server.stop()


if __name__ == "__main__":
    main()
