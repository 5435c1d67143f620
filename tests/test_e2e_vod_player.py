"""Personal VOD with the SDK's unchanged player page in Chromium."""

from __future__ import annotations

import time

from tests.pages import VIDEO, open_player, video_state, wait_status, wait_video


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
