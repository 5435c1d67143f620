"""A stream's video at another size: decoded, scaled and encoded again with x264,
once per (stream, size), on a thread of its own.

What size a request gets is :func:`wcs.media.sizing.fitted`: inside the box
asked for, the source's aspect kept, even dimensions, never larger than the
source (a request for more, for nothing, or for under 16 pixels a side plays
the source as it is).

:class:`Resizer` is the codec work, one sample in, samples out.
:class:`ResizeThread` runs it off the reactor: samples queue (bounded: a
thread that falls behind drops video until the next source keyframe) and the
encoded ones are handed back through ``post`` (the reactor's ``callFromThread``).
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from fractions import Fraction

import av
from twisted.logger import Logger

from wcs.media.reencode import X264
from wcs.media.sample import VIDEO_CLOCK, Sample
from wcs.media.sizing import bitrate_for
from wcs.metrics import METERS

log = Logger()

#: Samples waiting for the thread (a GOP's catch-up at a join, and some).
QUEUE = 128


class Resizer:
    """H.264 samples (Annex B) in, the same pictures at ``size`` out."""

    def __init__(self, size: tuple[int, int], fps: float) -> None:
        METERS.transcoding("resize", self)
        self.size = size
        self.fps = fps or 30.0
        self.decoder = av.CodecContext.create("h264", "r")
        self.x264 = X264(
            size[0],
            size[1],
            Fraction(1, VIDEO_CLOCK),
            self.fps,
            bitrate_for(size, self.fps),
            profile="baseline",
            capped=True,
        )
        self.frames = 0

    def feed(self, sample: Sample, keyframe: bool = False, encode: bool = True) -> list[Sample]:
        """One source sample; ``keyframe`` asks for an IDR at the next picture;
        ``encode`` false only decodes it (a picture the later ones refer to)."""
        packet = av.Packet(sample.data)
        packet.pts = packet.dts = sample.pts
        packet.time_base = Fraction(1, VIDEO_CLOCK)
        try:
            pictures = self.decoder.decode(packet)
        except av.FFmpegError:
            return []  # damaged: the next keyframe repairs the picture
        if not encode:
            return []
        out: list[Sample] = []
        for picture in pictures:
            scaled = picture.reformat(width=self.size[0], height=self.size[1], format="yuv420p")
            scaled.pts = sample.pts
            scaled.time_base = Fraction(1, VIDEO_CLOCK)
            out.extend(self.x264.encode(scaled, keyframe=keyframe or sample.keyframe))
            keyframe = False
            self.frames += 1
        for encoded in out:  # the source's own timeline, not the encoder's
            encoded.time = sample.time
        return out


class ResizeThread:
    """A :class:`Resizer` on a thread: ``push`` from the reactor, results through
    ``post(deliver, sample)``; ``stop`` ends the thread (without waiting)."""

    def __init__(
        self,
        resizer: Resizer,
        deliver: Callable[[Sample], None],
        post: Callable[..., None],
        label: str,
    ) -> None:
        self.resizer = resizer
        self.deliver = deliver
        self.post = post
        self.label = label
        self.dropped = 0
        self._queue: queue.Queue[tuple[Sample, bool, bool] | None] = queue.Queue(QUEUE)
        self._skipping = False
        self._thread = threading.Thread(target=self._run, name=f"resize {label}", daemon=True)
        self._thread.start()

    def push(self, sample: Sample, keyframe: bool = False, encode: bool = True) -> None:
        """Queue a video sample (:meth:`Resizer.feed`'s arguments); past ``QUEUE``
        waiting, drop to the next keyframe."""
        if self._skipping and not sample.keyframe:
            self.dropped += 1
            return
        try:
            self._queue.put_nowait((sample, keyframe, encode))
            self._skipping = False
        except queue.Full:
            self._skipping = True
            self.dropped += 1

    def stop(self) -> None:
        self.deliver = _nothing
        while True:
            try:
                self._queue.put_nowait(None)
                return
            except queue.Full:
                try:
                    self._queue.get_nowait()
                except queue.Empty:
                    pass

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            try:
                for sample in self.resizer.feed(*item):
                    self.post(self._handed, sample)
            except Exception:  # a bug: logged, and the picture waits for a keyframe
                log.failure("{label}: resizing failed", label=self.label)

    def _handed(self, sample: Sample) -> None:
        self.deliver(sample)


def _nothing(_sample: Sample) -> None:
    """Where a stopped thread's last samples go."""
