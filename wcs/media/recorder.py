"""Recording: a subscriber that writes a stream to an MP4 in the media folder.

H.264 is written as received (never re-encoded); Opus becomes AAC. The file
is written under a hidden partial name and renamed when complete, with
``moov`` moved before ``mdat`` (faststart) so it plays progressively.
Timestamps are the sender's RTP timestamps, so loss or a pause in the
sender keeps the real timing.
"""

from __future__ import annotations

import contextlib
import datetime
import re
from fractions import Fraction
from pathlib import Path

import av
from twisted.internet.defer import Deferred
from twisted.internet.threads import deferToThread
from twisted.logger import Logger

from wcs.media import h264
from wcs.media.errors import MediaError
from wcs.media.sample import OPUS_CLOCK, VIDEO_CLOCK, MediaInfo, Sample

log = Logger()

DEFAULT_TEMPLATE = "{streamName}-{startTime}"
AAC_FRAME = 1024


def record_name(template: str, stream_name: str, media_session_id: str,
                folder: Path, now: datetime.datetime | None = None) -> str:
    """A file name from the template, safe for any file system, never an existing one."""
    now = now or datetime.datetime.now(datetime.timezone.utc)
    raw = template.format(streamName=stream_name, mediaSessionId=media_session_id,
                          startTime=now.strftime("%Y%m%d-%H%M%S"))
    stem = re.sub(r"[^A-Za-z0-9._-]", "_", raw).strip("._") or "record"
    stem = stem[:120]
    name = f"{stem}.mp4"
    counter = 1
    while (folder / name).exists() or (folder / f".{name}.part").exists():
        name = f"{stem}-{counter}.mp4"
        counter += 1
    return name


