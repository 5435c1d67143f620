"""The top-level boxes of an MP4 file, read from their 8–16 byte headers only.

Enough to tell a truncated file (a box running past the end) and where
``moov`` sits relative to ``mdat`` (faststart or not) without reading media.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import BinaryIO

from wcs.media.errors import wrong_format

#: Boxes an MP4 file may start with.
FIRST_BOXES = ("ftyp", "moov", "free", "skip", "wide", "mdat", "styp")
#: More top-level boxes than this means the file is not an MP4 at all.
MAX_BOXES = 10000


@dataclass(frozen=True)
class Box:
    kind: str
    offset: int
    size: int


def parse_header(header: bytes, offset: int, file_size: int, first: bool) -> Box:
    """One top-level box from its first 8–16 bytes; refuses damage."""
    if len(header) < 8:
        raise wrong_format("file is truncated (a box header is cut off)")
    size, raw_kind = struct.unpack(">I4s", header[:8])
    kind = raw_kind.decode("latin-1")
    if first and kind not in FIRST_BOXES:
        raise wrong_format("not an MP4 file")
    if size == 1:
        if len(header) < 16:
            raise wrong_format("file is truncated (a box header is cut off)")
        size = struct.unpack(">Q", header[8:16])[0]
    elif size == 0:
        size = file_size - offset
    if size < 8:
        raise wrong_format(f"box {kind!r} at byte {offset} has a bad size")
    if offset + size > file_size:
        raise wrong_format(f"file is truncated ({kind} box ends past the end of the file)")
    return Box(kind, offset, size)


def top_level(handle: BinaryIO, file_size: int) -> list[Box]:
    """Walk the top-level boxes with seeks; raises ``wrong_format`` on damage."""
    boxes: list[Box] = []
    offset = 0
    while offset < file_size:
        if len(boxes) >= MAX_BOXES:
            raise wrong_format("too many top-level boxes")
        handle.seek(offset)
        box = parse_header(handle.read(16), offset, file_size, not boxes)
        boxes.append(box)
        offset += box.size
    return boxes


def check_boxes(boxes: list[Box]) -> list[Box]:
    """A complete MP4 has a ``moov``."""
    kinds = [box.kind for box in boxes]
    if not kinds:
        raise wrong_format("not an MP4 file")
    if "moov" not in kinds:
        raise wrong_format("no moov box (the file is incomplete)")
    return boxes


def check_layout(handle: BinaryIO, file_size: int) -> list[Box]:
    """The boxes of a complete MP4 with a ``moov``; refuses anything else."""
    return check_boxes(top_level(handle, file_size))
