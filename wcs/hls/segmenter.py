"""HLS of one stream: a subscriber that cuts its samples into MPEG-TS segments at
keyframes and keeps the last few, with the playlist that lists them; and, for
Low-Latency HLS players, each segment's partial segments as they are made.

Segments start on a keyframe: the first keyframe once the current segment
holds ``MIN_SEGMENT`` seconds (a file's GOP decides, usually 1 to 2 s); a
publishing page, whose browser sends keyframes only when asked, is asked at
``ASK_KEYFRAME`` seconds. A stream that never sends one is cut every
``MAX_SEGMENT`` seconds anyway. Memory is bounded: ``KEPT`` segments, and the
one being filled is cut at ``MAX_SEGMENT`` seconds or ``MAX_BYTES``.

Low-Latency HLS (RFC 8216bis): every ``PART_TARGET`` seconds or less the
samples since the last part become a part of their own (a TS that stands
alone, like a segment; the first of a segment starts on its keyframe and is
``INDEPENDENT``), listed with ``EXT-X-PART`` for the last ``PARTED`` segments
and the one being filled, with the next part's ``EXT-X-PRELOAD-HINT``. A player
that knows it (hls.js with ``lowLatencyMode``) plays ``PART_HOLD_BACK`` behind
the live edge instead of three segments; any other reads the segments as before.

A segment is its parts' bytes, one after another, and every part is renumbered
to continue the TS's continuity counters (:class:`~wcs.media.mpegts.Continuity`):
a player reading segments, parts, or segments then parts, reads one unbroken TS.
"""

from __future__ import annotations

import datetime
import math
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from twisted.internet.defer import Deferred
from twisted.logger import Logger

from wcs.media import h264, mpegts
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
#: A part's longest duration (s): EXT-X-PART-INF's PART-TARGET.
PART_TARGET = 0.5
#: How far behind the live edge an LL-HLS player should play (s): 3 parts, the spec's least.
PART_HOLD_BACK = 3 * PART_TARGET
#: Complete segments whose parts the playlist still lists: parts leave it once more
#: than three target durations from its end (RFC 8216bis 4.4.4.9).
PARTED = 3
#: Complete segments whose parts are kept: a part stays fetchable for three target
#: durations after the playlist stops listing it (RFC 8216bis 6.2.2).
PARTS_KEPT = PARTED + 3
#: Players that may wait at once for a playlist update or a part of one stream.
MAX_WAITING = 1000


@dataclass(frozen=True)
class Segment:
    number: int
    duration: float  # s
    data: bytes
    keyframe: bool  # starts with one
    wall: float = 0.0  # when its first sample was live (Unix time): EXT-X-PROGRAM-DATE-TIME
    discontinuity: bool = False  # another picture size (SPS) begins with it
    start: float = 0.0  # its first sample's media time (s)


@dataclass(frozen=True)
class Part:
    segment: int  # the number of the segment it belongs to
    index: int  # its place there, from 0
    duration: float  # s
    data: bytes
    independent: bool  # starts with a keyframe

    @property
    def uri(self) -> str:
        return f"{self.segment}.{self.index}.ts"


def date_time(wall: float) -> str:
    """``#EXT-X-PROGRAM-DATE-TIME`` for Unix time ``wall``, in UTC to the millisecond."""
    moment = datetime.datetime.fromtimestamp(wall, datetime.UTC)
    return f"#EXT-X-PROGRAM-DATE-TIME:{moment.isoformat(timespec='milliseconds')[:-6]}Z"


class TooManyWaiting(Exception):
    """More than :data:`MAX_WAITING` players wait on one stream."""


