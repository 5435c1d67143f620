"""HLS ABR's multivariant playlist: the source and each rung of the ladder.

WCS's name for it is ``<streamName>-HLS-ABR-STREAM``; its variants sit beside
it, one folder each (``source/source.m3u8``, ``360p/360p.m3u8``, ...), every
one an LL-HLS media playlist of its own packager. BANDWIDTH is what a player
must be able to take: for the source, the peak of its segments made so far
(with their TS overhead); for a rung, the most its capped encoder can put in a
segment as short as the source's shortest (the cap and its VBV's window over
that segment's length), with the audio and the overhead on top.
"""

from __future__ import annotations

from collections.abc import Iterable

from wcs.hls.segmenter import MIN_SEGMENT, Segment
from wcs.media.reencode import CAP_WINDOW
from wcs.media.sample import MediaInfo
from wcs.streams.ladder import AUDIO_BITRATE, Step

#: WCS's suffix of a stream's ABR name.
SUFFIX = "-HLS-ABR-STREAM"
#: The source's variant folder (the rungs' are their names: ``360p``).
SOURCE = "source"
#: MPEG-TS and PES headers over a video stream (about 5-8 %), with room.
OVERHEAD = 1.12
#: What AAC costs in a TS: up to 128 kb/s, plus a PES and most of a TS packet
#: for each of its 43 frames a second (about 65 kb/s more).
AUDIO_IN_TS = AUDIO_BITRATE + 72_000


def base_name(name: str) -> str | None:
    """The stream an ABR name is of (None: ``name`` is not one)."""
    if name.endswith(SUFFIX) and len(name) > len(SUFFIX):
        return name[: -len(SUFFIX)]
    return None


def codecs(info: MediaInfo, profile_level_id: str | None = None) -> str:
    """CODECS: ``avc1.PPCCLL`` and ``mp4a.40.N`` as the variant carries them."""
    found = []
    if info.video is not None:
        found.append(f"avc1.{profile_level_id or info.video.profile_level_id}")
    if info.audio is not None:
        object_type = info.audio.aac_config[0] >> 3 if info.audio.aac_config else 2
        found.append(f"mp4a.40.{object_type or 2}")
    return ",".join(found)


def peak_bandwidth(segments: Iterable[Segment]) -> int:
    """The highest bit rate of any whole segment (bits/s)."""
    return max((round(len(s.data) * 8 / s.duration) for s in segments if s.duration > 0), default=0)


def shortest(segments: Iterable[Segment]) -> float:
    """The shortest whole segment's duration (s; ``MIN_SEGMENT`` if none)."""
    return min((s.duration for s in segments if s.duration > 0), default=MIN_SEGMENT)


def multivariant(
    info: MediaInfo, source_bandwidth: int, steps: list[Step], shortest: float = MIN_SEGMENT
) -> str:
    """The playlist: the source first, then each rung from the highest down
    (``shortest``: the source's shortest segment so far, s; the rungs' are cut
    where the source's are)."""
    video = info.video
    lines = ["#EXTM3U", "#EXT-X-VERSION:6", "#EXT-X-INDEPENDENT-SEGMENTS"]
    rate = f",FRAME-RATE={video.fps:.3f}" if video is not None and video.fps else ""
    size = f",RESOLUTION={video.width}x{video.height}" if video is not None else ""
    lines.append(
        f"#EXT-X-STREAM-INF:BANDWIDTH={max(source_bandwidth, 1)}"
        f'{size},CODECS="{codecs(info)}"{rate}'
    )
    lines.append(f"{SOURCE}/{SOURCE}.m3u8")
    audio = AUDIO_IN_TS if info.audio is not None else 0
    for step in steps:
        peak = step.bitrate * (1 + CAP_WINDOW / max(shortest, MIN_SEGMENT))
        bandwidth = round(peak * OVERHEAD) + audio
        width, height = step.size
        lines.append(
            f"#EXT-X-STREAM-INF:BANDWIDTH={bandwidth},RESOLUTION={width}x{height}"
            f',CODECS="{codecs(info, step.profile_level_id)}"{rate}'
        )
        lines.append(f"{step.rung.name}/{step.rung.name}.m3u8")
    return "\n".join(lines) + "\n"
