"""Recording: a subscriber that writes a stream to an MP4 in the media folder.

H.264 and AAC are written as the stream carries them (never re-encoded: a
published stream's AAC is the one its Opus is transcoded to once, for every
subscriber that takes AAC). The file is written under a hidden partial name
and renamed when complete, with ``moov`` moved before ``mdat`` (faststart)
so it plays progressively. Timestamps are the stream's own, from where the
recording starts (its first keyframe), so a pause in a publishing page
stays a pause and the AAC encoder's priming frame is marked to be skipped.
"""

from __future__ import annotations

import contextlib
import datetime
import os
import re
from collections.abc import Callable
from fractions import Fraction
from pathlib import Path

import av
from twisted.internet.defer import Deferred
from twisted.internet.threads import deferToThread
from twisted.logger import Logger

from wcs.errors import LimitReached, RecordingFailed
from wcs.media import h264
from wcs.media.sample import AAC_FRAME, VIDEO_CLOCK, MediaInfo, Sample

log = Logger()

#: What the publication is told when a bug (not the disk) stopped the recording.
INTERNAL_FAILURE = "Recording failed: internal error"
#: Bytes written between two looks at the disk's free space.
DISK_CHECK_EVERY = 1 << 20
MIB = 1 << 20


def free_bytes(folder: Path) -> int:
    """Bytes an unprivileged writer may still use on ``folder``'s disk."""
    stats = os.statvfs(folder)
    return stats.f_bavail * stats.f_frsize


def record_name(
    template: str,
    stream_name: str,
    media_session_id: str,
    folder: Path,
    now: datetime.datetime | None = None,
) -> str:
    """A file name from the template, safe for any file system, never an existing one."""
    now = now or datetime.datetime.now(datetime.UTC)
    raw = template.format(
        streamName=stream_name,
        mediaSessionId=media_session_id,
        startTime=now.strftime("%Y%m%d-%H%M%S"),
    )
    stem = re.sub(r"[^A-Za-z0-9._-]", "_", raw).strip("._") or "record"
    stem = stem[:120]
    name = f"{stem}.mp4"
    counter = 1
    while (folder / name).exists() or (folder / f".{name}.part").exists():
        name = f"{stem}-{counter}.mp4"
        counter += 1
    return name


