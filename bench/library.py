"""The media library with 10,000 files: how long the console waits for it.

A folder of ``--files`` MP4s (hard links to a few real files of each kind:
plays as is, B-frames, video only, moov at the end, not an MP4, spread over
sub-folders) is served by the real server. Reported, against the server's REST
API (``vod/library``), with the server's CPU:

- cold: the first listing's answer (a scan: names and sizes, no verdicts yet),
  then the time until every file has its verdict, and files checked a second;
- while checking: the time a REST call takes, and the reactor's lag as
  ``/metrics`` shows it (the checks run in the file pool, not on the reactor);
- cached: a listing (page of 100) within the scan's 2 s freshness, one after
  it (answered from the last scan while another runs), and a filtered one;
- after a change (one file touched): the time until its new verdict shows.

Run with ``scripts/bench.sh bench/library.py [--files 10000]`` (``--smoke``: 10 files,
each step once, for the suite).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from prometheus_client.parser import text_string_to_metric_families

from testkit.harness import LOAD_LIMITS, ServerProcess, require_loopback_only
from testkit.procfs import tree_times
from testkit.rest_client import call
from tools.makemedia import make_mp4

TICKS = 100


def cpu_seconds(pid: int) -> float:
    """CPU seconds of the server: the supervisor and its workers."""
    user, system, _rss = tree_times(pid)
    return user + system


def make_folder(top: Path, files: int) -> None:
    kinds = top / ".kinds"
    kinds.mkdir()
    made = [
        make_mp4(kinds / "plain.mp4", seconds=4),
        make_mp4(kinds / "bframes.mp4", seconds=4, profile="high", bframes=3),
        make_mp4(kinds / "video-only.mp4", seconds=4, audio=False),
        make_mp4(kinds / "moov-at-end.mp4", seconds=4, faststart=False),
    ]
    text = kinds / "text.mp4"
    text.write_text("not an mp4\n")
    made.append(text)
    for number in range(files):
        folder = top / f"shelf{number // 500:02d}"
        folder.mkdir(exist_ok=True)
        os.link(made[number % len(made)], folder / f"film{number:05d}.mp4")


def timed(server: ServerProcess, body: dict) -> tuple[float, dict]:
    started = time.perf_counter()
    status, page, _ = call(server.http_url, "/rest-api/vod/library", body, check=False)
    assert status == 200, page
    return (time.perf_counter() - started) * 1000, page


def lag(server: ServerProcess) -> tuple[float, float, float]:
    """The reactor lag histogram's count, sum and count above 50 ms."""
    with urllib.request.urlopen(server.http_url + "/metrics", timeout=10) as answer:
        text = answer.read().decode()
    found = {
        (s.name, s.labels.get("le")): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name.startswith("wcsvod_reactor_lag_seconds")
    }
    count = found[("wcsvod_reactor_lag_seconds_count", None)]
    return (
        count,
        found[("wcsvod_reactor_lag_seconds_sum", None)],
        count - found[("wcsvod_reactor_lag_seconds_bucket", "0.05")],
    )


def percentiles(times: list[float]) -> str:
    times = sorted(times)
    return f"p50 {statistics.median(times):.1f} ms, p95 {times[int(len(times) * 0.95) - 1]:.1f} ms"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--files", type=int, default=10_000)
    parser.add_argument("--smoke", action="store_true", help="once at the smallest setting")
    args = parser.parse_args()
    repeat = 1 if args.smoke else 8
    if args.smoke:
        args.files = 10
    require_loopback_only()
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch)
        media = folder / "media"
        media.mkdir()
        make_folder(media, args.files)
        (folder / "server").mkdir()
        server = ServerProcess(folder / "server", {"media_dir": str(media), **LOAD_LIMITS})
        server.start()
        try:
            cpu0 = cpu_seconds(server.process.pid)
            started = time.perf_counter()
            first_ms, page = timed(server, {"limit": 100})
            print(
                f"{args.files} files; first listing (scan, no verdicts yet): "
                f"{first_ms:.0f} ms, {page['files']} files, {page['checking']} to check"
            )
            rest_ms = []
            lag0 = lag(server)
            while page["checking"]:
                took, _ = timed(server, {"limit": 1, "offset": 0, "contains": "film00000"})
                rest_ms.append(took)
                time.sleep(0.25)
                _, page = timed(server, {"limit": 1})
            cold = time.perf_counter() - started
            cpu = cpu_seconds(server.process.pid) - cpu0
            print(
                f"cold: every verdict after {cold:.1f} s ({args.files / cold:.0f} files/s, "
                f"{cpu / args.files * 1000:.2f} ms of server CPU per file)"
            )
            lag1 = lag(server)
            probes = lag1[0] - lag0[0]
            lagged = (
                f"reactor lag mean {(lag1[1] - lag0[1]) / probes * 1000:.2f} ms, "
                f"{lag1[2] - lag0[2]} of {probes} probes later than 50 ms"
                if probes > 0
                else "no reactor lag probe in that time"  # (a check of a few files is quick)
            )
            print(
                f"while checking: REST call {percentiles(rest_ms)} ({len(rest_ms)} calls); "
                f"{lagged}"
            )
            _, full = timed(server, {"limit": 1000})
            verdicts: dict[str, int] = {}
            for item in full["items"]:
                verdicts[item["verdict"]] = verdicts.get(item["verdict"], 0) + 1
            print(f"verdicts of the first 1000: {verdicts}")
            fresh = [timed(server, {"limit": 100, "offset": 100 * n})[0] for n in range(repeat)]
            print(f"cached page of 100 (fresh scan): {percentiles(fresh)}")
            rescans = []
            for _ in range(repeat):
                time.sleep(2.1)  # stale: this listing scans again
                rescans.append(timed(server, {"limit": 100})[0])
            print(
                f"cached page of 100 when the last scan is stale (answered from it while "
                f"{args.files} files are scanned again): {percentiles(rescans)}"
            )
            filtered = [
                timed(server, {"limit": 100, "contains": f"film0{n}"})[0] for n in range(repeat)
            ]
            print(f"filtered (contains) page: {percentiles(filtered)}")
            touched = next(media.glob("shelf00/film00001.mp4"))
            modified = int(time.time()) + 100
            os.utime(touched, (modified, modified))
            time.sleep(2.1)
            started = time.perf_counter()
            while True:
                _, page = timed(server, {"contains": "shelf00/film00001.mp4"})
                item = page["items"][0]
                if item["modified"] == modified and item["verdict"] != "checking":
                    break
                time.sleep(0.05)
            print(f"a touched file's new verdict after {time.perf_counter() - started:.2f} s")
        finally:
            server.stop()


if __name__ == "__main__":
    main()
