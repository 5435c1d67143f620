"""Personal VOD with the SDK's unchanged player page in Chromium."""

from __future__ import annotations

import time

import pytest

from testkit.browser import recorded_page
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


#: Files in each profile, 6 s at 30 fps each.
PROFILES = ["high.mp4", "bframes.mp4", "baseline.mp4"]


@pytest.mark.alone  # no freeze: only promised with nothing else on the two cores
def test_profiles_and_bframes_decode_without_freezes(start_server, browser, page, media):
    """Chromium's own figures: every frame decoded, no freeze (B-frames
    included). The three files play at once, each in a page of its own."""
    server = start_server(media_dir=str(media))
    pages = [page] + [recorded_page(browser) for _ in PROFILES[1:]]
    try:
        for each, name in zip(pages, PROFILES):
            open_player(each, server, f"vod://{name}")
        for each in pages:
            wait_status(each, "PLAYING")
        stats: list = [None] * len(pages)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and not all(ended(each) for each in pages):
            stats = [inbound_video_stats(each) or old for each, old in zip(pages, stats)]
            time.sleep(0.25)
        for each, name, figures in zip(pages, PROFILES, stats):
            assert ended(each), f"{name}: the end of the file stops the stream"
            assert each.inner_text("#playBtn") == "Start"
            frames = 180  # 6 s at 30 fps
            assert figures["freezeCount"] == 0, (name, figures)
            # the last 0.25 s may fall after the poll
            assert figures["framesDecoded"] >= frames - 12, (name, figures)
            assert figures["framesDropped"] <= 2, (name, figures)
    finally:
        for each in pages[1:]:
            each.context.close()


def ended(page) -> bool:
    return "STOPPED" in page.evaluate("window.__statuses")


def test_bundled_sample_plays_with_the_default_media_folder(start_server, page):
    """As the README's first command runs it: default media, ``workers=auto``."""
    from wcs.config import REPO_ROOT

    server = start_server(media_dir=str(REPO_ROOT / "media"), workers="auto")
    open_player(page, server, "vod://sample.mp4")
    wait_status(page, "PLAYING")
    state = wait_video(page)
    assert (state["width"], state["height"]) == (640, 360)

