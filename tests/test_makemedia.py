"""The test media's own promises: a barcoded picture of any width reads back its
frame number, as far as its width shows it (a test's reader must never fail on a
narrower picture: a reader that dies looks like a server that stopped sending)."""

from __future__ import annotations

import av
import pytest

from tools.makemedia import make_mp4, read_barcode


@pytest.mark.parametrize(("width", "height", "bits"), [(640, 360, 16), (320, 180, 8)])
def test_the_barcode_reads_back_at_each_width(tmp_path, width, height, bits) -> None:
    path = make_mp4(tmp_path / "coded.mp4", seconds=1, width=width, height=height,
                    audio=False, barcode=True)
    with av.open(str(path)) as container:
        for number, frame in enumerate(container.decode(video=0)):
            plane = frame.planes[0]
            row = bytes(memoryview(plane)[16 * plane.line_size:17 * plane.line_size])
            assert read_barcode(row, frame.width) == number % (1 << bits), number


def test_a_row_longer_than_the_picture_reads_only_the_picture() -> None:
    row = bytes([255] * 320 + [0] * 32)  # a 320-wide white band, then line padding
    assert read_barcode(row, 320) == 0xFF
    assert read_barcode(bytes([255] * 640)) == 0xFFFF
