"""One vod-live broadcast to many WebRTC viewers: what the server pays per viewer.

Most viewers are cheap (``testkit/cheap_viewers.py``): real peers that finish ICE
and DTLS, then only count the encrypted RTP packets they get, all drained by one
poller, so that this 2-core box can drive a thousand of them and still measure
the server rather than itself. Two more viewers decode every frame and check
that the frame numbers (a barcode in the picture) arrive in order at full rate.

For each count it prints: viewers connected, RTP packets delivered against
expected (the file's packet rate × connected viewers × time), server CPU,
µs of server CPU per delivered packet per viewer, % of a core per viewer, RSS,
and the decoding viewers' frame rate (server CPU and RSS: the server process and
its workers, if any). Each engine runs in the same process
of this benchmark, side by side:
- ``wcsvod`` as configured by default;
- ``nogso``: the same server with ``webrtc_udp_gso=false`` (a datagram per packet,
  the engine before UDP GSO), for the ratio;
- ``libsrtp``: the same server with ``webrtc_own_srtp=false`` (every packet
  protected by libsrtp's ``srtp_protect``, the engine before the C loop's own
  AES-GCM), for the ratio;
- ``gro``: the same server, its counting viewers receiving with UDP GRO: on loopback
  the receivers' delivery runs on the sending CPU and is counted as the server's
  (over a network it is not); with GRO a GSO datagram reaches the receiver whole,
  so this row is nearer what the server itself pays;
- ``sink``: the same server, all but one in ``CHECKED`` of its counting viewers
  sunk once connected (``testkit/kernel_sink.py``: an nftables rule counts and
  drops their RTP as it comes in, so neither their sockets nor this process pay
  for it, and a GSO datagram is taken whole, as a NIC with segmentation offload
  would); their packets are their payload bytes at the read viewers' mean size.
  The nearest this box comes to receivers on another machine;
- ``sink40``: ``sink`` with ``webrtc_audio_packet_ms=40``: two 20 ms Opus frames
  a packet, so audio makes half the datagrams (the expected packets counted so);
- ``tcp``: the same server, its counting viewers playing over ICE-TCP
  (``transport: "TCP"``, ``testkit/ice_tcp.py``), each one TCP connection read
  frame by frame by the same poller (the decoding viewers stay on UDP);
- ``whep``: the same server, its counting viewers started by a WHEP POST (and
  ended by a DELETE) instead of the WebSocket: the same broadcast's batch;
- ``wcsvod (aiortc senders)``: the server with ``webrtc_sender=aiortc``, today's
  path of one aiortc sender per viewer, kept for the ratio;
- stock aiortc (``bench/stock_server.py``: MediaPlayer + MediaRelay), up to the
  count it can hold.

Run with ``scripts/bench.sh bench/live_fanout.py [--counts 10,100,300,1000]``;
``--smoke`` runs each engine once at its smallest (two viewers, 2 s), for the suite.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from testkit.cheap_viewers import CheapViewer, Counter, packet_rate, watch, watch_whep
from testkit.harness import (
    LOAD_LIMITS,
    VENV_BIN,
    ServerProcess,
    free_port,
    require_loopback_only,
    run,
    wait_for_port,
)
from testkit.kernel_sink import KernelSink
from testkit.procfs import children, proc_stat, proc_times, tree_times
from tools.makemedia import make_mp4

MEASURE = 10.0
#: What ``--profile`` runs: "py-spy" (Python's stacks) or "perf" (``--perf``).
PROFILER = "py-spy"
#: Viewers started per second while a count fills up.
ARRIVALS = 25
#: Decoding viewers beside the counting ones.
FULL = 2
#: The benchmark's own CPU per process, so a saturated client shows.
SELF = "self"
#: With a kernel sink, one counting viewer in this many reads its packets itself.
CHECKED = 20


def perf_summary(raw: Path, top: int = 30) -> str:
    """``perf report``'s functions by their own share of the workers' samples,
    kernel and user space alike (``--perf``)."""
    done = subprocess.run(
        ["perf", "report", "-i", str(raw), "--no-children", "--sort", "dso,sym", "--stdio",
         "--percent-limit", "0.5", "-g", "none"],
        capture_output=True, text=True, timeout=300,
    )
    rows = [line for line in done.stdout.splitlines() if line.strip() and not line.startswith("#")]
    summary = "\n".join(rows[:top]) or done.stderr[-2000:]
    delivery = loopback_delivery(raw)
    if delivery is not None:
        summary += (f"\nloopback delivery (the receivers' kernel side, which lo runs in the"
                    f" sender's context): {delivery:.1f} % of the workers' samples")
    return summary


#: Where the kernel's receive side begins: loopback's transmit queues the packet
#: to the backlog and the softirq that delivers it to the receiver's socket runs
#: as the sender's bottom half (on a NIC, the receivers' machines pay it).
DELIVERY = ("net_rx_action",)


def loopback_delivery(raw: Path) -> float | None:
    """The share of the workers' samples inside the loopback receive path
    (``perf report --children``), so the server's own cost can be told from
    the receivers' that loopback charges to it."""
    done = subprocess.run(
        ["perf", "report", "-i", str(raw), "--children", "--sort", "sym", "--stdio", "-g", "none"],
        capture_output=True, text=True, timeout=300,
    )
    for line in done.stdout.splitlines():
        fields = line.split()
        if len(fields) >= 4 and fields[-1] in DELIVERY and fields[0].endswith("%"):
            return float(fields[0].rstrip("%"))
    return None


