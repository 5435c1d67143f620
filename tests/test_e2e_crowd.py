"""The SDK's player in Chromium watches a vod-live broadcast that 200 counting
viewers share: the page's own figures stay clean for 10 s."""

from __future__ import annotations

import time

import pytest

from testkit.cheap_viewers import Crowd, packet_rate
from testkit.pages import inbound_stats, open_player, wait_status, wait_video

CROWD = 200
WINDOW = 10.0


@pytest.mark.alone  # a load test: no other test beside it
def test_a_browser_plays_cleanly_beside_200_viewers(start_server, page, media):
    server = start_server(media_dir=str(media), vod_live_loop="true",
                          max_sessions_per_address=str(CROWD + 10))
    with Crowd(server.ws_url, "vod-live://live.mp4", CROWD) as crowd:
        assert crowd.wait_connected(60) == CROWD
        open_player(page, server, "vod-live://live.mp4")
        wait_status(page, "PLAYING")
        assert wait_video(page)["width"] == 640
        time.sleep(1.0)
        before, packets = inbound_stats(page), crowd.packets()
        time.sleep(WINDOW)
        after, delivered = inbound_stats(page), crowd.packets() - packets
    video = {k: (after["video"][k] or 0) - (before["video"][k] or 0) for k in after["video"]}
    audio = {k: (after["audio"][k] or 0) - (before["audio"][k] or 0) for k in after["audio"]}
    assert after["video"]["freezeCount"] == 0, after
    assert video["framesDecoded"] >= 29 * WINDOW, video  # 30 fps
    assert video["framesDropped"] <= 2, video
    assert audio["totalSamplesReceived"] >= 0.95 * 48000 * WINDOW, audio
    assert audio["concealedSamples"] <= 0.02 * audio["totalSamplesReceived"], audio
    # A/V sync: what each track waits in its jitter buffer, on average, is close
    video_delay = video["jitterBufferDelay"] / video["jitterBufferEmittedCount"]
    audio_delay = audio["jitterBufferDelay"] / audio["jitterBufferEmittedCount"]
    assert video_delay < 0.3 and audio_delay < 0.3, (video_delay, audio_delay)
    assert abs(video_delay - audio_delay) < 0.15, (video_delay, audio_delay)
    # and the crowd got its share too
    assert delivered >= 0.95 * CROWD * packet_rate(media / "live.mp4") * WINDOW, delivered
