"""A sample's RTP payloads, cut once: real x264 output and made-up NAL units
through single NAL, STAP-A and FU-A, at the 1,300-byte boundary; what comes
out is what went in, and decodes; the cache is shared and bounded."""

from __future__ import annotations

import random
from fractions import Fraction

import av
import pytest
from aiortc.codecs.h264 import H264PayloadDescriptor

from wcs.media import h264
from wcs.media.sample import Sample
from wcs.webrtc import packetizer
from wcs.webrtc.packetizer import payloads

SC = b"\x00\x00\x00\x01"
LIMIT = 1300  # aiortc's largest payload, and so ours


def picture(width: int, height: int, seed: int) -> av.VideoFrame:
    """A picture of noise: x264 cannot make it small."""
    rnd = random.Random(seed)
    frame = av.VideoFrame(width, height, "yuv420p")
    for plane in frame.planes:
        plane.update(rnd.randbytes(plane.buffer_size))
    return frame


def encode_h264(
    count: int = 5, width: int = 160, height: int = 96, bframes: int = 0, still: bool = True
) -> list[bytes]:
    """``count`` Annex B access units from libx264 (SPS/PPS before the IDR).

    ``still``: every picture after the first is the first again, so the
    P-frames are a few bytes; otherwise each is fresh noise."""
    encoder = av.CodecContext.create("libx264", "w")
    encoder.width, encoder.height, encoder.pix_fmt = width, height, "yuv420p"
    encoder.time_base = Fraction(1, 30)
    encoder.options = {
        "preset": "ultrafast",
        "bf": str(bframes),
        "crf": "30",
        "x264-params": "keyint=300:annexb=1:repeat-headers=1",
    }
    if not bframes:
        encoder.options = {**encoder.options, "tune": "zerolatency"}
    encoder.open()
    out: list[bytes] = []
    for n in range(count):
        frame = picture(width, height, 0 if still else n)
        frame.pts = n
        out += [bytes(p) for p in encoder.encode(frame)]
    out += [bytes(p) for p in encoder.encode(None)]
    return out


def video(data: bytes, keyframe: bool = True) -> Sample:
    return Sample("video", data, 0, 90000, 0.0, keyframe, "h264")


def depacketize(cut: tuple[bytes, ...]) -> list[bytes]:
    """The NAL units a receiver gets back (RFC 6184), checking each packet's form."""
    units: list[bytes] = []
    fragment: bytearray | None = None
    for payload in cut:
        kind = payload[0] & 0x1F
        if kind == 24:  # STAP-A
            at = 1
            while at < len(payload):
                size = int.from_bytes(payload[at : at + 2], "big")
                units.append(payload[at + 2 : at + 2 + size])
                at += 2 + size
            assert at == len(payload), "STAP-A sizes add up"
        elif kind == 28:  # FU-A
            start, end = payload[1] & 0x80, payload[1] & 0x40
            if start:
                assert fragment is None
                fragment = bytearray([payload[0] & 0xE0 | payload[1] & 0x1F])
            assert fragment is not None, "a fragment without its start"
            fragment += payload[2:]
            if end:
                units.append(bytes(fragment))
                fragment = None
        else:
            units.append(payload)
    assert fragment is None, "a fragmented unit without its end"
    return units


@pytest.fixture(autouse=True)
def fresh_cache(monkeypatch):
    monkeypatch.setattr(packetizer, "_cache", {})


def test_a_real_keyframe_is_parameter_sets_in_one_stap_a_then_fu_a_fragments():
    keyframe = encode_h264(1)[0]
    units = h264.split_annexb(keyframe)
    assert [u[0] & 0x1F for u in units][-1] == h264.NAL_IDR and len(units[-1]) > 3 * LIMIT
    cut = payloads(video(keyframe))
    assert cut[0][0] & 0x1F == 24  # SPS, PPS (and x264's SEI) aggregated
    assert all(p[0] & 0x1F == 28 for p in cut[1:]) and len(cut) > 4
    assert all(len(p) <= LIMIT for p in cut)
    # start bit on the first fragment only, end bit on the last only; the IDR's NRI kept
    assert [bool(p[1] & 0x80) for p in cut[1:]] == [True] + [False] * (len(cut) - 2)
    assert [bool(p[1] & 0x40) for p in cut[1:]] == [False] * (len(cut) - 2) + [True]
    assert all(p[0] & 0x60 == units[-1][0] & 0x60 for p in cut[1:])
    assert depacketize(cut) == units


