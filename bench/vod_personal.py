"""Personal VOD figures: time to first frame in Chromium, CPU per viewer, and
peak RSS for a one-hour file against a one-minute one.

Run with ``scripts/bench.sh bench/vod_personal.py`` (loopback-only namespace);
``--smoke`` runs each part once at its smallest (short files, one run, one viewer).
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from testkit.browser import CHROMIUM_ARGS, STATUS_RECORDER
from testkit.harness import CHROMIUM, WEBSDK, ServerProcess, require_loopback_only
from testkit.pages import open_player
from testkit.procfs import peak_rss, proc_stat, tree_times
from testkit.rtc_client import play, run
from tools.makemedia import concat, make_mp4


def first_frame_times(server: ServerProcess, runs: int) -> list[float]:
    from playwright.sync_api import sync_playwright

    times = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        for _ in range(runs):
            context = browser.new_context()
            context.add_init_script(STATUS_RECORDER)
            page = context.new_page()
            open_player(page, server, "vod://clip.mp4")
            page.wait_for_function("window.__firstFrameAt !== null", timeout=15000)
            times.append(page.evaluate("window.__firstFrameAt - window.__playSent") / 1000)
            page.click("#playBtn")
            page.wait_for_function("window.__statuses.includes('STOPPED')")
            context.close()
        browser.close()
    return times


def cpu_per_viewer(server: ServerProcess, viewers: int, seconds: float) -> float:
    import asyncio

    async def many():
        return await asyncio.gather(
            *(play(server.ws_url, "vod://clip.mp4", stop_after=seconds) for _ in range(viewers))
        )

    pid = server.process.pid
    import threading

    samples = []
    done = threading.Event()

    def measure():
        time.sleep(2.0)  # past negotiation
        start = sum(tree_times(pid)[:2]), time.monotonic()
        time.sleep(seconds - 3.0)
        end = sum(tree_times(pid)[:2]), time.monotonic()
        samples.append((end[0] - start[0]) / (end[1] - start[1]))
        done.set()

    threading.Thread(target=measure, daemon=True).start()
    results = run(many(), timeout=seconds + 60)
    done.wait(10)
    assert all(r.statuses[-1] == "STOPPED" for r in results), [r.statuses for r in results]
    return samples[0] / viewers


def cheap_cost(server: ServerProcess, clip: Path, viewers: int, seconds: float) -> dict:
    """Server CPU per personal play with ``viewers`` counting viewers
    (``testkit/cheap_viewers.py``: they finish ICE and DTLS, then only count
    the encrypted packets), so that the server, not its clients, is measured;
    with the packets delivered against what the file makes in that time."""
    import asyncio

    from testkit.cheap_viewers import CheapViewer, Counter, packet_rate, watch

    rate = packet_rate(clip)

    async def measure() -> dict:
        counter, stop = Counter(), asyncio.Event()
        views = [CheapViewer() for _ in range(viewers)]
        plays = [
            asyncio.ensure_future(watch(server.ws_url, f"vod://{clip.name}", counter, stop, 120, v))
            for v in views
        ]
        for _ in range(300):  # until every play is connected (30 s at most)
            await asyncio.sleep(0.1)
            if all(v.connected_at for v in views):
                break
        await asyncio.sleep(2.0)
        cpu0, counted0, t0 = sum(tree_times(pid)[:2]), sum(v.rtp for v in views), time.monotonic()
        await asyncio.sleep(seconds)
        cpu1, counted1, t1 = sum(tree_times(pid)[:2]), sum(v.rtp for v in views), time.monotonic()
        connected = sum(v.connected_at is not None for v in views)
        stop.set()
        await asyncio.gather(*plays, return_exceptions=True)
        counter.stop()
        return {
            "connected": connected,
            "core": (cpu1 - cpu0) / (t1 - t0) / viewers,
            "delivered": (counted1 - counted0) / (rate * connected * (t1 - t0)) if connected else 0,
        }

    pid = server.process.pid
    return run(measure(), timeout=seconds + 120)


def rss_while_playing(folder: Path, name: str, seconds: float) -> tuple[int, int]:
    server = ServerProcess(Path(tempfile.mkdtemp()), {"media_dir": str(folder)}).start()
    try:
        idle = proc_stat(server.process.pid)[1]
        run(play(server.ws_url, f"vod://{name}", stop_after=seconds), timeout=seconds + 60)
        return idle, peak_rss(server.process.pid)
    finally:
        server.stop()


def main() -> None:
    smoke = "--smoke" in sys.argv[1:]
    runs, counts, play_seconds = (1, (1,), 4.0) if smoke else (10, (1, 10), 12.0)
    # many plays of one file at once: what each costs the server alone
    cheap_counts = (2,) if smoke else (20, 50)
    require_loopback_only()
    folder = Path(tempfile.mkdtemp(prefix="wcsvod-bench-"))
    make_mp4(folder / "clip.mp4", seconds=6 if smoke else 30, profile="main")
    minute = make_mp4(folder / "minute.mp4", seconds=2 if smoke else 60, profile="main")
    concat(minute, 2 if smoke else 60, folder / "hour.mp4")
    print(
        f"files: minute {minute.stat().st_size / 1e6:.1f} MB, "
        f"hour {(folder / 'hour.mp4').stat().st_size / 1e6:.1f} MB"
    )

    server = ServerProcess(
        Path(tempfile.mkdtemp()), {"media_dir": str(folder), "websdk_dir": str(WEBSDK)}
    ).start()
    try:
        times = first_frame_times(server, runs=runs)
        print(
            f"playStream → first decoded frame in Chromium ({runs} runs): "
            f"median {statistics.median(times) * 1000:.0f} ms, "
            f"max {max(times) * 1000:.0f} ms"
        )
    finally:
        server.stop()

    cost: dict[str, dict[int, float]] = {}
    for label, settings in (
        ("audio transcoded at every play", {"vod_audio_cache_size": "0"}),
        ("audio from the Opus cache", {}),
    ):
        server = ServerProcess(
            Path(tempfile.mkdtemp()), {"media_dir": str(folder), **settings}
        ).start()
        try:
            if settings == {}:  # a first play starts the file's one transcoding
                run(play(server.ws_url, "vod://clip.mp4", stop_after=1), timeout=60)
                deadline = time.monotonic() + 60
                while "transcoded once" not in server.log() and time.monotonic() < deadline:
                    time.sleep(0.2)
            cost[label] = {}
            for viewers in counts:
                cores = cpu_per_viewer(server, viewers, seconds=play_seconds)
                cost[label][viewers] = cores
                print(
                    f"CPU per personal viewer with {viewers:>2} viewers, {label} "
                    f"(640x360 30 fps H.264 passthrough): {cores * 100:.2f} % of a core"
                )
            for viewers in cheap_counts if settings == {} else ():
                row = cheap_cost(server, folder / "clip.mp4", viewers, play_seconds)
                print(
                    f"CPU per personal viewer with {viewers:>2} counting viewers, {label}: "
                    f"{row['core'] * 100:.2f} % of a core "
                    f"({row['connected']} connected, {row['delivered'] * 100:.1f} % of packets)"
                )
        finally:
            server.stop()
    before, after = cost.values()
    for viewers in counts:
        print(
            f"per-viewer CPU, transcoding / cache, {viewers:>2} viewers: "
            f"{before[viewers] / after[viewers] if after[viewers] else float('nan'):.1f}x"
        )

    for name in ("minute.mp4", "hour.mp4"):
        idle, peak = rss_while_playing(folder, name, seconds=2 if smoke else 15)
        print(f"RSS playing {name:<10}: idle {idle / 2**20:.0f} MiB, peak {peak / 2**20:.0f} MiB")


if __name__ == "__main__":
    main()
