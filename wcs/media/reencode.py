"""B-frame files: decoded and re-encoded once per stream without B-frames.

WebRTC receivers expect frames in presentation order: sent in decode order,
a B-frame file decodes a handful of frames and freezes (WCS's known issue;
measured here: 6 of 166 frames decoded in Chromium). Sending in display
order is impossible without decoding, so such files are re-encoded with
x264 (no B-frames, IDRs where the source had keyframes). Files without
B-frames, the usual case, still go through untouched.
"""

from __future__ import annotations

from collections.abc import Iterator
from fractions import Fraction

import av

from wcs.media.sample import VIDEO_CLOCK, Sample
from wcs.metrics import METERS

#: Used when the file does not say its video bitrate.
DEFAULT_BITRATE = 2_000_000


def profile_level_id(level_idc: int) -> str:
    """What the re-encoded stream is: High profile, the source's level."""
    return f"6400{level_idc:02x}"


#: A capped encoder's VBV (s): over any span of ``d`` seconds it makes at most
#: ``bitrate * (d + CAP_WINDOW)`` bits, so a segment of ``d`` seconds peaks at
#: ``1 + CAP_WINDOW / d`` times the cap (HLS ABR's BANDWIDTH counts on it).
CAP_WINDOW = 0.5


class X264:
    """x264 for live use: no B-frames, no lookahead, IDRs where asked."""

    def __init__(
        self,
        width: int,
        height: int,
        time_base: Fraction,
        rate: float,
        bitrate: int,
        origin: float = 0.0,
        profile: str = "high",
        capped: bool = False,
    ) -> None:
        """``capped``: no :data:`CAP_WINDOW` above ``bitrate`` (a VBV that long),
        for a rendition that must fit a viewer's link, not just average to it."""
        self.time_base = time_base
        self.origin = origin
        self.encoder = av.CodecContext.create("libx264", "w")
        self.encoder.width = width
        self.encoder.height = height
        self.encoder.pix_fmt = "yuv420p"
        self.encoder.time_base = time_base
        self.encoder.framerate = Fraction(rate).limit_denominator(1001)
        self.encoder.bit_rate = bitrate
        self.encoder.profile = profile
        self.encoder.options = {
            "preset": "veryfast",
            "tune": "zerolatency",
            "bf": "0",
            "profile": profile,
            "x264-params": f"keyint={max(1, int(rate * 10))}:scenecut=0:forced-idr=1:"
            "repeat-headers=1:annexb=1"
            + (
                f":vbv-maxrate={bitrate // 1000}:vbv-bufsize={int(bitrate * CAP_WINDOW) // 1000}"
                if capped
                else ""
            ),
        }
        self.encoder.open()

    def encode(self, frame: av.VideoFrame | None, keyframe: bool = False) -> Iterator[Sample]:
        """One picture in (``None`` flushes); Annex B samples out."""
        if frame is not None:
            if frame.format.name != "yuv420p":
                frame = frame.reformat(format="yuv420p")
            frame.pict_type = (
                av.video.frame.PictureType.I if keyframe else av.video.frame.PictureType.NONE
            )
        for out in self.encoder.encode(frame):
            if out.pts is None:
                continue
            seconds = float(out.pts * self.time_base) - self.origin
            yield Sample(
                "video",
                bytes(out),
                round(seconds * VIDEO_CLOCK),
                VIDEO_CLOCK,
                seconds,
                keyframe=out.is_keyframe,
                codec="h264",
            )


class BFrameRemover:
    """Feeds decode-order packets, yields display-order Annex B samples."""

    def __init__(self, stream: av.video.stream.VideoStream, origin: float) -> None:
        METERS.transcoding("b-frames", self)
        self.decoder = stream.codec_context
        rate = stream.average_rate or stream.guessed_rate or 30
        time_base = stream.time_base
        assert time_base is not None  # a demuxed stream's
        self.x264 = X264(
            self.decoder.width,
            self.decoder.height,
            time_base,
            float(rate),
            stream.bit_rate or self.decoder.bit_rate or DEFAULT_BITRATE,
            origin,
        )

    def feed(self, packet: av.Packet | None) -> Iterator[Sample]:
        """One source packet in (``None`` flushes), re-encoded samples out."""
        for frame in self.decoder.decode(packet):
            yield from self.x264.encode(frame, keyframe=frame.key_frame)
        if packet is None:
            yield from self.x264.encode(None)


class Vp8ToH264:
    """A VP8 publisher's frames as H.264: viewers and recordings only take H.264.

    Decoded and encoded once per published stream; the first picture after a
    VP8 keyframe becomes an IDR, so late joiners and the recorder start clean.
    """

    def __init__(self, bitrate: int = DEFAULT_BITRATE) -> None:
        METERS.transcoding("vp8-to-h264", self)
        self.decoder = av.CodecContext.create("vp8", "r")
        self.bitrate = bitrate
        self.x264: X264 | None = None

    def feed(self, sample: Sample) -> Iterator[Sample]:
        packet = av.Packet(sample.data)
        packet.pts = sample.pts
        packet.time_base = Fraction(1, VIDEO_CLOCK)
        try:
            frames = self.decoder.decode(packet)
        except av.FFmpegError:
            return  # a damaged frame: the next keyframe repairs the picture
        for frame in frames:
            if self.x264 is None:
                if not sample.keyframe:
                    continue
                self.x264 = X264(
                    frame.width,
                    frame.height,
                    Fraction(1, VIDEO_CLOCK),
                    30.0,
                    self.bitrate,
                    profile="baseline",
                )
            frame.pts = sample.pts
            frame.time_base = Fraction(1, VIDEO_CLOCK)
            yield from self.x264.encode(frame, keyframe=sample.keyframe)
