"""HLS ABR's multivariant playlist, made from a stream's description and ladder."""

from __future__ import annotations

from wcs.hls import variants
from wcs.hls.segmenter import Segment
from wcs.media.sample import AudioInfo, MediaInfo, VideoInfo
from wcs.streams.ladder import Ladder

INFO = MediaInfo(0, VideoInfo(1280, 720, 30.0, "64001f"), AudioInfo(48000, 2, b"\x11\x90"))


def test_the_abr_name_and_its_stream():
    assert variants.base_name("vod-live://a.mp4-HLS-ABR-STREAM") == "vod-live://a.mp4"
    assert variants.base_name("-HLS-ABR-STREAM") is None
    assert variants.base_name("vod-live://a.mp4") is None


def test_codecs_say_the_profile_and_the_aac_object_type():
    assert variants.codecs(INFO) == "avc1.64001f,mp4a.40.2"
    he = MediaInfo(0, None, AudioInfo(48000, 2, bytes([5 << 3, 0])))
    assert variants.codecs(he) == "mp4a.40.5"
    assert variants.codecs(INFO, "42e01f") == "avc1.42e01f,mp4a.40.2"


def test_peak_bandwidth_is_the_densest_segment():
    made = [Segment(0, 2.0, b"x" * 250_000, True), Segment(1, 1.0, b"x" * 200_000, True)]
    assert variants.peak_bandwidth(made) == 1_600_000
    assert variants.peak_bandwidth([]) == 0


def test_the_playlist_lists_the_source_then_each_rung():
    steps = Ladder.parse("360p,180p").steps(INFO.video)
    text = variants.multivariant(INFO, 1_500_000, steps, shortest=2.0)
    lines = text.splitlines()
    assert lines[:3] == ["#EXTM3U", "#EXT-X-VERSION:6", "#EXT-X-INDEPENDENT-SEGMENTS"]
    assert lines[3] == (
        '#EXT-X-STREAM-INF:BANDWIDTH=1500000,RESOLUTION=1280x720,'
        'CODECS="avc1.64001f,mp4a.40.2",FRAME-RATE=30.000'
    )
    assert lines[4] == "source/source.m3u8"
    # 360p's cap, 691.2 kb/s, with its half-second VBV over a 2 s segment (1.25x),
    # the TS overhead (1.12x) and the audio (200 kb/s)
    assert lines[5].startswith("#EXT-X-STREAM-INF:BANDWIDTH=1167680,RESOLUTION=640x360,")
    assert 'CODECS="avc1.42e01f,mp4a.40.2"' in lines[5]
    assert lines[6] == "360p/360p.m3u8" and lines[8] == "180p/180p.m3u8"
    silent = MediaInfo(0, INFO.video, None)
    assert "BANDWIDTH=967680," in variants.multivariant(silent, 1, steps, shortest=2.0)
    # segments of a second: the VBV's half second weighs twice as much (1.5x)
    assert "BANDWIDTH=1161216," in variants.multivariant(silent, 1, steps, shortest=1.0)
    assert "BANDWIDTH=1161216," in variants.multivariant(silent, 1, steps, shortest=0.2)


def test_the_shortest_segment_made():
    made = [Segment(0, 2.0, b"x", True), Segment(1, 1.5, b"x", True), Segment(2, 0.0, b"", True)]
    assert variants.shortest(made) == 1.5
    assert variants.shortest([]) == 1.0
