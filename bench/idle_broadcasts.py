"""Broadcasts nobody watches, and REST while the media side is busy.

On the README's defaults (``workers=auto``: two workers on a 2-core box) it
starts ``--broadcasts`` looping vod-live broadcasts through REST ``vod/startup``
all at once and prints:

- server CPU (supervisor and workers) of those broadcasts with no viewer, as a
  share of one core (the goal: under 2 % for 200);
- the same once ``--watched`` of them have one counting WebRTC viewer each
  (what a watched broadcast costs: reading, AAC → Opus, sending);
- REST ``vod/find`` and ``vod/find_all`` latency (p50, p99, max; one probe
  every 50 ms, each call timed from send to the last byte) with no broadcast,
  while the broadcasts start, while they run unwatched, and while
  ``--viewers`` counting WebRTC viewers play one of them (the goal: every
  answer within 250 ms), with delivered against expected RTP packets so a
  starved server shows.

``--root DIR`` runs the server from another checkout (a worktree of an
earlier commit, its C helper built in place) for a before/after comparison in
one run; the client side is always this checkout's.

Run with ``scripts/bench.sh bench/idle_broadcasts.py [--broadcasts 200]``; ``--smoke``
runs each phase once at its smallest (two broadcasts, one watched, two viewers, 2 s
windows), for the suite.
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from testkit.cheap_viewers import CheapViewer, Counter, packet_rate, watch
from testkit.harness import LOAD_LIMITS, ServerProcess, require_loopback_only, run
from testkit.procfs import tree_times
from testkit.rest_client import call
from tools.makemedia import make_mp4

#: Seconds each CPU figure is measured over.
MEASURE = 15.0
#: Seconds between two REST probes.
PROBE_EVERY = 0.05
#: Counting viewers started per second.
ARRIVALS = 25
#: Distinct files the broadcasts play (each started under many names).
FILES = 4


class Prober:
    """Calls ``find_all`` and ``find`` in turn, in a process of its own (this
    one's collector, busy with a thousand client peers, would pause it and
    count its pauses against the server), and keeps each answer's time under
    the phase it was asked in; the phase comes from this process."""

    def __init__(self, base: str, name: str, pid: int) -> None:
        self.pid = pid
        self.child = subprocess.Popen(
            [sys.executable, __file__, "--probe", base, name],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        self.phase = "no broadcast"

    @property
    def phase(self) -> str:
        return self._phase

    @phase.setter
    def phase(self, value: str) -> None:
        self._phase = value
        self._say(value)

    def _say(self, line: str) -> None:
        assert self.child.stdin is not None
        self.child.stdin.write(line + "\n")
        self.child.stdin.flush()

    def quiet(self, seconds: float) -> float:
        """The server's CPU over ``seconds`` with no probe running (see :func:`cpu_share`)."""
        self._say("")  # the empty phase: no probes
        time.sleep(0.5)  # the probe under way ends
        try:
            return cpu_share(self.pid, seconds)
        finally:
            self._say(self._phase)

    def stop(self) -> None:
        out, _ = self.child.communicate(timeout=30)
        self.times, self.errors = json.loads(out)

    def report(self) -> None:
        print(
            f"{'REST find/find_all while':<34} {'answers':>7} {'p50 ms':>7} {'p99 ms':>7} "
            f"{'max ms':>7} {'errors':>6}"
        )
        for phase, times in self.times.items():
            ordered = sorted(times)
            p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
            print(
                f"{phase:<34} {len(times):>7} {statistics.median(times) * 1e3:>7.1f} "
                f"{p99 * 1e3:>7.1f} {ordered[-1] * 1e3:>7.1f} "
                f"{self.errors.get(phase, 0):>6}"
            )
        sys.stdout.flush()


