"""FLV tag bodies for H.264 and AAC: what the SDK's MSE player and RTMP both carry.

A video body is the AVC packet: ``0x17``/``0x27`` (keyframe or not, codec 7),
then 0 and the AVCDecoderConfigurationRecord (the sequence header), or 1, a
composition time of 0 (no B-frames here) and length-prefixed NAL units. An
audio body is ``0xAF`` (AAC, 44 kHz, 16 bit, stereo: what FLV always says for
AAC) then 0 and the AudioSpecificConfig, or 1 and a raw AAC frame.
"""

from __future__ import annotations

from wcs.media import h264
from wcs.media.sample import Sample

#: FLV tag (and RTMP message) types.
AUDIO, VIDEO = 8, 9

_SKIPPED = (h264.NAL_SPS, h264.NAL_PPS, h264.NAL_AUD)
#: Video samples whose tags are kept: the same bytes reach every MSE viewer and
#: RTMP push of a stream, so a sample's NAL units are cut and joined once.
CACHE = 256

_cut: dict[tuple[bytes, bool], tuple[tuple[bytes, bytes] | None, bytes]] = {}


def _video_tag(data: bytes, keyframe: bool) -> tuple[tuple[bytes, bytes] | None, bytes]:
    """A video sample's SPS and PPS (if it has both) and its frame's tag body."""
    key = (data, keyframe)
    found = _cut.get(key)
    if found is None:
        units = [u for u in h264.split_annexb(data) if u]
        # an SPS too short to name its profile and level (a publisher's) is no SPS
        sps = [u for u in units if u[0] & 0x1F == h264.NAL_SPS and len(u) >= 4]
        pps = [u for u in units if u[0] & 0x1F == h264.NAL_PPS]
        body = b"".join(len(u).to_bytes(4, "big") + u for u in units if u[0] & 0x1F not in _SKIPPED)
        tag = b"\x17\x01" if keyframe else b"\x27\x01"
        found = ((sps[0], pps[0]) if sps and pps else None, tag + b"\x00\x00\x00" + body)
        if len(_cut) >= CACHE:
            del _cut[next(iter(_cut))]
        _cut[key] = found
    return found


def avcc_record(sps: bytes, pps: bytes) -> bytes:
    """An AVCDecoderConfigurationRecord for one SPS and one PPS (4-byte lengths)."""
    return (
        bytes([1, sps[1], sps[2], sps[3], 0xFF, 0xE1])
        + len(sps).to_bytes(2, "big")
        + sps
        + b"\x01"
        + len(pps).to_bytes(2, "big")
        + pps
    )


class FlvTagger:
    """One subscriber's samples as FLV tag bodies ``(type, ms, body)``.

    ``every_keyframe``: the sequence header goes before every keyframe (the
    SDK's MSE fragmenter keys on it); otherwise only when it is new (RTMP).
    ``audio_header``: FLV's ``0xAF``; the SDK's MSE records leave it out.
    """

    def __init__(
        self, audio_config: bytes, every_keyframe: bool = True, audio_header: bytes = b"\xaf"
    ) -> None:
        self.audio_config = audio_config
        self.every_keyframe = every_keyframe
        self._config_head = audio_header + b"\x00"
        self._frame_head = audio_header + b"\x01"
        self._audio_config_sent = False
        self._parameters: tuple[bytes, bytes] | None = None
        self._sent_parameters: tuple[bytes, bytes] | None = None

    @property
    def parameters(self) -> tuple[bytes, bytes] | None:
        """The SPS and PPS the video is at (None before the first)."""
        return self._parameters

    def assume(self, parameters: tuple[bytes, bytes]) -> None:
        """Start from ``parameters`` (another tagger's, of the same stream) if this
        one has seen none: a tagger that starts mid-GOP meets them only at the next
        keyframe, and would cut the frames before it."""
        if self._parameters is None:
            self._parameters = parameters

    def take_audio_config(self) -> bool:
        """Whether the config must go before the next AAC frame, marked sent now
        (for a caller that frames its audio elsewhere and sends the config itself)."""
        due = not self._audio_config_sent and bool(self.audio_config)
        self._audio_config_sent = True
        return due

    def tags(self, sample: Sample, milliseconds: int) -> list[tuple[int, int, bytes]]:
        """The tags for one sample; none for what FLV does not carry (Opus) or
        for video before its first SPS and PPS."""
        if sample.kind == "video":
            return self._video(sample, milliseconds)
        if sample.codec != "aac":
            return []
        out = []
        if not self._audio_config_sent and self.audio_config:
            out.append((AUDIO, milliseconds, self._config_head + self.audio_config))
            self._audio_config_sent = True
        out.append((AUDIO, milliseconds, self._frame_head + sample.data))
        return out

    def _video(self, sample: Sample, milliseconds: int) -> list[tuple[int, int, bytes]]:
        parameters, frame = _video_tag(sample.data, sample.keyframe)
        if parameters is not None:
            self._parameters = parameters
        if self._parameters is None:
            return []  # nothing decodable before the first SPS/PPS
        out = []
        if sample.keyframe and (self.every_keyframe or self._parameters != self._sent_parameters):
            out.append(
                (VIDEO, milliseconds, b"\x17\x00\x00\x00\x00" + avcc_record(*self._parameters))
            )
            self._sent_parameters = self._parameters
        out.append((VIDEO, milliseconds, frame))
        return out
