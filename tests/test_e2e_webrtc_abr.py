"""WebRTC viewers moved along the quality ladder by their bandwidth, in Chromium.

Two SDK player pages watch a 1.2 Mb/s 640x360 broadcast. One page's link is
then held to 500 kb/s (an HTB class on the server's UDP port for that page,
in the test's own network namespace): the server moves it to the 180p
rendition within 5 s, where it plays without freezing; with the limit lifted
it goes back to the source. The other page keeps the source throughout.
"""

from __future__ import annotations

import re
import time
import urllib.request

import pytest

from testkit.browser import recorded_page
from testkit.pages import inbound_video_stats, open_player, video_state, wait_status, wait_video
from testkit.rest_client import call
from testkit.throttle import Throttle, server_udp_port
from tools.makemedia import make_mp4

def wait_width(page, width: int, seconds: float, also=lambda: None) -> float:
    """Seconds until the page's picture is ``width`` wide (fails after ``seconds``)."""
    start = time.monotonic()
    while time.monotonic() - start < seconds:
        if video_state(page)["width"] == width:
            return time.monotonic() - start
        also()
        time.sleep(0.1)
    raise AssertionError(f"the picture is not {width} wide after {seconds} s: {video_state(page)}")


def listed(server) -> dict[str, str]:
    """Each play's current step, as REST lists it (by mediaSessionId)."""
    status, found, _ = call(server.http_url, "/rest-api/stream/find_all", {})
    assert status == 200, found
    return {entry["mediaSessionId"]: entry.get("rendition", "") for entry in found}


@pytest.mark.alone  # the limit is on the namespace's loopback; no freeze with nothing beside
@pytest.mark.parametrize("name", ["vod-live://abr.mp4", "vod://abr.mp4"])
def test_a_throttled_viewer_moves_down_and_back_up_the_other_keeps_the_source(
        start_server, page, browser, tmp_path, name):
    """A broadcast, and personal plays (each viewer reads the file itself)."""
    make_mp4(tmp_path / "abr.mp4", seconds=60, bitrate="1200k")
    server = start_server(media_dir=str(tmp_path), vod_live_loop="true")
    open_player(page, server, name)
    wait_status(page, "PLAYING")
    assert wait_video(page)["width"] == 640
    throttled_port = server_udp_port(page)
    other = recorded_page(browser)
    open_player(other, server, name)
    wait_status(other, "PLAYING")
    assert wait_video(other)["width"] == 640
    assert server_udp_port(other) != throttled_port
    time.sleep(4)  # the browsers' estimates run
    assert "moved down" not in server.log()  # an open link keeps the source
    assert sorted(listed(server).values()) == ["source", "source"]

    def other_keeps_the_source() -> None:
        assert video_state(other)["width"] == 640

    with Throttle(throttled_port) as throttle:
        down = wait_width(page, 320, 10, other_keeps_the_source)
        print(f"moved down {down:.1f} s after the limit")
        assert down <= 5.0
        steps = listed(server)
        assert sorted(steps.values()) == ["180p", "source"], steps
        time.sleep(2)  # the queue the source filled drains
        before, shown = inbound_video_stats(page), video_state(page)
        for _ in range(16):
            time.sleep(0.5)
            other_keeps_the_source()
        after, later = inbound_video_stats(page), video_state(page)
        print("through the limit:", before, after)
        assert later["width"] == 320
        assert later["time"] - shown["time"] >= 7.0  # it plays on
        assert after["framesDecoded"] - before["framesDecoded"] >= 8 * 30 * 0.85
        assert after["freezeCount"] - before["freezeCount"] <= 1
        console = recorded_page(browser)  # the operator's console lists each one's step
        console.goto(server.http_url + "/")
        console.wait_for_function(
            "([s, w]) => document.querySelector(s)?.textContent === w",
            arg=[f'tr[data-name="{name}"] td.steps', "source 1 · 180p 1"], timeout=15000)
        console.context.close()
        throttle.lift()
        up = wait_width(page, 640, 40, other_keeps_the_source)
        print(f"moved back up {up:.1f} s after the limit was lifted")
    wait_video(page)
    time.sleep(2)
    assert video_state(page)["width"] == 640
    other_keeps_the_source()
    log = server.log()
    assert log.count("moved down from source to 180p (320x180") == 1, log
    assert "moved up from 180p to source (640x360" in log
    assert "Traceback" not in log
    assert "New video size: 320x180" in page.console_messages  # the SDK's resize event
    metrics = urllib.request.urlopen(server.http_url + "/metrics", timeout=10).read().decode()
    assert re.search(r'wcsvod_abr_moves_total\{direction="down",rendition="180p"[^}]*\} 1\.0',
                     metrics), metrics
    assert sorted(listed(server).values()) == ["source", "source"]
