"""HLS of one stream: a subscriber that cuts its samples into MPEG-TS segments at
keyframes and keeps the last few, with the playlist that lists them.

Segments start on a keyframe: the first keyframe once the current segment
holds ``MIN_SEGMENT`` seconds (a file's GOP decides, usually 1 to 2 s); a
publishing page, whose browser sends keyframes only when asked, is asked at
``ASK_KEYFRAME`` seconds. A stream that never sends one is cut every
``MAX_SEGMENT`` seconds anyway. Memory is bounded: ``KEPT`` segments, and the
one being filled is cut at ``MAX_SEGMENT`` seconds or ``MAX_BYTES``.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from twisted.internet.defer import Deferred
from twisted.logger import Logger

from wcs.media import mpegts
from wcs.media.sample import MediaInfo, Sample

log = Logger()

#: A segment is cut at the first keyframe once it holds this much (s).
MIN_SEGMENT = 1.0
#: A publishing page is asked for a keyframe once the segment holds this much (s).
ASK_KEYFRAME = 2.0
#: A segment is cut here even without a keyframe (s).
MAX_SEGMENT = 10.0
#: Bytes of samples one segment may gather before it is cut.
MAX_BYTES = 16 << 20
#: Segments the playlist lists.
LISTED = 6
#: Segments kept (a player may still fetch one that just left the playlist).
KEPT = LISTED + 2
#: Where timestamps begin (s): the first sample's time, less this.
LEAD = 1.0


@dataclass(frozen=True)
class Segment:
    number: int
    duration: float  # s
    data: bytes
    keyframe: bool  # starts with one


class Segmenter:
    """Subscriber: a stream as HLS segments and a playlist."""

    pressed_join = False  # the cached GOP at its own times: it is the first segment's start
    lead = 0.0

    def __init__(self, info: MediaInfo, label: str,
                 ask_keyframe: Callable[[], None] = lambda: None) -> None:
        self.info = info
        self.label = label
        self.ask_keyframe = ask_keyframe
        self.segments: deque[Segment] = deque(maxlen=KEPT)
        self.ended = False
        self.failure: str | None = None
        self.target = 2  # EXT-X-TARGETDURATION: grows if a longer segment comes
        self._pending: list[Sample] = []
        self._bytes = 0
        self._start: float | None = None  # the pending segment's first time (s)
        self._base: float | None = None
        self._last: dict[str, int] = {}  # last pts by kind: timestamps only go forward
        self._next = 0
        self._asked = False
        self._waiting: list[Deferred[None]] = []
        self._video = info.video is not None

    # --- Subscriber

    def deliver(self, sample: Sample) -> None:
        if self.ended or (sample.kind == "audio" and sample.codec != "aac"):
            return
        if sample.kind == "video" and not self._video:
            return
        last = self._last.get(sample.kind)
        if last is not None and sample.pts <= last:
            return  # (a loop's audio may overlap its end: never backwards)
        starts = sample.keyframe if sample.kind == "video" else not self._video
        if self._start is None:
            if self._video and not starts:
                return  # wait for the first keyframe
            self._start = sample.pts / sample.clock
            if self._base is None:
                self._base = self._start - LEAD
        else:
            held = sample.pts / sample.clock - self._start
            cut = (starts and held >= MIN_SEGMENT) or held >= MAX_SEGMENT \
                or self._bytes >= MAX_BYTES
            if cut and (sample.kind == "video" or not self._video):
                self._cut(sample.pts / sample.clock)
                self._start = sample.pts / sample.clock
            elif self._video and not self._asked and held >= ASK_KEYFRAME:
                self._asked = True
                self.ask_keyframe()
        self._last[sample.kind] = sample.pts
        self._pending.append(sample)
        self._bytes += len(sample.data)

    def keyframe_wanted(self) -> bool:
        return self._video and self._start is None

    def closed(self, info: str | None, failed: bool) -> None:
        if self.ended:
            return
        if self._pending and self._start is not None:
            last = self._pending[-1]
            frame = 1 / (self.info.video.fps or 30) if self._video and self.info.video else 0
            self._cut(last.pts / last.clock + frame)
        self.ended = True
        self.failure = info if failed else None
        self._wake()

    # --- what HLS serves

    def ready(self) -> Deferred[None]:
        """Fires once there is a segment (or the stream ended)."""
        done: Deferred[None] = Deferred()
        if self.segments or self.ended:
            done.callback(None)
        else:
            self._waiting.append(done)
        return done

    def playlist(self) -> str:
        """The media playlist (HLS version 3): the last ``LISTED`` segments."""
        listed = list(self.segments)[-LISTED:]
        lines = ["#EXTM3U", "#EXT-X-VERSION:3", f"#EXT-X-TARGETDURATION:{self.target}",
                 f"#EXT-X-MEDIA-SEQUENCE:{listed[0].number if listed else 0}"]
        for segment in listed:
            lines += [f"#EXTINF:{segment.duration:.3f},", f"{segment.number}.ts"]
        if self.ended:
            lines.append("#EXT-X-ENDLIST")
        return "\n".join(lines) + "\n"

    def segment(self, number: int) -> Segment | None:
        for segment in self.segments:
            if segment.number == number:
                return segment
        return None

    @property
    def made(self) -> int:
        """Segments made so far."""
        return self._next

    def release(self) -> None:
        """Unused: let go of every segment and sample now."""
        self.ended = True
        self.segments.clear()
        self._pending, self._bytes = [], 0
        self._wake()

    # --- inside

    def _cut(self, end: float) -> None:
        assert self._start is not None and self._base is not None
        samples, self._pending, self._bytes = self._pending, [], 0
        self._asked = False
        duration = max(end - self._start, 0.001)
        data = mpegts.segment(samples, self.info, self._base)
        self.segments.append(Segment(self._next, duration, data, samples[0].keyframe))
        self._next += 1
        self.target = max(self.target, math.ceil(duration - 0.0005))
        self._wake()

    def _wake(self) -> None:
        waiting, self._waiting = self._waiting, []
        for done in waiting:
            done.callback(None)
