"""H.264 from MP4 (AVCC) to what RTP packetisers want (Annex B), and back."""

from __future__ import annotations

from fractions import Fraction

import pytest

from wcs.errors import WrongFormat
from wcs.media import h264

SPS = bytes([0x67, 0x4D, 0x40, 0x1E, 0xAA, 0xBB])
PPS = bytes([0x68, 0xEE, 0x3C, 0x80])
IDR = bytes([0x65, 0x88, 0x84, 0x80])  # a NAL unit never ends in a zero byte
SLICE = bytes([0x41, 0x9A, 0x02])
AUD = bytes([0x09, 0xF0])


def avcc_record(length_size: int = 4) -> bytes:
    return (bytes([1, 0x4D, 0x40, 0x1E, 0xFC | (length_size - 1), 0xE1])
            + len(SPS).to_bytes(2, "big") + SPS + b"\x01" + len(PPS).to_bytes(2, "big") + PPS)


def sample(*units: bytes, length_size: int = 4) -> bytes:
    return b"".join(len(u).to_bytes(length_size, "big") + u for u in units)


def test_avcc_record():
    config = h264.parse_avcc(avcc_record())
    assert (config.sps, config.pps, config.length_size) == ((SPS,), (PPS,), 4)
    assert config.profile_level_id == "4d401e"
    assert config.parameter_sets == h264.START_CODE + SPS + h264.START_CODE + PPS


@pytest.mark.parametrize("record, reason", [
    (None, "no avcC"), (b"", "no avcC"), (b"\x00\x01\x02\x03\x04\x05\x06", "no avcC"),
    (avcc_record()[:12], "truncated"),
    (bytes([1, 0x4D, 0x40, 0x1E, 0xFF, 0xE0, 0x00]), "no SPS or PPS"),
])
def test_bad_avcc_records(record, reason):
    with pytest.raises(WrongFormat, match=reason):
        h264.parse_avcc(record)


def test_an_idr_gets_its_parameter_sets_and_loses_its_delimiter():
    config = h264.parse_avcc(avcc_record())
    data, is_idr = h264.to_annexb(sample(AUD, IDR), config)
    assert is_idr
    assert h264.split_annexb(data) == [SPS, PPS, IDR]


def test_an_idr_that_carries_its_own_parameter_sets_is_left_alone():
    config = h264.parse_avcc(avcc_record())
    data, _ = h264.to_annexb(sample(SPS, PPS, IDR), config)
    assert h264.split_annexb(data) == [SPS, PPS, IDR]


def test_a_slice_passes_through_with_two_byte_lengths():
    config = h264.parse_avcc(avcc_record(length_size=2))
    data, is_idr = h264.to_annexb(sample(SLICE, length_size=2), config)
    assert (data, is_idr) == (h264.START_CODE + SLICE, False)


def test_split_avcc_stops_at_a_bad_length():
    assert h264.split_avcc(sample(SLICE) + b"\x00\x00\x00\x50\x41", 4) == [SLICE]
    assert h264.split_avcc(b"\x00\x00\x00\x00" + sample(SLICE), 4) == []


def test_split_annexb_takes_three_and_four_byte_start_codes():
    assert h264.split_annexb(b"\x00\x00\x00\x01" + SPS + b"\x00\x00\x01" + SLICE) == [SPS, SLICE]


@pytest.mark.parametrize("size,profile", [((640, 360), "main"), ((320, 240), "baseline"),
                                          ((1920, 1080), "high"), ((638, 358), "high"),
                                          ((176, 144), "main")])
def test_an_sps_says_the_picture_size_as_a_decoder_would(size, profile):
    import av

    encoder = av.CodecContext.create("libx264", "w")
    encoder.width, encoder.height = size
    encoder.pix_fmt = "yuv420p"
    encoder.time_base = Fraction(1, 30)
    encoder.options = {"profile": profile, "x264-params": "scenecut=0"}
    frame = av.VideoFrame(*size, "yuv420p")
    frame.pts = 0
    packets = encoder.encode(frame) + encoder.encode(None)
    annexb = bytes(packets[0])
    assert h264.annexb_picture_size(annexb) == size
    decoder = av.CodecContext.create("h264", "r")
    [decoded] = decoder.decode(av.Packet(annexb)) + decoder.decode(None)
    assert (decoded.width, decoded.height) == size


def test_a_broken_sps_is_a_clear_error():
    with pytest.raises(WrongFormat, match="SPS is malformed"):
        h264.picture_size(b"\x67\x42")
    assert h264.annexb_picture_size(b"\x00\x00\x00\x01\x65\x88") is None
