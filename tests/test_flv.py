"""FLV tag bodies, byte by byte: the AVC sequence header, length-prefixed NAL
units with a zero composition time, AAC's config then frames, the caller's
millisecond timestamps; and real x264 output through them decodes."""

from __future__ import annotations

import av
import pytest

from tests.test_packetizer import encode_h264
from wcs.media import h264
from wcs.media.flv import AUDIO, VIDEO, FlvTagger, avcc_record
from wcs.media.sample import Sample

SC = b"\x00\x00\x00\x01"
SPS = b"\x67\x42\xe0\x1f\x8c\x8d\x40"
PPS = b"\x68\xce\x3c\x80"
AUD = b"\x09\xf0"
SEI = b"\x06\x05\x01\x80"
ASC = b"\x12\x10"  # AAC-LC, 44.1 kHz, stereo


def video(units: list[bytes], keyframe: bool, pts: int = 0) -> Sample:
    return Sample(
        "video", b"".join(SC + u for u in units), pts, 90000, pts / 90000, keyframe, "h264"
    )


def aac(data: bytes, codec: str = "aac") -> Sample:
    return Sample("audio", data, 0, 44100, 0.0, True, codec)


def test_the_avc_decoder_configuration_record_byte_by_byte():
    record = avcc_record(SPS, PPS)
    assert record == (b"\x01\x42\xe0\x1f\xff\xe1" + b"\x00\x07" + SPS + b"\x01" + b"\x00\x04" + PPS)
    config = h264.parse_avcc(record)  # the MP4 side reads it back as written
    assert (config.sps, config.pps, config.length_size) == ((SPS,), (PPS,), 4)


def test_a_keyframe_is_the_sequence_header_then_its_nal_units_without_parameter_sets():
    tagger = FlvTagger(ASC)
    tags = tagger.tags(video([AUD, SPS, PPS, SEI, b"\x65\x88\x84"], keyframe=True), 1234)
    assert tags == [
        (VIDEO, 1234, b"\x17\x00\x00\x00\x00" + avcc_record(SPS, PPS)),
        (
            VIDEO,
            1234,
            b"\x17\x01\x00\x00\x00" + b"\x00\x00\x00\x04" + SEI + b"\x00\x00\x00\x03\x65\x88\x84",
        ),
    ]
    assert (VIDEO, AUDIO) == (9, 8)


def test_a_delta_frame_is_0x27_with_composition_time_zero():
    tagger = FlvTagger(ASC)
    tagger.tags(video([SPS, PPS, b"\x65\x01"], keyframe=True), 0)
    assert tagger.tags(video([b"\x41\x9a\x02", b"\x41\x9a\x03"], keyframe=False), 33) == [
        (VIDEO, 33, b"\x27\x01\x00\x00\x00\x00\x00\x00\x03\x41\x9a\x02\x00\x00\x00\x03\x41\x9a\x03")
    ]


def test_no_video_before_the_first_parameter_sets():
    tagger = FlvTagger(ASC)
    assert tagger.tags(video([b"\x41\x01"], keyframe=False), 0) == []
    assert tagger.tags(video([b"\x65\x01"], keyframe=True), 33) == []  # an IDR alone
    assert len(tagger.tags(video([SPS, PPS, b"\x65\x01"], keyframe=True), 66)) == 2


def test_the_sequence_header_before_every_keyframe_for_mse():
    tagger = FlvTagger(ASC, every_keyframe=True)
    heads = []
    for n in range(3):
        heads += [
            body[:2]
            for _, _, body in tagger.tags(video([SPS, PPS, b"\x65\x01"], keyframe=True), n * 1000)
        ]
        heads += [
            body[:2]
            for _, _, body in tagger.tags(video([b"\x41\x01"], keyframe=False), n * 1000 + 33)
        ]
    assert heads == [b"\x17\x00", b"\x17\x01", b"\x27\x01"] * 3


def test_for_rtmp_the_sequence_header_only_when_the_parameters_change():
    tagger = FlvTagger(ASC, every_keyframe=False)
    first = tagger.tags(video([SPS, PPS, b"\x65\x01"], keyframe=True), 0)
    again = tagger.tags(video([SPS, PPS, b"\x65\x02"], keyframe=True), 2000)
    bigger = SPS[:3] + b"\x28" + SPS[4:]  # a new level: a resolution change, say
    changed = tagger.tags(video([bigger, PPS, b"\x65\x03"], keyframe=True), 4000)
    assert [body[:2] for _, _, body in first] == [b"\x17\x00", b"\x17\x01"]
    assert [body[:2] for _, _, body in again] == [b"\x17\x01"]
    assert changed[0] == (VIDEO, 4000, b"\x17\x00\x00\x00\x00" + avcc_record(bigger, PPS))