def run_prober(base: str, name: str) -> None:
    """The prober's process: phases from stdin (an empty one: pause), one probe
    every ``PROBE_EVERY`` s; at the end of stdin, the times as JSON."""
    import gc

    gc.disable()  # this process makes little garbage: none of its pauses are measured
    state = {"phase": "no broadcast", "done": False}

    def read() -> None:
        for line in sys.stdin:
            state["phase"] = line.rstrip("\n")
        state["done"] = True

    threading.Thread(target=read, daemon=True).start()
    times: dict[str, list[float]] = {}
    errors: dict[str, int] = {}
    calls = [("/rest-api/vod/find_all", {}), ("/rest-api/vod/find", {"localStreamName": name})]
    turn = 0
    while not state["done"]:
        phase = state["phase"]
        if not phase:
            time.sleep(PROBE_EVERY)
            continue
        path, body = calls[turn % 2]
        turn += 1
        began = time.monotonic()
        try:
            status, _, _ = call(base, path, body, check=False)
        except OSError:
            status = 0
        took = time.monotonic() - began
        if status in (200, 404):  # find of a name not yet started: 404
            times.setdefault(phase, []).append(took)
        else:
            errors[phase] = errors.get(phase, 0) + 1
        time.sleep(PROBE_EVERY)
    print(json.dumps([times, errors]))


def cpu_share(pid: int, seconds: float) -> float:
    """The server's CPU (all its processes) over ``seconds``, as a share of one core."""
    user0, system0, _ = tree_times(pid)
    began = time.monotonic()
    time.sleep(seconds)
    user1, system1, _ = tree_times(pid)
    used = user1 + system1 - user0 - system0
    # (a process of the tree that ended meanwhile takes its time out of the sum)
    return max(0.0, used / (time.monotonic() - began))


def start_all(base: str, names: list[str], files: list[str]) -> tuple[int, float]:
    """REST startup of every name at once (one thread each); (started, seconds)."""

    def one(index: int) -> int:
        status, _, _ = call(
            base,
            "/rest-api/vod/startup",
            {
                "uri": f"vod-live://{files[index % len(files)]}",
                "localStreamName": names[index],
                "loop": True,
            },
            check=False,
        )
        return status

    began = time.monotonic()
    with concurrent.futures.ThreadPoolExecutor(len(names)) as pool:
        statuses = list(pool.map(one, range(len(names))))
    return statuses.count(200), time.monotonic() - began


async def viewers(
    ws_url: str, names: list[str], rate: float, seconds: float, during: list[str] | None = None
) -> dict[str, float]:
    """One counting WebRTC viewer per name (repeat a name for more), watched
    ``seconds`` once all have connected; delivered against expected packets."""
    counter = Counter()
    stop = asyncio.Event()
    views = [CheapViewer() for _ in names]
    tasks = []
    for index, (view, name) in enumerate(zip(views, names, strict=True)):
        tasks.append(
            asyncio.ensure_future(watch(ws_url, name, counter, stop, timeout=900, viewer=view))
        )
        if index % ARRIVALS == ARRIVALS - 1:
            await asyncio.sleep(1.0)
    for _ in range(600):
        await asyncio.sleep(0.1)
        if all(v.connected_at or v.statuses[-1:] == ["FAILED"] for v in views):
            break
    await asyncio.sleep(2.0)
    if during is not None:
        during.append("measuring")
    counted0, t0 = sum(v.rtp for v in views), time.monotonic()
    await asyncio.sleep(seconds)
    counted1, t1 = sum(v.rtp for v in views), time.monotonic()
    if during is not None:
        during.append("done")
    connected = sum(v.connected_at is not None for v in views)
    stop.set()
    await asyncio.gather(*tasks, return_exceptions=True)
    counter.stop()
    expected = rate * connected * (t1 - t0)
    return {
        "connected": connected,
        "delivered": (counted1 - counted0) / expected if expected else 0.0,
    }


