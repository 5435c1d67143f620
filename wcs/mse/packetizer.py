"""Frames for the Web SDK's MSE client (wcs-protocol.md §4); not fMP4.

Each record is ``type u8 (9 video, 8 audio) | timestamp i32 ms | size u32 |
payload``. Video payloads are FLV AVC tag bodies: the sequence header (avcC)
before every keyframe, then length-prefixed NAL units. Audio payloads have a
one-byte header: 0 before the AudioSpecificConfig, 1 before a raw AAC frame.
"""

from __future__ import annotations

import struct

from wcs.media.flv import AUDIO, VIDEO, FlvTagger
from wcs.media.sample import Sample

__all__ = ["AUDIO", "VIDEO", "MsePacketizer", "record"]


def record(kind: int, milliseconds: int, payload: bytes) -> bytes:
    """One record; a time before 0 (AAC priming) is sent as 0, not wrapped
    round to 2^31 - 23, which a remuxer reads as a jump of 24 days."""
    return struct.pack(">BiI", kind, max(0, milliseconds) & 0x7FFFFFFF, len(payload)) + payload


class MsePacketizer:
    """Turns pipeline samples into MSE records for one viewer."""

    def __init__(self, audio_config: bytes) -> None:
        self._tagger = FlvTagger(audio_config, every_keyframe=True, audio_header=b"")

    def pack(self, sample: Sample) -> bytes | None:
        """The records for one sample, or None for what MSE does not take (Opus)."""
        milliseconds = round(sample.pts * 1000 / sample.clock)
        tags = self._tagger.tags(sample, milliseconds)
        if not tags:
            return None
        return b"".join(record(kind, ms, body) for kind, ms, body in tags)
