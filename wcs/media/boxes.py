"""The top-level boxes of an MP4 file, read from their 8–16 byte headers only.

Enough to tell a truncated file (a box running past the end) and where
``moov`` sits relative to ``mdat`` (faststart or not) without reading media.
"""

from __future__ import annotations

import struct
from collections.abc import Generator
from dataclasses import dataclass
from typing import BinaryIO

from wcs.errors import WrongFormat

#: Boxes an MP4 file may start with.
FIRST_BOXES = ("ftyp", "moov", "free", "skip", "wide", "mdat", "styp")
#: More top-level boxes than this means the file is not an MP4 at all.
MAX_BOXES = 10000
#: Bytes that hold any box header (size, kind, 64-bit size).
HEADER = 16


@dataclass(frozen=True)
class Box:
    kind: str
    offset: int
    size: int


def parse_header(header: bytes, offset: int, file_size: int, first: bool) -> Box:
    """One top-level box from its first 8–16 bytes; refuses damage."""
    if len(header) < 8:
        raise WrongFormat("file is truncated (a box header is cut off)")
    size, raw_kind = struct.unpack(">I4s", header[:8])
    kind = raw_kind.decode("latin-1")
    if first and kind not in FIRST_BOXES:
        raise WrongFormat("not an MP4 file")
    if size == 1:
        if len(header) < 16:
            raise WrongFormat("file is truncated (a box header is cut off)")
        size = struct.unpack(">Q", header[8:16])[0]
    elif size == 0:
        size = file_size - offset
    if size < 8:
        raise WrongFormat(f"box {kind!r} at byte {offset} has a bad size")
    if offset + size > file_size:
        raise WrongFormat(f"file is truncated ({kind} box ends past the end of the file)")
    return Box(kind, offset, size)


def walk(file_size: int) -> Generator[int, bytes, list[Box]]:
    """The one walk over the top-level boxes of a complete MP4 with a ``moov``.

    Yields the offset of each box header and takes back its first 16 bytes
    (``send``), so that a local file reads them at once and a remote one
    fetches them first; returns the boxes, or raises :class:`WrongFormat`.
    """
    boxes: list[Box] = []
    offset = 0
    while offset < file_size:
        if len(boxes) >= MAX_BOXES:
            raise WrongFormat("too many top-level boxes")
        header = yield offset
        box = parse_header(header, offset, file_size, not boxes)
        boxes.append(box)
        offset += box.size
    kinds = [box.kind for box in boxes]
    if not kinds:
        raise WrongFormat("not an MP4 file")
    if "moov" not in kinds:
        raise WrongFormat("no moov box (the file is incomplete)")
    return boxes


def check_layout(handle: BinaryIO, file_size: int) -> list[Box]:
    """The boxes of a complete local MP4 with a ``moov``; refuses anything else."""
    walker = walk(file_size)
    try:
        offset = next(walker)
        while True:
            handle.seek(offset)
            offset = walker.send(handle.read(HEADER))
    except StopIteration as done:
        return done.value