def main() -> None:
    if sys.argv[1:2] == ["--probe"]:
        run_prober(*sys.argv[2:4])
        return
    parser = argparse.ArgumentParser()
    parser.add_argument("--broadcasts", type=int, default=200)
    parser.add_argument("--watched", type=int, default=10)
    parser.add_argument("--viewers", type=int, default=1000)
    parser.add_argument("--root", default="", help="run the server from this checkout")
    parser.add_argument("--smoke", action="store_true", help="once at the smallest setting")
    args = parser.parse_args()
    settle = 1.0
    if args.smoke:
        global MEASURE
        args.broadcasts, args.watched, args.viewers = 2, 1, 2
        MEASURE, settle = 2.0, 0.2
    require_loopback_only()
    if args.root:
        os.environ["PYTHONPATH"] = str(Path(args.root).resolve())
        print(f"server from {args.root}")
        # an earlier version held a worker's lone log line back (its
        # "running" line among them): give its workers time instead of reading the log
        ServerProcess._wait_for_workers = lambda self, deadline: time.sleep(3)  # type: ignore
    folder = Path(tempfile.mkdtemp(prefix="wcsvod-idle-"))
    files = [
        make_mp4(folder / f"clip{n}.mp4", seconds=20, profile="baseline", bitrate="450k").name
        for n in range(FILES)
    ]
    rate = packet_rate(folder / files[0])
    names = [f"bcast-{n:03d}" for n in range(args.broadcasts)]
    limits = {
        **LOAD_LIMITS,
        "max_broadcasts": str(args.broadcasts + 10),
        "max_rest_startups": str(args.broadcasts),
        "max_pending_opens": "1000",
    }
    # the README's defaults: workers=auto (the harness's one-process default undone)
    server = ServerProcess(
        Path(tempfile.mkdtemp()), {"media_dir": str(folder), "workers": "auto", **limits}
    )
    server.start()
    pid = server.process.pid
    try:
        time.sleep(3 * settle)
        probe = Prober(server.http_url, names[0], pid)
        time.sleep(5 * settle)
        rest_cpu = probe.quiet(MEASURE)
        probe.phase = f"{args.broadcasts} broadcasts starting"
        started, took = start_all(server.http_url, names, files)
        time.sleep(2 * settle)
        probe.phase = f"{args.broadcasts} running, unwatched"
        time.sleep(8 * settle)
        idle = probe.quiet(MEASURE)
        print(f"{started} of {args.broadcasts} broadcasts started in {took:.1f} s")
        print(f"server CPU, no broadcast: {rest_cpu * 100:.2f} % of a core")
        print(
            f"server CPU, {started} broadcasts nobody watches: {idle * 100:.2f} % of a core "
            f"({(idle - rest_cpu) * 100 / max(started, 1):.4f} % each)"
        )
        sys.stdout.flush()
        if args.watched:
            probe.phase = f"{args.watched} watched by one viewer"
            result: dict[str, float] = {}

            def measure_watched() -> None:
                result.update(
                    run(
                        viewers(server.ws_url, names[: args.watched], rate, MEASURE, marks),
                        timeout=600,
                    )
                )

            marks: list[str] = []
            thread = threading.Thread(target=measure_watched)
            thread.start()
            while not marks and thread.is_alive():
                time.sleep(0.1)
            watched = probe.quiet(MEASURE - 1.5) if marks else 0.0
            thread.join()
            print(
                f"server CPU, {started} broadcasts of which {args.watched} have one WebRTC "
                f"viewer: {watched * 100:.2f} % of a core ({result.get('connected', 0):.0f} "
                f"connected, {result.get('delivered', 0) * 100:.1f} % of packets delivered)"
            )
            sys.stdout.flush()
        if args.viewers:
            probe.phase = "joining viewers"
            marks = []

            def flip() -> None:
                while not marks:
                    time.sleep(0.05)
                probe.phase = f"{args.viewers} WebRTC viewers playing"
                while len(marks) < 2:
                    time.sleep(0.05)
                probe.phase = "after"

            flipper = threading.Thread(target=flip, daemon=True)
            flipper.start()
            crowd = run(
                viewers(server.ws_url, [names[0]] * args.viewers, rate, MEASURE, marks), timeout=900
            )
            marks.extend(["end", "end"])  # (if the crowd never marked its start and end)
            flipper.join(5)  # its last phase said before the probe's input closes
            print(
                f"{args.viewers} WebRTC viewers of one broadcast: {crowd['connected']:.0f} "
                f"connected, {crowd['delivered'] * 100:.1f} % of packets delivered"
            )
        probe.stop()
        probe.report()
    finally:
        server.stop()


if __name__ == "__main__":
    main()
