"""The cost of one rendition: a 720p30 stream played at 640x360 (and 320x180).

Runs the rendition's own codec work (:class:`wcs.media.resize.Resizer`:
decode, scale, x264 encode) over 20 s of a 720p file in this process and
prints CPU per frame and the share of a core it holds in real time, next to
decoding alone (what any rendition must pay) as the anchor. This is the
work that runs on the rendition's thread; the reactor only queues samples.

Run with ``scripts/bench.sh bench/rendition.py`` (``--smoke``: a 2 s source, for the suite).
"""

from __future__ import annotations

import sys
import tempfile
import time
from fractions import Fraction
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import av

from tools.makemedia import make_mp4
from wcs.media.mp4 import Mp4File
from wcs.media.resize import Resizer
from wcs.media.sample import VIDEO_CLOCK

SECONDS = 20


def main() -> None:
    report_costs(2 if "--smoke" in sys.argv[1:] else SECONDS, ((640, 360), (320, 180)))


def report_costs(seconds: int, sizes: tuple[tuple[int, int], ...]) -> None:
    """Print decoding's cost, then each size's rendition's, over a 720p file."""
    folder = Path(tempfile.mkdtemp(prefix="wcsvod-rendition-"))
    source = make_mp4(folder / "hd.mp4", seconds=seconds, width=1280, height=720, bitrate="2500k")
    samples = [s for s in Mp4File(source, "hd").samples() if s.kind == "video"]
    frames = len(samples)
    decoder = av.CodecContext.create("h264", "r")
    started = time.process_time()
    for sample in samples:
        packet = av.Packet(sample.data)
        packet.pts = sample.pts
        packet.time_base = Fraction(1, VIDEO_CLOCK)
        decoder.decode(packet)
    decode = time.process_time() - started
    print(f"source: 1280x720, {frames} frames over {seconds} s")
    print(
        f"decode alone: {decode / frames * 1000:.2f} ms CPU per frame, "
        f"{decode / seconds * 100:.1f}% of a core in real time"
    )
    for size in sizes:
        resizer = Resizer(size, 30.0)
        out = 0
        bytes_out = 0
        started = time.process_time()
        for sample in samples:
            for encoded in resizer.feed(sample):
                out += 1
                bytes_out += len(encoded.data)
        used = time.process_time() - started
        print(
            f"rendition {size[0]}x{size[1]}: {out} frames out, "
            f"{bytes_out * 8 / seconds / 1000:.0f} kb/s, {used / frames * 1000:.2f} ms CPU "
            f"per frame, {used / seconds * 100:.1f}% of a core in real time "
            f"({used / decode:.1f}x decoding alone)"
        )


if __name__ == "__main__":
    main()
