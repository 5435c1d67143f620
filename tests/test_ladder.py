"""The quality ladder: parsed from ``hls_abr_profiles``, offered below each source."""

from __future__ import annotations

import pytest

from wcs.media.sample import VideoInfo
from wcs.streams.ladder import DEFAULT, NO_LADDER, Ladder, Rung


def video(width: int, height: int) -> VideoInfo:
    return VideoInfo(width, height, 30.0, "4d401f")


def test_the_default_ladder_is_360p_and_180p():
    ladder = Ladder.parse(DEFAULT)
    assert ladder.rungs == (Rung("360p", 360), Rung("180p", 180))
    assert str(ladder) == "360p,180p"


def test_rungs_are_sorted_high_first_and_deduplicated():
    assert str(Ladder.parse(" 180P , 720p,360p,180p, ")) == "720p,360p,180p"
    assert not Ladder.parse("")
    assert not NO_LADDER


@pytest.mark.parametrize("text", ["360", "abc", "8p", "9999p", "360p;180p", "-360p"])
def test_a_bad_rung_is_named(text):
    with pytest.raises(ValueError, match="is not a rung"):
        Ladder.parse(text)


def test_at_most_six_rungs():
    with pytest.raises(ValueError, match="at most 6"):
        Ladder.parse("1080p,720p,540p,480p,360p,240p,180p")


def test_steps_are_those_below_the_source_with_its_aspect():
    ladder = Ladder.parse("1080p,720p,360p,180p")
    steps = ladder.steps(video(1280, 720))
    assert [(s.rung.name, s.size) for s in steps] == [("360p", (640, 360)), ("180p", (320, 180))]
    assert steps[0].bitrate == 691_200 and steps[0].profile_level_id == "42e01f"
    four3 = ladder.steps(video(640, 480))
    assert [s.size for s in four3] == [(480, 360), (240, 180)]
    assert ladder.steps(video(320, 180)) == []
    assert ladder.steps(None) == []
    assert ladder.find("360p") == Rung("360p", 360) and ladder.find("240p") is None
