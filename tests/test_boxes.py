"""The top-level box walk: one walk for local files and remote objects."""

from __future__ import annotations

import io
import struct

import pytest

from wcs.errors import WrongFormat
from wcs.media import boxes


def box(kind: str, body: bytes = b"", size: int | None = None) -> bytes:
    return struct.pack(">I4s", 8 + len(body) if size is None else size, kind.encode()) + body


def layout(data: bytes) -> list[tuple[str, int, int]]:
    return [(b.kind, b.offset, b.size) for b in boxes.check_layout(io.BytesIO(data), len(data))]


def test_a_faststart_file_and_one_with_moov_at_the_end():
    assert layout(box("ftyp", b"isom") + box("moov", b"x" * 4) + box("mdat", b"y" * 9)) == [
        ("ftyp", 0, 12), ("moov", 12, 12), ("mdat", 24, 17)]
    assert [k for k, _, _ in layout(box("ftyp") + box("mdat", b"y") + box("moov"))] == [
        "ftyp", "mdat", "moov"]


def test_64_bit_sizes_and_a_last_box_that_runs_to_the_end():
    large = struct.pack(">I4sQ", 1, b"mdat", 16 + 3) + b"abc"
    assert layout(box("moov") + large) == [("moov", 0, 8), ("mdat", 8, 19)]
    to_end = struct.pack(">I4s", 0, b"mdat") + b"z" * 10
    assert layout(box("moov") + to_end) == [("moov", 0, 8), ("mdat", 8, 18)]


@pytest.mark.parametrize("data, reason", [
    (b"", "not an MP4 file"),
    (b"hello, I am text\n", "not an MP4 file"),
    (box("ftyp") + box("mdat"), "no moov box"),
    (box("moov") + box("mdat", size=100), "mdat box ends past the end"),
    (box("moov") + b"\x00\x00", "a box header is cut off"),
    (box("moov") + struct.pack(">I4s", 1, b"mdat"), "a box header is cut off"),
    (box("moov") + struct.pack(">I4s", 4, b"free"), "has a bad size"),
])
def test_damage_is_refused_with_its_reason(data, reason):
    with pytest.raises(WrongFormat) as refused:
        boxes.check_layout(io.BytesIO(data), len(data))
    assert refused.value.info.startswith("File has wrong format: ")
    assert reason in refused.value.info


def test_too_many_boxes(monkeypatch):
    monkeypatch.setattr(boxes, "MAX_BOXES", 5)
    data = box("moov") + box("free") * 10
    with pytest.raises(WrongFormat, match="too many top-level boxes"):
        boxes.check_layout(io.BytesIO(data), len(data))


def test_the_walk_asks_for_each_header_where_it_is():
    data = box("ftyp", b"isom") + box("mdat", b"y" * 100) + box("moov")
    walker = boxes.walk(len(data))
    asked = [next(walker)]
    try:
        while True:
            asked.append(walker.send(data[asked[-1]:asked[-1] + boxes.HEADER]))
    except StopIteration as done:
        found = done.value
    assert asked == [0, 12, 120]
    assert [b.kind for b in found] == ["ftyp", "mdat", "moov"]
