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

import av

from wcs.media.sample import VIDEO_CLOCK, Sample

#: Used when the file does not say its video bitrate.
DEFAULT_BITRATE = 2_000_000


def profile_level_id(level_idc: int) -> str:
    """What the re-encoded stream is: High profile, the source's level."""
    return f"6400{level_idc:02x}"


class BFrameRemover:
    """Feeds decode-order packets, yields display-order Annex B samples."""

    def __init__(self, stream: av.video.stream.VideoStream, origin: float) -> None:
        self.decoder = stream.codec_context
        self.origin = origin
        self.time_base = stream.time_base
        rate = stream.average_rate or stream.guessed_rate or 30
        self.encoder = av.CodecContext.create("libx264", "w")
        self.encoder.width = self.decoder.width
        self.encoder.height = self.decoder.height
        self.encoder.pix_fmt = "yuv420p"
        self.encoder.time_base = self.time_base
        self.encoder.framerate = rate
        self.encoder.bit_rate = stream.bit_rate or self.decoder.bit_rate or DEFAULT_BITRATE
        self.encoder.profile = "high"
        self.encoder.options = {
            "preset": "veryfast", "tune": "zerolatency", "bf": "0",
            "x264-params": f"keyint={int(float(rate) * 10)}:scenecut=0:forced-idr=1:"
                           "repeat-headers=1:annexb=1",
        }
        self.encoder.open()

    def feed(self, packet: av.Packet | None) -> Iterator[Sample]:
        """One source packet in (``None`` flushes), re-encoded samples out."""
        for frame in self.decoder.decode(packet):
            keyframe = frame.key_frame
            frame.pict_type = av.video.frame.PictureType.I if keyframe else \
                av.video.frame.PictureType.NONE
            yield from self._encode(frame)
        if packet is None:
            yield from self._encode(None)

    def _encode(self, frame: av.VideoFrame | None) -> Iterator[Sample]:
        for out in self.encoder.encode(frame):
            if out.pts is None:
                continue
            seconds = float(out.pts * self.time_base) - self.origin
            yield Sample("video", bytes(out), round(seconds * VIDEO_CLOCK), VIDEO_CLOCK,
                         seconds, keyframe=out.is_keyframe)
