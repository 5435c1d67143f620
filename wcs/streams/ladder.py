"""The quality ladder: the renditions a stream offers below its own picture.

``hls_abr_profiles`` names its rungs by height (``360p,180p``, the default); a
rung is a box of that height and any width, so a stream of any aspect gets
pictures that fit it (:func:`wcs.media.sizing.fitted`). Only rungs strictly
below the source are offered: a 360p file's ladder is its 180p alone, a 160p
file's is empty. The same ladder serves HLS ABR (one variant a rung) and the
WebRTC viewers the server moves by their bandwidth.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from wcs.media import sizing
from wcs.media.sample import VideoInfo

#: What a stream offers when ``hls_abr_profiles`` is not set.
DEFAULT = "360p,180p"
#: Most rungs a ladder may have (each one is an encoder while watched).
MAX_RUNGS = 6
_RUNG = re.compile(r"(\d{2,4})p")
#: The bitrate of AAC or Opus a variant's BANDWIDTH counts on top of its video.
AUDIO_BITRATE = 128_000


@dataclass(frozen=True)
class Rung:
    """One step: its name (``360p``, also its HLS variant's folder) and height."""

    name: str
    height: int

    def size(self, video: VideoInfo) -> tuple[int, int] | None:
        """The picture this rung has for a source of ``video``'s size; None when
        the source is not larger (the rung is not offered)."""
        return sizing.fitted((video.width, video.height), (0, self.height))


@dataclass(frozen=True)
class Step:
    """A rung as one stream offers it: its size and the video bitrate it is encoded at."""

    rung: Rung
    size: tuple[int, int]
    bitrate: int
    profile_level_id: str = sizing.PROFILE_LEVEL_ID


@dataclass(frozen=True)
class Ladder:
    """Rungs from the highest down."""

    rungs: tuple[Rung, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "rungs", tuple(sorted(self.rungs, key=lambda r: -r.height)))

    @classmethod
    def parse(cls, text: str) -> Ladder:
        """``360p,180p`` (or empty, for none); raises ValueError saying what is wrong."""
        rungs: dict[int, Rung] = {}
        for part in (piece.strip().lower() for piece in text.split(",")):
            if not part:
                continue
            found = _RUNG.fullmatch(part)
            if found is None or not sizing.MIN_SIDE <= int(found[1]) <= 4320:
                raise ValueError(
                    f"{part!r} is not a rung: heights from {sizing.MIN_SIDE} to 4320 "
                    "written like 360p, comma-separated"
                )
            rungs[int(found[1])] = Rung(part, int(found[1]))
        if len(rungs) > MAX_RUNGS:
            raise ValueError(f"at most {MAX_RUNGS} rungs (each is an encoder while watched)")
        return cls(tuple(rungs.values()))

    def __bool__(self) -> bool:
        return bool(self.rungs)

    def __str__(self) -> str:
        return ",".join(rung.name for rung in self.rungs)

    def find(self, name: str) -> Rung | None:
        return next((rung for rung in self.rungs if rung.name == name), None)

    def steps(self, video: VideoInfo | None) -> list[Step]:
        """The rungs a source of ``video`` offers, highest first, one per size."""
        if video is None:
            return []
        steps: list[Step] = []
        for rung in self.rungs:
            size = rung.size(video)
            if size is not None and all(step.size != size for step in steps):
                steps.append(Step(rung, size, sizing.bitrate_for(size, video.fps)))
        return steps


#: No rungs: the source alone (``hls_abr_profiles`` empty, or transcoding disabled).
NO_LADDER = Ladder()