def profile_summary(raw: Path, top: int = 25) -> str:
    """py-spy's raw stacks as the functions that took the server's time: by
    their own time (the leaf of a stack) and by time inside them (inclusive)."""
    own: dict[str, int] = {}
    inside: dict[str, int] = {}
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        frames = [
            f.split(" (")[0] + " (" + f.split(" (")[-1].split(":")[0].rsplit("/", 1)[-1]
            for f in stack.split(";")
        ]
        total += int(count)
        own[frames[-1]] = own.get(frames[-1], 0) + int(count)
        for frame in set(frames):
            inside[frame] = inside.get(frame, 0) + int(count)
    lines = [f"{total} samples"]
    for title, table in (("own time", own), ("time inside", inside)):
        lines.append(f"  by {title}:")
        for frame, count in sorted(table.items(), key=lambda kv: -kv[1])[:top]:
            lines.append(f"    {count * 100 / total:5.1f}%  {frame}")
    return "\n".join(lines)


@dataclass(frozen=True)
class Plan:
    """One measurement: ``viewers`` counting viewers of ``name`` on the server at
    ``ws_url`` (process ``pid``, whose broadcast makes ``rate`` packets a second
    a viewer), how they connect, and where a profile goes."""

    ws_url: str
    name: str
    viewers: int
    pid: int
    rate: float
    profile: Path | None = None
    transport: str = "UDP"
    http_url: str = ""
    gro: bool = False
    sink: bool = False


async def fan_out(
    ws_url: str, name: str, viewers: int, pid: int, rate: float, **options: Any
) -> dict:
    """Measure ``viewers`` counting viewers (``options``: :class:`Plan`'s)."""
    plan = Plan(ws_url, name, viewers, pid, rate, **options)
    kernel = KernelSink() if plan.sink else None
    full: list[asyncio.subprocess.Process] = []  # the decoding viewers
    try:
        return await _fan_out(plan, kernel, full)
    finally:
        for process in full:  # (they play until told: none is left behind by a failure)
            if process.returncode is None:
                process.kill()
        if kernel is not None:
            kernel.close()


