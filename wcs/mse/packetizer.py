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

__all__ = ["AUDIO", "VIDEO", "MseFramer", "MsePacketizer", "Records", "record"]


def record(kind: int, milliseconds: int, payload: bytes) -> bytes:
    """One record; a time before 0 (AAC priming) is sent as 0, not wrapped
    round to 2^31 - 23, which a remuxer reads as a jump of 24 days."""
    return struct.pack(">BiI", kind, max(0, milliseconds) & 0x7FFFFFFF, len(payload)) + payload


def _milliseconds(sample: Sample) -> int:
    return round(sample.pts * 1000 / sample.clock)


class MsePacketizer:
    """Turns pipeline samples into MSE records for one viewer."""

    def __init__(self, audio_config: bytes) -> None:
        self._tagger = FlvTagger(audio_config, every_keyframe=True, audio_header=b"")

    def pack(self, sample: Sample) -> bytes | None:
        """The records for one sample, or None for what MSE does not take (Opus)."""
        tags = self._tagger.tags(sample, _milliseconds(sample))
        if not tags:
            return None
        return b"".join(record(kind, ms, body) for kind, ms, body in tags)

    @property
    def parameters(self) -> tuple[bytes, bytes] | None:
        """The SPS and PPS this viewer's video is at."""
        return self._tagger.parameters

    def take_audio_config(self) -> bool:
        """Whether this viewer's next AAC record must come after the config (which
        the caller then sends: it is marked sent)."""
        return self._tagger.take_audio_config()


class Records:
    """One live sample's records, made once for every MSE viewer of a broadcast:
    ``data``, and for AAC also ``first`` (the config record, then ``data``) for a
    viewer's first audio. ``message`` and ``first_message`` hold what the media
    socket prepared of each (framed once), for whoever sends them."""

    __slots__ = ("data", "first", "first_message", "message")

    def __init__(self, data: bytes, first: bytes | None) -> None:
        self.data = data
        self.first = first
        self.message: object = None
        self.first_message: object = None


class MseFramer:
    """A broadcast's samples as records, once a sample whatever the number of
    viewers (a viewer's own :class:`MsePacketizer` is for its join burst only)."""

    def __init__(self, audio_config: bytes) -> None:
        self.audio_config = audio_config
        self._tagger = FlvTagger(b"", every_keyframe=True, audio_header=b"")

    def assume(self, parameters: tuple[bytes, bytes] | None) -> None:
        """A viewer joins with the SPS and PPS of its burst: the framer (made
        mid-GOP, or before the stream's first keyframe) starts from them."""
        if parameters is not None:
            self._tagger.assume(parameters)

    def records(self, sample: Sample) -> Records | None:
        """The records of ``sample``; None for what MSE does not take (Opus)."""
        milliseconds = _milliseconds(sample)
        tags = self._tagger.tags(sample, milliseconds)
        if not tags:
            return None
        data = b"".join(record(kind, ms, body) for kind, ms, body in tags)
        first = None
        if sample.kind == "audio" and self.audio_config:
            first = record(AUDIO, milliseconds, b"\x00" + self.audio_config) + data
        return Records(data, first)