class Recorder:
    """Writes the samples it is given; ``finish()`` completes the file."""

    def __init__(self, folder: Path, name: str, info: MediaInfo, label: str) -> None:
        self.name = name
        self.label = label
        self.info = info
        self.final = folder / name
        self.partial = folder / f".{name}.part"
        try:
            self.partial.touch(exist_ok=False)  # PyAV opens lazily: find out now
            self.container = av.open(str(self.partial), "w", format="mp4",
                                     options={"movflags": "+faststart"})
        except (OSError, av.FFmpegError) as error:
            with contextlib.suppress(OSError):
                self.partial.unlink(missing_ok=True)
            raise MediaError(f"Cannot record to {folder}: "
                             f"{getattr(error, 'strerror', None) or error}") from None
        self.video_stream: av.VideoStream | None = None
        self.audio_stream: av.AudioStream | None = None
        self.started = False
        self.failed: str | None = None
        self._video_origin: int | None = None
        self._audio_origin: int | None = None
        self._opus = av.CodecContext.create("libopus", "r") if info.audio else None
        self._aac: av.AudioCodecContext | None = None
        self._resampler: av.AudioResampler | None = None
        self._aac_pts = 0
        self.samples = {"video": 0, "audio": 0}
        self.last_time = 0.0

    # Subscriber

    def deliver(self, sample: Sample) -> None:
        if self.failed or self.container is None:
            return
        try:
            if not self.started and not self._start(sample):
                return
            if sample.kind == "video":
                self._video(sample)
            elif self.audio_stream is not None and sample.codec != "aac":
                self._audio(sample)
        except (OSError, av.FFmpegError) as error:
            self.failed = f"Recording failed: {getattr(error, 'strerror', None) or error}"
            log.warn("{label}: {info}", label=self.label, info=self.failed)

    def finished(self, info: str | None, failed: bool) -> None:
        """The stream ended; completing the file is ``finish()``'s job."""

    def _start(self, sample: Sample) -> bool:
        """Begin at the first video keyframe (or the first audio, for audio only)."""
        if self.info.video is not None and not (sample.kind == "video" and sample.keyframe):
            return False
        if sample.codec == "aac":
            return False
        if self.info.video is not None:
            width, height = _picture_size(sample.data)
            stream = self.container.add_stream("h264", rate=30)
            stream.width, stream.height = width, height
            stream.time_base = Fraction(1, VIDEO_CLOCK)
            stream.codec_context.extradata = _parameter_sets(sample.data)
            self.video_stream = stream
            self._video_origin = sample.pts
        if self.info.audio is not None:
            audio = self.container.add_stream("aac", rate=OPUS_CLOCK)
            audio.layout = "stereo"
            audio.bit_rate = 128000
            self.audio_stream = audio
            self._aac = audio.codec_context
            self._resampler = av.AudioResampler(format="fltp", layout="stereo",
                                                rate=OPUS_CLOCK, frame_size=AAC_FRAME)
        self.started = True
        return True

    def _video(self, sample: Sample) -> None:
        assert self.video_stream is not None and self._video_origin is not None
        packet = av.Packet(sample.data)
        packet.pts = packet.dts = sample.pts - self._video_origin
        packet.time_base = self.video_stream.time_base
        packet.stream = self.video_stream
        packet.is_keyframe = sample.keyframe
        self.container.mux(packet)
        self.samples["video"] += 1
        self.last_time = max(self.last_time, packet.pts / VIDEO_CLOCK)

    def _audio(self, sample: Sample) -> None:
        assert self._opus is not None and self._resampler is not None
        if self._audio_origin is None:
            # align the audio start with the video start, on the sender's clocks
            self._audio_origin = sample.pts
            self._aac_pts = 0
        try:
            frames = self._opus.decode(av.Packet(sample.data))
        except av.FFmpegError:
            return  # a damaged Opus packet: its 20 ms are left out
        for frame in frames:
            frame.pts = None
            for chunk in self._resampler.resample(frame):
                self._encode(chunk)
        self.samples["audio"] += 1

    def _encode(self, frame: av.AudioFrame | None, container: object | None = None) -> None:
        assert self._aac is not None and self.audio_stream is not None
        container = container or self.container
        if frame is not None:
            frame.pts = self._aac_pts
            frame.time_base = Fraction(1, OPUS_CLOCK)
            self._aac_pts += frame.samples
        for packet in self._aac.encode(frame):
            packet.stream = self.audio_stream
            container.mux(packet)

    def finish(self) -> Deferred[str]:
        """Flush and close (the faststart rewrite runs in a thread), then give
        the file its final name. Fires with the record name; an empty or
        failed recording is removed and errbacks with the reason."""
        container, self.container = self.container, None
        if container is None:
            raise RuntimeError("finish() called twice")

        def close() -> str:
            try:
                if self.started and self.audio_stream is not None:
                    for chunk in self._resampler.resample(None) if self._resampler else []:
                        self._encode(chunk, container)
                    self._encode(None, container)
                container.close()
            except (OSError, av.FFmpegError) as error:
                self.failed = self.failed or f"Recording failed: {error}"
            if self.failed or not self.started:
                self.partial.unlink(missing_ok=True)
                raise MediaError(self.failed or "Nothing was recorded")
            self.partial.rename(self.final)
            return self.name

        def done(name: str) -> str:
            log.info("{label}: recorded {name} ({video} video, {audio} audio samples)",
                     label=self.label, name=name, **self.samples)
            return name

        return deferToThread(close).addCallback(done)


def _parameter_sets(annexb: bytes) -> bytes:
    units = [nal for nal in h264.split_annexb(annexb)
             if nal[0] & 0x1F in (h264.NAL_SPS, h264.NAL_PPS)]
    if not units:
        raise MediaError("The first keyframe carries no SPS/PPS")
    return b"".join(h264.START_CODE + nal for nal in units)


def _picture_size(keyframe: bytes) -> tuple[int, int]:
    """Width and height, by decoding the keyframe once."""
    decoder = av.CodecContext.create("h264", "r")
    frames = decoder.decode(av.Packet(keyframe)) + decoder.decode(None)
    if not frames:
        raise MediaError("The first keyframe does not decode")
    return frames[0].width, frames[0].height

