"""What flows through the pipeline: encoded samples and the description of a stream."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

VIDEO_CLOCK = 90000
OPUS_CLOCK = 48000
#: Ticks in one Opus packet: 20 ms at 48 kHz, what WebRTC browsers send and expect.
OPUS_FRAME = 960
#: Samples in one AAC-LC frame.
AAC_FRAME = 1024


@dataclass(slots=True)
class Sample:
    """One encoded frame, ready for a subscriber.

    ``pts`` is in ``clock`` units (RTP timestamps come from it); ``time`` is
    when it is due, in seconds from the start of the stream (decode order,
    so pacing never runs backwards).
    """

    kind: str  # "video" or "audio"
    data: bytes
    pts: int
    clock: int
    time: float
    keyframe: bool = True
    codec: str = ""  # "h264", "opus" or "aac": audio comes both ways, subscribers pick


def shifted(sample: Sample, seconds: float) -> Sample:
    """The same sample, ``seconds`` later."""
    return Sample(
        sample.kind,
        sample.data,
        sample.pts + round(seconds * sample.clock),
        sample.clock,
        sample.time + seconds,
        sample.keyframe,
        sample.codec,
    )


def from_keyframe(samples: Iterator[Sample]) -> Iterator[Sample]:
    """``samples`` from the first video keyframe on: a reader sought to a
    keyframe may give audio from just before it first, which nothing would show."""
    for sample in samples:
        if sample.kind == "video" and sample.keyframe:
            yield sample
            yield from samples
            return


@dataclass(frozen=True)
class VideoInfo:
    width: int
    height: int
    fps: float
    profile_level_id: str  # as in SDP, e.g. "4d401e"


@dataclass(frozen=True)
class AudioInfo:
    """Audio flows twice: Opus for WebRTC, and AAC (``aac_config`` is its
    AudioSpecificConfig) for subscribers that take AAC."""

    sample_rate: int
    channels: int
    aac_config: bytes = b""


@dataclass(frozen=True)
class MediaInfo:
    """What a stream carries; a subscriber negotiates from this."""

    duration: float
    video: VideoInfo | None
    audio: AudioInfo | None
    bitrate: int = 0  # the source's average, bits/s (0: not known)