async def _fan_out(
    plan: Plan, kernel: KernelSink | None, full: list[asyncio.subprocess.Process]
) -> dict:
    ws_url, name, viewers, pid, rate = plan.ws_url, plan.name, plan.viewers, plan.pid, plan.rate
    profile, transport, http_url, gro = plan.profile, plan.transport, plan.http_url, plan.gro
    counter = Counter(kernel)
    stop = asyncio.Event()
    # with a kernel sink, all but every CHECKED-th counting viewer are sunk
    views = [
        CheapViewer(transport=transport, gro=gro, sunk=kernel is not None and i % CHECKED != 0)
        for i in range(viewers)
    ]
    checked = [v for v in views if not v.sunk]
    # the decoding viewers run in processes of their own (this one is busy counting),
    # from before the crowd comes until the measurement is over
    full.extend(
        [
            await asyncio.create_subprocess_exec(
                str(VENV_BIN / "python"),
                "-m",
                "testkit.full_viewer",
                ws_url,
                name,
                "0",
                stdout=asyncio.subprocess.PIPE,
            )
            for _ in range(FULL)
        ]
    )
    for process in full:
        assert process.stdout is not None
        try:
            await asyncio.wait_for(process.stdout.readline(), 60)
        except TimeoutError:
            pass
    cheap = []
    started = time.monotonic()
    for index, view in enumerate(views):
        cheap.append(
            asyncio.ensure_future(
                watch_whep(http_url, name, counter, stop, timeout=600, viewer=view)
                if transport == "WHEP"
                else watch(ws_url, name, counter, stop, timeout=600, viewer=view)
            )
        )
        if index % ARRIVALS == ARRIVALS - 1:
            await asyncio.sleep(1.0)
    for _ in range(600):  # until every viewer has connected, or 60 s after the last came
        await asyncio.sleep(0.1)
        if all(v.connected_at or v.statuses[-1:] == ["FAILED"] for v in views):
            break
    joined = time.monotonic() - started
    await asyncio.sleep(3.0)
    user0, system0, _ = tree_times(pid)
    own0 = sum(proc_times(pid)[:2])
    workers0 = _workers(pid)
    me0, _ = proc_stat(SELF)
    counted0 = sum(v.rtp for v in checked)
    checked_bytes0 = sum(v.rtp_bytes for v in checked)
    sunk0 = kernel.payload() if kernel is not None else (0, 0)
    t0 = time.monotonic()
    spy = None
    if profile is not None and PROFILER == "perf":  # the kernel's share too, by function
        spy = subprocess.Popen(
            ["perf", "record", "-F", "499", "-g", "-o", str(profile),
             "-p", ",".join(str(worker) for worker in workers0), "--", "sleep", str(MEASURE)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
    elif profile is not None:
        spy = subprocess.Popen(
            [
                str(VENV_BIN / "py-spy"),
                "record",
                "--format",
                "raw",
                "--nonblocking",
                "--subprocesses",  # the workers, where the viewers are
                "--rate",
                "200",
                "--duration",
                str(int(MEASURE)),
                "--pid",
                str(pid),
                "--output",
                str(profile),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
    await asyncio.sleep(MEASURE)
    user1, system1, rss = tree_times(pid)
    own1 = sum(proc_times(pid)[:2])
    workers1 = _workers(pid)
    me1, _ = proc_stat(SELF)
    counted1 = sum(v.rtp for v in checked)
    checked_bytes1 = sum(v.rtp_bytes for v in checked)
    sunk1 = kernel.payload() if kernel is not None else (0, 0)
    t1 = time.monotonic()
    connected = sum(v.connected_at is not None for v in views)
    reading = sum(v.connected_at is not None for v in checked)
    stop.set()
    for process in full:
        if process.returncode is None:
            process.terminate()  # (it stops its play and says what it decoded)
    await asyncio.gather(*cheap, return_exceptions=True)
    decoded = [json.loads((await process.communicate())[0] or b"{}") for process in full]
    counter.stop()
    if spy is not None:
        spy.wait(30)
    seconds = t1 - t0
    cpu0, cpu1 = user0 + system0, user1 + system1
    delivered = counted1 - counted0
    sunk_bytes = sunk1[1] - sunk0[1]
    if sunk_bytes:  # the sunk viewers' packets: their bytes at the checked ones' size
        size = (checked_bytes1 - checked_bytes0) / delivered if delivered else 0
        delivered += round(sunk_bytes / size) if size else 0
    expected = rate * connected * seconds
    fps = [_window_fps(r, t0, t1) for r in decoded]
    in_order = all(_in_order(r) for r in decoded)
    return {
        "viewers": viewers,
        "connected": connected,
        "joined": joined,
        "delivered": delivered / expected if expected else 0.0,
        "cpu": (cpu1 - cpu0) / seconds,
        "client": (me1 - me0) / seconds,
        "own": (own1 - own0) / seconds,
        # each worker's share of a core, busiest first (a saturated one shows)
        "workers": sorted(
            ((workers1[w] - workers0[w]) / seconds for w in workers1 if w in workers0),
            reverse=True,
        ),
        "kernel": (system1 - system0) / (cpu1 - cpu0) if cpu1 > cpu0 else 0.0,
        "us": (cpu1 - cpu0) * 1e6 / delivered if delivered else float("inf"),
        "rss": rss,
        "fps": min(fps) if fps else 0.0,
        "in_order": in_order,
        # the checked viewers' own share of what they should have had
        "checked": (counted1 - counted0) / (rate * reading * seconds) if reading else 0.0,
    }


def _workers(pid: int) -> dict[int, float]:
    """CPU seconds of each of the server's workers (its child processes)."""
    found = {}
    for child in children(pid):
        try:
            found[child] = sum(proc_times(child)[:2])
        except (FileNotFoundError, ProcessLookupError):
            continue
    return found


def _window_fps(received: dict, t0: float, t1: float) -> float:
    times = [row[0] for row in received.get("video", []) if t0 <= row[0] <= t1]
    return len(times) / (t1 - t0) if times else 0.0


def _in_order(received: dict) -> bool:
    numbers = received.get("numbers", [])
    return bool(numbers) and all(b == a + 1 or b == 0 for a, b in itertools.pairwise(numbers))


def report(title: str, rows: list[dict]) -> None:
    print(title)
    print(
        f"{'viewers':>8} {'connected':>9} {'join s':>7} {'delivered':>9} {'server CPU':>10} "
        f"{'µs/pkt/viewer':>13} {'% core/viewer':>13} {'RSS MiB':>8} {'full fps':>8} "
        f"{'in order':>8} {'kernel':>6} {'client CPU':>10} {'read ones':>9} workers"
    )
    for r in rows:
        print(
            f"{r['viewers']:>8} {r['connected']:>9} {r['joined']:>7.1f} "
            f"{r['delivered'] * 100:>8.1f}% {r['cpu'] * 100:>9.1f}% {r['us']:>13.1f} "
            f"{r['cpu'] / r['viewers'] * 100:>13.3f} {r['rss'] / 2**20:>8.0f} "
            f"{r['fps']:>8.1f} {r['in_order']!s:>8} {r['kernel'] * 100:>5.0f}% "
            f"{r['client'] * 100:>9.1f}% {r['checked'] * 100:>8.1f}% "
            + "/".join(f"{w * 100:.0f}%" for w in r["workers"])
        )
    sys.stdout.flush()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--counts", default="10,100,300,1000")
    parser.add_argument(
        "--aiortc-counts",
        default="10,100,300,600",
        help="counts for today's aiortc senders (they saturate early)",
    )
    parser.add_argument("--stock-counts", default="10,100,300")
    parser.add_argument(
        "--engines", default="wcsvod,nogso,libsrtp,gro,sink,tcp,whep,aiortc,stock"
    )
    parser.add_argument("--nogso-counts", default="300,1000", help="counts for nogso")
    parser.add_argument("--libsrtp-counts", default="300,1000", help="counts for libsrtp")
    parser.add_argument("--gro-counts", default="300,1000", help="counts for gro")
    parser.add_argument("--sink-counts", default="300,1000,2000", help="counts for sink")
    parser.add_argument("--tcp-counts", default="300,1000", help="counts for TCP viewers")
    parser.add_argument("--whep-counts", default="300,1000", help="counts for WHEP viewers")
    parser.add_argument(
        "--profile",
        type=int,
        default=0,
        help="profile the server (py-spy) at this count of viewers",
    )
    parser.add_argument(
        "--perf",
        action="store_true",
        help="with --profile: Linux perf on the workers (kernel included), not py-spy",
    )
    parser.add_argument("--smoke", action="store_true", help="once at the smallest setting")
    args = parser.parse_args()
    seconds = 60
    if args.perf:
        global PROFILER
        PROFILER = "perf"
    if args.smoke:
        global MEASURE, FULL
        args.counts = args.aiortc_counts = args.stock_counts = "2"
        args.tcp_counts = args.whep_counts = args.nogso_counts = args.gro_counts = "2"
        args.sink_counts = "2"
        args.libsrtp_counts = "2"
        MEASURE, FULL, seconds = 2.0, 1, 10  # one decoding viewer shows it still decodes
    counts = [int(c) for c in args.counts.split(",") if c]
    stock_counts = [int(c) for c in args.stock_counts.split(",") if c]
    engines = args.engines.split(",")
    require_loopback_only()
    folder = Path(tempfile.mkdtemp(prefix="wcsvod-fanout-"))
    # 640x360 H.264 at 450 kb/s + AAC (→ Opus): the 0.5 Mb/s broadcast.
    # Constrained Baseline so that stock aiortc negotiates it without help.
    clip = make_mp4(
        folder / "clip.mp4", seconds=seconds, profile="baseline", bitrate="450k", barcode=True
    )
    rate = packet_rate(clip)
    print(
        f"broadcast: {clip.stat().st_size * 8 / seconds / 1e6:.2f} Mb/s, "
        f"{rate:.1f} RTP packets/s per viewer"
    )
    results: dict[str, list[dict]] = {}
    servers: dict[str, dict[str, str]] = {
        "wcsvod": {},
        "nogso": {"webrtc_udp_gso": "false"},
        "libsrtp": {"webrtc_own_srtp": "false"},
        "gro": {},
        "sink": {},
        # sunk viewers again, with two 20 ms Opus frames joined a packet
        "sink40": {"webrtc_audio_packet_ms": "40"},
        "tcp": {},
        "whep": {},
        "aiortc": {"webrtc_sender": "aiortc"},
    }
    engine_counts = {
        "wcsvod": counts,
        "nogso": [int(c) for c in args.nogso_counts.split(",") if c],
        "libsrtp": [int(c) for c in args.libsrtp_counts.split(",") if c],
        "gro": [int(c) for c in args.gro_counts.split(",") if c],
        "sink": [int(c) for c in args.sink_counts.split(",") if c],
        "sink40": [int(c) for c in args.sink_counts.split(",") if c],
        "tcp": [int(c) for c in args.tcp_counts.split(",") if c],
        "whep": [int(c) for c in args.whep_counts.split(",") if c],
        "aiortc": [int(c) for c in args.aiortc_counts.split(",") if c],
    }
    # a measurement starts a server of its own; the smoke run (which only shows the
    # bench still works) lets the engines with the same settings share one
    kept: dict[str, ServerProcess] = {}
    try:
        for engine in [e for e in engines if e in servers]:
            settings = {
                "media_dir": str(folder),
                "vod_live_loop": "true",
                **LOAD_LIMITS,
                **servers[engine],
            }
            rows = []
            for count in engine_counts[engine]:
                key = json.dumps(settings, sort_keys=True)
                server = kept.get(key) or ServerProcess(Path(tempfile.mkdtemp()), settings).start()
                if args.smoke:
                    kept[key] = server
                raw = folder / f"{engine}-{count}.txt" if count == args.profile else None
                try:
                    rows.append(
                        run(
                            fan_out(
                                server.ws_url,
                                "vod-live://clip.mp4",
                                count,
                                server.process.pid,
                                packet_rate(clip, 2) if engine == "sink40" else rate,
                                profile=raw,
                                transport={"tcp": "TCP", "whep": "WHEP"}.get(engine, "UDP"),
                                http_url=server.http_url,
                                gro=engine == "gro",
                                sink=engine in ("sink", "sink40"),
                            ),
                            timeout=900,
                        )
                    )
                finally:
                    if not args.smoke:
                        server.stop()
                if raw is not None and raw.exists():
                    print(f"{engine} at {count} viewers, where the server's time went:")
                    print(perf_summary(raw) if args.perf else profile_summary(raw))
            results[engine] = rows
            report(f"{engine}:", rows)
    finally:  # (a smoke run's shared servers, even when a run failed)
        for server in kept.values():
            server.stop()
    if "stock" in engines:
        rows = []
        for count in stock_counts:
            port = free_port()
            stock = subprocess.Popen(
                [str(VENV_BIN / "python"), "bench/stock_server.py", str(clip), str(port)],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            try:
                wait_for_port(port, time.monotonic() + 20, stock)
                rows.append(
                    run(
                        fan_out(f"ws://127.0.0.1:{port}", "clip", count, stock.pid, rate),
                        timeout=900,
                    )
                )
            finally:
                stock.terminate()
                stock.wait(10)
        results["stock"] = rows
        report("stock aiortc (MediaPlayer + MediaRelay, Opus encoded per viewer):", rows)
    anchor = results.get("wcsvod", [])
    for other in ("nogso", "libsrtp", "gro", "sink", "tcp", "whep", "aiortc", "stock"):
        pairs = [
            (a, b) for a in anchor for b in results.get(other, []) if a["viewers"] == b["viewers"]
        ]
        if pairs:
            print(f"µs per packet per viewer, {other} / wcsvod:")
            for ours, theirs in pairs:
                print(f"{ours['viewers']:>8} viewers: {theirs['us'] / ours['us']:.2f}x")
    pairs = [
        (a, b)
        for a in results.get("sink", [])
        for b in results.get("sink40", [])
        if a["viewers"] == b["viewers"]
    ]
    if pairs:  # fewer packets: the cost per viewer is what compares
        print("% of a core per viewer, sink40 / sink:")
        for ours, theirs in pairs:
            ratio = (theirs["cpu"] / theirs["viewers"]) / (ours["cpu"] / ours["viewers"])
            print(f"{ours['viewers']:>8} viewers: {ratio:.2f}x")
    (folder / "clip.mp4").unlink(missing_ok=True)  # (4 MB; a profile's raw stays, printed)
    if not any(folder.iterdir()):
        folder.rmdir()


if __name__ == "__main__":
    main()
