"""Stream names as pages write them: ``vod://file.mp4``, ``vod-live://file.mp4``."""

from __future__ import annotations

from dataclasses import dataclass

from wcs.media.errors import MediaError

PERSONAL = "vod"
LIVE = "vod-live"


@dataclass(frozen=True)
class StreamUri:
    scheme: str  # "vod", "vod-live", or "" for a published stream's plain name
    path: str

    def __str__(self) -> str:
        return f"{self.scheme}://{self.path}" if self.scheme else self.path


def parse(name: str) -> StreamUri:
    """Split a stream name; unknown schemes are refused with their name."""
    scheme, separator, path = name.partition("://")
    if not separator:
        return StreamUri("", name)
    if scheme not in (PERSONAL, LIVE):
        raise MediaError(f"Unsupported stream scheme {scheme!r}")
    return StreamUri(scheme, path)
