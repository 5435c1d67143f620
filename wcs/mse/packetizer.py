"""Frames for the Web SDK's MSE client (wcs-protocol.md §4); not fMP4.

Each record is ``type u8 (9 video, 8 audio) | timestamp i32 ms | size u32 |
payload``. Video payloads are FLV AVC tag bodies: the sequence header (avcC)
before every keyframe, then length-prefixed NAL units. Audio payloads have a
one-byte header: 0 before the AudioSpecificConfig, 1 before a raw AAC frame.
"""

from __future__ import annotations

import struct

from wcs.media import h264
from wcs.media.sample import Sample

VIDEO, AUDIO = 9, 8


def record(kind: int, milliseconds: int, payload: bytes) -> bytes:
    return struct.pack(">BiI", kind, milliseconds & 0x7FFFFFFF, len(payload)) + payload


def avcc_record(sps: bytes, pps: bytes) -> bytes:
    """An AVCDecoderConfigurationRecord for one SPS and one PPS (4-byte lengths)."""
    return (bytes([1, sps[1], sps[2], sps[3], 0xFF, 0xE1]) + len(sps).to_bytes(2, "big") + sps
            + b"\x01" + len(pps).to_bytes(2, "big") + pps)


class MsePacketizer:
    """Turns pipeline samples into MSE records for one viewer."""

    def __init__(self, audio_config: bytes) -> None:
        self.audio_config = audio_config
        self._config_sent = False
        self._parameters: tuple[bytes, bytes] | None = None

    def pack(self, sample: Sample) -> bytes | None:
        """The records for one sample, or None for what MSE does not take (Opus)."""
        milliseconds = round(sample.pts * 1000 / sample.clock)
        if sample.kind == "video":
            return self._video(sample, milliseconds)
        if sample.codec != "aac":
            return None
        out = b""
        if not self._config_sent and self.audio_config:
            out += record(AUDIO, milliseconds, b"\x00" + self.audio_config)
            self._config_sent = True
        return out + record(AUDIO, milliseconds, b"\x01" + sample.data)

    def _video(self, sample: Sample, milliseconds: int) -> bytes | None:
        units = h264.split_annexb(sample.data)
        sps = [u for u in units if u[0] & 0x1F == h264.NAL_SPS]
        pps = [u for u in units if u[0] & 0x1F == h264.NAL_PPS]
        if sps and pps:
            self._parameters = (sps[0], pps[0])
        if self._parameters is None:
            return None  # nothing decodable before the first SPS/PPS
        body = b"".join(len(u).to_bytes(4, "big") + u for u in units
                        if u[0] & 0x1F not in (h264.NAL_SPS, h264.NAL_PPS, h264.NAL_AUD))
        out = b""
        if sample.keyframe:  # the SDK's fragmenter keys on the config record
            out += record(VIDEO, milliseconds, b"\x17\x00\x00\x00\x00"
                          + avcc_record(*self._parameters))
        tag = b"\x17\x01" if sample.keyframe else b"\x27\x01"
        return out + record(VIDEO, milliseconds, tag + b"\x00\x00\x00" + body)
