"""One vod-live broadcast fanned out to 1, 10, 50 and 100 MSE viewers (small
WebSocket clients that count bytes and check every record's framing): server
CPU per viewer, to set beside bench/live_fanout.py's WebRTC figures.

Run with ``scripts/bench.sh bench/mse_fanout.py [--counts 1,10,50,100] [--seconds 10]``;
``--smoke`` runs it once at its smallest (one viewer, 2 s), for the suite.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.live_fanout import MEASURE
from testkit.harness import LOAD_LIMITS, ServerProcess, require_loopback_only, run
from testkit.mse_client import watch
from testkit.procfs import tree_times
from tools.makemedia import make_mp4

COUNTS = "1,10,50,100"


async def fan_out(ws_url: str, viewers: int, pid: int, measure: float = MEASURE) -> dict:
    tasks = []
    length = measure + 3.0 + viewers // 10
    for index in range(viewers):
        tasks.append(
            asyncio.ensure_future(
                watch(ws_url, "vod-live://clip.mp4", seconds=length - index // 10)
            )
        )
        if index % 10 == 9:
            await asyncio.sleep(1.0)
    await asyncio.sleep(2.0)
    user0, system0, _ = tree_times(pid)  # the supervisor and its workers
    t0 = time.monotonic()
    await asyncio.sleep(measure)
    user1, system1, rss = tree_times(pid)
    elapsed = time.monotonic() - t0
    results = await asyncio.gather(*tasks)
    return {
        "viewers": viewers,
        "playing": sum("PLAYING" in r.statuses for r in results),
        "cpu": (user1 + system1 - user0 - system0) / elapsed,
        "rss": rss,
        "mbit": sum(r.bytes for r in results) * 8 / 1e6 / length / viewers,
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--counts", default=COUNTS)
    parser.add_argument("--seconds", type=float, default=MEASURE, help="measured per count")
    parser.add_argument("--smoke", action="store_true", help="once at the smallest setting")
    args = parser.parse_args()
    if args.smoke:
        args.counts, args.seconds = "1", 2.0
    counts = [int(c) for c in args.counts.split(",") if c]
    require_loopback_only()
    folder = Path(tempfile.mkdtemp(prefix="wcsvod-mse-"))
    make_mp4(
        folder / "clip.mp4", seconds=10 if args.smoke else 60, profile="baseline", bitrate="500k"
    )
    server = ServerProcess(
        Path(tempfile.mkdtemp()), {"media_dir": str(folder), "vod_live_loop": "true", **LOAD_LIMITS}
    ).start()
    try:
        rows = [
            run(fan_out(server.ws_url, n, server.process.pid, args.seconds), timeout=300)
            for n in counts
        ]
    finally:
        server.stop()
    print("MSE (H.264 + AAC as stored, one broadcast):")
    print(
        f"{'viewers':>8} {'playing':>8} {'server CPU':>11} {'per viewer':>11} "
        f"{'Mb/s each':>10} {'RSS MiB':>8}"
    )
    for row in rows:
        print(
            f"{row['viewers']:>8} {row['playing']:>8} {row['cpu'] * 100:>10.1f}% "
            f"{row['cpu'] / row['viewers'] * 100:>10.2f}% {row['mbit']:>10.2f} "
            f"{row['rss'] / 2**20:>8.0f}"
        )


if __name__ == "__main__":
    main()
