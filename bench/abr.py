"""Adaptive quality: what a rung costs, how long a move takes, and what ABR costs
a fan-out whose viewers all keep the source.

1. CPU per rendition: the default ladder's rungs (360p, 180p) of a 720p30 file,
   decode + scale + x264 per frame, next to decoding alone (``bench/rendition.py``).
2. Time to switch: a viewer (an :class:`~wcs.streams.adaptive.AdaptiveView` over a
   recording subscriber) of a live 720p broadcast with 2 s GOPs, moved down to a
   rendition nobody watched yet (it starts: the source's GOP decoded, the next
   picture encoded as an IDR), down to one already running (its next picture an
   IDR), and up to the source (its next keyframe), several times each at random
   moments; from the move asked to the first picture of the new step given to
   the viewer, in media time run in real time (the rendition's thread at its
   real speed).
3. Fan-out cost per viewer, ABR on (the default: each viewer an AdaptiveView in
   its step's batch) and off (``webrtc_abr=false``), side by side in one run:
   cheap WebRTC viewers of ``bench/live_fanout.py`` (they send no REMB, so all
   keep the source), µs of server CPU per packet per viewer and the ratio.

Run with ``scripts/bench.sh bench/abr.py [--counts 100,300]``; ``--smoke`` runs
each part at its smallest.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from twisted.internet.task import Clock

from bench.live_fanout import fan_out, report
from bench.rendition import report_costs
from testkit.cheap_viewers import packet_rate
from testkit.harness import LOAD_LIMITS, ServerProcess, require_loopback_only, run
from tools.makemedia import make_mp4
from wcs.media.mp4 import Mp4File
from wcs.sources import OpenedMedia
from wcs.streams import uri
from wcs.streams.adaptive import AdaptiveView
from wcs.streams.ladder import Ladder
from wcs.streams.renditions import Renditions
from wcs.streams.stream import VodStream

FPS = 30


class Recorder:
    """A viewer that keeps the pts of every picture it is given."""

    pressed_join = True
    lead = 0.0
    audio_codecs = frozenset({"opus"})

    def __init__(self) -> None:
        self.pictures: list[int] = []

    def deliver(self, sample) -> None:  # type: ignore[no-untyped-def]
        if sample.kind == "video":
            self.pictures.append(sample.pts)

    def keyframe_wanted(self) -> bool:
        return not self.pictures

    def closed(self, info, failed) -> None:  # type: ignore[no-untyped-def]
        pass


class RealTime:
    """A Clock run at the wall clock's pace, with the threads' results posted to it."""

    def __init__(self) -> None:
        self.clock = Clock()
        self.posted: list = []
        self.clock.callFromThread = lambda f, *a: self.posted.append((f, a))  # type: ignore[attr-defined]

    def run(self, seconds: float, until=lambda: False) -> float:  # type: ignore[no-untyped-def]
        """Run up to ``seconds`` (less if ``until()``); the seconds it ran."""
        start = self.clock.seconds()
        began = time.monotonic()
        while self.clock.seconds() - start < seconds and not until():
            self.clock.advance(1 / FPS / 2)
            while self.posted:
                function, args = self.posted.pop(0)
                function(*args)
            lag = (self.clock.seconds() - start) - (time.monotonic() - began)
            if lag > 0:
                time.sleep(lag)
        return self.clock.seconds() - start


def switch_times(folder: Path, rounds: int, smoke: bool = False) -> dict[str, list[float]]:
    """The moves of one viewer of a looping 720p file (480p and shorter for the
    smoke run: the same ladder of 360p and 180p, a third of the decoding)."""
    clip = (make_mp4(folder / "hd.mp4", seconds=8, width=854, height=480, bitrate="1200k")
            if smoke else
            make_mp4(folder / "hd.mp4", seconds=30, width=1280, height=720, bitrate="2500k"))
    time_ = RealTime()
    source = VodStream(uri.parse("vod-live://hd.mp4"), "vod-live://hd.mp4",
                       OpenedMedia(Mp4File(clip, "hd")), time_.clock, lambda _: None,
                       live=True, loop=True)
    renditions = Renditions(time_.clock, True, Ladder.parse("360p,180p"))
    offers = renditions.offers(source)
    assert [offer.name for offer in offers] == ["source", "360p", "180p"]
    viewer = Recorder()
    view = AdaptiveView(viewer, time_.clock, "bench", offers)
    view.start()
    keeper = Recorder()  # holds 180p running for the "running" case
    times: dict[str, list[float]] = {"down, a new rendition": [], "down, running": [],
                                     "up, to the source": []}
    rng = random.Random(1)
    time_.run(3.0)
    for _ in range(rounds):
        for target, case in ((1, "down, a new rendition"), (0, "up, to the source")):
            time_.run(rng.uniform(1.0, 3.0))
            view.go(target)
            took = time_.run(10.0, lambda: view.moving() is None)
            times[case].append(took)
        held = renditions.sized(source, 320, 180)
        held.subscribe(keeper)
        time_.run(rng.uniform(1.0, 3.0))
        view.go(2)
        times["down, running"].append(time_.run(10.0, lambda: view.moving() is None))
        time_.run(rng.uniform(1.0, 3.0))
        view.go(0)
        time_.run(10.0, lambda: view.moving() is None)
        held.unsubscribe(keeper)
    view.leave()
    steps = sorted(viewer.pictures)
    assert viewer.pictures == steps, "a picture went back in time"
    return times


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--counts", default="100,300")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--smoke", action="store_true")
    args = parser.parse_args()
    require_loopback_only()
    seconds = 2 if args.smoke else 20
    print("1. CPU per rendition (the default ladder of a 720p30 file)")
    report_costs(seconds, ((640, 360), (320, 180)))
    folder = Path(tempfile.mkdtemp(prefix="wcsvod-abr-"))
    print("\n2. Time to switch (s, from the move asked to the new step's first picture)")
    times = switch_times(folder, 1 if args.smoke else args.rounds, args.smoke)
    for case, values in times.items():
        print(f"  {case:>22}: median {statistics.median(values):.2f}, "
              f"max {max(values):.2f} over {len(values)} moves")
    print("\n3. Fan-out cost per viewer, ABR on and off, side by side")
    counts = [2] if args.smoke else [int(c) for c in args.counts.split(",") if c]
    length = 10 if args.smoke else 60
    clip = make_mp4(folder / "clip.mp4", seconds=length, profile="baseline", bitrate="450k",
                    barcode=True)
    rate = packet_rate(clip)
    if args.smoke:
        import bench.live_fanout

        bench.live_fanout.MEASURE = 2.0
    rows: dict[str, list[dict]] = {"ABR on": [], "ABR off": []}
    for count in counts:
        for engine, extra in (("ABR on", {}), ("ABR off", {"webrtc_abr": "false"})):
            settings = {"media_dir": str(folder), "vod_live_loop": "true", **LOAD_LIMITS, **extra}
            server = ServerProcess(Path(tempfile.mkdtemp()), settings).start()
            try:
                rows[engine].append(run(fan_out(server.ws_url, "vod-live://clip.mp4", count,
                                                server.process.pid, rate), timeout=900))
            finally:
                server.stop()
    for engine, found in rows.items():
        report(f"{engine}:", found)
    for on, off in zip(rows["ABR on"], rows["ABR off"], strict=True):
        print(f"{on['viewers']} viewers: ABR on / off = {on['us'] / off['us']:.2f} "
              f"(µs of server CPU per packet per viewer)")


if __name__ == "__main__":
    main()
