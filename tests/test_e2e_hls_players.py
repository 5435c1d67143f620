"""The SDK's other HLS page in Chromium: hls-player, on video.js 7 and 8 (whose
players read whole segments and pass over LL-HLS's parts), plays a broadcast
from the link the SDK's demos take (``?version=...&autoplay=true&src=...``)."""

from __future__ import annotations

import time
import urllib.parse

import pytest

DEMOS = "/client2/examples/demo/streaming"
VIDEO = "() => { const v = document.querySelector('video'); return v && " \
        "[v.videoWidth, v.videoHeight, v.currentTime]; }"


def demo_src(playlist: str) -> str:
    """A playlist URL as the SDK's HLS demos take it in ``src``: they decode it twice."""
    return urllib.parse.quote(urllib.parse.quote(playlist, safe=""), safe="")


@pytest.mark.parametrize("version", ["videojs7", "videojs8"])
def test_the_sdk_s_video_js_hls_player_plays_a_broadcast(start_server, media, page, version):
    server = start_server(media_dir=str(media), vod_live_loop="true")
    quoted = urllib.parse.quote("vod-live://live.mp4", safe="")
    playlist = f"{server.hls_url}/{quoted}/{quoted}.m3u8"
    said: list[str] = []
    page.on("console", lambda message: said.append(message.text))
    page.goto(f"{server.http_url}{DEMOS}/hls-player/hls-player.html?version={version}"
              f"&autoplay=true&src={demo_src(playlist)}")
    try:
        page.wait_for_function(f"() => ({VIDEO})()?.[0] > 0 && ({VIDEO})()[2] > 0",
                               timeout=20000)
    except Exception as failure:
        raise AssertionError(f"{version} did not play: {said[-20:]}") from failure
    width, height, first = page.evaluate(VIDEO)
    time.sleep(2)
    later = page.evaluate(VIDEO)[2]
    assert (width, height) == (640, 360) and later > first + 1.0, (first, later)
    assert "Traceback" not in server.log()
