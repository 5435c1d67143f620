"""Re-encoding with x264, on real frames: a B-frame file comes out in display
order with no B-frames, IDRs where the source had keyframes, a bounded lag,
and decodes; a VP8 publisher's frames come out as Baseline H.264 from its
first keyframe, a damaged frame skipped."""

from __future__ import annotations

import io
from fractions import Fraction

import av
import pytest

from tests.test_packetizer import picture
from wcs.media import h264
from wcs.media.reencode import CAP_WINDOW, X264, BFrameRemover, Vp8ToH264, profile_level_id
from wcs.media.sample import VIDEO_CLOCK, Sample

WIDTH, HEIGHT, FRAMES, GOP = 160, 96, 60, 30
PictureType = av.video.frame.PictureType


def kinds(pictures: list[av.VideoFrame]) -> list[str]:
    return [PictureType(p.pict_type).name for p in pictures]


def decode(samples: list[Sample]) -> list[av.VideoFrame]:
    decoder = av.CodecContext.create("h264", "r")
    pictures = [p for s in samples for p in decoder.decode(av.Packet(s.data))]
    return pictures + list(decoder.decode(None))


def units(sample: Sample) -> list[int]:
    return [u[0] & 0x1F for u in h264.split_annexb(sample.data)]


@pytest.fixture(scope="module")
def bframes_mp4() -> bytes:
    """An MP4 whose video is I B B B P ..., a keyframe every 30 frames."""
    out = io.BytesIO()
    with av.open(out, "w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=30)
        stream.width, stream.height, stream.pix_fmt = WIDTH, HEIGHT, "yuv420p"
        stream.codec_context.options = {
            "preset": "veryfast",
            "bf": "3",
            "x264-params": f"keyint={GOP}:min-keyint={GOP}:scenecut=0:b-adapt=0",
        }
        still = picture(WIDTH, HEIGHT, 1)
        for n in range(FRAMES):
            frame = picture(WIDTH, HEIGHT, n) if n % 2 else still
            frame.pts = n
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    return out.getvalue()


def remove_bframes(data: bytes, origin: float = 0.0) -> tuple[list[Sample], list[int], list]:
    """The re-encoded samples, how far behind the input each packet left them,
    and the source's picture types."""
    with av.open(io.BytesIO(data)) as container:
        stream = container.streams.video[0]
        source = [
            PictureType(p.pict_type).name
            for packet in container.demux(stream)
            if packet.size
            for p in stream.codec_context.decode(packet)
        ]
    with av.open(io.BytesIO(data)) as container:
        stream = container.streams.video[0]
        remover = BFrameRemover(stream, origin)
        samples: list[Sample] = []
        behind: list[int] = []
        fed = 0
        for packet in container.demux(stream):
            if packet.size:
                fed += 1
                samples += remover.feed(packet)
                behind.append(fed - len(samples))
        samples += remover.feed(None)
    return samples, behind, source


def test_a_bframe_file_comes_out_with_every_frame_and_no_bframes(bframes_mp4):
    samples, _, source = remove_bframes(bframes_mp4)
    assert "B" in source  # the fixture really has them
    assert len(samples) == FRAMES
    pictures = decode(samples)
    assert len(pictures) == FRAMES and set(kinds(pictures)) <= {"I", "P"}
    assert {(p.width, p.height) for p in pictures} == {(WIDTH, HEIGHT)}


def test_samples_are_in_display_order_on_the_90khz_clock(bframes_mp4):
    samples, _, _ = remove_bframes(bframes_mp4)
    assert [s.pts for s in samples] == [n * VIDEO_CLOCK // 30 for n in range(FRAMES)]
    assert [s.time for s in samples] == pytest.approx([n / 30 for n in range(FRAMES)])
    assert {(s.kind, s.codec, s.clock) for s in samples} == {("video", "h264", VIDEO_CLOCK)}


def test_idrs_where_the_source_had_keyframes_each_with_its_parameter_sets(bframes_mp4):
    samples, _, _ = remove_bframes(bframes_mp4)
    assert [n for n, s in enumerate(samples) if s.keyframe] == [0, GOP]
    for n, sample in enumerate(samples):
        assert sample.data.startswith(b"\x00\x00\x00\x01")  # Annex B
        if sample.keyframe:
            assert {h264.NAL_SPS, h264.NAL_PPS, h264.NAL_IDR} <= set(units(sample)), n
        else:
            assert h264.NAL_IDR not in units(sample), n


def test_the_lag_behind_the_source_is_bounded_by_its_reordering(bframes_mp4):
    _, behind, _ = remove_bframes(bframes_mp4)
    assert max(behind) <= 4  # the decoder's reorder delay, x264 adds none


def test_the_origin_is_taken_off_every_time(bframes_mp4):
    samples, _, _ = remove_bframes(bframes_mp4, origin=1.0)
    assert samples[0].time == pytest.approx(-1.0) and samples[0].pts == -VIDEO_CLOCK
    assert samples[30].time == pytest.approx(0.0)


def test_the_profile_is_high_at_the_sources_level():
    assert profile_level_id(0x1F) == "64001f" and profile_level_id(0x0A) == "64000a"


def test_x264_makes_an_idr_when_asked_and_takes_other_pixel_formats():
    encoder = X264(WIDTH, HEIGHT, Fraction(1, 30), 30.0, 500_000)
    out: list[Sample] = []
    for n in range(10):
        frame = picture(WIDTH, HEIGHT, n).reformat(format="rgb24")
        frame.pts = n
        out += encoder.encode(frame, keyframe=n in (0, 7))
    out += encoder.encode(None)
    assert len(out) == 10 and [n for n, s in enumerate(out) if s.keyframe] == [0, 7]
    assert h264.NAL_IDR in units(out[7])
    assert len(decode(out)) == 10


def test_a_capped_encoder_keeps_any_span_within_its_cap_and_vbv_window():
    """What HLS ABR's BANDWIDTH of a rung counts on: noise (the worst picture to
    compress) at a low cap, with IDRs every second, never puts more in ``d``
    seconds than the cap over ``d`` plus the VBV's window."""
    import random

    rate, fps, bitrate = 30.0, 30, 150_000
    encoder = X264(320, 180, Fraction(1, fps), rate, bitrate, profile="baseline", capped=True)
    noise = random.Random(7)
    sizes = []
    for n in range(6 * fps):
        frame = av.VideoFrame(320, 180, "yuv420p")
        for plane in frame.planes:
            plane.update(noise.randbytes(plane.buffer_size))
        frame.pts = n
        sizes += [len(s.data) * 8 for s in encoder.encode(frame, keyframe=n % fps == 0)]
    assert len(sizes) == 6 * fps
    for span in (fps, 2 * fps):  # segments of a second and of two
        worst = max(sum(sizes[i:i + span]) for i in range(len(sizes) - span + 1))
        bound = bitrate * (span / fps + CAP_WINDOW)
        print(f"{span / fps:.0f} s: worst {worst} bits, bound {bound:.0f}")
        assert worst <= bound * 1.02  # (x264's VBV is a model: a hair over, at most)
    assert sum(sizes) / 6 > 0.6 * bitrate  # it does use what it is given


def vp8_samples(count: int) -> list[Sample]:
    encoder = av.CodecContext.create("libvpx", "w")
    encoder.width, encoder.height, encoder.pix_fmt = WIDTH, HEIGHT, "yuv420p"
    encoder.time_base = Fraction(1, 30)
    encoder.options = {"deadline": "realtime", "g": "10"}
    encoder.open()
    packets = []
    for n in range(count):
        frame = picture(WIDTH, HEIGHT, n)
        frame.pts = n
        packets += encoder.encode(frame)
    packets += encoder.encode(None)
    return [
        Sample("video", bytes(p), n * 3000, VIDEO_CLOCK, n / 30, p.is_keyframe, "vp8")
        for n, p in enumerate(packets)
    ]


def test_vp8_becomes_baseline_h264_from_its_first_keyframe():
    samples = vp8_samples(12)
    assert [s.keyframe for s in samples][:2] == [True, False] and samples[10].keyframe
    reencoder = Vp8ToH264(bitrate=300_000)
    # a viewer that joined late: delta frames first are dropped, not decoded into grey
    out = [o for s in samples[1:10] for o in reencoder.feed(s)]
    assert out == [] and reencoder.x264 is None
    out = [o for s in samples[10:] for o in reencoder.feed(s)]
    assert [o.keyframe for o in out] == [True, False]
    assert [o.pts for o in out] == [samples[10].pts, samples[11].pts]
    sps = next(u for u in h264.split_annexb(out[0].data) if u[0] & 0x1F == h264.NAL_SPS)
    assert sps[1] == 66  # profile_idc: Baseline
    assert [(p.width, p.height) for p in decode(out)] == [(WIDTH, HEIGHT)] * 2


def test_a_damaged_vp8_frame_is_skipped_and_the_stream_goes_on():
    samples = vp8_samples(3)
    reencoder = Vp8ToH264()
    out = list(reencoder.feed(samples[0]))
    assert len(out) == 1
    junk = Sample("video", b"\x00\xff" * 50, 3000, VIDEO_CLOCK, 1 / 30, True, "vp8")
    assert list(reencoder.feed(junk)) == []
    assert len(list(reencoder.feed(samples[0]))) == 1  # the next keyframe repairs it
