"""AAC → Opus, because WebRTC browsers cannot decode AAC.

Done once per stream, whatever the number of viewers. A frame that fails to
decode (WCS's "AAC frames of type 0") is dropped and counted; playback goes on.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from fractions import Fraction

import av
from twisted.logger import Logger

from wcs.media.sample import AAC_FRAME, OPUS_CLOCK, OPUS_FRAME, Sample
from wcs.metrics import METERS

log = Logger()


def drained(
    resampler: av.AudioResampler, encode: Callable[[av.AudioFrame | None], Iterator[Sample]]
) -> Iterator[Sample]:
    """What a resampler and its encoder still hold at the end: a partial last
    frame is padded by the resampler, or dropped."""
    try:
        for chunk in resampler.resample(None):
            yield from encode(chunk)
        yield from encode(None)
    except (av.FFmpegError, ValueError):
        pass


class OpusTranscoder:
    """Feeds AAC packets, yields 20 ms Opus samples on the stream's clock."""

    def __init__(self, decoder: av.AudioCodecContext, label: str, quiet: bool = False) -> None:
        """``quiet`` only counts undecodable frames (for work no viewer waits on)."""
        METERS.transcoding("aac-to-opus", self)
        self.decoder = decoder
        self.label = label
        self.quiet = quiet
        self.resampler = av.AudioResampler(
            format="s16", layout="stereo", rate=OPUS_CLOCK, frame_size=OPUS_FRAME
        )
        self.encoder = av.CodecContext.create("libopus", "w")
        self.encoder.sample_rate = OPUS_CLOCK
        self.encoder.layout = "stereo"
        self.encoder.format = "s16"
        self.encoder.bit_rate = 64000
        self.encoder.options = {"application": "audio", "frame_duration": "20"}
        self.encoder.open()
        self.dropped = 0
        self._next_pts: int | None = None

    def feed(self, packet: av.Packet | None, offset: float) -> Iterator[Sample]:
        """Transcode one AAC packet (``None`` flushes); ``offset`` is the
        stream time (s) of the file's zero."""
        try:
            frames = self.decoder.decode(packet)
        except av.FFmpegError as error:
            self.dropped += 1
            if self.dropped == 1 and not self.quiet:
                log.warn(
                    "{label}: undecodable AAC frame dropped ({error}); later ones are only counted",
                    label=self.label,
                    error=error,
                )
            return
        for frame in frames:
            if self._next_pts is None and frame.pts is not None and frame.time_base:
                self._next_pts = round((float(frame.pts * frame.time_base) + offset) * OPUS_CLOCK)
            frame.pts = None
            for chunk in self.resampler.resample(frame):
                yield from self._encode(chunk)
        if packet is None:
            yield from drained(self.resampler, self._encode)

    def _encode(self, frame: av.AudioFrame | None) -> Iterator[Sample]:
        if frame is not None:
            frame.pts = None
        for packet in self.encoder.encode(frame):
            pts = self._next_pts or 0
            self._next_pts = pts + OPUS_FRAME
            yield Sample("audio", bytes(packet), pts, OPUS_CLOCK, pts / OPUS_CLOCK, codec="opus")


class AacTranscoder:
    """Opus → AAC, once per published stream, for the subscribers that take AAC
    (MSE viewers, the recorder).

    Timestamps are the encoder's, from the first Opus packet's: the first AAC
    packet is the encoder's priming, one frame before it, as in an MP4 file's
    AAC; audio time runs on continuously, so a pause in the sender is not a gap.
    """

    def __init__(self) -> None:
        METERS.transcoding("opus-to-aac", self)
        self.decoder = av.CodecContext.create("libopus", "r")
        self.encoder = av.CodecContext.create("aac", "w")
        self.encoder.sample_rate = OPUS_CLOCK
        self.encoder.layout = "stereo"
        self.encoder.format = "fltp"
        self.encoder.bit_rate = 128000
        self.encoder.open()
        self.resampler = av.AudioResampler(
            format="fltp", layout="stereo", rate=OPUS_CLOCK, frame_size=AAC_FRAME
        )
        self._origin: int | None = None
        self._encoded = 0  # samples handed to the encoder

    @property
    def config(self) -> bytes:
        """The AudioSpecificConfig of what comes out."""
        return bytes(self.encoder.extradata or b"")

    def feed(self, opus: Sample) -> Iterator[Sample]:
        if self._origin is None:
            self._origin = opus.pts
        try:
            frames = self.decoder.decode(av.Packet(opus.data))
        except av.FFmpegError:
            return  # a damaged packet: its 20 ms are left out
        for frame in frames:
            frame.pts = None
            for chunk in self.resampler.resample(frame):
                yield from self._encode(chunk)

    def flush(self) -> Iterator[Sample]:
        """The tail the resampler and the encoder still hold, when the stream ends."""
        if self._origin is not None:
            yield from drained(self.resampler, self._encode)

    def _encode(self, frame: av.AudioFrame | None) -> Iterator[Sample]:
        assert self._origin is not None
        if frame is not None:
            frame.pts = self._encoded
            frame.time_base = Fraction(1, OPUS_CLOCK)
            self._encoded += frame.samples
        for packet in self.encoder.encode(frame):
            assert packet.pts is not None  # the encoder times what it makes
            pts = self._origin + packet.pts  # the encoder's clock is OPUS_CLOCK
            yield Sample("audio", bytes(packet), pts, OPUS_CLOCK, pts / OPUS_CLOCK, codec="aac")
