"""The project's own player page at ``/``, in Chromium."""

from __future__ import annotations

import time

from testkit.pages import video_state


def start(page, server, name: str) -> None:
    page.goto(f"{server.http_url}/")
    page.wait_for_function("document.getElementById('url').value.startsWith('ws://')")
    assert page.input_value("#url") == f"ws://127.0.0.1:{server.ports['ws.port']}/"
    page.fill("#streamName", name)
    page.click("#playBtn")


def test_own_page_plays_and_stops(start_server, page, media):
    server = start_server(media_dir=str(media))
    start(page, server, "vod://main.mp4")
    page.wait_for_function("document.getElementById('status').textContent === 'PLAYING'")
    page.wait_for_function("document.getElementById('video').videoWidth > 0 "
                           "&& document.getElementById('video').currentTime > 0")
    first = video_state(page, "#video")
    assert (first["width"], first["height"]) == (640, 360)
    time.sleep(3.1)
    assert video_state(page, "#video")["time"] - first["time"] >= 3.0
    page.click("#playBtn")
    page.wait_for_function("document.getElementById('status').textContent === 'STOPPED'")
    assert page.inner_text("#playBtn") == "Start"
    # the same session plays again
    page.click("#playBtn")
    page.wait_for_function("document.getElementById('status').textContent === 'PLAYING'")


def test_own_page_shows_errors(start_server, page, media):
    server = start_server(media_dir=str(media))
    start(page, server, "vod://absent.mp4")
    page.wait_for_function("document.getElementById('status').textContent === 'FAILED'")
    assert page.inner_text("#info") == "File not found"
    page.fill("#streamName", "vod://../secret.mp4")
    page.click("#playBtn")
    page.wait_for_function("document.getElementById('info').textContent.includes('..')")
    assert page.inner_text("#status") == "FAILED"
