"""The SDK's player page with ``?resolution=WxH``: the picture at that size, one
encode for every page that asks for it, and ``transcoding_disabled`` refusing."""

from __future__ import annotations

import time

from testkit.browser import recorded_page
from testkit.pages import open_player, wait_status, wait_video
from testkit.workers import Steering
from tools.makemedia import make_mp4

NAME = "vod-live://four3.mp4"


def test_two_pages_at_320x240_share_one_encode(start_server, page, browser, tmp_path):
    """Every page on worker 1 (a rendition is encoded once per worker that has
    viewers of it, as a broadcast is read once per worker)."""
    make_mp4(tmp_path / "four3.mp4", seconds=30, width=640, height=480)
    server = start_server(media_dir=str(tmp_path), vod_live_loop="true")
    steering = Steering(server, plan=lambda n: 1)
    open_player(page, server, NAME, "&resolution=320x240", steering.url)
    wait_status(page, "PLAYING")
    first = wait_video(page)
    others = []
    for query in ("&resolution=320x240", "&resolution=640x480", ""):
        other = recorded_page(browser)
        context = other.context
        other.console_messages = []
        other.on("console", lambda message, o=other: o.console_messages.append(message.text))
        open_player(other, server, NAME, query, steering.url)
        wait_status(other, "PLAYING")
        others.append((context, other, wait_video(other)))
    time.sleep(1.0)
    later = page.evaluate("() => document.querySelector('#remoteVideo video').currentTime")
    assert (first["width"], first["height"]) == (320, 240)
    assert later > first["time"]  # it plays on
    assert [(state["width"], state["height"]) for _, _, state in others] == \
        [(320, 240), (640, 480), (640, 480)]
    assert "New video size: 320x240" in page.console_messages  # the resize event
    assert "New video size: 640x480" in others[2][1].console_messages
    log = server.log()
    assert log.count(f"rendition {NAME} at 320x240 started") == 1  # one encoder for two
    assert "encoders running: 1" in log and "encoders running: 2" not in log
    for context, _, _ in others:
        context.close()
    page.click("#playBtn")  # Stop: the last viewer at that size leaves
    wait_status(page, "STOPPED")
    deadline = time.monotonic() + 5
    while f"rendition {NAME} at 320x240 stopped" not in server.log() \
            and time.monotonic() < deadline:
        time.sleep(0.1)
    assert server.saw(f"rendition {NAME} at 320x240 stopped")
    assert "Traceback" not in server.log()


def test_transcoding_disabled_refuses_another_size(start_server, page, tmp_path):
    make_mp4(tmp_path / "four3.mp4", seconds=10, width=640, height=480)
    server = start_server(media_dir=str(tmp_path), transcoding_disabled="true")
    open_player(page, server, "vod://four3.mp4", "&resolution=320x240")
    wait_status(page, "FAILED")
    assert page.inner_text("#info") == "Transcoding required, but disabled"
    open_player(page, server, "vod://four3.mp4", "&resolution=1280x960")  # more: as it is
    wait_status(page, "PLAYING")
    assert (wait_video(page)["width"], wait_video(page)["height"]) == (640, 480)
