"""Reading an MP4 file sample by sample with PyAV: checked on open, never read whole.

Samples come out merged across tracks in time order (a k-way merge, since
each track is in order on its own but files interleave in chunks), with
video converted to Annex B and AAC transcoded to Opus.
"""

from __future__ import annotations

import io
import itertools
from collections import deque
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import BinaryIO

import av
from twisted.logger import Logger

from wcs.errors import WcsError, WrongFormat
from wcs.media import boxes, h264, reencode
from wcs.media.audio import OpusTranscoder
from wcs.media.sample import (
    OPUS_CLOCK,
    OPUS_FRAME,
    VIDEO_CLOCK,
    AudioInfo,
    MediaInfo,
    Sample,
    VideoInfo,
    shifted,
)

log = Logger()

#: Samples held at most while waiting for the other track (bounds memory
#: for badly interleaved files; past it, samples go out as read).
MERGE_LIMIT = 2000


class Mp4File:
    """An open, checked MP4 file with H.264 and/or AAC."""

    def __init__(
        self, source: Path | BinaryIO | io.RawIOBase, label: str, announce: bool = True
    ) -> None:
        """Open ``source``: a local path (its box layout is checked here), or a
        file object whose layout the caller has already checked. ``announce``
        false keeps it out of the log (work in the background)."""
        self.label = label
        self._cached_opus: Callable[[], Iterator[Sample]] | None = None
        #: Called once, when Opus is first made from this file (a cache may then
        #: make it for later readers).
        self.on_transcoding: Callable[[], None] = _nothing
        #: Asked while the Opus is still transcoded (at each pass, and once a
        #: second of media within it): the cache's replay once it holds this
        #: file, or None. A reader that began first thus stops transcoding
        #: about a second after the cache is made.
        self.find_opus: Callable[[], Callable[[], Iterator[Sample]] | None] | None = None
        self.opus_dropped = 0
        self._began = False  # whether samples() was called
        self._bases: dict[int, tuple[int, int]] = {}  # each stream's time base
        if isinstance(source, Path):
            try:
                with source.open("rb") as handle:
                    boxes.check_layout(handle, source.stat().st_size)
            except OSError as error:
                raise WrongFormat(f"cannot read the file ({error.strerror})") from None
            target: str | BinaryIO | io.RawIOBase = str(source)
        else:
            target = source
        if announce:
            log.info(
                "{label}: opened {path}",
                label=label,
                path=str(source) if isinstance(source, Path) else label,
            )
        try:
            self.container = av.open(target, "r", timeout=5.0)
        except av.FFmpegError as error:
            raise WrongFormat(f"not a readable MP4 file ({_reason(error)})") from None
        try:
            self._check()
        except WcsError:
            self.container.close()
            raise

    def _check(self) -> None:
        container = self.container
        if not {"mp4", "mov"} & set(container.format.name.split(",")):
            raise WrongFormat(f"{container.format.name} is not an MP4 container")
        self.video = container.streams.video[0] if container.streams.video else None
        self.audio = container.streams.audio[0] if container.streams.audio else None
        if self.video is None and self.audio is None:
            raise WrongFormat("no video or audio track")
        if self.video is not None and self.video.codec_context.name != "h264":
            raise WrongFormat(f"video codec {self.video.codec_context.name} is not H.264")
        if self.audio is not None and self.audio.codec_context.name != "aac":
            raise WrongFormat(f"audio codec {self.audio.codec_context.name} is not AAC")
        self.avc = h264.parse_avcc(self.video.codec_context.extradata) if self.video else None
        starts = [
            float(s.start_time * s.time_base)
            for s in (self.video, self.audio)
            if s is not None and s.start_time is not None and s.time_base is not None
        ]
        self.origin = min(starts) if starts else 0.0
        # where a pass's first frame of the track it loops on is: a video that
        # starts after the audio does, its next pass that far after its end
        first = self.video if self.video is not None else self.audio
        self.lead_in = (
            float(first.start_time * first.time_base) - self.origin
            if first is not None and first.start_time is not None and first.time_base
            else 0.0
        )
        self.info = MediaInfo(
            duration=(container.duration or 0) / av.time_base,
            video=self._video_info(),
            audio=AudioInfo(OPUS_CLOCK, 2, bytes(self.audio.codec_context.extradata or b""))
            if self.audio
            else None,
            bitrate=container.bit_rate or 0,
        )

    def _video_info(self) -> VideoInfo | None:
        if self.video is None or self.avc is None:
            return None
        context = self.video.codec_context
        rate = self.video.average_rate or self.video.guessed_rate
        profile = (
            reencode.profile_level_id(self.avc.level_idc)
            if self.has_b_frames
            else self.avc.profile_level_id
        )
        return VideoInfo(context.width, context.height, float(rate) if rate else 0.0, profile)

    @property
    def has_b_frames(self) -> bool:
        """True when the decoder must reorder (PTS and DTS differ)."""
        return bool(self.video is not None and self.video.codec_context.has_b_frames)

    def samples(
        self,
        loop: bool = False,
        *,
        period: float | None = None,
        position: float = 0.0,
        wants_opus: Callable[[], bool] = lambda: True,
        wants_aac: Callable[[], bool] = lambda: True,
    ) -> Iterator[Sample]:
        """Every sample in due order; with ``loop``, again and again from the start.

        Each pass starts where the previous pass's video ended (the audio's if
        there is no video), so video timestamps keep their exact rhythm across
        the loop. Each audio codec's frames (AAC as stored, Opus) stay on one
        grid across passes (:class:`AudioGrid`): a pass's frames are moved by at
        most half a frame so that its first comes exactly one frame after the
        last pass's last, and a frame that would overlap it is dropped; so audio
        never overlaps or runs backwards, and A/V sync does not drift loop by loop.

        ``period`` is that pass length when the caller fixed it beforehand
        (:meth:`pass_length`), so that every reader of one broadcast loops at
        the same instants. ``position`` (s on the broadcast's timeline, loops
        included) starts there instead: from the keyframe at or before it, with
        the samples' times as they would be had the reading begun at zero.

        Opus comes only while ``wants_opus()`` says someone takes it (asked at
        each AAC frame): otherwise no transcoder runs, and one that starts again
        starts afresh at that frame.

        AAC comes only if ``wants_aac()`` (asked at each pass's start) or
        nobody takes Opus then. A pass whose Opus comes from the cache without
        AAC leaves the file's audio unread: a WebRTC play's reader then demuxes
        its video alone (a third of a personal play's samples, and of its
        reading, were AAC frames nobody took).
        """
        offset = 0.0
        seek = 0.0
        if position > 0:
            length = period if period is not None else self.pass_length()
            if loop and length > 0:
                passes = int(position // length)
                offset, seek = passes * length, position - passes * length
            elif position >= length:  # that broadcast is over
                return
            else:
                seek = position
        elif self._began:  # read before (a play sought back to its start)
            self._rewind()
        self._began = True
        # Opus off the file's 20 ms grid when transcoding began mid-file
        grids = {"opus": AudioGrid(OPUS_FRAME), "aac": AudioGrid(self._aac_frame())}
        while True:
            ends = {"video": offset, "audio": offset}
            skip = self._seek(seek) if seek else None
            seek = 0.0
            for grid in grids.values():
                grid.new_pass()
            aac = wants_aac() or not wants_opus()
            for sample in self._one_pass(skip, wants_opus, aac):
                if offset:
                    sample = shifted(sample, offset)
                on_grid = grids.get(sample.codec)
                if on_grid is not None and not on_grid.place(sample):
                    continue
                ends[sample.kind] = max(
                    ends[sample.kind], sample.pts / sample.clock + self._duration(sample)
                )
                yield sample
            # the next pass's first frame comes one frame after this one's last
            end = (ends["video"] if self.video is not None else ends["audio"]) - self.lead_in
            if period is not None and end > offset:
                end = offset + period
            if not loop or end <= offset:
                return
            offset = end
            self._rewind()

    def pass_length(self) -> float:
        """How long one pass of :meth:`samples` lasts: where its last video
        sample ends (its last audio frame's, without video), found from the
        last keyframe on, without reading the whole file; the reader is left
        at the start."""
        stream = self.video if self.video is not None else self.audio
        if stream is None or stream.time_base is None:
            return self.info.duration
        end = 0.0
        try:
            self.container.seek(2**62, stream=stream, backward=True)
            for packet in self.container.demux(stream):
                if packet.pts is None or packet.size == 0:
                    continue
                seconds = float(packet.pts * packet.time_base) - self.origin
                end = max(end, seconds + self._frame_length(stream is self.video))
        except av.FFmpegError as error:
            log.warn(
                "{label}: could not find the end ({error})", label=self.label, error=_reason(error)
            )
        self._rewind()
        return end - self.lead_in if end > self.lead_in else self.info.duration

    def join_ranges(
        self, position: float, loop: bool, ahead: float = 10.0
    ) -> list[tuple[int, int]]:
        """The bytes (offset, length) a reader starting at ``position`` (as
        :meth:`samples` takes it) reads first: the last GOP, which
        :meth:`pass_length` reads, and from the keyframe before the start to
        ``ahead`` seconds after it, every track. From the index in ``moov``:
        nothing is read. For a download to fetch before the reader seeks."""
        stream = self.video if self.video is not None else self.audio
        if stream is None or stream.time_base is None:
            return []
        entries = list(stream.index_entries)
        if not entries:
            return []
        keys = [e for e in entries if e.is_keyframe] or entries
        last = keys[-1]
        ranges = [(last.pos, max(e.pos + e.size for e in entries) - last.pos)]
        base = float(stream.time_base)
        length = (
            (entries[-1].timestamp * base - self.origin)
            + self._frame_length(stream is self.video)
            - self.lead_in
        )
        if loop and length > 0:
            position %= length
        elif position >= length:
            return ranges
        first = self.keyframe_time(position) + self.origin - 0.5
        end = position + self.origin + ahead
        spans = [
            (e.pos, e.pos + e.size)
            for track in (self.video, self.audio)
            if track is not None and track.time_base is not None
            for e in track.index_entries
            if first <= e.timestamp * float(track.time_base) <= end
        ]
        if spans:
            low = min(span[0] for span in spans)
            ranges.append((low, max(span[1] for span in spans) - low))
        return ranges

    def keyframe_time(self, position: float) -> float:
        """The time (s into a pass) of the keyframe at or before ``position``,
        where a reader sought there starts, from the index alone."""
        stream = self.video if self.video is not None else self.audio
        if stream is None or stream.time_base is None:
            return 0.0
        entries = stream.index_entries
        if not len(entries):
            return 0.0
        base = float(stream.time_base)
        target = (position + self.origin) / base
        low, high = 0, len(entries)  # the first entry after the target: a binary search
        while low < high:
            middle = (low + high) // 2
            if entries[middle].timestamp <= target:
                low = middle + 1
            else:
                high = middle
        at = max(0, low - 1)
        while at > 0 and not entries[at].is_keyframe:
            at -= 1
        return max(0.0, entries[at].timestamp * base - self.origin)

    def _seek(self, seconds: float) -> float:
        """Go to the keyframe at or before ``seconds`` into a pass; return the
        time reading resumes from (cached Opus before it is skipped)."""
        stream = self.video if self.video is not None else self.audio
        assert stream is not None and stream.time_base is not None
        target = int((seconds + self.origin) / stream.time_base)
        try:
            self.container.seek(target, stream=stream, backward=True)
        except av.FFmpegError as error:
            log.warn(
                "{label}: seek failed ({error}); from the start",
                label=self.label,
                error=_reason(error),
            )
            self._rewind()
            return 0.0
        for track in (self.video, self.audio):
            if track is not None:
                track.codec_context.flush_buffers()
        return seconds

    def _duration(self, sample: Sample) -> float:
        if sample.codec == "opus":
            return OPUS_FRAME / OPUS_CLOCK
        return self._frame_length(sample.kind == "video")

    def _frame_length(self, video: bool) -> float:
        """How long one frame of the file's video, or of its AAC, lasts (s)."""
        if not video:
            rate = self.audio.codec_context.sample_rate if self.audio is not None else 0
            return self._aac_frame() / rate if rate else OPUS_FRAME / OPUS_CLOCK
        fps = self.info.video.fps if self.info.video else 0.0
        return 1 / fps if fps else 0.0

    def _aac_frame(self) -> int:
        """Samples in one AAC frame (1024, AAC-LC's), in its clock's ticks."""
        return (self.audio.codec_context.frame_size if self.audio is not None else 0) or 1024

    def _rewind(self) -> None:
        """Back to every track's first sample: sought on the track whose first
        sample comes first (sought at 0, a video starting after its audio took the
        audio stored before its first frame away from every pass after the first)."""
        starts = [
            (s.index_entries[0].timestamp * s.time_base, s)
            for s in (self.video, self.audio)
            if s is not None and len(s.index_entries) and s.time_base is not None
        ]
        if not starts:
            self.container.seek(0)
        else:
            first = min(starts, key=lambda start: start[0])[1]
            self.container.seek(first.index_entries[0].timestamp, stream=first)
        for stream in (self.video, self.audio):
            if stream is not None:
                stream.codec_context.flush_buffers()

    def _one_pass(
        self,
        skip: float | None = None,
        wants_opus: Callable[[], bool] = lambda: True,
        aac: bool = True,
    ) -> Iterator[Sample]:
        """One pass over the file (from where it was sought to: cached Opus
        before ``skip`` s is passed over), merged across tracks by due time."""
        queues: dict[str, deque[Sample]] = {kind: deque() for kind in self._kinds()}
        for sample in self._read(skip, wants_opus, aac):
            queues[sample.kind].append(sample)
            while all(queues.values()) or sum(map(len, queues.values())) > MERGE_LIMIT:
                yield _pop_earliest(queues)
        while any(queues.values()):
            yield _pop_earliest(queues)

    def _kinds(self) -> list[str]:
        return [
            kind
            for kind, stream in (("video", self.video), ("audio", self.audio))
            if stream is not None
        ]

    def _read(
        self,
        skip: float | None = None,
        wants_opus: Callable[[], bool] = lambda: True,
        aac: bool = True,
    ) -> Iterator[Sample]:
        """Samples in file order (AAC only if ``aac``, when Opus comes from the
        cache); a broken tail ends the stream, it does not raise."""
        if self.audio is not None and self.find_opus is not None and self.find_cached_opus():
            log.info("{label}: Opus cached meanwhile: replayed from this pass on", label=self.label)
        if self.audio is not None and self._cached_opus is not None:
            opus = self._cached_opus()
            if skip:
                opus = itertools.dropwhile(lambda sample: sample.time < skip - 1.0, opus)
            yield from _merged(self._read_media(None, aac), opus, wants_opus, aac)
        else:
            yield from self._read_media(wants_opus if self.audio else None)

    def replay_opus(self, opus: Callable[[], Iterator[Sample]]) -> None:
        """Take this file's audio already transcoded (what :meth:`opus_samples`
        gave once; ``opus`` replays it from the start at each call) instead of
        transcoding it again."""
        self._cached_opus = opus

    def opus_samples(self) -> Iterator[Sample]:
        """This file's audio as Opus, exactly as a pass over the file makes it
        (the same packets in, the same transcoder): for a cache to replay. Call
        it on a file just opened: from its start, as a first pass reads it.
        Undecodable frames are counted in ``opus_dropped``, not logged."""
        if self.audio is None:
            return
        transcoder = OpusTranscoder(self.audio.codec_context, self.label, quiet=True)
        try:
            for packet in self.container.demux(self.audio):
                if packet.size:
                    yield from transcoder.feed(packet, -self.origin)
        except av.FFmpegError as error:
            log.warn(
                "{label}: read stopped early ({error})", label=self.label, error=_reason(error)
            )
        yield from transcoder.feed(None, -self.origin)
        self.opus_dropped = transcoder.dropped

    def _read_media(
        self, wants_opus: Callable[[], bool] | None, aac: bool = True
    ) -> Iterator[Sample]:
        """Video and AAC as stored (and, while ``wants_opus()``, Opus made from
        the AAC), in file order; without ``aac`` nor ``wants_opus`` the audio
        track is not even demuxed."""
        opus = _OpusFeed(self) if wants_opus is not None else None
        remover = (
            reencode.BFrameRemover(self.video, self.origin)
            if self.video is not None and self.has_b_frames
            else None
        )
        if remover is not None:
            log.info(
                "{label}: B-frames: its video is re-encoded as it plays "
                "(python -m wcs prepare writes a copy that needs none)",
                label=self.label,
            )
        audio = self.audio if aac or wants_opus is not None else None
        streams = [s for s in (self.video, audio) if s is not None]
        if not streams:  # PyAV would take no streams for all of them
            return
        try:
            for packet in self.container.demux(streams):
                if packet.size == 0:
                    continue
                if packet.stream is self.video and remover is not None:
                    yield from remover.feed(packet)
                elif packet.stream is self.video:
                    sample = self._video_sample(packet)
                    if sample is not None:
                        yield sample
                else:
                    stored = self._aac_sample(packet) if aac else None
                    if stored is not None:
                        yield stored
                    if opus is not None and wants_opus is not None:
                        yield from opus.feed(packet, wants_opus())
        except av.FFmpegError as error:
            log.warn(
                "{label}: read stopped early ({error})", label=self.label, error=_reason(error)
            )
        if remover is not None:
            yield from remover.feed(None)
        if opus is not None and wants_opus is not None:
            yield from opus.end(wants_opus())

    def find_cached_opus(self) -> Callable[[], Iterator[Sample]] | None:
        """The cache's replay of this file's Opus if ``find_opus`` now finds
        it (then it is kept, and asked no more), else None."""
        if self._cached_opus is None and self.find_opus is not None:
            found = self.find_opus()
            if found is not None:
                self._cached_opus, self.find_opus = found, None
        return self._cached_opus

    def _transcoder(self) -> OpusTranscoder:
        """A fresh AAC → Opus transcoder, from the frame about to be read."""
        assert self.audio is not None
        self.audio.codec_context.flush_buffers()  # frames skipped meanwhile are not its past
        on_transcoding, self.on_transcoding = self.on_transcoding, _nothing
        on_transcoding()
        return OpusTranscoder(self.audio.codec_context, self.label)

    def _seconds(self, stream: av.stream.Stream, ticks: int) -> float:
        """``ticks`` of ``stream``'s time base in seconds: the same float as
        ``float(ticks * time_base)`` (an exact ratio, rounded once), without the
        Fraction PyAV makes at each access and the Fraction arithmetic (a tenth of
        a personal play's reading)."""
        base = self._bases.get(stream.index)
        if base is None:
            fraction = stream.time_base
            assert fraction is not None
            base = self._bases[stream.index] = (fraction.numerator, fraction.denominator)
        return ticks * base[0] / base[1]

    def _aac_sample(self, packet: av.Packet) -> Sample | None:
        """The AAC frame as stored, for subscribers that take AAC (MSE)."""
        if packet.pts is None or packet.time_base is None or self.audio is None:
            return None
        rate = self.audio.codec_context.sample_rate or OPUS_CLOCK
        seconds = self._seconds(packet.stream, packet.pts) - self.origin
        return Sample("audio", bytes(packet), round(seconds * rate), rate, seconds, codec="aac")

    def _video_sample(self, packet: av.Packet) -> Sample | None:
        assert self.avc is not None
        if packet.pts is None or packet.time_base is None:
            return None
        data, is_idr = h264.to_annexb(bytes(packet), self.avc)
        if not data:
            return None
        pts_seconds = self._seconds(packet.stream, packet.pts) - self.origin
        dts = packet.dts if packet.dts is not None else packet.pts
        return Sample(
            "video",
            data,
            round(pts_seconds * VIDEO_CLOCK),
            VIDEO_CLOCK,
            self._seconds(packet.stream, dts) - self.origin,
            keyframe=is_idr or packet.is_keyframe,
            codec="h264",
        )

    def close(self) -> None:
        """Close the file and let go of its tracks: a track's decoder (and the
        threads FFmpeg gave it) lives as long as the track object does."""
        self.container.close()
        self.video = self.audio = None


class AudioGrid:
    """One audio codec's frames (``frame`` ticks each) kept on one grid across a
    loop's passes: each pass's frames are moved, by at most half a frame, so that
    its first comes exactly one frame after the previous pass's last; a frame that
    would overlap that one is dropped. With ``close_gaps`` a pass whose sound
    starts less than a frame after the last one's end is moved back onto it (up to
    a frame early against its picture) rather than on by a frame's silence: a
    playlist's next file, whose picture starts where the last picture ended."""

    def __init__(self, frame: int, close_gaps: bool = False) -> None:
        self.frame = frame
        self.close_gaps = close_gaps
        self.next: int | None = None  # where the next frame starts
        self.nudge: int | None = None  # how far this pass's frames are moved

    def new_pass(self) -> None:
        self.nudge = None

    def place(self, sample: Sample) -> bool:
        """Move ``sample`` onto the grid; False if it overlaps the previous frame."""
        frame, half = self.frame, self.frame // 2
        if self.nudge is None:
            gap = sample.pts - self.next if self.next is not None else 0
            if self.close_gaps and 0 <= gap < frame:
                self.nudge = -gap
            else:
                self.nudge = -((gap + half) % frame - half)
        if self.nudge:
            sample.pts += self.nudge
            sample.time = sample.pts / sample.clock
        if self.next is not None and sample.pts < self.next - half:
            return False
        if self.next is not None and sample.pts < self.next:
            sample.pts = self.next
            sample.time = self.next / sample.clock
        self.next = sample.pts + frame
        return True


class _OpusFeed:
    """A pass's Opus made from its AAC packets as they are read: transcoded,
    until the Opus cache holds the file (``Mp4File.find_opus``, asked once a
    :data:`LOOK_EVERY` of media), and from there on the cache's frames, picked
    up just after the last transcoded one. The cache made the very same frames
    from the same packets, so a reader that began before the cache existed (a
    file's first play or broadcast) stops transcoding within a second of it,
    not at its next pass."""

    #: Media seconds between two looks for the cache while transcoding.
    LOOK_EVERY = 1.0
    #: Past this far into the file (s) a pass keeps transcoding to its end: the
    #: cache is read from its start to find the place (about 10 ms a 100 s, on
    #: the reactor), which a play sought deep into a long file would stall on.
    CATCH_UP = 120.0

    def __init__(self, media: Mp4File) -> None:
        self.media = media
        self.transcoder: OpusTranscoder | None = None
        self.dropped = 0
        self.last: Sample | None = None  # the last transcoded Opus frame given
        self.cached: Iterator[Sample] | None = None
        self.waiting: Sample | None = None  # the cache's next frame
        self.shift = 0.0  # how far the cache's frames are moved onto the pass's grid
        self.look_at = 0.0  # media time of the next look for the cache

    def feed(self, packet: av.Packet, wanted: bool) -> Iterator[Sample]:
        """The Opus due with this AAC packet (none while no one ``wanted`` it)."""
        media = self.media
        if wanted and self.cached is None and media.find_opus is not None and packet.pts:
            now = media._seconds(packet.stream, packet.pts) - media.origin
            if self.look_at <= now <= self.CATCH_UP:
                self.look_at = now + self.LOOK_EVERY
                self._take_cache(now)
        if self.cached is not None:
            now = media._seconds(packet.stream, packet.pts or 0) - media.origin
            while self.waiting is not None and self.waiting.time <= now:
                if wanted:
                    yield shifted(self.waiting, self.shift) if self.shift else self.waiting
                self.waiting = next(self.cached, None)
            return
        if not wanted:
            if self.transcoder is not None:  # no one takes Opus now: let it go
                self.dropped += self.transcoder.dropped
                self.transcoder = None
            self.last = None  # (what comes next starts afresh on the timeline)
            return
        if self.transcoder is None:
            self.transcoder = media._transcoder()
        for sample in self.transcoder.feed(packet, -media.origin):
            self.last = sample
            yield sample

    def _take_cache(self, now: float) -> None:
        """Go on from the cache, if it holds the file now: from its first frame
        that starts at least half a frame after the last one given, moved (by
        at most half a frame) to follow that one exactly. A transcoder begun
        mid-file (when a viewer first took Opus) is on a grid of its own."""
        replay = self.media.find_cached_opus()
        if replay is None:
            return
        frame = OPUS_FRAME / OPUS_CLOCK
        last = self.last
        after = (last.time if last is not None else now - frame) + frame / 2
        self.cached = itertools.dropwhile(lambda sample: sample.time < after, replay())
        self.waiting = next(self.cached, None)
        waiting = self.waiting
        if last is not None and waiting is not None and waiting.pts - last.pts < 1.5 * OPUS_FRAME:
            self.shift = (last.pts + OPUS_FRAME - waiting.pts) / OPUS_CLOCK
        if self.transcoder is not None:
            self.dropped += self.transcoder.dropped
            self.transcoder = None
        log.info("{label}: Opus cached meanwhile: replayed from here on", label=self.media.label)

    def end(self, wanted: bool) -> Iterator[Sample]:
        """What is left at the end of the pass: the transcoder's last frames,
        or the cache's (passed over unless ``wanted``)."""
        if self.transcoder is not None:
            yield from self.transcoder.feed(None, -self.media.origin)
            self.dropped += self.transcoder.dropped
        while self.cached is not None and self.waiting is not None:
            if wanted:
                yield shifted(self.waiting, self.shift) if self.shift else self.waiting
            self.waiting = next(self.cached, None)
        if self.dropped:
            log.warn(
                "{label}: {n} undecodable AAC frames dropped in all",
                label=self.media.label,
                n=self.dropped,
            )


def _merged(
    media: Iterator[Sample],
    opus: Iterator[Sample],
    wants_opus: Callable[[], bool] = lambda: True,
    aac: bool = True,
) -> Iterator[Sample]:
    """File-order samples with cached Opus slotted in by time, beside the AAC
    (while ``wants_opus()``: the rest is passed over); with no AAC among
    them (``aac`` false), after each video sample."""
    waiting = next(opus, None)
    for sample in media:
        yield sample
        if sample.codec == "aac" or not aac:
            while waiting is not None and waiting.time <= sample.time:
                if wants_opus():
                    yield waiting
                waiting = next(opus, None)
    while waiting is not None:
        if wants_opus():
            yield waiting
        waiting = next(opus, None)


def _nothing() -> None:
    """What a reader calls when it starts transcoding, unless told otherwise."""


def _pop_earliest(queues: dict[str, deque[Sample]]) -> Sample:
    kind = min((q[0].time, kind) for kind, q in queues.items() if q)[1]
    return queues[kind].popleft()


def _reason(error: Exception) -> str:
    return getattr(error, "strerror", None) or str(error)
