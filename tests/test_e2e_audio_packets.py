"""``webrtc_audio_packet_ms``: Opus frames joined into longer packets, fewer
datagrams, and the SDK's player in Chromium still hears every sample, in step
with the picture; an aiortc viewer sees the RTP clock step by the packet."""

from __future__ import annotations

import time

import pytest

from testkit.pages import inbound_stats, open_player, wait_status, wait_video
from testkit.rtc_client import play, run

WINDOW = 6.0


@pytest.mark.parametrize(("stream", "ms"), [
    ("vod-live://live.mp4", 40),  # a broadcast: joined once for all its viewers
    ("vod://live.mp4", 60),  # a personal play: joined for the one viewer
])
def test_the_browser_hears_every_sample_from_fewer_packets(start_server, page, media, stream,
                                                           ms):
    server = start_server(media_dir=str(media), vod_live_loop="true",
                          webrtc_audio_packet_ms=str(ms))
    open_player(page, server, stream)
    wait_status(page, "PLAYING")
    assert wait_video(page)["width"] == 640
    time.sleep(1.5)
    before = inbound_stats(page)
    time.sleep(WINDOW)
    after = inbound_stats(page)
    audio = {k: (after["audio"][k] or 0) - (before["audio"][k] or 0) for k in after["audio"]}
    video = {k: (after["video"][k] or 0) - (before["video"][k] or 0) for k in after["video"]}
    rate = audio["packetsReceived"] / WINDOW
    assert 0.85 * 1000 / ms <= rate <= 1.1 * 1000 / ms, rate  # one datagram per ``ms``
    assert audio["packetsLost"] == 0, audio
    assert audio["totalSamplesReceived"] >= 0.95 * 48000 * WINDOW, audio
    # a frame decoded short of its packet would leave the rest concealed (half of
    # it at 40 ms); here 0 %, but beside the suite's other tests a stalled box
    # makes a late 60 ms packet conceal 60 ms (CI: 3.5 %)
    assert audio["concealedSamples"] <= 0.05 * audio["totalSamplesReceived"], audio
    assert video["framesDecoded"] >= 28 * WINDOW, video
    # in step: what each track waits in its jitter buffer is close
    video_delay = video["jitterBufferDelay"] / video["jitterBufferEmittedCount"]
    audio_delay = audio["jitterBufferDelay"] / audio["jitterBufferEmittedCount"]
    assert abs(video_delay - audio_delay) < 0.15, (video_delay, audio_delay)


def test_an_rtp_viewer_sees_the_clock_step_by_the_packet_and_the_reports_say_so(
        start_server, media):
    """The RTP clock steps by the packet; and a joined packet, which goes out
    when its last frame is due with its first frame's RTP time, is mapped by
    the sender reports to its first frame's moment (as video is), so it arrives
    a frame later than it says and the browser keeps the sound in step."""
    server = start_server(media_dir=str(media), vod_live_loop="true",
                          webrtc_audio_packet_ms="40")
    got = run(play(server.ws_url, "vod-live://live.mp4", stop_after=6))
    assert got.statuses == ["PENDING", "PLAYING", "STOPPED"]
    stamps = [ts for kind, _, ts in got.rtp if kind == "audio"]
    steps = [(b - a) & 0xFFFFFFFF for a, b in zip(stamps, stamps[1:])]
    # 40 ms of 48 kHz a packet; a lone 20 ms frame where libopus changed its
    # bandwidth (the test file's first nine frames are fullband, at each loop)
    assert len(stamps) > 100 and set(steps) <= {960, 1920}, set(steps)
    assert steps.count(1920) >= 0.9 * len(steps), steps
    # decoded: every 20 ms frame of each packet, continuous
    pts = [row[1] for row in got.audio]
    assert all(b - a == row[2] for a, b, row in zip(pts, pts[1:], got.audio)), pts[:10]
    assert sum(row[2] for row in got.audio) >= 48000 * 5
    lateness = {}
    for kind, clock in {"video": 90000, "audio": 48000}.items():
        reports = [r for r in got.sender_reports if r[0] == kind]
        assert len(reports) >= 3, kind
        late = []
        for _, _, ntp, rtp in reports:
            wall = ntp / 2**32 - 2208988800
            late += [(arrival - wall) - ((ts - rtp + 2**31) % 2**32 - 2**31) / clock
                     for k, arrival, ts in got.rtp if k == kind and abs(arrival - wall) < 1]
        late.sort()
        lateness[kind] = late[len(late) // 10]  # those that met no delay on the way
    assert abs(lateness["video"]) < 0.03, lateness  # (the pump sends video ~10 ms early)
    # held 20 ms, and said so (unsaid, the audio reads about 3 ms early here)
    assert 0.008 < lateness["audio"] < 0.035, lateness
