"""One vod-live broadcast to many viewers over ICE-TCP and over UDP, side by side:
what the server pays per packet per viewer on each transport.

Every viewer is cheap, so that the server is measured and not the clients: a real
aiortc peer that finishes ICE and DTLS, then reads nothing more through aiortc;
one poller (``testkit/cheap_viewers.py``'s ``Counter``, non-blocking reads every
20 ms) drains every viewer's socket and only counts the SRTP packets (UDP: one
datagram each; TCP: RFC 4571 frames cut from the stream) and hands the rare STUN
consent check to aioice. TCP viewers are ``testkit/ice_tcp_client.py``'s cheap
mode (``transport: "TCP"``, an active TCP candidate to the server's passive one
on ``ice_tcp_port``); UDP viewers play as the SDK does by default.

For each count of viewers, a fresh server for each transport (the order
alternates from one count to the next), viewers arriving 25 a second, 3 s to
settle, then ``MEASURE`` seconds measured. Printed for each: viewers connected,
RTP packets delivered against expected (the file's packet rate × connected viewers
× time), server CPU (the supervisor and its workers, user + kernel), µs of server
CPU per delivered packet per viewer, % of a core per viewer, the kernel's share,
the server's RSS and this client's own CPU (a saturated client would show); then
the TCP/UDP ratio of µs per packet per viewer.

Run with ``scripts/bench.sh bench/ice_tcp_fanout.py [--counts 300,1000]``;
``--smoke`` runs each transport once at its smallest (two viewers, 2 s), for the suite.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.vod_personal import proc_stat, tree_times
from testkit.cheap_viewers import CheapViewer, Counter, packet_rate, watch
from testkit.harness import LOAD_LIMITS, ServerProcess, require_loopback_only, run
from testkit.ice_tcp_client import TcpViewer, play_tcp
from tools.makemedia import make_mp4

#: Seconds measured at each count.
MEASURE = 10.0
#: Seconds between the last viewer connecting and the measure.
SETTLE = 3.0
#: Viewers started per second while a count fills up.
ARRIVALS = 25
#: This benchmark's own process, for its CPU.
SELF = "self"
TRANSPORTS = ("UDP", "TCP")


async def fan_out(
    ws_url: str, name: str, viewers: int, transport: str, pid: int, rate: float
) -> dict:
    counter = Counter()
    stop = asyncio.Event()
    views: list[CheapViewer] = []
    tasks = []
    started = time.monotonic()
    for index in range(viewers):
        if transport == "TCP":
            tcp = TcpViewer()
            views.append(tcp)
            playing = play_tcp(
                ws_url, name, "cheap", counter=counter, timeout=900, stop_event=stop, viewer=tcp
            )
        else:
            udp = CheapViewer()
            views.append(udp)
            playing = watch(ws_url, name, counter, stop, timeout=900, viewer=udp)
        tasks.append(asyncio.ensure_future(playing))
        if index % ARRIVALS == ARRIVALS - 1:
            await asyncio.sleep(1.0)
    for _ in range(600):  # until every viewer has connected or failed, or 60 s
        await asyncio.sleep(0.1)
        if all(v.connected_at or v.statuses[-1:] == ["FAILED"] for v in views):
            break
    joined = time.monotonic() - started
    await asyncio.sleep(SETTLE)
    user0, system0, _ = tree_times(pid)
    me0, _ = proc_stat(SELF)
    counted0, t0 = sum(v.rtp for v in views), time.monotonic()
    await asyncio.sleep(MEASURE)
    user1, system1, rss = tree_times(pid)
    me1, _ = proc_stat(SELF)
    counted1, t1 = sum(v.rtp for v in views), time.monotonic()
    connected = sum(v.connected_at is not None for v in views)
    over_tcp = sum(bool(getattr(v, "over_tcp", False)) for v in views)
    stop.set()
    await asyncio.gather(*tasks, return_exceptions=True)
    counter.stop()
    seconds = t1 - t0
    cpu = (user1 + system1) - (user0 + system0)
    delivered = counted1 - counted0
    return {
        "transport": transport,
        "viewers": viewers,
        "connected": connected,
        "over_tcp": over_tcp,
        "joined": joined,
        "delivered": delivered,
        "expected": rate * connected * seconds,
        "cpu": cpu / seconds,
        "us": cpu * 1e6 / delivered if delivered else float("inf"),
        "kernel": (system1 - system0) / cpu if cpu > 0 else 0.0,
        "rss": rss,
        "client": (me1 - me0) / seconds,
    }


def report(rows: list[dict], header: bool = True) -> None:
    if header:
        print(
            f"{'transport':>9} {'viewers':>7} {'connected':>9} {'join s':>6} {'delivered':>10} "
            f"{'expected':>10} {'deliv %':>7} {'server CPU':>10} {'µs/pkt/viewer':>13} "
            f"{'% core/viewer':>13} {'kernel':>6} {'RSS MiB':>7} {'client CPU':>10}"
        )
    for r in rows:
        share = r["delivered"] / r["expected"] * 100 if r["expected"] else 0.0
        print(
            f"{r['transport']:>9} {r['viewers']:>7} {r['connected']:>9} {r['joined']:>6.1f} "
            f"{r['delivered']:>10} {r['expected']:>10.0f} {share:>6.1f}% "
            f"{r['cpu'] * 100:>9.1f}% {r['us']:>13.2f} {r['cpu'] / r['viewers'] * 100:>13.4f} "
            f"{r['kernel'] * 100:>5.0f}% {r['rss'] / 2**20:>7.0f} {r['client'] * 100:>9.1f}%"
        )
    sys.stdout.flush()


def main() -> None:
    global MEASURE
    parser = argparse.ArgumentParser()
    parser.add_argument("--counts", default="300,1000")
    parser.add_argument("--measure", type=float, default=MEASURE, help="seconds measured")
    parser.add_argument("--smoke", action="store_true", help="once at the smallest setting")
    args = parser.parse_args()
    MEASURE, seconds = args.measure, 60
    if args.smoke:
        args.counts = "2"
        MEASURE, seconds = 2.0, 10
    counts = [int(c) for c in args.counts.split(",") if c]
    require_loopback_only()
    folder = Path(tempfile.mkdtemp(prefix="wcsvod-ice-tcp-"))
    # the 0.5 Mb/s broadcast: 640x360 H.264 at 450 kb/s + AAC (→ Opus)
    clip = make_mp4(folder / "clip.mp4", seconds=seconds, bitrate="450k")
    rate = packet_rate(clip)
    print(
        f"broadcast: {clip.stat().st_size * 8 / seconds / 1e6:.2f} Mb/s, "
        f"{rate:.1f} RTP packets/s per viewer; {MEASURE:.0f} s measured per row"
    )
    settings = {"media_dir": str(folder), "vod_live_loop": "true", **LOAD_LIMITS}
    rows: list[dict] = []
    for turn, count in enumerate(counts):
        for transport in TRANSPORTS if turn % 2 == 0 else TRANSPORTS[::-1]:
            server = ServerProcess(Path(tempfile.mkdtemp()), settings).start()
            try:
                rows.append(
                    run(
                        fan_out(
                            server.ws_url,
                            "vod-live://clip.mp4",
                            count,
                            transport,
                            server.process.pid,
                            rate,
                        ),
                        timeout=900,
                    )
                )
            finally:
                server.stop()
            report(rows[-1:], header=len(rows) == 1)
    print()
    rows.sort(key=lambda r: (r["viewers"], r["transport"] != "UDP"))
    report(rows)
    for row in rows:
        if row["transport"] == "TCP" and row["over_tcp"] != row["connected"]:
            print(f"!! {row['connected'] - row['over_tcp']} TCP viewers did not play over TCP")
    print("µs per packet per viewer, TCP / UDP:")
    for count in counts:
        by = {r["transport"]: r for r in rows if r["viewers"] == count}
        if by["UDP"]["us"] and by["TCP"]["us"] != float("inf"):
            print(f"{count:>8} viewers: {by['TCP']['us'] / by['UDP']['us']:.2f}x")


if __name__ == "__main__":
    main()