class Segmenter:
    """Subscriber: a stream as HLS segments and a playlist."""

    pressed_join = False  # the cached GOP at its own times: it is the first segment's start
    gop_audio = True  # with its AAC: the first segment's sound starts with its picture
    lead = 0.0
    audio_codecs = frozenset({"aac"})  # TS carries AAC as stored

    def __init__(
        self,
        info: MediaInfo,
        label: str,
        ask_keyframe: Callable[[], None] = lambda: None,
        wall: Callable[[], float] = time.time,
        leader: Segmenter | None = None,
    ) -> None:
        self.info = info
        #: the source's segmenter, for a rung of HLS ABR: its variant's segments take
        #: the leader's numbers, timestamps and dates, so that a player switching
        #: variants finds the same moment under the same number (both cut at the
        #: same keyframes: a rendition's IDRs are its source's keyframes)
        self.leader = leader
        self.wall = wall
        # wall clock less media time, the least seen: a sample is never early, and the
        # cached GOP a segmenter starts with comes late, all at once
        self._offset: float | None = None
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
        self._video = info.video is not None
        # Low-Latency HLS: parts by segment number (the last PARTS_KEPT and the current)
        self.parts: dict[int, list[Part]] = {}
        self._part: list[Sample] = []
        self._part_start: float | None = None
        # how far apart samples that may begin a part come (s): measured as they come
        self._frame = 1 / (info.video.fps or 30) if info.video else 0.025
        self._lead_at: float | None = None  # the last such sample's time
        self._watching: list[Deferred[None]] = []  # woken at every part, segment and end
        self._continuity = mpegts.Continuity()  # one TS across every part and segment
        self._playlist: str | None = None  # as rendered since the last change
        # another SPS (a playlist's next file, a page's new size) starts a segment marked
        # EXT-X-DISCONTINUITY: players reset their decoder there
        self._sps: bytes | None = None
        self._discontinuous = False  # the segment being filled begins one
        self._discontinuities = 0  # EXT-X-DISCONTINUITY-SEQUENCE: those no longer listed

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
        changed = starts and self._video and self._new_sps(sample.data)
        now = sample.pts / sample.clock
        offset = self.wall() - now
        if self._offset is None or offset < self._offset:
            self._offset = offset
        if self._start is None:
            if self._video and not starts:
                return  # wait for the first keyframe
            self._start = self._part_start = now
            if self.leader is not None and self.leader._base is not None:
                self._follow(self.leader, now)
            if self._base is None:
                self._base = self._start - LEAD
        else:
            held = now - self._start
            cut = (
                (starts and held >= MIN_SEGMENT)
                or changed
                or held >= MAX_SEGMENT
                or self._bytes >= MAX_BYTES
            )
            leads = sample.kind == "video" or not self._video  # may begin a segment or part
            if leads:
                if self._lead_at is not None and now > self._lead_at:
                    self._frame = now - self._lead_at  # the next one likely as far on
                self._lead_at = now
            if cut and leads:
                self._cut_part(now, wake=False)  # players wake once, to the whole segment
                self._cut(now)
                self._start = now
                self._discontinuous = changed
            else:
                if (
                    leads
                    and self._part
                    and self._part_start is not None
                    and now - self._part_start + self._frame > PART_TARGET + 1e-4
                ):
                    self._cut_part(now)  # one more sample would make it too long
                if self._video and not self._asked and held >= ASK_KEYFRAME and not self.leader:
                    self._asked = True
                    self.ask_keyframe()
        self._last[sample.kind] = sample.pts
        self._pending.append(sample)
        self._part.append(sample)
        self._bytes += len(sample.data)

    def keyframe_wanted(self) -> bool:
        return self._video and self._start is None

    def _follow(self, leader: Segmenter, start: float) -> None:
        """Start on the leader's timeline: its base and wall clock, and the number
        of its segment that starts at ``start`` (the next one if none does)."""
        self._base, self._offset = leader._base, leader._offset
        for segment in leader.segments:
            if abs(segment.start - start) < 0.001:
                self._next = segment.number
                return
        if leader._start is not None and abs(leader._start - start) < 0.001:
            self._next = leader._next
        else:
            self._next = leader._next + 1

    def _new_sps(self, keyframe: bytes) -> bool:
        """Whether this keyframe's SPS differs from the last one's (the first: no)."""
        sps = next(
            (u for u in h264.split_annexb(keyframe) if u and u[0] & 0x1F == h264.NAL_SPS), None
        )
        if sps is None:
            return False
        changed = self._sps is not None and sps != self._sps
        self._sps = sps
        return changed

    def closed(self, info: str | None, failed: bool) -> None:
        if self.ended:
            return
        if self._pending and self._start is not None:
            last = self._pending[-1]
            frame = 1 / (self.info.video.fps or 30) if self._video and self.info.video else 0
            self._cut_part(last.pts / last.clock + frame, wake=False)
            self._cut(last.pts / last.clock + frame)
        self.ended = True
        self.failure = info if failed else None
        self._wake()

    # --- what HLS serves

    def playlist(self) -> str:
        """The media playlist: the last ``LISTED`` segments, the parts of the last
        ``PARTED`` and of the one being filled, and the next part's hint (made once
        per change, whatever the number of players asking)."""
        if self._playlist is None:
            self._playlist = self._render()
        return self._playlist

    def _render(self) -> str:
        listed = list(self.segments)[-LISTED:]
        first = listed[0].number if listed else 0
        lines = [
            "#EXTM3U",
            "#EXT-X-VERSION:6",
            f"#EXT-X-TARGETDURATION:{self.target}",
            f"#EXT-X-MEDIA-SEQUENCE:{first}",
        ]
        gone = self._discontinuities + sum(
            s.discontinuity for s in self.segments if s.number < first
        )
        if gone:
            lines.append(f"#EXT-X-DISCONTINUITY-SEQUENCE:{gone}")
        if not self.ended:
            lines += [
                f"#EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES,PART-HOLD-BACK={PART_HOLD_BACK:.3f}",
                f"#EXT-X-PART-INF:PART-TARGET={PART_TARGET:.3f}",
            ]
        for segment in listed:
            if segment.discontinuity:
                lines.append("#EXT-X-DISCONTINUITY")
            lines.append(date_time(segment.wall))
            if not self.ended and segment.number >= self._next - PARTED:
                lines += self._part_lines(segment.number)
            lines += [f"#EXTINF:{segment.duration:.3f},", f"{segment.number}.ts"]
        if self.ended:
            lines.append("#EXT-X-ENDLIST")
        else:
            if self.parts.get(self._next) and self._discontinuous:
                lines.append("#EXT-X-DISCONTINUITY")
            if self.parts.get(self._next) and self._start is not None and self._offset is not None:
                lines.append(date_time(self._start + self._offset))
            lines += self._part_lines(self._next)
            if self._start is not None:
                coming = len(self.parts.get(self._next, ()))
                lines.append(f'#EXT-X-PRELOAD-HINT:TYPE=PART,URI="{self._next}.{coming}.ts"')
        return "\n".join(lines) + "\n"

    def _part_lines(self, number: int) -> list[str]:
        return [
            f'#EXT-X-PART:DURATION={part.duration:.3f},URI="{part.uri}"'
            + (",INDEPENDENT=YES" if part.independent else "")
            for part in self.parts.get(number, ())
        ]

    def has(self, number: int, part: int | None = None) -> bool:
        """Whether the playlist holds segment ``number`` whole, or its part ``part``
        (LL-HLS's ``_HLS_msn`` and ``_HLS_part``); once ended, as much as it ever will."""
        if self.ended or number < self._next:
            return True
        return number == self._next and part is not None and len(self.parts.get(number, ())) > part

    def next_part(self) -> tuple[int, int]:
        """The (segment, part) the preload hint names: the next to be made."""
        return self._next, len(self.parts.get(self._next, ()))

    def part(self, number: int, index: int) -> Part | None:
        parts = self.parts.get(number, ())
        return parts[index] if 0 <= index < len(parts) else None

    def changed(self) -> Deferred[None]:
        """Fires at the next part, segment or end (for blocking reloads and hints)."""
        if len(self._watching) >= MAX_WAITING:
            raise TooManyWaiting(f"{MAX_WAITING} players already wait on {self.label}")
        done: Deferred[None] = Deferred(lambda d: self._forget(d))
        if self.ended:
            done.callback(None)
        else:
            self._watching.append(done)
        return done

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
        self.parts.clear()
        self._pending, self._part, self._bytes = [], [], 0
        self._wake()

    # --- inside

    def _cut(self, end: float) -> None:
        assert self._start is not None and self._base is not None
        samples, self._pending, self._bytes = self._pending, [], 0
        self._asked = False
        duration = max(end - self._start, 0.001)
        # its parts, just cut, hold every sample of it: their bytes are its bytes
        data = b"".join(part.data for part in self.parts.get(self._next, ()))
        wall = self._start + (self._offset or 0.0)
        if len(self.segments) == self.segments.maxlen and self.segments[0].discontinuity:
            self._discontinuities += 1  # the oldest leaves with its mark
        self.segments.append(
            Segment(
                self._next,
                duration,
                data,
                samples[0].keyframe,
                wall,
                self._discontinuous,
                self._start,
            )
        )
        self._next += 1
        for old in [number for number in self.parts if number < self._next - PARTS_KEPT]:
            del self.parts[old]
        self.target = max(self.target, math.ceil(duration - 0.0005))
        self._wake()

    def _cut_part(self, end: float, wake: bool = True) -> None:
        samples, self._part = self._part, []
        start, self._part_start = self._part_start, end
        if not samples or start is None or self._base is None:
            return
        parts = self.parts.setdefault(self._next, [])
        data = self._continuity.carry(mpegts.segment(samples, self.info, self._base))
        parts.append(
            Part(
                self._next,
                len(parts),
                max(end - start, 0.001),
                data,
                samples[0].keyframe if self._video else True,
            )
        )
        if wake:
            self._wake()

    def _wake(self) -> None:
        self._playlist = None  # every change comes through here
        watching, self._watching = self._watching, []
        for done in watching:
            done.callback(None)

    def _forget(self, done: Deferred[None]) -> None:
        if done in self._watching:
            self._watching.remove(done)
