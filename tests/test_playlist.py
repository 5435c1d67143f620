"""Playlists as one medium: files back to back on one timeline, looping; the
names checked before anything is read; what cannot play passed over."""

from __future__ import annotations

import itertools
import os
from pathlib import Path

import pytest

from tests.test_sources import opened, sources_for
from tools.makemedia import make_mp4
from wcs.errors import BadRequest, InvalidName, LimitReached, NotFound
from wcs.media import h264
from wcs.sources import playlist
from wcs.sources.playlist import PlaylistMedia


@pytest.fixture(scope="module")
def media(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("playlist-media")
    make_mp4(folder / "a.mp4", seconds=3, barcode=True)
    make_mp4(folder / "b.mp4", seconds=2, width=320, height=180, barcode=True)
    make_mp4(folder / "c.mp4", seconds=2, barcode=True)
    make_mp4(folder / "mute.mp4", seconds=2, audio=False)
    make_mp4(folder / "rate.mp4", seconds=2, audio_rate=22050)
    make_mp4(folder / "baseline.mp4", seconds=2, profile="baseline")
    (folder / "text.mp4").write_text("not a film\n")
    (folder / "show.m3u").write_text("#EXTM3U\n# the evening\na.mp4\n\n  b.mp4  \nc.mp4\n")
    return folder


def channel(media: Path, tmp_path: Path, names: list[str], **options) -> PlaylistMedia:
    sources = sources_for(media, tmp_path)
    for key, value in options.items():
        setattr(sources, key, value)
    return opened(sources.playlist(names, "test"))


def read(medium: PlaylistMedia, seconds: float, position: float = 0.0) -> list:
    """Samples up to ``seconds`` of the channel's timeline, each read once ready."""
    out = []
    for sample in medium.samples(position=position):
        assert medium.ready()
        out.append(sample)
        if sample.time > seconds:
            return out
    raise AssertionError("the samples ended")


def test_files_play_back_to_back_on_one_rising_timeline_and_loop(media, tmp_path):
    medium = channel(media, tmp_path, ["a.mp4", "b.mp4", "c.mp4"])
    samples = read(medium, 15.0)
    video = [s for s in samples if s.kind == "video"]
    times = [s.time for s in video]
    assert times == sorted(times) and len(set(times)) == len(times)
    # frames come every 1/30 s across every join: none missing, none doubled
    gaps = {round((b - a) * 30, 3) for a, b in itertools.pairwise(times)}
    assert gaps == {1.0}, gaps
    # each file starts on a keyframe at its place: 0, 3, 5, 7 (the list again), 10, 12
    sizes = [(round(s.time, 3), h264.annexb_picture_size(s.data)) for s in video if s.keyframe]
    starts = {time: size for time, size in sizes if time in (0.0, 3.0, 5.0, 7.0, 10.0, 12.0)}
    assert starts == {0.0: (640, 360), 3.0: (320, 180), 5.0: (640, 360), 7.0: (640, 360),
                      10.0: (320, 180), 12.0: (640, 360)}, sizes
    assert medium.items[0].length == pytest.approx(3.0) and medium.current in (0, 1, 2)
    # sound: one frame right after another across the joins
    for codec in ("aac", "opus"):
        audio = [s for s in samples if s.kind == "audio" and s.codec == codec]
        frame = 1024 if codec == "aac" else 960
        steps = {b.pts - a.pts for a, b in itertools.pairwise(audio)}
        assert steps == {frame}, (codec, steps)  # no overlap, no gap, across every join
        assert audio[-1].time > 14.5


def test_a_playlist_file_lists_its_names(media, tmp_path):
    sources = sources_for(media, tmp_path)
    medium = opened(sources.open("show.m3u", "show"))
    assert isinstance(medium, PlaylistMedia)
    assert [item.name for item in medium.items] == ["a.mp4", "b.mp4", "c.mp4"]
    assert playlist.parse("a.mp4\r\n#x\r\nb.mp4", 10) == ["a.mp4", "b.mp4"]
    with pytest.raises(BadRequest, match="names no file"):
        playlist.parse("#EXTM3U\n\n# nothing\n", 10)
    with pytest.raises(LimitReached, match="max_playlist_items"):
        playlist.parse("a.mp4\n" * 11, 10)


@pytest.mark.parametrize(("names", "error", "words"), [
    (["a.mp4", "../etc/passwd"], InvalidName, "playlist item 2 ('../etc/passwd'): "),
    (["/etc/passwd"], InvalidName, "playlist item 1 ('/etc/passwd'): "),
    (["a.mp4", "escape.mp4"], InvalidName, "playlist item 2 ('escape.mp4'): "),
    (["a.mp4", "absent.mp4"], NotFound, "playlist item 2 ('absent.mp4')"),
    (["show.m3u"], InvalidName, "a playlist cannot name a playlist"),
])
def test_a_list_naming_what_cannot_be_played_is_refused_before_anything_is_read(
        media, tmp_path, names, error, words):
    outside = tmp_path / "secret.mp4"
    make_mp4(outside, seconds=1)
    escape = media / "escape.mp4"
    if not escape.exists():
        os.symlink(outside, escape)
    sources = sources_for(media, tmp_path)
    ran: list = []
    sources.run = lambda work, *args: ran.append(work)  # nothing may reach the file threads
    with pytest.raises(error) as refused:
        opened(sources.playlist(names, "test"))
    assert words in refused.value.info
    assert ran == []


def test_a_huge_list_is_refused_and_appends_are_capped(media, tmp_path):
    with pytest.raises(LimitReached, match="max_playlist_items"):
        channel(media, tmp_path, ["a.mp4"] * 11, max_playlist_items=10)
    medium = channel(media, tmp_path, ["a.mp4"] * 10, max_playlist_items=10)
    with pytest.raises(LimitReached, match="max_playlist_items"):
        medium.append(["b.mp4"], 10)
    big = media / "big.m3u"
    big.write_bytes(b"a.mp4\n" * (playlist.MAX_PLAYLIST_BYTES // 6 + 1))
    with pytest.raises(Exception, match="at most 1048576 bytes"):
        opened(sources_for(media, tmp_path).open("big.m3u", "big"))


def test_what_cannot_join_the_channel_is_passed_over(media, tmp_path):
    medium = channel(media, tmp_path,
                     ["a.mp4", "mute.mp4", "text.mp4", "rate.mp4", "baseline.mp4", "c.mp4"])
    samples = read(medium, 6.0)
    keys = [round(s.time, 3) for s in samples if s.kind == "video" and s.keyframe]
    assert 3.0 in keys and 5.0 in keys  # a, then c (the four between passed over)
    assert [item.name for item in medium.items][medium.current] in ("c.mp4", "a.mp4")


def test_a_list_of_which_nothing_can_play_ends_the_channel(media, tmp_path):
    (media / "gone.mp4").write_bytes((media / "a.mp4").read_bytes())
    medium = channel(media, tmp_path, ["gone.mp4", "mute.mp4"])
    (media / "gone.mp4").unlink()  # the first is open; the next is not a fit, nor is it again
    with pytest.raises(NotFound, match="no file of the playlist can be played"):
        read(medium, 10.0)


def test_skip_goes_on_with_the_next_file_at_once_on_the_same_timeline(media, tmp_path):
    medium = channel(media, tmp_path, ["a.mp4", "b.mp4", "c.mp4"])
    samples = medium.samples()
    first = [next(samples) for _ in range(30)]
    medium.skip(first[-1].time)
    assert medium.ready()
    after = next(s for s in samples if s.kind == "video")
    assert after.keyframe
    assert h264.annexb_picture_size(after.data) == (320, 180)
    assert after.time == pytest.approx(max(s.time for s in first if s.kind == "video") + 1 / 30)
    assert medium.listed(after.time)["current"] == 1


def test_nobody_watching_the_schedule_moves_on_by_the_files_lengths(media, tmp_path):
    medium = channel(media, tmp_path, ["a.mp4", "b.mp4", "c.mp4"])
    done: list = []
    medium.prepare_join(8.5, True).addBoth(done.append)
    assert done == [None] and medium.current == 0  # 3 + 2 + 2 = 7: the list again, 1.5 in
    video = [s for s in read(medium, 9.0, position=8.5) if s.kind == "video"]
    assert video[0].keyframe and video[0].time == pytest.approx(7.0)  # a's keyframe before
    medium.close()
    assert medium.ready()
