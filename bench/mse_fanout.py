"""One vod-live broadcast fanned out to 1, 10, 50 and 100 MSE viewers (small
WebSocket clients that count bytes and check every record's framing): server
CPU per viewer, to set beside bench/live_fanout.py's WebRTC figures.

Run with ``scripts/bench.sh bench/mse_fanout.py``.
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.live_fanout import COUNTS, MEASURE  # noqa: E402
from bench.vod_personal import proc_stat  # noqa: E402
from testkit.harness import LOAD_LIMITS, ServerProcess, require_loopback_only, run  # noqa: E402
from testkit.mse_client import watch  # noqa: E402
from tools.makemedia import make_mp4  # noqa: E402


async def fan_out(ws_url: str, viewers: int, pid: int) -> dict:
    tasks = []
    length = MEASURE + 3.0 + viewers // 10
    for index in range(viewers):
        tasks.append(asyncio.ensure_future(watch(ws_url, "vod-live://clip.mp4",
                                                 seconds=length - index // 10)))
        if index % 10 == 9:
            await asyncio.sleep(1.0)
    await asyncio.sleep(2.0)
    cpu0, _ = proc_stat(pid)
    t0 = time.monotonic()
    await asyncio.sleep(MEASURE)
    cpu1, rss = proc_stat(pid)
    elapsed = time.monotonic() - t0
    results = await asyncio.gather(*tasks)
    return {"viewers": viewers, "playing": sum("PLAYING" in r.statuses for r in results),
            "cpu": (cpu1 - cpu0) / elapsed, "rss": rss,
            "mbit": sum(r.bytes for r in results) * 8 / 1e6 / length / viewers}


def main() -> None:
    require_loopback_only()
    folder = Path(tempfile.mkdtemp(prefix="wcsvod-mse-"))
    make_mp4(folder / "clip.mp4", seconds=60, profile="baseline", bitrate="500k")
    server = ServerProcess(Path(tempfile.mkdtemp()), {"media_dir": str(folder),
                                                      "vod_live_loop": "true",
                                                      **LOAD_LIMITS}).start()
    try:
        rows = [run(fan_out(server.ws_url, n, server.process.pid), timeout=300)
                for n in COUNTS]
    finally:
        server.stop()
    print("MSE (H.264 + AAC as stored, one broadcast):")
    print(f"{'viewers':>8} {'playing':>8} {'server CPU':>11} {'per viewer':>11} "
          f"{'Mb/s each':>10} {'RSS MiB':>8}")
    for row in rows:
        print(f"{row['viewers']:>8} {row['playing']:>8} {row['cpu'] * 100:>10.1f}% "
              f"{row['cpu'] / row['viewers'] * 100:>10.2f}% {row['mbit']:>10.2f} "
              f"{row['rss'] / 2**20:>8.0f}")


if __name__ == "__main__":
    main()
