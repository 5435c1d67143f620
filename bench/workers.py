"""One vod-live broadcast to many WebRTC viewers with ``workers=1`` and ``workers=2``.

The same counting viewers as ``bench/live_fanout.py`` (real peers that finish ICE
and DTLS, then count encrypted RTP packets; two more decode every frame and check
the order), against one server with one worker process and then with two, side by
side in one run. Server CPU is the supervisor's and its workers' together.

For each count and worker setting it prints what ``live_fanout`` prints, then for
each count: the share of the expected packets each setting delivered, server CPU
and its ratio (two workers against one), and the benchmark's own CPU, which on a
2-core machine shares the cores with the server: past the point where server and
clients together fill both cores, the figures measure the machine, not the
server. The capacity model in the closing note builds on these figures.

Run with ``scripts/bench.sh bench/workers.py [--counts 100,200,400]``; ``--smoke`` runs
both settings once at their smallest (two viewers, 2 s), for the suite.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import live_fanout
from bench.live_fanout import fan_out, report
from testkit.cheap_viewers import packet_rate
from testkit.harness import LOAD_LIMITS, ServerProcess, require_loopback_only, run
from tools.makemedia import make_mp4


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--counts", default="100,200,400")
    parser.add_argument("--workers", default="1,2")
    parser.add_argument("--smoke", action="store_true", help="once at the smallest setting")
    args = parser.parse_args()
    seconds = 60
    if args.smoke:
        args.counts, seconds = "2", 10
        live_fanout.MEASURE = 2.0
    counts = [int(c) for c in args.counts.split(",") if c]
    settings_of = [int(w) for w in args.workers.split(",") if w]
    require_loopback_only()
    folder = Path(tempfile.mkdtemp(prefix="wcsvod-workers-"))
    clip = make_mp4(
        folder / "clip.mp4", seconds=seconds, profile="baseline", bitrate="450k", barcode=True
    )
    rate = packet_rate(clip)
    print(
        f"broadcast: {clip.stat().st_size * 8 / seconds / 1e6:.2f} Mb/s, "
        f"{rate:.1f} RTP packets/s per viewer"
    )
    results: dict[int, dict[int, dict]] = {}
    for count in counts:  # each count with each setting, one after the other
        for workers in settings_of:
            settings = {
                "media_dir": str(folder),
                "vod_live_loop": "true",
                **LOAD_LIMITS,
                "workers": str(workers),
            }
            server = ServerProcess(Path(tempfile.mkdtemp()), settings).start()
            try:
                row = run(
                    fan_out(server.ws_url, "vod-live://clip.mp4", count, server.process.pid, rate),
                    timeout=900,
                )
            finally:
                server.stop()
            results.setdefault(workers, {})[count] = row
            report(f"workers={workers}:", [row])
    print("side by side (server CPU: the supervisor and its workers):")
    heads = " ".join(f"{f'w={w} deliv':>11} {f'w={w} CPU':>9}" for w in settings_of)
    print(f"{'viewers':>8} {heads} {'CPU ratio':>9} {'supervisor':>10} {'bench CPU':>9}")
    for count in counts:
        rows = [results[w][count] for w in settings_of]
        ratio = rows[-1]["cpu"] / rows[0]["cpu"] if rows[0]["cpu"] else 0.0
        print(
            f"{count:>8} "
            + " ".join(f"{r['delivered'] * 100:>10.1f}% {r['cpu'] * 100:>8.0f}%" for r in rows)
            + f" {ratio:>8.2f}x {rows[-1]['own'] * 100:>9.1f}% "
            f"{max(r['client'] for r in rows) * 100:>8.0f}%"
        )


if __name__ == "__main__":
    main()
