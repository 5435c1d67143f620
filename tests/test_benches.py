"""The benchmarks kept runnable: each ``bench/*.py`` imports, and runs once at its
smallest setting (``--smoke``, or its own smallest options) to a clean exit with its
figures printed. Not a measurement: each runs as a test of its own,
beside the rest of the suite; only that they still work is checked."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
#: Every bench module (stock_server.py is the baseline server live_fanout.py starts).
MODULES = sorted(path.stem for path in (ROOT / "bench").glob("*.py") if path.stem != "__init__")

#: bench -> (its arguments for the smallest run, a line its figures print)
SMOKE: dict[str, tuple[list[str], str]] = {
    "abr": (["--smoke"], r"2 viewers: ABR on / off = [\d.]+"),
    "hls_snapshot": (
        ["--smoke"],
        r"snapshots of a running broadcast .*: latency p50 \d+",
    ),
    "hls_vod": (["--smoke"], r"VOD segment / static file: first byte [\d.]+x"),
    "idle_broadcasts": (
        ["--smoke"],
        r"server CPU, \d+ broadcasts nobody watches: [\d.]+ % of a core",
    ),
    "library": (["--smoke"], r"a touched file's new verdict after [\d.]+ s"),
    "live_fanout": (
        ["--smoke"],
        r"µs per packet per viewer, stock / wcsvod:\n +2 viewers: [\d.]+x",
    ),
    "mse_fanout": (["--smoke"], r"\n +1 +1 +[\d.]+% +[\d.]+%"),
    "next_aiortc": (
        ["--smoke"],
        r"aiortc [\d.]+ \(installed\) \(imported: [\d.]+\): contract tests pass",
    ),
    "join_storm": (["--smoke"], r"time to PLAYING: p50 [\d.]+ s, p90 [\d.]+ s, p99 [\d.]+ s"),
    "providers": (
        ["--smoke"],
        r"\n +mse +[\d.]+( \([\d.]+x\))?\n +hls +[\d.]+.*\n +static +[\d.]+.*\n"
        r"(.*\n)*HLS against the same requests of static files: 2: [\d.]+x",
    ),
    "rendition": (["--smoke"], r"rendition 320x180: \d+ frames out"),
    "rtmp_push": (
        ["--pushes", "1", "--seconds", "2", "--plays", "3"],
        r"a hook adds p50 -?[\d.]+ ms",  # (a difference: noise may make it negative)
    ),
    "s3_source": (["--smoke"], r"4MB.mp4 \(\d+ MB\): first frame \d+ ms after playStream"),
    "send_path": (["--smoke"], r"GSO on [\d.]+, off [\d.]+; off / on = [\d.]+x"),
    "soak": (["--smoke"], r"PASS|FAIL"),
    "vod_personal": (["--smoke"], r"counting viewers, audio from the Opus cache: [\d.]+ % of a "
                     r"core \(2 connected, [1-9][\d.]* % of packets\)[\s\S]*"
                     r"RSS playing hour.mp4 +: idle \d+ MiB, peak \d+ MiB"),
    "workers": (["--smoke"], r"\n +2 +[\d.]+% +[\d.]+% +[\d.]+% +[\d.]+%"),
}
#: Longest one bench may take at its smallest.
TIMEOUT = 120


@pytest.mark.parametrize("name", MODULES)
def test_every_bench_imports(name: str):
    """In an interpreter of its own: a bench may pick txaio's asyncio side
    (stock_server.py), which a process that has used its Twisted side refuses."""
    done = subprocess.run([sys.executable, "-c", f"import bench.{name}"], cwd=ROOT,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr[-2000:]


def test_every_bench_has_a_smallest_run():
    assert sorted(SMOKE) == [name for name in MODULES if name != "stock_server"]


#: Benches whose smallest run still takes most of a core for a minute (encoders,
#: crowds of viewers): one at a time among the heavy tests.
HEAVY = {"abr", "live_fanout"}


@pytest.mark.parametrize("name", [
    pytest.param(name, marks=[pytest.mark.heavy] if name in HEAVY else []) for name in sorted(SMOKE)])
def test_every_bench_runs_at_its_smallest(loopback: None, name: str):
    """Each bench exits 0 and prints its figures (most start servers of their own;
    everything is on this loopback-only namespace). Each is a test of its own,
    run beside the rest of the suite."""
    arguments, figures = SMOKE[name]
    started = time.monotonic()
    try:
        done = subprocess.run(
            [sys.executable, f"bench/{name}.py", *arguments],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=TIMEOUT,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        code, output = done.returncode, done.stdout + done.stderr
    except subprocess.TimeoutExpired as expired:
        code, output = -1, f"timed out after {TIMEOUT} s\n{expired.stdout or ''}"
    took = time.monotonic() - started
    assert code == 0 and re.search(figures, output), (
        f"bench/{name}.py: exit {code} in {took:.1f} s\n{output[-3000:]}")
