"""The test media's own promises: a barcoded picture of any size reads back its
frame number, and so does the same picture scaled (a rendition), so that a test's
reader never fails on a narrower picture (a reader that dies looks like a server
that stopped sending)."""

from __future__ import annotations

import av
import pytest

from tools.makemedia import frame_number, make_mp4, read_barcode


@pytest.mark.parametrize(("width", "height"), [(640, 360), (320, 180), (1280, 720)])
def test_the_barcode_reads_back_at_each_size_and_scaled(tmp_path, width, height) -> None:
    path = make_mp4(tmp_path / "coded.mp4", seconds=1, width=width, height=height,
                    audio=False, barcode=True)
    with av.open(str(path)) as container:
        for number, frame in enumerate(container.decode(video=0)):
            assert frame_number(frame) == number
            for scaled in ((320, 180), (480, 270), (1280, 720)):  # as a rendition is
                smaller = frame.reformat(width=scaled[0], height=scaled[1], format="yuv420p")
                assert frame_number(smaller) == number, (scaled, number)


def test_a_row_longer_than_the_picture_reads_only_the_picture() -> None:
    row = bytes([255] * 320 + [0] * 32)  # a 320-wide white band, then line padding
    assert read_barcode(row, 320) == 0xFFFF
    assert read_barcode(bytes([255] * 320 + [0] * 320)) == 0xFF  # (the padding read)
