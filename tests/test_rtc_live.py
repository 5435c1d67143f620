"""Live VOD (``vod-live://``) to real aiortc viewers: one broadcast for all."""

from __future__ import annotations

import asyncio
import time

import pytest

from testkit.rtc_client import Received, play, run
from testkit.workers import Steering

GOP = 60  # the test files have a keyframe every 60 frames


def live_part(got: Received) -> list[tuple[int, float]]:
    """(frame number, arrival) after the late-join burst of cached frames."""
    pts = [row[1] for row in got.video]
    start = next(i for i in range(1, len(pts)) if pts[i] - pts[i - 1] >= 2000)
    return [(got.numbers[i], got.video[i][0]) for i in range(start - 1, len(pts))]


@pytest.mark.alone  # frames' arrival times compared within 100 ms: nothing else on the cores
def test_viewers_share_one_broadcast_and_late_joiners_start_at_once(start_server, media):
    """On one worker (each worker has its own copy of a broadcast: the
    cross-worker timeline is ``test_e2e_workers``'s)."""
    server = start_server(media_dir=str(media))
    steering = Steering(server, plan=lambda n: 1)
    url = steering.url

    async def three():
        first = asyncio.ensure_future(play(url, "vod-live://live.mp4", stop_after=6.5))
        await asyncio.sleep(1.3)
        second = asyncio.ensure_future(play(url, "vod-live://live.mp4", stop_after=4.5))
        await asyncio.sleep(1.1)
        third = await play(url, "vod-live://live.mp4", stop_after=2.5)
        return await first, await second, third

    viewers = run(three())
    for got in viewers:
        assert got.statuses == ["PENDING", "PLAYING", "STOPPED"], got.statuses
        # the first picture decoded is a keyframe of the file...
        assert got.numbers[0] % GOP == 0, got.numbers[:5]
        # ...and from there every frame of the file arrives, in order, none missing
        assert got.numbers == list(range(got.numbers[0], got.numbers[0] + len(got.numbers)))
    first, second, third = viewers
    # late joiners started on the current GOP, not a GOP later: their first live
    # frame is the one everybody was getting at that moment
    arrivals = dict(live_part(first))
    for late in (second, third):
        live = live_part(late)
        assert live[0][1] - late.play_sent < 0.5, "video within 500 ms of asking"
        gaps = [abs(arrivals[number] - when) for number, when in live if number in arrivals]
        assert len(gaps) > 30 and max(gaps) < 0.1, max(gaps)
    log = server.log()
    assert log.count(f"opened {media / 'live.mp4'}") == 1, [
        line for line in log.splitlines() if "live.mp4" in line]
    assert log.count("created for vod-live://live.mp4") == 1


def test_a_stalled_viewer_does_not_slow_the_others(start_server, media):
    server = start_server(media_dir=str(media))
    url = server.ws_url

    async def pair():
        stalled = asyncio.ensure_future(play(url, "vod-live://live.mp4", stop_after=5,
                                             read=False))
        await asyncio.sleep(0.5)
        return await play(url, "vod-live://live.mp4", stop_after=4), await stalled

    healthy, stalled = run(pair())
    assert stalled.statuses[-1] == "STOPPED" and not stalled.video
    live = live_part(healthy)
    numbers = [number for number, _ in live]
    assert numbers == list(range(numbers[0], numbers[0] + len(numbers)))
    span = live[-1][1] - live[0][1]
    assert 28.5 < (len(live) - 1) / span < 31.5


def test_loop_keeps_timestamps_rising_and_rhythm_steady(start_server, media):
    server = start_server(media_dir=str(media), vod_live_loop="true")
    got = run(play(server.ws_url, "vod-live://loop.mp4", stop_after=8))  # a 3 s file
    assert got.statuses == ["PENDING", "PLAYING", "STOPPED"]
    pts = [row[1] for row in got.video]
    start = next(i for i in range(1, len(pts)) if pts[i] - pts[i - 1] >= 2000) - 1
    assert all(b - a == 3000 for a, b in zip(pts[start:], pts[start + 1:])), "no jump at the loop"
    numbers = got.numbers[start:]
    assert all(b == (a + 1) % 90 for a, b in zip(numbers, numbers[1:])), "frames 0..89, again"
    assert numbers.count(0) >= 2, "it looped at least twice"
    audio = [row[1] for row in got.audio]
    assert all(b - a == 960 for a, b in zip(audio, audio[1:])), "audio continuous too"
    times = [row[0] for row in got.video[start:]]
    gaps = [b - a for a, b in zip(times, times[1:])]
    seams = [gap for gap, number in zip(gaps, numbers[1:]) if number == 0]
    elsewhere = [gap for gap, number in zip(gaps, numbers[1:]) if number != 0]
    # no freeze at the loop: its seams no longer than 0.2 s, or than the longest
    # wait away from them (a loaded machine's, not the loop's)
    assert max(seams) < max(0.2, max(elsewhere) * 1.25), ("freeze at the loop", seams,
                                                           max(elsewhere))
    assert server.log().count(f"opened {media / 'loop.mp4'}") == 1


def test_end_of_file_without_loop_stops_every_viewer(start_server, media):
    server = start_server(media_dir=str(media))
    url = server.ws_url

    async def pair():
        one = asyncio.ensure_future(play(url, "vod-live://loop.mp4"))
        await asyncio.sleep(0.8)
        return await one, await play(url, "vod-live://loop.mp4")

    for got in run(pair()):
        assert got.statuses == ["PENDING", "PLAYING", "STOPPED"]
        assert not got.infos


def wait_for(server, text: str, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if text in server.log():
            return True
        time.sleep(0.05)
    return False


def test_stream_timeout_keeps_the_broadcast_then_releases_it(start_server, media):
    server = start_server(media_dir=str(media), vod_stream_timeout="1500")
    steering = Steering(server, plan=lambda n: 1)  # both viewers on the worker that keeps it
    run(play(steering.url, "vod-live://live.mp4", stop_after=1))
    left = time.monotonic()
    assert wait_for(server, "has no viewer; kept for 1.5 s", 2)
    time.sleep(0.3)
    assert "released after" not in server.log(), "alive inside the window"
    # a viewer arriving inside the window joins the same broadcast
    run(play(steering.url, "vod-live://live.mp4", stop_after=0.5))
    assert server.log().count("created for vod-live://live.mp4") == 1
    assert wait_for(server, "released after", 4)
    assert time.monotonic() - left > 1.5


def test_short_file_is_released_with_its_last_viewer(start_server, media):
    server = start_server(media_dir=str(media))  # default timeout 30 s > the 20 s file
    run(play(server.ws_url, "vod-live://live.mp4", stop_after=1))
    assert wait_for(server, "released after", 2)
