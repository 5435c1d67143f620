"""What size and bitrate a resized picture has: plain arithmetic, kept apart from
the codec work in :mod:`wcs.media.resize` so that reading the settings (the
ABR ladder) does not load FFmpeg."""

from __future__ import annotations

#: What the scaled video is: Constrained Baseline 3.1, which every browser decodes.
PROFILE_LEVEL_ID = "42e01f"
#: The smallest side a rendition has (a smaller box plays the source as it is).
MIN_SIDE = 16


def fitted(source: tuple[int, int], box: tuple[int, int]) -> tuple[int, int] | None:
    """The size a play asking for ``box`` (0 for "any") gets from a ``source``
    of that size; None when that is the source's own size (nothing to encode)."""
    width, height = source
    want_width, want_height = box
    if width <= 0 or height <= 0 or (want_width <= 0 and want_height <= 0):
        return None
    scale = min(
        want_width / width if want_width > 0 else float("inf"),
        want_height / height if want_height > 0 else float("inf"),
    )
    if scale >= 1:
        return None  # never up: the source as it is
    size = (int(width * scale / 2) * 2, int(height * scale / 2) * 2)  # inside the box
    if min(size) < MIN_SIDE:
        return None  # too small to be meant: the source as it is
    return None if size == (width, height) else size


def bitrate_for(size: tuple[int, int], fps: float) -> int:
    """About 0.1 bit per pixel at the frame rate: 360p30 gets about 700 kb/s."""
    return max(100_000, int(size[0] * size[1] * max(fps, 1.0) * 0.1))