def test_what_a_receiver_puts_back_together_decodes():
    decoder = av.CodecContext.create("h264", "r")
    pictures = []
    for access_unit in encode_h264(4, still=False):
        units = depacketize(payloads(video(access_unit)))
        pictures += decoder.decode(av.Packet(b"".join(SC + u for u in units)))
    pictures += decoder.decode(None)
    assert [(p.width, p.height) for p in pictures] == [(160, 96)] * 4


def test_a_small_frame_is_one_single_nal_packet_without_its_start_code():
    delta = encode_h264(2)[1]
    assert len(delta) < 100
    assert payloads(video(delta, keyframe=False)) == (delta[4:],)


@pytest.mark.parametrize(
    "size, sizes",
    [
        (LIMIT - 1, [LIMIT - 1]),
        (LIMIT, [LIMIT]),  # exactly the limit still goes whole
        (LIMIT + 1, [652, 652]),  # one more: two even fragments (2 header bytes each)
        (2 * (LIMIT - 2) + 1, [LIMIT, LIMIT]),  # two full fragments
        (2 * (LIMIT - 2) + 2, [868, 868, 867]),  # a byte more: three
        (5000, [1252, 1252, 1252, 1251]),
    ],
)
def test_nal_units_at_and_around_the_limit(size, sizes):
    nal = b"\x65" + bytes(range(256)) * (size // 256) + b"\x07" * (size % 256 - 1)
    assert len(nal) == size
    cut = payloads(video(SC + nal))
    assert [len(p) for p in cut] == sizes
    assert depacketize(cut) == [nal]


def test_many_small_units_fill_several_stap_a_packets_each_within_the_limit():
    units = [b"\x06" + bytes([n]) * 99 for n in range(30)]  # 3,000 bytes of SEI
    cut = payloads(video(b"".join(SC + u for u in units)))
    assert [p[0] for p in cut] == [0x18] * 4  # STAP-A, NRI 0 as the units'
    assert all(len(p) <= LIMIT for p in cut)
    assert depacketize(cut) == units


def test_three_byte_start_codes_split_too():
    cut = payloads(video(b"\x00\x00\x01\x67\x42\x00\x1f\x00\x00\x01\x68\xce\x3c\x80"))
    assert depacketize(cut) == [b"\x67\x42\x00\x1f", b"\x68\xce\x3c\x80"]


def test_audio_is_one_packet_a_frame_as_it_is():
    opus = Sample("audio", b"\xfc\xff\xfe", 960, 48000, 0.02, codec="opus")
    assert payloads(opus) == (b"\xfc\xff\xfe",)


def test_the_same_bytes_are_cut_once_for_every_viewer():
    data = encode_h264(1)[0]
    first = payloads(video(data))
    assert payloads(Sample("video", data, 3000, 90000, 1.0, True, "h264")) is first


def test_the_cache_is_bounded_and_forgets_the_oldest(monkeypatch):
    monkeypatch.setattr(packetizer, "CACHE", 3)
    samples = [video(SC + b"\x41" + bytes([n])) for n in range(5)]
    for sample in samples:
        payloads(sample)
    assert list(packetizer._cache) == [s.data for s in samples[2:]]


def test_a_publishers_empty_nal_unit_does_not_break_packetization():
    """A publisher's STAP-A can hold a 0-byte unit (a bare start code once
    depayloaded); it once broke every viewer of the stream."""
    # a STAP-A whose one unit is 0 bytes long: aiortc depayloads it to a bare start code
    _, frame = H264PayloadDescriptor.parse(b"\x18\x00\x00")
    assert frame == b"\x00\x00\x00\x01"
    data = b"\x00\x00\x00\x01\x65\x88" + frame  # an IDR with that after it
    cut = payloads(Sample("video", data, 0, 90000, 0.0, True, "h264"))  # IndexError today
    assert cut == (b"\x65\x88",)
