"""Files as HLS VOD: what a segment costs, against a static file, and what a
thousand files' playlists weigh.

- Per segment: a client asks for every segment of a 2-minute file in turn (each
  made on request from the file's byte ranges), and then for a static file of
  the same size from the web port (``/client/records/``), as many times:
  time to the first byte (p50, p95) and server CPU per request, side by side.
- Playlists: the server's RSS before and after the playlists of N files (hard
  links to one file, so each is indexed on its own), and per playlist.

Run with ``scripts/bench.sh bench/hls_vod.py [--files 1000] [--rounds 3]``;
``--smoke`` runs it at its smallest for the suite.
"""

from __future__ import annotations

import argparse
import http.client
import os
import statistics
import sys
import tempfile
import time
import urllib.parse
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from testkit.harness import LOAD_LIMITS, ServerProcess, require_loopback_only
from testkit.procfs import tree_times
from tools.makemedia import make_mp4


def cpu_seconds(pid: int) -> float:
    user, system, _rss = tree_times(pid)
    return user + system


def get(port: int, path: str) -> tuple[int, float, int]:
    """(status, seconds to the first byte of the body, bytes) of one GET."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    began = time.perf_counter()
    connection.request("GET", path)
    response = connection.getresponse()
    first = response.read(1)
    took = time.perf_counter() - began
    rest = response.read()
    connection.close()
    return response.status, took, len(first) + len(rest)


def measure(port: int, paths: list[str], pid: int) -> dict[str, float]:
    cpu0 = cpu_seconds(pid)
    times, sizes = [], []
    for path in paths:
        status, took, size = get(port, path)
        assert status == 200, (path, status)
        times.append(took)
        sizes.append(size)
    cpu = cpu_seconds(pid) - cpu0
    times.sort()
    return {
        "p50": statistics.median(times) * 1e3,
        "p95": times[min(len(times) - 1, int(len(times) * 0.95))] * 1e3,
        "cpu": cpu * 1e3 / len(paths),
        "size": statistics.mean(sizes),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--files", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--smoke", action="store_true")
    args = parser.parse_args()
    seconds = 120
    if args.smoke:
        args.files, args.rounds, seconds = 20, 1, 20
    require_loopback_only()
    folder = Path(tempfile.mkdtemp(prefix="wcsvod-hls-vod-"))
    clip = make_mp4(folder / "film.mp4", seconds=seconds, profile="high", bframes=2,
                    bitrate="1000k")
    server = ServerProcess(Path(tempfile.mkdtemp()), {"media_dir": str(folder),
                                                      **LOAD_LIMITS}).start()
    pid = server.process.pid
    try:
        hls, web = server.ports["hls.port"], server.ports["http.port"]
        quoted = urllib.parse.quote("vod://film.mp4", safe="")
        status, _took, _size = get(hls, f"/{quoted}/{quoted}.m3u8")
        assert status == 200
        connection = http.client.HTTPConnection("127.0.0.1", hls, timeout=30)
        connection.request("GET", f"/{quoted}/{quoted}.m3u8")
        count = connection.getresponse().read().decode().count("#EXTINF")
        connection.close()
        segments = [f"/{quoted}/{n}.ts" for n in range(count)] * args.rounds
        vod = measure(hls, segments, pid)
        (folder / "static.mp4").write_bytes(os.urandom(int(vod["size"])))
        static = measure(web, ["/client/records/static.mp4"] * len(segments), pid)
        print(f"{seconds} s file, {count} segments of {vod['size'] / 1e6:.2f} MB on average, "
              f"{len(segments)} requests each")
        print(f"{'':24} {'first byte p50 ms':>18} {'p95 ms':>8} {'server CPU ms/request':>22}")
        for title, row in (("HLS VOD segment", vod), ("static file, same size", static)):
            print(f"{title:24} {row['p50']:>18.1f} {row['p95']:>8.1f} {row['cpu']:>22.2f}")
        print(f"VOD segment / static file: first byte {vod['p50'] / static['p50']:.1f}x, "
              f"CPU {vod['cpu'] / max(static['cpu'], 1e-6):.1f}x")
        # playlists of many files: one index each
        links = folder / "many"
        links.mkdir()
        for n in range(args.files):
            os.link(clip, links / f"{n:05d}.mp4")
        rss0 = tree_times(pid)[2]
        began = time.perf_counter()
        for n in range(args.files):
            name = urllib.parse.quote(f"vod://many/{n:05d}.mp4", safe="")
            assert get(hls, f"/{name}/{name}.m3u8")[0] == 200
        took = time.perf_counter() - began
        rss1 = tree_times(pid)[2]
        print(f"{args.files} files' playlists: {took / args.files * 1e3:.1f} ms each; server "
              f"RSS {rss0 / 2**20:.0f} -> {rss1 / 2**20:.0f} MiB "
              f"({(rss1 - rss0) / args.files / 1024:.0f} KiB per file)")
    finally:
        server.stop()


if __name__ == "__main__":
    main()
