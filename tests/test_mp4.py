"""Reading an MP4 sample by sample: due order, Annex B, Opus beside AAC, loops."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from tools.makemedia import corrupt_audio, frames_in, make_mp4
from wcs.media import h264
from wcs.media.mp4 import Mp4File, _OpusFeed
from wcs.media.sample import OPUS_FRAME


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("mp4")
    make_mp4(folder / "main.mp4", seconds=2, width=320, height=180)
    make_mp4(folder / "bframes.mp4", seconds=2, width=320, height=180, profile="high",
             bframes=3)
    corrupt_audio(folder / "main.mp4", folder / "corrupt.mp4", frames=5)
    return folder


def test_samples_come_in_due_order_with_every_frame(files):
    media = Mp4File(files / "main.mp4", "main")
    samples = list(media.samples())
    for codec in ("h264", "opus", "aac"):
        times = [s.time for s in samples if s.codec == codec]
        assert times == sorted(times), codec
    assert {s.kind for s in samples[:20]} == {"video", "audio"}  # the tracks interleave
    video = [s for s in samples if s.kind == "video"]
    assert len(video) == frames_in(files / "main.mp4")
    assert [b.pts - a.pts for a, b in zip(video, video[1:])] == [3000] * (len(video) - 1)
    assert video[0].keyframe and video[0].codec == "h264"
    assert [u[0] & 0x1F for u in h264.split_annexb(video[0].data)][:2] == [7, 8]
    opus = [s for s in samples if s.codec == "opus"]
    aac = [s for s in samples if s.codec == "aac"]
    assert [b.pts - a.pts for a, b in zip(opus, opus[1:])] == [OPUS_FRAME] * (len(opus) - 1)
    assert len(aac) > 0 and aac[0].clock == 44100
    assert media.info.video.profile_level_id.startswith("4d")
    media.close()


def test_a_loop_keeps_time_rising_and_the_video_rhythm(files):
    media = Mp4File(files / "main.mp4", "main")
    looped = media.samples(loop=True)
    samples = [next(looped) for _ in range(1000)]
    video = [s for s in samples if s.kind == "video"]
    assert len(video) > 2 * 60  # past the end of the 2 s file, twice
    assert [b.pts - a.pts for a, b in zip(video, video[1:])] == [3000] * (len(video) - 1)
    opus = [s.pts for s in samples if s.codec == "opus"]
    assert all(b - a >= OPUS_FRAME for a, b in zip(opus, opus[1:]))
    media.close()


def test_b_frames_are_re_encoded_into_display_order(files):
    media = Mp4File(files / "bframes.mp4", "bframes")
    assert media.has_b_frames and media.info.video.profile_level_id.startswith("64")
    video = [s for s in media.samples() if s.kind == "video"]
    assert len(video) == frames_in(files / "bframes.mp4")
    pts = [s.pts for s in video]
    assert pts == sorted(pts) and [s.time for s in video] == sorted(s.time for s in video)
    media.close()


def test_undecodable_aac_is_dropped_not_fatal(files):
    clean = [s for s in Mp4File(files / "main.mp4", "m").samples() if s.codec == "opus"]
    damaged = [s for s in Mp4File(files / "corrupt.mp4", "c").samples() if s.codec == "opus"]
    assert 3 <= len(clean) - len(damaged) <= 8  # 5 AAC frames of 23 ms: about 6 Opus packets


@pytest.mark.parametrize("name", ["main.mp4", "bframes.mp4"])
def test_a_reader_joining_a_broadcast_reads_what_the_first_reads_at_that_moment(files, name):
    """Two readers of one looping broadcast: one from its start, one from 3.5 s
    in (into the second pass), with the pass length found without reading."""
    first = Mp4File(files / name, "first")
    period = first.pass_length()
    looped = first.samples(loop=True)
    from_start = [next(looped) for _ in range(700)]
    boundary = next(s.time for a, s in zip(from_start, from_start[1:])
                    if s.kind == "video" and s.time >= 2.0 - 1e-6)
    assert period == pytest.approx(boundary, abs=1e-6)  # where the loop really turns
    joiner = Mp4File(files / name, "joiner")
    joined = joiner.samples(loop=True, period=joiner.pass_length(), position=3.5)
    late = [next(joined) for _ in range(200)]
    videos = [s for s in late if s.kind == "video"]
    assert videos[0].keyframe and videos[0].time <= 3.5  # from the keyframe before
    assert videos[0].time == pytest.approx(2.0, abs=1e-6)  # (the file's GOP is 2 s)
    same = {(s.time, s.pts): s.data for s in from_start if s.kind == "video"}
    matched = [s for s in videos if (s.time, s.pts) in same]
    assert len(matched) > 40 and all(same[(s.time, s.pts)] == s.data for s in matched)
    first.close()
    joiner.close()


def test_a_position_past_the_end_of_a_file_that_does_not_loop_reads_nothing(files):
    media = Mp4File(files / "main.mp4", "main")
    assert list(media.samples(position=30.0)) == []
    media.close()


class Patchy:
    """A file downloaded in 64 KiB chunks, only those that ``allowed`` touches: a
    read of any other fails, as a read past a download does (``ranged.py``)."""

    CHUNK = 64 * 1024

    def __init__(self, path: Path, allowed: list[tuple[int, int]]) -> None:
        self.handle = path.open("rb")
        self.have = {index for start, length in allowed
                     for index in range(start // self.CHUNK,
                                        (start + length - 1) // self.CHUNK + 1)}
        self.outside: list[int] = []

    def read(self, count: int = -1) -> bytes:
        at = self.handle.tell()
        data = self.handle.read(count)
        touched = range(at // self.CHUNK, (at + max(len(data), 1) - 1) // self.CHUNK + 1)
        if data and not all(index in self.have for index in touched):
            self.outside.append(at)
            raise OSError("not downloaded")
        return data

    def seek(self, offset: int, whence: int = 0) -> int:
        return self.handle.seek(offset, whence)

    def tell(self) -> int:
        return self.handle.tell()


def test_join_ranges_are_all_a_joining_reader_reads_first(files, tmp_path):
    path = make_mp4(tmp_path / "long.mp4", seconds=12, width=320, height=180)
    whole = Mp4File(path, "whole")
    ranges = whole.join_ranges(position=7.3, loop=False, ahead=3.0)
    whole.close()
    moov_and_start = (0, 64 * 1024)
    patchy = Patchy(path, [moov_and_start, *ranges])
    joiner = Mp4File(patchy, "joiner")  # type: ignore[arg-type]
    period = joiner.pass_length()
    samples = joiner.samples(position=7.3, period=period)
    video = [s for s in (next(samples) for _ in range(120)) if s.kind == "video"]
    assert patchy.outside == [] and video[0].keyframe and video[0].time == pytest.approx(6.0)
    size = path.stat().st_size
    (last_gop, _), (joined, _) = ranges
    assert last_gop > 0.8 * size and joined > 0.4 * size  # not the media's start
    joiner.close()


def test_no_opus_is_made_while_no_one_takes_it_and_it_starts_afresh_on_the_timeline(files):
    import gc

    from wcs.metrics import METERS

    def transcoders() -> int:
        gc.collect()
        running = METERS.transcoders.get("aac-to-opus")
        return len(running) if running is not None else 0

    whole = [s for s in Mp4File(files / "main.mp4", "whole").samples() if s.codec == "opus"]
    wanted = {"opus": False}
    media = Mp4File(files / "main.mp4", "toggled")
    started: list[bool] = []
    media.on_transcoding = lambda: started.append(True)
    before = transcoders()
    samples = media.samples(wants_opus=lambda: wanted["opus"])
    head = [next(samples) for _ in range(40)]
    assert not [s for s in head if s.codec == "opus"] and [s for s in head if s.codec == "aac"]
    assert transcoders() == before and started == []  # no transcoder was made
    wanted["opus"] = True
    rest = list(samples)
    opus = [s for s in rest if s.codec == "opus"]
    assert opus and started == [True]
    # the Opus made from the middle keeps the file's timeline: its frames sit
    # where a whole read's are, a frame (20 ms) or two from the AAC it starts at
    first_aac = next(s for s in rest if s.codec == "aac")
    assert abs(opus[0].time - first_aac.time) < 0.05
    assert abs(opus[-1].time - whole[-1].time) < 0.05
    media.close()


def test_cached_opus_is_passed_over_while_no_one_takes_it(files):
    source = Mp4File(files / "main.mp4", "source")
    cached = list(source.opus_samples())
    media = Mp4File(files / "main.mp4", "replaying")
    media.replay_opus(lambda: iter(cached))
    wanted = {"opus": False}
    samples = list(media.samples(wants_opus=lambda: wanted["opus"]))
    assert not [s for s in samples if s.codec == "opus"]
    wanted["opus"] = True
    assert len([s for s in media.samples(wants_opus=lambda: wanted["opus"])
                if s.codec == "opus"]) == len(cached)


def test_with_cached_opus_and_no_one_taking_aac_the_audio_track_is_not_read(files):
    """A WebRTC play's reader: video and cached Opus only, in due order, the
    same video and Opus as a reader that also gives AAC; the file's audio
    packets are never demuxed."""
    source = Mp4File(files / "main.mp4", "source")
    cached = list(source.opus_samples())
    both = Mp4File(files / "main.mp4", "both")
    both.replay_opus(lambda: iter(cached))
    full = list(both.samples())
    media = Mp4File(files / "main.mp4", "opus only")
    media.replay_opus(lambda: iter(cached))
    demuxed: list[object] = []

    class Watched:
        """The container, telling which streams each demux reads."""

        def __init__(self, container):
            self.container = container

        def __getattr__(self, name):
            return getattr(self.container, name)

        def demux(self, *args, **kwargs):
            demuxed.append(args)
            return self.container.demux(*args, **kwargs)

    media.container = Watched(media.container)
    lean = list(media.samples(wants_aac=lambda: False))
    assert not [s for s in lean if s.codec == "aac"]
    for codec in ("h264", "opus"):
        assert [(s.pts, s.data) for s in lean if s.codec == codec] == [
            (s.pts, s.data) for s in full if s.codec == codec
        ]
    assert [s.time for s in lean] == sorted(s.time for s in lean)
    assert len([s for s in lean if s.codec == "opus"]) == len(cached)
    assert demuxed == [([media.video],)]
    # nobody takes Opus either: AAC comes as before, whatever wants_aac says
    assert [s for s in media.samples(wants_opus=lambda: False, wants_aac=lambda: False)
            if s.codec == "aac"]


def test_opus_begun_mid_file_stays_on_one_grid_across_loops(files):
    """Transcoding that began at a frame in the middle (the first WebRTC viewer
    came then) puts its 20 ms frames off the file's grid; the next pass's Opus
    is moved onto the same grid, so the audio runs on without a gap."""
    media = Mp4File(files / "main.mp4", "loop")
    asked = {"n": 0}

    def wanted() -> bool:
        asked["n"] += 1
        return asked["n"] > 7

    opus = []
    for sample in media.samples(loop=True, period=media.pass_length(), wants_opus=wanted):
        if sample.codec == "opus":
            opus.append(sample.pts)
        if len(opus) > 300:  # about three passes of a 2 s file
            break
    assert opus[0] % OPUS_FRAME != 0  # begun off the file's grid
    assert [b - a for a, b in zip(opus, opus[1:])] == [OPUS_FRAME] * (len(opus) - 1)


@pytest.fixture(scope="module")
def loop_files(tmp_path_factory) -> Path:
    import subprocess

    folder = tmp_path_factory.mktemp("loops")
    make_mp4(folder / "48k.mp4", seconds=2, width=320, height=180, audio_rate=48000)
    make_mp4(folder / "audio-only.mp4", seconds=2, video=False)
    # its video starts 0.1 s after its audio (an edit list's empty edit)
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-i", str(folder / "48k.mp4"),
                    "-itsoffset", "0.1", "-i", str(folder / "48k.mp4"), "-map", "1:v",
                    "-map", "0:a", "-c", "copy", str(folder / "late-video.mp4")], check=True)
    return folder


def steps(samples, codec: str) -> list[int]:
    pts = [s.pts for s in samples if s.codec == codec]
    return [b - a for a, b in zip(pts, pts[1:])]


@pytest.mark.parametrize("name", ["48k.mp4", "late-video.mp4", "main.mp4"])
@pytest.mark.parametrize("joined", [False, True])
def test_across_the_loop_each_track_moves_on_by_exactly_one_frame(files, loop_files, name,
                                                                   joined):
    """At the loop point the AAC as stored steps one frame (1024 / rate: no frame
    stamped within the last, as the file's audio runs a little past its video) and
    the video one frame, pass after pass: read from the start, or joined later."""
    media = Mp4File((files if name == "main.mp4" else loop_files) / name, "loop")
    period = media.pass_length()
    looped = (media.samples(loop=True, period=period, position=3.3, wants_opus=lambda: False)
              if joined else media.samples(loop=True, wants_opus=lambda: False))
    samples = []
    for sample in looped:
        if sample.time > (3.3 if joined else 0) + 3 * period:
            break
        samples.append(sample)
    rate = samples[[s.codec for s in samples].index("aac")].clock
    assert rate == (44100 if name == "main.mp4" else 48000)
    passes = {int((s.time + 1e-3) // period) for s in samples}
    assert len(passes) >= 3  # two loop points at least
    assert set(steps(samples, "aac")) == {1024}
    assert set(steps(samples, "h264")) == {3000}
    # the audio keeps with the video: no drift loop by loop
    for turn in sorted(passes)[1:]:
        video = min(s.time for s in samples if s.kind == "video" and s.time >= turn * period)
        audio = min(s.time for s in samples if s.codec == "aac" and s.time >= video - 0.1)
        assert abs(audio - video) < 0.1 + 1024 / rate
    media.close()


def test_an_audio_only_file_loops_on_its_aac_alone(loop_files):
    """No one takes Opus (HLS, MSE, RTMP): the AAC alone decides where a pass
    ends, and the next begins one AAC frame on."""
    media = Mp4File(loop_files / "audio-only.mp4", "loop")
    period = media.pass_length()
    frames = [s for s in media.samples() if s.codec == "aac"]
    assert period == pytest.approx((frames[-1].pts + 1024) / 44100, abs=1e-6)  # its AAC's end
    media.close()
    media = Mp4File(loop_files / "audio-only.mp4", "loop")
    looped = media.samples(loop=True, wants_opus=lambda: False)
    samples = [next(looped) for _ in range(3 * len(frames) + 5)]
    assert samples[-1].time > 3 * period - 0.1
    assert set(steps(samples, "aac")) == {1024}
    media.close()


def test_a_reader_takes_the_cache_within_a_second_of_its_making(files):
    """A play or broadcast that began before its file's Opus was cached
    transcodes only until the cache holds the file: it looks once a second of
    media (``find_opus``) and goes on from the cache's frame after its last
    transcoded one: the same frames, on one grid (no gap, no overlap), for the
    rest of the pass and the next ones, asking no more once answered."""
    source = Mp4File(files / "main.mp4", "source")
    cached = list(source.opus_samples())
    marked = [dataclasses.replace(sample, data=b"cached") for sample in cached]
    media = Mp4File(files / "main.mp4", "looping")
    length = media.pass_length()
    made_at = length / 2  # the media time at which the cache is complete
    now = [0.0]
    asked: list[float] = []

    def find():
        asked.append(now[0])
        return (lambda: iter(marked)) if now[0] >= made_at else None

    media.find_opus = find
    opus = []
    for sample in media.samples(loop=True):
        now[0] = sample.time
        if sample.time > 2.5 * length:
            break
        if sample.codec == "opus":
            opus.append(sample)
    switched = next(i for i, sample in enumerate(opus) if sample.data == b"cached")
    assert made_at <= opus[switched].time <= made_at + _OpusFeed.LOOK_EVERY + 0.1, (
        opus[switched].time, made_at)
    assert all(sample.data == b"cached" for sample in opus[switched:])  # and the next passes
    # until then transcoded, frame for frame what the cache holds
    assert [s.data for s in opus[:switched]] == [s.data for s in cached[:switched]]
    assert asked[-1] >= made_at and len(asked) <= made_at / _OpusFeed.LOOK_EVERY + 2, asked
    steps = {later.pts - earlier.pts for earlier, later in zip(opus, opus[1:])}
    assert steps == {OPUS_FRAME}, steps  # one grid, across the switch and the passes
    media.close()


def test_a_transcoder_begun_mid_file_takes_the_cache_onto_its_own_grid(files):
    """Opus first wanted mid-file is transcoded on a grid of its own, off the
    cache's; the cache's frames it goes on with are moved (by under half a
    frame) to follow its last frame exactly, and the next pass keeps that grid."""
    cached = list(Mp4File(files / "main.mp4", "source").opus_samples())
    marked = [dataclasses.replace(sample, data=b"cached") for sample in cached]
    media = Mp4File(files / "main.mp4", "looping")
    length = media.pass_length()
    wanted = {"opus": False}
    now = [0.0]
    media.find_opus = lambda: (lambda: iter(marked)) if now[0] >= length / 2 else None
    opus = []
    for sample in media.samples(loop=True, wants_opus=lambda: wanted["opus"]):
        now[0] = sample.time
        wanted["opus"] = sample.time > 0.31  # a viewer came, off the 20 ms grid
        if sample.time > 2.5 * length:
            break
        if sample.codec == "opus":
            opus.append(sample)
    begun = opus[0].pts
    assert begun % OPUS_FRAME != 0  # off the file's (and the cache's) grid
    switched = next(i for i, sample in enumerate(opus) if sample.data == b"cached")
    assert 0 < switched and all(sample.data == b"cached" for sample in opus[switched:])
    moved = min((opus[switched].pts - sample.pts for sample in marked), key=abs)
    assert 0 < abs(moved) <= OPUS_FRAME / 2, moved  # moved, by at most half a frame
    steps = {later.pts - earlier.pts for earlier, later in zip(opus, opus[1:])}
    assert steps == {OPUS_FRAME}, steps
    assert all((sample.pts - begun) % OPUS_FRAME == 0 for sample in opus)  # its grid
    media.close()


def test_deep_into_a_file_a_pass_keeps_transcoding_and_takes_the_cache_at_the_next(files,
                                                                                  monkeypatch):
    """Finding the place in the cache reads it from its start: past ``CATCH_UP``
    seconds a pass does not look, and the next pass replays the cache whole."""
    monkeypatch.setattr(_OpusFeed, "CATCH_UP", 0.5)
    cached = list(Mp4File(files / "main.mp4", "source").opus_samples())
    marked = [dataclasses.replace(sample, data=b"cached") for sample in cached]
    media = Mp4File(files / "main.mp4", "looping")
    length = media.pass_length()
    asked: list[float] = []
    now = [0.0]

    def find():
        asked.append(now[0])
        return (lambda: iter(marked)) if now[0] >= 0.8 else None

    media.find_opus = find
    opus = []
    for sample in media.samples(loop=True):
        now[0] = sample.time
        if sample.time > 1.5 * length:
            break
        if sample.codec == "opus":
            opus.append(sample)
    first = [s for s in opus if s.time < length - 0.1]
    assert first and all(s.data != b"cached" for s in first)  # this pass transcoded on
    later = [s for s in opus if s.time > length + 0.1]
    assert later and all(s.data == b"cached" for s in later)  # the next replays
    assert all(t <= 0.5 or t >= length - 0.1 for t in asked), asked  # none looked past it
    media.close()


def test_opus_wanted_again_after_a_while_takes_the_cache_from_then_not_from_before(files):
    """No one took Opus for a second (the broadcast's WebRTC viewers left); one
    comes once the cache is made: the cache's frames start at that moment, not
    where the old transcoder stopped (which would send the gap at once)."""
    cached = list(Mp4File(files / "main.mp4", "source").opus_samples())
    marked = [dataclasses.replace(sample, data=b"cached") for sample in cached]
    media = Mp4File(files / "main.mp4", "toggled")
    now = [0.0]
    media.find_opus = lambda: (lambda: iter(marked)) if now[0] >= 1.0 else None
    opus = []
    for sample in media.samples(wants_opus=lambda: not 0.3 < now[0] < 1.4):
        now[0] = sample.time
        if sample.codec == "opus":
            opus.append(sample)
    before = [s for s in opus if s.data != b"cached"]
    after = [s for s in opus if s.data == b"cached"]
    assert before and before[-1].time < 0.4  # transcoded until no one took it
    assert after and after[0].time > 1.3, after[0].time  # from the moment it was wanted
    media.close()


def test_a_reader_that_never_finds_the_cache_transcodes_each_pass_and_looks_once_a_second(files):
    """Without a cache entry the reader goes on transcoding, and its looks
    stay one per second of media (a ``stat`` each), pass after pass."""
    media = Mp4File(files / "main.mp4", "looping")
    length = media.pass_length()
    asked: list[int] = []
    media.find_opus = lambda: asked.append(1)
    opus = []
    for sample in media.samples(loop=True):
        if sample.time > 2 * length:
            break
        if sample.codec == "opus":
            opus.append(sample)
    assert opus and opus[-1].time > 1.9 * length
    looks = 2 * length / _OpusFeed.LOOK_EVERY
    assert looks - 2 <= len(asked) <= looks + 3, len(asked)
    media.close()
