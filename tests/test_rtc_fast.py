"""The fast sender as a WebRTC sender should be, against real aiortc viewers:
lost packets repaired through NACK and RTX, a PLI answered within a GOP (and
passed on to a publishing page), sender reports that map RTP time to the wall
clock, and the aiortc senders still there when asked for."""

from __future__ import annotations

import asyncio

from testkit.rtc_client import play, run
from testkit.rtc_publisher import Published, publish

GOP = 60  # the test files have a keyframe every 60 frames, 2 s


def numbers_in_order(numbers: list[int]) -> bool:
    return numbers == list(range(numbers[0], numbers[0] + len(numbers)))


def test_lost_video_is_repaired_through_nack(start_server, media):
    server = start_server(media_dir=str(media))
    got = run(play(server.ws_url, "vod://live.mp4", video_loss=0.03, stop_after=8))
    assert got.statuses == ["PENDING", "PLAYING", "STOPPED"], got.infos
    assert got.dropped >= 10  # 3 % of about 450 video packets were thrown away...
    assert numbers_in_order(got.numbers)  # ...and every frame still decoded, in order
    assert len(got.numbers) >= 8 * 30 - 15
    assert abs(got.fps() - 30) < 1.5


def test_a_pli_gets_a_keyframe_within_a_gop(start_server, media):
    server = start_server(media_dir=str(media))
    got = run(play(server.ws_url, "vod-live://live.mp4", pli_after=1.0, stop_after=4.5))
    assert got.pli_sent is not None
    later = [t for t in got.keyframes if t > got.pli_sent]
    assert later and later[0] - got.pli_sent <= GOP / 30 + 0.2


def test_sender_reports_map_rtp_time_to_the_wall_clock(start_server, media):
    server = start_server(media_dir=str(media))
    got = run(play(server.ws_url, "vod://main.mp4", stop_after=6))
    clocks = {"video": 90000, "audio": 48000}
    for kind, clock in clocks.items():
        reports = [r for r in got.sender_reports if r[0] == kind]
        assert len(reports) >= 3, kind  # every 0.5–1.5 s
        for _, _, ntp, rtp in reports:
            wall = ntp / 2**32 - 2208988800
            # each packet arrives when the report's mapping says its time is
            errors = [abs((arrival - wall) - ((ts - rtp) % 2**32 if ts >= rtp
                                              else -((rtp - ts) % 2**32)) / clock)
                      for k, arrival, ts in got.rtp if k == kind and abs(arrival - wall) < 1]
            errors.sort()
            # the packets that met no delay on the way (a loaded client reads late;
            # a wrong mapping would put every packet off, the first tenth too)
            assert errors and errors[len(errors) // 10] < 0.03, (kind, errors[:5])


def test_a_viewers_pli_reaches_the_publishing_page(start_server, media, tmp_path):
    server = start_server(media_dir=str(tmp_path))

    async def both():
        publisher_started = Published()
        publisher = asyncio.ensure_future(publish(server.ws_url, "cam", media / "main.mp4",
                                                  seconds=5, record=False,
                                            result=publisher_started))
        await publisher_started.publishing()
        viewer = await play(server.ws_url, "cam", pli_after=1.0, stop_after=2.0)
        return await publisher, viewer

    published, viewer = run(both())
    assert viewer.statuses[:2] == ["PENDING", "PLAYING"] and viewer.pli_sent is not None
    assert published.plis >= 1


def test_the_aiortc_senders_still_play(start_server, media):
    server = start_server(media_dir=str(media), webrtc_sender="aiortc")
    got = run(play(server.ws_url, "vod://live.mp4", stop_after=4))
    assert got.statuses == ["PENDING", "PLAYING", "STOPPED"]
    assert numbers_in_order(got.numbers) and len(got.numbers) >= 4 * 30 - 10
