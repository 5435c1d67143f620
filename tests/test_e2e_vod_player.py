"""Personal VOD with the SDK's unchanged player page in Chromium."""

from __future__ import annotations

import time

import pytest

from testkit.pages import (
    inbound_video_stats,
    open_player,
    video_state,
    wait_status,
    wait_video,
)


def test_plays_vod_file_to_decoded_frames_then_stops(start_server, page, media):
    server = start_server(media_dir=str(media))
    open_player(page, server, "vod://main.mp4")
    wait_status(page, "PLAYING")
    first = wait_video(page)
    assert (first["width"], first["height"]) == (640, 360)
    time.sleep(3.2)
    later = video_state(page)
    assert later["time"] - first["time"] >= 3.0, (first, later)
    assert page.inner_text("#playBtn") == "Stop"
    page.click("#playBtn")
    statuses = wait_status(page, "STOPPED")
    assert statuses[-2:] == ["PLAYING", "STOPPED"]
    assert page.inner_text("#playBtn") == "Start"


@pytest.mark.alone  # no freeze: only promised with nothing else on the two cores
@pytest.mark.parametrize("name", ["high.mp4", "bframes.mp4", "baseline.mp4"])
def test_profiles_and_bframes_decode_without_freezes(start_server, page, media, name):
    """Chromium's own figures: every frame decoded, no freeze (B-frames included)."""
    server = start_server(media_dir=str(media))
    open_player(page, server, f"vod://{name}")
    wait_status(page, "PLAYING")
    stats = None
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and "STOPPED" not in page.evaluate("window.__statuses"):
        stats = inbound_video_stats(page) or stats
        time.sleep(0.25)
    assert "STOPPED" in page.evaluate("window.__statuses"), "the end of the file stops the stream"
    assert page.inner_text("#playBtn") == "Start"
    frames = 180  # 6 s at 30 fps
    assert stats["freezeCount"] == 0, stats
    assert stats["framesDecoded"] >= frames - 12, stats  # the last 0.25 s may fall after the poll
    assert stats["framesDropped"] <= 2, stats


def test_bundled_sample_plays_with_the_default_media_folder(start_server, page):
    """As the README's first command runs it: default media, ``workers=auto``."""
    from wcs.config import REPO_ROOT

    server = start_server(media_dir=str(REPO_ROOT / "media"), workers="auto")
    open_player(page, server, "vod://sample.mp4")
    wait_status(page, "PLAYING")
    state = wait_video(page)
    assert (state["width"], state["height"]) == (640, 360)