def test_aac_is_its_config_once_then_raw_frames():
    tagger = FlvTagger(ASC)
    assert tagger.tags(aac(b"frame1"), 0) == [
        (AUDIO, 0, b"\xaf\x00" + ASC),
        (AUDIO, 0, b"\xaf\x01frame1"),
    ]
    assert tagger.tags(aac(b"frame2"), 23) == [(AUDIO, 23, b"\xaf\x01frame2")]


def test_mse_leaves_the_audio_header_byte_out():
    tagger = FlvTagger(ASC, audio_header=b"")
    assert [body for _, _, body in tagger.tags(aac(b"f"), 5)] == [b"\x00" + ASC, b"\x01f"]


def test_without_a_config_only_frames_and_opus_is_not_carried():
    tagger = FlvTagger(b"")
    assert tagger.tags(aac(b"f"), 0) == [(AUDIO, 0, b"\xaf\x01f")]
    assert tagger.tags(aac(b"\xfc\xff", codec="opus"), 20) == []


@pytest.mark.parametrize("ms", [0, 1, 2**31 - 1])
def test_timestamps_are_the_callers_milliseconds(ms):
    tagger = FlvTagger(ASC)
    tags = tagger.tags(video([SPS, PPS, b"\x65\x01"], keyframe=True), ms) + tagger.tags(
        aac(b"a"), ms
    )
    assert {stamp for _, stamp, _ in tags} == {ms}


def test_real_h264_through_the_tags_decodes_with_the_sequence_header_as_extradata():
    tagger = FlvTagger(ASC)
    bodies = []
    for n, access_unit in enumerate(encode_h264(4, still=False)):
        keyframe = h264.NAL_IDR in {u[0] & 0x1F for u in h264.split_annexb(access_unit)}
        bodies += [
            body
            for _, _, body in tagger.tags(
                Sample("video", access_unit, n * 3000, 90000, n / 30, keyframe, "h264"), n * 33
            )
        ]
    assert bodies[0][:2] == b"\x17\x00" and [b[:2] for b in bodies[1:]] == [
        b"\x17\x01",
        b"\x27\x01",
        b"\x27\x01",
        b"\x27\x01",
    ]
    decoder = av.CodecContext.create("h264", "r")
    decoder.extradata = bodies[0][5:]
    pictures = []
    for body in bodies[1:]:
        pictures += decoder.decode(av.Packet(body[5:]))
    pictures += decoder.decode(None)
    assert [(p.width, p.height) for p in pictures] == [(160, 96)] * 4


def test_a_truncated_sps_does_not_break_the_flv_tagger():
    """A publisher's SPS too short to read is ignored, not a crash of every MSE
    viewer and push of the stream."""
    tagger = FlvTagger(b"")
    data = b"\x00\x00\x00\x01\x67" + b"\x00\x00\x00\x01\x68\xce" + b"\x00\x00\x00\x01\x65\x01"
    tags = tagger.tags(Sample("video", data, 0, 90000, 0.0, True, "h264"), 0)  # IndexError
    assert tags == [] or all(kind == 9 for kind, _, _ in tags)


def test_a_samples_frame_is_cut_once_for_every_tagger_that_takes_it():
    sample = video([SPS, PPS, SEI, b"\x65\x88\x84"], keyframe=True)
    mse, rtmp = FlvTagger(ASC), FlvTagger(ASC, every_keyframe=False)
    first, second = mse.tags(sample, 0)[-1][2], rtmp.tags(sample, 40)[-1][2]
    assert first is second  # the same bytes object: joined once
    # the same bytes as a keyframe and as not one are two different tags
    again = video([SPS, PPS, SEI, b"\x65\x88\x84"], keyframe=False)
    assert FlvTagger(ASC).tags(again, 0)[-1][2][:1] == b"\x27"


def test_the_frame_cache_is_bounded():
    from wcs.media import flv

    tagger = FlvTagger(ASC)
    for n in range(flv.CACHE + 50):
        tagger.tags(video([SPS, PPS, b"\x65" + n.to_bytes(4, "big")], keyframe=True), n)
    assert len(flv._cut) <= flv.CACHE
