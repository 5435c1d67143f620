"""An MP4's sample tables read from its ``moov`` alone (wcs/media/mp4index.py),
checked against FFmpeg's own demuxing of real encoders' files."""

from __future__ import annotations

from pathlib import Path

import av
import pytest

from tools.makemedia import make_mp4
from wcs.errors import WrongFormat
from wcs.media import boxes
from wcs.media.mp4index import plan, read_tracks


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("index")
    return {
        "main": make_mp4(folder / "main.mp4", seconds=7, profile="main"),
        "bframes": make_mp4(folder / "bframes.mp4", seconds=7, profile="high", bframes=3),
        "audio": make_mp4(folder / "audio.mp4", seconds=5, video=False),
    }


def moov_of(path: Path) -> bytes:
    data = path.read_bytes()
    with path.open("rb") as handle:
        found = boxes.check_layout(handle, len(data))
    moov = next(box for box in found if box.kind == "moov")
    return data[moov.offset : moov.offset + moov.size]


@pytest.mark.parametrize("name", ["main", "bframes", "audio"])
def test_every_sample_is_where_ffmpeg_finds_it(files, name):
    tracks = {track.kind: track for track in read_tracks(moov_of(files[name]))}
    with av.open(str(files[name])) as container:
        for stream in container.streams:
            track = tracks[stream.type]
            packets = [p for p in container.demux(stream) if p.size]
            container.seek(0)
            # FFmpeg leaves out what an edit list hides (AAC's priming frame)
            hidden = len(track) - len(packets)
            assert hidden in (0, 1), (len(track), len(packets))
            for offset, packet in enumerate(packets):
                i = offset + hidden
                assert (track.offsets[i], track.sizes[i]) == (packet.pos, packet.size)
                assert track.pts(i) == packet.pts and track.dts[i] - track.shift == packet.dts
            assert [i - hidden for i in track.keyframes() if i >= hidden] == [
                i for i, p in enumerate(packets) if p.is_keyframe]
    video = tracks.get("video")
    if video is not None:
        assert video.codec == "avc1" and video.config[0] == 1
        assert (video.width, video.height) == (640, 360)
    assert tracks["audio"].codec == "mp4a" and tracks["audio"].config[:2] == b"\x12\x10"


def test_segments_start_at_keyframes_and_carry_every_sample_once(files):
    tracks = {t.kind: t for t in read_tracks(moov_of(files["bframes"]))}
    video, audio = tracks["video"], tracks["audio"]
    segments = plan(video, audio, target=2.0)
    assert len(segments) >= 3
    keys = set(video.keyframes())
    assert all(s.video.start in keys for s in segments)
    assert [i for s in segments for i in s.video] == list(range(len(video)))
    assert [i for s in segments for i in s.audio] == list(range(len(audio)))
    assert all(s.duration >= 2.0 for s in segments[:-1])
    assert abs(sum(s.duration for s in segments) - video.duration) < 0.05
    for segment in segments[1:]:  # each sound with the picture it goes with
        first = audio.pts(segment.audio.start) / audio.timescale
        assert abs(first - segment.start) < 0.05
    only = plan(None, {t.kind: t for t in read_tracks(moov_of(files["audio"]))}["audio"], 2.0)
    assert len(only) == 3 and all(s.video == range(0) for s in only)


@pytest.mark.parametrize("damage", ["cut", "size", "count"])
def test_a_damaged_moov_is_refused_saying_so(files, damage):
    moov = bytearray(moov_of(files["main"]))
    if damage == "cut":
        moov = moov[: len(moov) // 2]
        moov[0:4] = len(moov).to_bytes(4, "big")
    elif damage == "size":
        at = moov.find(b"trak") - 4
        moov[at : at + 4] = (2**31).to_bytes(4, "big")
    else:
        at = moov.find(b"stsz") + 12  # its sample count
        moov[at : at + 4] = (10**9).to_bytes(4, "big")
    with pytest.raises(WrongFormat):
        read_tracks(bytes(moov))