class Recorder:
    """Writes the samples it is given, from the first keyframe; completes the
    file when the stream closes it (``completed`` fires with the name).

    ``on_state`` gets "failed" with the reason, once, when writing fails
    (a full disk, say, or a bug: then logged with its traceback): the
    publication then ends FAILED, and its peer with it. ``in_thread`` runs
    the closing rewrite off the reactor.

    Bounded by ``max_size`` bytes (``record_max_size``) and by the disk's free
    space, which it never takes below ``min_free`` bytes (``record_min_free_disk``):
    a recording that would start below the floor is refused; one that reaches either
    bound stops writing, is completed and kept as it is, and its publication ends
    FAILED with the limit named.
    """

    pressed_join = True  # it joins before the first sample: there is no GOP to take
    lead = 0.0
    audio_codecs = frozenset({"aac"})

    def __init__(
        self,
        folder: Path,
        name: str,
        info: MediaInfo,
        label: str,
        on_state: Callable[[str, str | None], None],
        in_thread: Callable[[Callable[[], str]], Deferred[str]] = deferToThread,
        max_size: int = 4096 * MIB,
        min_free: int = 512 * MIB,
        free: Callable[[Path], int] = free_bytes,
    ) -> None:
        self.name = name
        self.max_size = max_size
        self.min_free = min_free
        self._free = free
        self.folder = folder
        self.written = 0
        self._next_disk_check = DISK_CHECK_EVERY
        self.capped: str | None = None  # the limit that stopped it (the file is kept)
        if min_free and self._free_below_floor():
            raise RecordingFailed(self._floor().info)
        self.label = label
        self.info = info
        self.final = folder / name
        self.partial = folder / f".{name}.part"
        self._on_state = on_state
        self._in_thread = in_thread
        try:
            self.partial.touch(exist_ok=False)  # PyAV opens lazily: find out now
            self.container: av.container.OutputContainer | None = av.open(
                str(self.partial), "w", format="mp4", options={"movflags": "+faststart"}
            )
        except (OSError, av.FFmpegError) as error:
            with contextlib.suppress(OSError):
                self.partial.unlink(missing_ok=True)
            raise RecordingFailed(
                f"Cannot record to {folder}: {getattr(error, 'strerror', None) or error}"
            ) from None
        self.completed: Deferred[str] = Deferred()
        self.video_stream: av.VideoStream | None = None
        self.audio_stream: av.AudioStream | None = None
        self.started = False
        self.failed: str | None = None
        self._zero = 0.0  # stream time (s) of the recording's start
        self.samples = {"video": 0, "audio": 0}

    # Subscriber

    def keyframe_wanted(self) -> bool:
        return not self.started and self.info.video is not None

    def deliver(self, sample: Sample) -> None:
        if self.failed or self.capped or self.container is None:
            return
        try:
            if not self.started and not self._start(sample):
                return
            if sample.kind == "audio" and sample.codec != "aac":
                return  # the AAC beside it is what goes in the file
            stream = self.video_stream if sample.kind == "video" else self.audio_stream
            if stream is not None and self._room_for(len(sample.data)):
                self._mux(stream, sample)
        except RecordingFailed as error:
            self._fail(error.info)
        except (OSError, av.FFmpegError) as error:
            self._fail(f"Recording failed: {getattr(error, 'strerror', None) or error}")
        except Exception:  # a bug, not the disk: said as such, with its traceback
            log.failure("{label}: recording failed", label=self.label)
            self._fail(INTERNAL_FAILURE)

    def _room_for(self, size: int) -> bool:
        """Whether ``size`` more bytes stay within both bounds; if not, stop here
        (the file is kept) and end the publication with the limit named."""
        limit: LimitReached | None = None
        if self.written + size > self.max_size:
            limit = LimitReached("recording size in MiB", "record_max_size", self.max_size / MIB)
        elif self.min_free and self.written + size >= self._next_disk_check:
            self._next_disk_check = self.written + size + DISK_CHECK_EVERY
            if self._free_below_floor(size):
                limit = self._floor()
        if limit is None:
            self.written += size
            return True
        self.capped = limit.info
        log.warn(
            "{label}: {info}; recording stopped and kept at {n} bytes",
            label=self.label,
            info=limit.info,
            n=self.written,
        )
        self._on_state("failed", limit.info)
        return False

    def _free_below_floor(self, size: int = 0) -> bool:
        try:
            return self._free(self.folder) - size < self.min_free
        except OSError:
            return False  # not knowing is not a reason to refuse; a write error will say

    def _floor(self) -> LimitReached:
        return LimitReached("free disk space in MiB", "record_min_free_disk", self.min_free / MIB)

    def _fail(self, info: str) -> None:
        self.failed = info
        log.warn("{label}: {info}", label=self.label, info=info)
        self._on_state("failed", info)

    def closed(self, info: str | None, failed: bool) -> None:
        """The stream ended: complete the file (``completed`` tells how it went).
        Nothing more is reported to the owner, whose callback is let go."""
        self._on_state = _ignore
        if self.container is not None:
            self._finish().chainDeferred(self.completed)

    def _start(self, sample: Sample) -> bool:
        """Begin at the first video keyframe (or the first audio, for audio only)."""
        if self.info.video is not None and not (sample.kind == "video" and sample.keyframe):
            return False
        self._zero = sample.time
        container = self.container
        assert container is not None  # open while samples are delivered
        if self.info.video is not None:
            width, height = _picture_size(sample.data)
            stream = container.add_stream("h264", rate=30)
            stream.width, stream.height = width, height
            stream.time_base = Fraction(1, VIDEO_CLOCK)
            stream.codec_context.extradata = _parameter_sets(sample.data)
            self.video_stream = stream
        if self.info.audio is not None and self.info.audio.aac_config:
            audio = container.add_stream("aac", rate=self.info.audio.sample_rate)
            audio.layout = "stereo" if self.info.audio.channels == 2 else "mono"
            audio.codec_context.extradata = self.info.audio.aac_config
            self.audio_stream = audio
        self.started = True
        return True

    def _mux(self, stream: av.stream.Stream, sample: Sample) -> None:
        """One sample as it is, timed from the start of the recording."""
        pts = sample.pts - round(self._zero * sample.clock)
        if pts < -AAC_FRAME:
            return  # audio from before the start, but for one frame of encoder priming
        packet = av.Packet(sample.data)
        packet.pts = packet.dts = pts
        packet.time_base = Fraction(1, sample.clock)
        packet.stream = stream
        packet.is_keyframe = sample.keyframe
        assert self.container is not None  # open while samples are delivered
        self.container.mux(packet)
        self.samples[sample.kind] += 1

    def _finish(self) -> Deferred[str]:
        """Close the file (the faststart rewrite runs in a thread), then give
        it its final name. An empty or failed recording is removed and fails
        with the reason."""
        container, self.container = self.container, None
        assert container is not None  # finished once

        def close() -> str:
            try:
                container.close()
            except (OSError, av.FFmpegError) as error:
                self.failed = self.failed or f"Recording failed: {error}"
            try:
                if self.failed or not self.started:
                    self.partial.unlink(missing_ok=True)
                    raise RecordingFailed(self.failed or "Nothing was recorded")
                self.partial.rename(self.final)
            except OSError as error:
                raise RecordingFailed(f"Recording failed: {error.strerror}") from None
            return self.name

        def done(name: str) -> str:
            log.info(
                "{label}: recorded {record} ({video} video, {audio} audio samples)",
                label=self.label,
                record=name,
                **self.samples,
            )
            return name

        return self._in_thread(close).addCallback(done)


def _ignore(_state: str, _info: str | None) -> None:
    """What a recorder whose stream ended reports to: nobody."""


def _parameter_sets(annexb: bytes) -> bytes:
    units = [
        nal for nal in h264.split_annexb(annexb) if nal[0] & 0x1F in (h264.NAL_SPS, h264.NAL_PPS)
    ]
    if not units:
        raise RecordingFailed("The first keyframe carries no SPS/PPS")
    return b"".join(h264.START_CODE + nal for nal in units)


def _picture_size(keyframe: bytes) -> tuple[int, int]:
    """Width and height, by decoding the keyframe once."""
    decoder = av.CodecContext.create("h264", "r")
    frames = decoder.decode(av.Packet(keyframe)) + decoder.decode(None)
    if not frames:
        raise RecordingFailed("The first keyframe does not decode")
    return frames[0].width, frames[0].height
