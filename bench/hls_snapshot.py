"""HLS and snapshots: what they cost the server, and how long they take.

- HLS first segment: from a player's first playlist request to its answer, for a
  broadcast already running (its packager starts on the request) and for one the
  request itself starts.
- HLS per viewer: server CPU with N players that poll the playlist and fetch each
  new segment (cheap keep-alive clients on asyncio; one of them decodes every
  segment it fetches), against the same number of clients fetching a static file
  of the segments' size from the web port at the same rate, side by side: the
  ratio says how close an HLS viewer is to serving a file.
- LL-HLS per viewer: the same with players that block for each part (the
  playlist's preload hint) and fetch every part, against the HLS viewers.
- Snapshots: REST ``/stream/snapshot`` of a running broadcast, one after another:
  latency p50/p95, and server CPU per snapshot above the broadcast's own.

Run with ``scripts/bench.sh bench/hls_snapshot.py [--viewers 100,400] [--seconds 20]``.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import re
import statistics
import sys
import tempfile
import time
import urllib.parse
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import av

from testkit.harness import LOAD_LIMITS, ServerProcess, require_loopback_only
from testkit.keepalive import KeepAlive
from testkit.procfs import tree_times
from testkit.rest_client import call
from tools.makemedia import make_mp4

TICKS = 100  # clock ticks per second (/proc)


def cpu_seconds(pid: int) -> float:
    """CPU seconds of the server: the supervisor and its workers."""
    user, system, _rss = tree_times(pid)
    return user + system


def hls_path(name: str, file: str | None = None) -> str:
    quoted = urllib.parse.quote(name, safe="")
    return f"/{quoted}/{file or quoted + '.m3u8'}"


async def fetch_new(
    client: KeepAlive, name: str, listed: list[str], fetched: set[str], counts: dict
) -> list[bytes]:
    """Fetch what ``listed`` names that was not fetched yet (on a first look, only
    the last: a player starts near the live edge), counted; what came back whole."""
    if not fetched:
        fetched.update(listed[:-1])
    got_back = []
    for uri in listed:
        if uri not in fetched:
            fetched.add(uri)
            status, data = await client.get(hls_path(name, uri))
            counts["segments"] += 1
            counts["failed"] += status != 200
            if status == 200:
                got_back.append(data)
    return got_back


async def hls_viewer(server, name: str, until: float, check: bool, counts: dict) -> None:
    """Poll the playlist every second; fetch each segment not fetched yet."""
    client = KeepAlive(server.host, server.ports["hls.port"])
    fetched: set[str] = set()
    try:
        while time.monotonic() < until:
            status, body = await client.get(hls_path(name))
            if status == 200:
                listed = [
                    line for line in body.decode().splitlines() if line and not line.startswith("#")
                ]
                for data in await fetch_new(client, name, listed, fetched, counts):
                    if check:
                        with av.open(io.BytesIO(data), format="mpegts") as container:
                            counts["decoded"] += sum(1 for _ in container.decode(video=0))
            await asyncio.sleep(1.0)
    finally:
        client.close()
        counts["bytes"] += client.bytes


HINT = re.compile(r'PRELOAD-HINT:TYPE=PART,URI="(\d+)\.(\d+)\.ts"')
PART_URI = re.compile(r'#EXT-X-PART:.*URI="([\d.]+ts)"')


async def ll_viewer(server, name: str, until: float, check: bool, counts: dict) -> None:
    """A Low-Latency HLS player: a blocking reload for the part the last playlist
    hinted at, then each part not fetched yet (hls.js in lowLatencyMode does this)."""
    client = KeepAlive(server.host, server.ports["hls.port"])
    fetched: set[str] = set()
    query = ""
    decoder = av.CodecContext.create("h264", "r")
    started = False
    try:
        while time.monotonic() < until:
            status, body = await client.get(hls_path(name) + query)
            if status != 200:
                await asyncio.sleep(0.5)
                continue
            text = body.decode()
            for data in await fetch_new(client, name, PART_URI.findall(text), fetched, counts):
                if check:  # parts decode in a row, from a keyframe
                    with av.open(io.BytesIO(data), format="mpegts") as container:
                        for packet in container.demux(video=0):
                            started = started or packet.is_keyframe
                            if packet.size and started:
                                counts["decoded"] += len(decoder.decode(packet))
            hint = HINT.search(text)
            query = f"?_HLS_msn={hint[1]}&_HLS_part={hint[2]}" if hint else ""
    finally:
        client.close()
        counts["bytes"] += client.bytes


async def static_viewer(server, path: str, until: float, every: float, counts: dict) -> None:
    """The same bytes at the same rate from a static file of the web port."""
    client = KeepAlive(server.host, server.ports["http.port"])
    try:
        while time.monotonic() < until:
            await client.get("/client2/flashphoner.js")  # the playlist's request
            status, _ = await client.get(path)
            counts["segments"] += 1
            counts["failed"] += status != 200
            await asyncio.sleep(every)
    finally:
        client.close()
        counts["bytes"] += client.bytes


async def measure(server, make, count: int, seconds: float) -> dict:
    counts = {"segments": 0, "failed": 0, "decoded": 0, "bytes": 0}
    until = time.monotonic() + seconds
    pid = server.process.pid
    before, started = cpu_seconds(pid), time.monotonic()
    await asyncio.gather(*(make(index, until, counts) for index in range(count)))
    elapsed = time.monotonic() - started
    counts["cpu"] = (cpu_seconds(pid) - before) / elapsed  # share of a core
    return counts


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--viewers", default="100,400")
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--snapshots", type=int, default=40)
    parser.add_argument("--rounds", type=int, default=5, help="first-playlist requests of each kind")
    parser.add_argument("--smoke", action="store_true", help="once at the smallest setting")
    args = parser.parse_args()
    if args.smoke:
        args.viewers, args.seconds, args.snapshots, args.rounds = "1", 2.0, 2, 2
    require_loopback_only()
    folder = Path(tempfile.mkdtemp(prefix="wcsvod-hls-"))
    # (the broadcasts loop: a short file serves a short run as well)
    clip = make_mp4(folder / "clip.mp4", seconds=10 if args.smoke else 60, profile="main",
                    bitrate="450k")
    for index in range(args.rounds):
        make_mp4(folder / f"fresh{index}.mp4", seconds=4 if args.smoke else 10, bitrate="450k")
    settings = {"media_dir": str(folder), "vod_live_loop": "true", **LOAD_LIMITS}
    server = ServerProcess(Path(tempfile.mkdtemp()), settings).start()
    try:
        run_all(server, folder, clip, args)
    finally:
        server.stop()


def run_all(server, folder: Path, clip: Path, args) -> None:
    # --- first segment
    hls = f"{server.hls_url}"
    running, fresh = [], []
    for index in range(args.rounds):
        call(
            server.http_url,
            "/rest-api/vod/startup",
            {"uri": "vod-live://clip.mp4", "localStreamName": f"show{index}"},
        )
    time.sleep(3.3)
    import urllib.request

    def first(name: str) -> float:
        started = time.monotonic()
        with urllib.request.urlopen(hls + hls_path(name), timeout=30) as response:
            response.read()
        return time.monotonic() - started

    for index in range(args.rounds):
        running.append(first(f"show{index}"))
        time.sleep(0.37)  # somewhere else in the GOP each time
        fresh.append(first(f"vod-live://fresh{index}.mp4"))
    print(
        f"HLS first playlist (ms), broadcast running: {fmt(running)}; "
        f"started by the request: {fmt(fresh)}"
    )
    for index in range(2, args.rounds):  # two broadcasts stay: less of the server's CPU is theirs
        call(server.http_url, "/rest-api/vod/terminate", {"localStreamName": f"show{index}"})
    for index in range(args.rounds):
        call(
            server.http_url,
            "/rest-api/vod/terminate",
            {"uri": f"vod-live://fresh{index}.mp4"},
            check=False,
        )
    time.sleep(2)

    # --- per viewer, against a static file of a segment's size
    name = "show0"
    status, body = asyncio.run(one_get(server, hls_path(name)))
    segment = [line for line in body.decode().splitlines() if line.endswith(".ts")][-1]
    size = len(asyncio.run(one_get(server, hls_path(name, segment)))[1])
    (folder / "static.mp4").write_bytes(b"\0" * size)
    period = float(
        [line for line in body.decode().splitlines() if line.startswith("#EXTINF")][-1][8:].rstrip(
            ","
        )
    )
    static_path = "/client/records/static.mp4"
    assert asyncio.run(one_get(server, static_path, web=True))[0] == 200
    print(f"segments of {size / 1024:.0f} KiB every {period:.2f} s")
    idle = asyncio.run(
        measure(
            server,
            lambda i, until, c: asyncio.sleep(max(0.0, until - time.monotonic())),
            1,
            args.seconds / 2,
        )
    )["cpu"]
    print(f"server CPU with the broadcasts alone: {idle * 100:.1f}% of a core")
    for count in [int(c) for c in args.viewers.split(",") if c]:
        hls_row = asyncio.run(
            measure(
                server,
                lambda i, until, c: hls_viewer(server, name, until, i == 0, c),
                count,
                args.seconds,
            )
        )
        static_row = asyncio.run(
            measure(
                server,
                lambda i, until, c: static_viewer(server, static_path, until, period, c),
                count,
                args.seconds,
            )
        )
        expected = count * args.seconds / period
        per_hls = (hls_row["cpu"] - idle) / count
        per_static = (static_row["cpu"] - idle) / count
        print(
            f"{count} HLS viewers: {hls_row['segments']} segments of ~{expected:.0f} "
            f"expected ({hls_row['failed']} failed, {hls_row['decoded']} frames decoded "
            f"by the checking viewer), {hls_row['bytes'] / args.seconds * 8 / 1e6:.1f} Mb/s; "
            f"server {hls_row['cpu'] * 100:.1f}% = {per_hls * 100:.3f}% of a core per "
            f"viewer; static file: {static_row['cpu'] * 100:.1f}% = "
            f"{per_static * 100:.3f}% per viewer; ratio HLS/static "
            f"{per_hls / per_static if per_static > 0 else float('nan'):.2f}"
        )
        ll_row = asyncio.run(
            measure(
                server,
                lambda i, until, c: ll_viewer(server, name, until, i == 0, c),
                count,
                args.seconds,
            )
        )
        per_ll = (ll_row["cpu"] - idle) / count
        print(
            f"{count} LL-HLS viewers (blocking reloads, parts): {ll_row['segments']} parts "
            f"of ~{count * args.seconds / 0.5:.0f} expected ({ll_row['failed']} failed, "
            f"{ll_row['decoded']} frames decoded by the checking viewer); server "
            f"{ll_row['cpu'] * 100:.1f}% = {per_ll * 100:.3f}% of a core per viewer; "
            f"ratio LL-HLS/HLS viewer {per_ll / per_hls if per_hls > 0 else float('nan'):.2f}"
        )

    # --- snapshots
    latencies = []
    pid = server.process.pid
    before, started = cpu_seconds(pid), time.monotonic()
    for _ in range(args.snapshots):
        began = time.monotonic()
        status, answer, _ = call(
            server.http_url, "/rest-api/stream/snapshot", {"streamName": "show1"}, check=False
        )
        latencies.append(time.monotonic() - began)
        assert status == 200, answer
    elapsed = time.monotonic() - started
    used = cpu_seconds(pid) - before - idle * elapsed
    print(
        f"snapshots of a running broadcast (640x360): latency {fmt(latencies)}; "
        f"server CPU {used / args.snapshots * 1000:.1f} ms per snapshot"
    )


async def one_get(server, path: str, web: bool = False) -> tuple[int, bytes]:
    client = KeepAlive(server.host, server.ports["http.port" if web else "hls.port"])
    try:
        return await client.get(path)
    finally:
        client.close()


def fmt(values: list[float]) -> str:
    ordered = sorted(values)
    p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
    return (
        f"p50 {statistics.median(ordered) * 1000:.0f}, p95 {p95 * 1000:.0f}, "
        f"max {ordered[-1] * 1000:.0f}"
    )


if __name__ == "__main__":
    main()
