"""Live VOD with two SDK player pages in Chromium: the same moment on both."""

from __future__ import annotations

import statistics
import time

import pytest

from testkit.browser import recorded_page
from testkit.pages import frame_number, open_player, wait_status, wait_video


@pytest.mark.alone  # two pages' frames within 0.1 s of each other: a timing test
def test_two_pages_show_the_same_frame_and_the_late_one_starts_at_once(
        start_server, page, browser, media):
    server = start_server(media_dir=str(media))
    open_player(page, server, "vod-live://live.mp4")
    wait_status(page, "PLAYING")
    wait_video(page)
    time.sleep(2.5)
    late = recorded_page(browser)
    context = late.context
    try:
        open_player(late, server, "vod-live://live.mp4")
        wait_status(late, "PLAYING")
        wait_video(late)
        playing_at = late.evaluate(
            "window.__statusTimes[window.__statuses.indexOf('PLAYING')]")
        shown_at = late.wait_for_function("window.__firstFrameAt").json_value()
        assert shown_at - playing_at < 500, f"video {shown_at - playing_at:.0f} ms after PLAYING"
        time.sleep(1.0)
        differences = []
        for _ in range(7):
            early_number = frame_number(page)
            late_number = frame_number(late)
            differences.append(abs(early_number - late_number))
            time.sleep(0.2)
        print(f"late page: video {shown_at - playing_at:.0f} ms after PLAYING; "
              f"frame differences {differences}")
        assert statistics.median(differences) <= 3, differences
        assert early_number > 90, "the page really is 3 s into the file"
    finally:
        context.close()
    # one broadcast: a copy on each worker a page landed on, on the same timeline
    assert set(server.per_worker("created for vod-live://live.mp4").values()) == {1}
