"""A file's audio transcoded to Opus once, on disk, replayed for later plays."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from tools.makemedia import make_mp4
from wcs.media.mp4 import Mp4File
from wcs.sources.opus_cache import OpusCache


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    return make_mp4(tmp_path_factory.mktemp("opus") / "clip.mp4", seconds=3, width=320,
                    height=180)


def wait_for(cache: OpusCache, path: Path, timeout: float = 20.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        replay = cache.replay(path)
        if replay is not None:
            return replay
        time.sleep(0.05)
    raise AssertionError("the cache entry was not made")


def opus_of(media: Mp4File) -> list[tuple[int, bytes]]:
    return [(s.pts, s.data) for s in media.samples() if s.codec == "opus"]


def test_a_replayed_file_gives_the_very_samples_a_transcoding_play_gives(clip, tmp_path):
    cache = OpusCache(tmp_path / "cache", 2**30)
    assert cache.replay(clip) is None  # first open: queued, transcoded in the background
    replay = wait_for(cache, clip)
    live = Mp4File(clip, "live")
    replayed = Mp4File(clip, "replayed")
    replayed.replay_opus(replay)
    assert opus_of(replayed) == opus_of(live)
    kinds = [s.codec for s in Mp4File(clip, "x").samples()]
    replayed = Mp4File(clip, "replayed")
    replayed.replay_opus(replay)
    assert sorted(s.codec for s in replayed.samples()) == sorted(kinds)
    cache.close()


def test_a_looping_replay_starts_again_each_pass(clip, tmp_path):
    cache = OpusCache(tmp_path / "cache", 2**30)
    cache.replay(clip)
    replayed = Mp4File(clip, "loop")
    replayed.replay_opus(wait_for(cache, clip))
    looped = replayed.samples(loop=True)
    opus = [s.pts for s in (next(looped) for _ in range(1500)) if s.codec == "opus"]
    assert opus[-1] > 4 * 48000  # past the end of the 3 s file
    assert all(b - a >= 960 for a, b in zip(opus, opus[1:]))
    cache.close()


def test_a_changed_file_is_transcoded_afresh(clip, tmp_path):
    copy = tmp_path / "copy.mp4"
    copy.write_bytes(clip.read_bytes())
    cache = OpusCache(tmp_path / "cache", 2**30)
    first = cache.key(copy)
    os.utime(copy, (1, 1))
    assert cache.key(copy) != first
    cache.close()


def test_the_cache_stays_under_its_limit(clip, tmp_path):
    folder = tmp_path / "cache"
    cache = OpusCache(folder, 2**30)
    cache.replay(clip)
    wait_for(cache, clip)
    size = next(folder.glob("*.opus")).stat().st_size
    cache.limit = size + size // 2  # room for one entry
    other = tmp_path / "other.mp4"
    other.write_bytes(clip.read_bytes())
    time.sleep(0.01)
    cache.replay(other)
    wait_for(cache, other)
    assert len(list(folder.glob("*.opus"))) == 1  # the older entry went
    assert cache.replay(clip) is None
    cache.close()


def test_a_limit_of_zero_turns_it_off(clip, tmp_path):
    cache = OpusCache(tmp_path / "cache", 0)
    assert cache.replay(clip) is None
    time.sleep(0.3)
    assert not (tmp_path / "cache").exists()


def test_close_stops_the_job_and_leaves_no_partial_entry(tmp_path):
    long = make_mp4(tmp_path / "long.mp4", seconds=120, width=160, height=90, video=False)
    cache = OpusCache(tmp_path / "cache", 2**30)
    cache.replay(long)
    time.sleep(0.2)
    cache.close()
    time.sleep(0.5)
    assert list((tmp_path / "cache").glob("*")) == []


def test_a_file_larger_than_the_whole_cache_is_not_transcoded_again_and_again(clip, tmp_path):
    cache = OpusCache(tmp_path / "cache", 1000)  # far less than 3 s of Opus
    assert cache.replay(clip) is None
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and not cache._unfit:
        time.sleep(0.05)
    assert cache._unfit and list((tmp_path / "cache").glob("*")) == []
    cache.replay(clip)
    assert cache._jobs.empty()  # not queued again
    cache.close()


def test_an_entry_removed_while_it_plays_still_plays(clip, tmp_path):
    cache = OpusCache(tmp_path / "cache", 2**30)
    cache.replay(clip)
    replay = wait_for(cache, clip)
    for entry in (tmp_path / "cache").glob("*.opus"):
        entry.unlink()  # trimmed away, say
    assert len(list(replay())) == len(list(replay())) > 100
    cache.close()


def test_a_truncated_entry_ends_where_it_is_cut(clip, tmp_path):
    cache = OpusCache(tmp_path / "cache", 2**30)
    cache.replay(clip)
    whole = len(list(wait_for(cache, clip)()))
    entry = next((tmp_path / "cache").glob("*.opus"))
    entry.write_bytes(entry.read_bytes()[:-7])
    assert len(list(cache.replay(clip)())) == whole - 1
    cache.close()


def test_an_entry_is_made_only_when_asked_for(clip, tmp_path):
    cache = OpusCache(tmp_path / "cache", 10 * 2**20)
    try:
        assert cache.replay(clip, make=False) is None
        time.sleep(0.3)
        assert not list((tmp_path / "cache").glob("*.opus"))  # nothing was queued
        cache.make(clip)
        cache.make(clip)  # once is enough: queued once
        assert wait_for(cache, clip) is not None
    finally:
        cache.close()
