"""Stream names as pages write them: ``vod://file.mp4``, ``vod-live://file.mp4``,
or a plain name (a published or REST-started stream), and their limits."""

from __future__ import annotations

from dataclasses import dataclass

from wcs.errors import InvalidName, Unsupported

PERSONAL = "vod"
LIVE = "vod-live"
#: Longest stream URI (or any other name a client sends) accepted.
MAX_URI = 1024
#: Longest plain stream name (published, or ``localStreamName``).
MAX_STREAM_NAME = 256


@dataclass(frozen=True)
class StreamUri:
    scheme: str  # "vod", "vod-live", or "" for a published stream's plain name
    path: str  # for vod and vod-live, the source's location: a file, or s3/BUCKET/KEY

    def __str__(self) -> str:
        return f"{self.scheme}://{self.path}" if self.scheme else self.path


def parse(name: str) -> StreamUri:
    """Split a stream name; unknown schemes are refused with their name."""
    if len(name) > MAX_URI:
        raise InvalidName.because(f"longer than {MAX_URI} characters")
    scheme, separator, path = name.partition("://")
    if not separator:
        return StreamUri("", name)
    if scheme not in (PERSONAL, LIVE):
        raise Unsupported(f"Unsupported stream scheme {scheme!r}")
    return StreamUri(scheme, path)


def stream_name_problem(name: str) -> str | None:
    """Why ``name`` cannot name a stream of its own (published or REST-started), or None."""
    if (
        not name
        or len(name) > MAX_STREAM_NAME
        or "://" in name
        or not name.isprintable()
        or name != name.strip()
    ):
        return (
            "must be printable, without '://' or outer spaces, "
            f"at most {MAX_STREAM_NAME} characters"
        )
    return None
