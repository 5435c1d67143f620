"""``workers=1``, the server as one process: a smoke set over what the rest of
the suite proves on the defaults (two workers on CI)."""

from __future__ import annotations

import time

import pytest

from testkit.pages import open_player, video_state, wait_status, wait_video
from testkit.rest_client import call
from tests.test_e2e_hls import get, parse, url


@pytest.mark.parametrize("provider", ["WebRTC", "MSE"])
def test_the_sdk_player_plays_in_one_process(start_server, page, media, provider):
    server = start_server(media_dir=str(media), workers="1")
    assert "worker processes" not in server.log()
    open_player(page, server, "vod://main.mp4", f"&mediaProvider={provider}")
    wait_status(page, "PLAYING")
    first = wait_video(page)
    time.sleep(1.5)
    assert video_state(page)["time"] - first["time"] >= 1.0
    page.click("#playBtn")
    assert wait_status(page, "STOPPED")[-2:] == ["PLAYING", "STOPPED"]


def test_rest_and_hls_in_one_process(start_server, media):
    server = start_server(media_dir=str(media), workers="1", vod_live_loop="true")
    assert call(server.http_url, "/rest-api/vod/startup",
                {"uri": "vod-live://live.mp4", "localStreamName": "show"})[0] == 200
    status, found, _ = call(server.http_url, "/rest-api/vod/find", {"localStreamName": "show"})
    assert status == 200 and found[0]["uri"] == "vod-live://live.mp4"
    status, playlist = get(url(server, "show"))[:2]
    assert status == 200 and parse(playlist.decode())["segments"]
    assert call(server.http_url, "/rest-api/vod/terminate",
                {"localStreamName": "show"})[0] == 200
    assert call(server.http_url, "/rest-api/vod/find",
                {"localStreamName": "show"})[0] == 404
