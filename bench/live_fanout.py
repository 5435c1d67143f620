"""One vod-live broadcast fanned out to 1, 10, 50 and 100 aiortc viewers:
server CPU per viewer, RTP packets per second, RSS; then the same with stock
aiortc (bench/stock_server.py: MediaPlayer + MediaRelay) for the ratio.

The viewers are real aiortc peers that receive and count packets but do not
decode (the bench machine's two cores are shared with the server).
Run with ``scripts/bench.sh bench/live_fanout.py``.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import aiortc.rtcrtpreceiver  # noqa: E402

from bench.vod_personal import proc_stat  # noqa: E402
from testkit.harness import (  # noqa: E402
    VENV_BIN,
    ServerProcess,
    free_port,
    require_loopback_only,
    wait_for_port,
)
from testkit.rtc_client import play, run  # noqa: E402
from tools.makemedia import make_mp4  # noqa: E402

COUNTS = (1, 10, 50, 100)
MEASURE = 8.0
packets = 0


class NullDecoder:
    def decode(self, frame):
        return []


def count_packets() -> None:
    """Count every RTP packet the viewers receive; decode nothing."""
    aiortc.rtcrtpreceiver.get_decoder = lambda codec: NullDecoder()
    original = aiortc.rtcrtpreceiver.RTCRtpReceiver._handle_rtp_packet

    async def counting(self, packet, arrival_time_ms):
        global packets
        packets += 1
        return await original(self, packet, arrival_time_ms)

    aiortc.rtcrtpreceiver.RTCRtpReceiver._handle_rtp_packet = counting


async def fan_out(ws_url: str, name: str, viewers: int, pid: int) -> dict:
    stop = asyncio.Event()
    tasks = []
    for index in range(viewers):
        tasks.append(asyncio.ensure_future(play(ws_url, name, timeout=120, read=False,
                                                stop_event=stop)))
        if index % 10 == 9:
            await asyncio.sleep(1.0)  # let handshakes through in batches
    await asyncio.sleep(3.0)
    cpu0, _ = proc_stat(pid)
    packets0, t0 = packets, time.monotonic()
    await asyncio.sleep(MEASURE)
    cpu1, rss = proc_stat(pid)
    packets1, t1 = packets, time.monotonic()
    stop.set()
    results = await asyncio.gather(*tasks)
    playing = sum("PLAYING" in r.statuses for r in results)
    return {"viewers": viewers, "playing": playing, "cpu": (cpu1 - cpu0) / (t1 - t0),
            "pps": (packets1 - packets0) / (t1 - t0), "rss": rss}


def report(title: str, rows: list[dict]) -> None:
    print(title)
    print(f"{'viewers':>8} {'playing':>8} {'server CPU':>11} {'per viewer':>11} "
          f"{'packets/s':>10} {'RSS MiB':>8}")
    for row in rows:
        print(f"{row['viewers']:>8} {row['playing']:>8} {row['cpu'] * 100:>10.1f}% "
              f"{row['cpu'] / row['viewers'] * 100:>10.2f}% {row['pps']:>10.0f} "
              f"{row['rss'] / 2**20:>8.0f}")


def main() -> None:
    require_loopback_only()
    count_packets()
    folder = Path(tempfile.mkdtemp(prefix="wcsvod-fanout-"))
    # Constrained Baseline so that stock aiortc negotiates it without help
    clip = make_mp4(folder / "clip.mp4", seconds=60, profile="baseline", bitrate="500k")
    results = {}
    server = ServerProcess(Path(tempfile.mkdtemp()), {"media_dir": str(folder),
                                                      "vod_live_loop": "true"}).start()
    try:
        results["wcsvod"] = [run(fan_out(server.ws_url, "vod-live://clip.mp4", n,
                                         server.process.pid), timeout=300) for n in COUNTS]
    finally:
        server.stop()
    report("wcsvod (one reader, Opus encoded once, shared fan-out):", results["wcsvod"])

    port = free_port()
    stock = subprocess.Popen([str(VENV_BIN / "python"), "bench/stock_server.py", str(clip),
                              str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for_port(port, time.monotonic() + 20, stock)
        results["stock"] = [run(fan_out(f"ws://127.0.0.1:{port}", "clip", n, stock.pid),
                                timeout=300) for n in COUNTS]
    finally:
        stock.terminate()
        stock.wait(10)
    report("stock aiortc (MediaPlayer + MediaRelay, Opus encoded per viewer):", results["stock"])
    print("CPU per viewer, stock / wcsvod:")
    for ours, theirs in zip(results["wcsvod"], results["stock"]):
        ratio = (theirs["cpu"] / theirs["viewers"]) / (ours["cpu"] / ours["viewers"])
        print(f"{ours['viewers']:>8} viewers: {ratio:.1f}x")


if __name__ == "__main__":
    main()
