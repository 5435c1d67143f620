"""A run of H.264 and AAC samples as one MPEG-TS segment, for HLS: remuxed
with FFmpeg's muxer (PyAV), never re-encoded.

Each segment is a whole TS of its own (PAT, PMT, then PES packets), so a
player may start at any of them. Timestamps are the stream's own, moved by
``base`` seconds, so consecutive segments continue one another. FFmpeg
writes the AAC frames with ADTS headers from the AudioSpecificConfig.

FFmpeg starts every TS's continuity counters at 0; a player reads a playlist's
segments as one TS, so :class:`Continuity` carries every PID's counter from one
segment to the next (ISO/IEC 13818-1 2.4.3.3): otherwise each segment's first
packets look lost, and the frame before them corrupt.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from fractions import Fraction

import av

from wcs.media.sample import VIDEO_CLOCK, MediaInfo, Sample

#: AAC sampling frequencies by their index in an AudioSpecificConfig.
AAC_RATES = (
    96000,
    88200,
    64000,
    48000,
    44100,
    32000,
    24000,
    22050,
    16000,
    12000,
    11025,
    8000,
    7350,
)


def aac_rate(config: bytes) -> int:
    """The sample rate an AudioSpecificConfig says (44100 if it says nothing usable)."""
    if len(config) < 2:
        return 44100
    index = ((config[0] & 0x07) << 1) | (config[1] >> 7)
    return AAC_RATES[index] if index < len(AAC_RATES) else 44100


def aac_channels(config: bytes) -> int:
    return max(1, (config[1] >> 3) & 0x0F) if len(config) >= 2 else 2


#: Bytes of one TS packet, and the first of each.
PACKET = 188
SYNC = 0x47
#: Null packets: their counter means nothing.
NULL_PID = 0x1FFF


class Continuity:
    """The continuity counters of one TS cut in pieces (every PID's, the PAT's and
    PMT's included): each piece muxed on its own is renumbered to go on where the
    previous piece left off, so the pieces, one after another, are one unbroken TS."""

    def __init__(self) -> None:
        self._next: dict[int, int] = {}  # by PID, the counter its next packet with payload takes

    def carry(self, data: bytes) -> bytes:
        """``data`` (whole TS packets, as :func:`segment` makes them) renumbered."""
        if len(data) % PACKET:
            raise ValueError(f"{len(data)} bytes are not whole TS packets")
        out = bytearray(data)
        counters = self._next
        for at in range(0, len(out), PACKET):
            if out[at] != SYNC:
                raise ValueError(f"no TS sync byte at {at}")
            pid = ((out[at + 1] & 0x1F) << 8) | out[at + 2]
            if pid == NULL_PID:
                continue
            flags = out[at + 3]
            counter = counters.get(pid, 0)
            if flags & 0x10:  # a payload: the counter goes on by one
                out[at + 3] = (flags & 0xF0) | counter
                counters[pid] = (counter + 1) & 0x0F
            else:  # an adaptation field alone (a PCR) repeats the last packet's counter
                out[at + 3] = (flags & 0xF0) | ((counter - 1) & 0x0F)
        return bytes(out)


def segment(samples: Sequence[Sample], info: MediaInfo, base: float) -> bytes:
    """One TS holding ``samples`` (H.264 in Annex B, AAC frames as stored), each
    at its own time minus ``base`` seconds; video and audio only as ``info`` has them."""
    out = io.BytesIO()
    container = av.open(out, "w", format="mpegts", options={"mpegts_copyts": "1"})
    try:
        streams: dict[str, av.stream.Stream] = {}
        if info.video is not None:
            video = container.add_stream("h264")
            video.width, video.height = info.video.width or 16, info.video.height or 16
            video.time_base = Fraction(1, VIDEO_CLOCK)
            streams["video"] = video
        if info.audio is not None and info.audio.aac_config:
            config = info.audio.aac_config
            audio = container.add_stream("aac", rate=aac_rate(config))
            audio.codec_context.extradata = config
            audio.codec_context.layout = "stereo" if aac_channels(config) == 2 else "mono"
            audio.time_base = Fraction(1, aac_rate(config))
            streams["audio"] = audio
        for sample in samples:
            stream = streams.get(sample.kind)
            if stream is None or (sample.kind == "audio" and sample.codec != "aac"):
                continue
            packet = av.Packet(sample.data)
            packet.stream = stream
            packet.time_base = Fraction(1, sample.clock)
            packet.pts = packet.dts = sample.pts - round(base * sample.clock)
            packet.is_keyframe = sample.keyframe
            container.mux(packet)
    finally:
        container.close()
    return out.getvalue()
