"""Personal VOD to a real aiortc viewer that decodes every frame."""

from __future__ import annotations

import asyncio
import re
import time

import pytest

from testkit.rtc_client import play, run
from tools.makemedia import frames_in

# ITU-R BT.1359: viewers detect sound 45 ms ahead of the picture; the suite
# shares 2 cores between three tests, and a re-encoded file's frames wait on
# the encoder, so the bound is what a viewer notices, not a tighter guess
LIP_SYNC = 0.045


#: Each profile the files are made in, with what the answer must offer for it.
PROFILES = [("baseline.mp4", "42"), ("main.mp4", "4d"), ("high.mp4", "64"), ("bframes.mp4", "64")]


@pytest.mark.alone  # rates read from the client's own arrival times: nothing else on the cores
def test_every_frame_arrives_in_order_at_file_rate(start_server, media):
    """The four profiles played at once, each its own personal stream (each
    viewer decodes its frames: a few percent of a core each). The ladder is off:
    four decoders in one client process can let aiortc's delay-based REMB fall,
    and a play then rightly moves to 180p (CI saw it once); moves of a personal
    play are test_e2e_webrtc_abr's and test_adaptive's."""
    server = start_server(media_dir=str(media), webrtc_abr="false")

    async def all_at_once() -> list:
        return list(await asyncio.gather(*(
            play(server.ws_url, f"vod://{name}", timeout=30) for name, _ in PROFILES)))

    for (name, profile), got in zip(PROFILES, run(all_at_once())):
        assert got.statuses == ["PENDING", "PLAYING", "STOPPED"], (name, got.statuses, got.infos)
        expected = frames_in(media / name)
        # aiortc's receiver releases a frame only when the next one starts, so a
        # viewer sees all but the last; the server's own count shows that one too
        assert len(got.video) == expected - 1, name
        assert server.saw(f"(vod://{name}) released after sending {expected} video"), name
        pts = [row[1] for row in got.video]
        assert all(b - a == 3000 for a, b in zip(pts, pts[1:])), f"{name}: 30 fps, in order"
        assert {(row[2], row[3]) for row in got.video} == {(640, 360)}, name
        assert 28.5 < got.fps() < 31.5, (name, got.fps())
        assert f"profile-level-id={profile}" in got.answer, name
        # Opus at 50 packets/s, 20 ms each
        audio_rate = (len(got.audio) - 1) / (got.audio[-1][0] - got.audio[0][0])
        assert 48 < audio_rate < 52, (name, audio_rate)
        assert {row[2] for row in got.audio} == {960}, name
        assert abs(got.drift()) < LIP_SYNC, (name, got.drift())


async def both(first, second) -> tuple:
    """Two plays at once (each its own personal stream): the time of one."""
    return tuple(await asyncio.gather(first, second))


def test_audio_only_and_video_only(start_server, media):
    server = start_server(media_dir=str(media))
    audio, video = run(both(play(server.ws_url, "vod://audio-only.mp4"),
                            play(server.ws_url, "vod://video-only.mp4")))
    assert audio.statuses[-1] == "STOPPED" and not audio.video and len(audio.audio) > 200
    assert "m=video" in audio.answer and "a=sendonly" in audio.answer.split("m=video")[0]
    assert video.statuses[-1] == "STOPPED" and not video.audio
    assert len(video.video) == frames_in(media / "video-only.mp4") - 1


def test_personal_means_independent_playback(start_server, media):
    server = start_server(media_dir=str(media))

    async def two():
        first = asyncio.ensure_future(play(server.ws_url, "vod://main.mp4", stop_after=4))
        await asyncio.sleep(2.0)
        second = await play(server.ws_url, "vod://main.mp4", stop_after=1.5)
        return await first, second

    first, second = run(two())
    assert first.statuses[-1] == second.statuses[-1] == "STOPPED"
    # the late viewer's first picture is the file's first picture, bit for bit
    # (a shared stream would have started it at a later keyframe)
    assert second.first_picture == first.first_picture
    assert server.log().count("created for vod://main.mp4") == 2
    # and the first viewer went on undisturbed: no gap in its timestamps
    pts = [row[1] for row in first.video]
    assert all(b - a == 3000 for a, b in zip(pts, pts[1:]))


def test_undecodable_aac_frames_are_dropped_counted_and_logged_once(start_server, media):
    server = start_server(media_dir=str(media))
    clean, damaged = run(both(play(server.ws_url, "vod://high.mp4"),
                              play(server.ws_url, "vod://corrupt-aac.mp4")))
    assert damaged.statuses[-1] == "STOPPED"
    assert len(damaged.video) == len(clean.video)
    # 10 AAC frames of 1024 samples at 44.1 kHz are missing: about 11 Opus packets
    missing = len(clean.audio) - len(damaged.audio)
    assert 8 <= missing <= 13, missing
    log = server.log()
    assert log.count("undecodable AAC frame dropped") == 1  # the play's first, once
    # the play transcodes until the cache it had made holds the file (which left
    # out all ten), and counts those it met itself
    assert "(10 AAC frames left out: they do not decode)" in log
    counted = [int(n) for n in re.findall(r"(\d+) undecodable AAC frames dropped in all", log)]
    assert len(counted) <= 1 and all(1 <= n <= 10 for n in counted), counted


def test_closing_the_session_releases_everything(start_server, media):
    server = start_server(media_dir=str(media))
    got = run(play(server.ws_url, "vod://main.mp4", drop_after=1.5))
    assert got.statuses == ["PENDING", "PLAYING"]
    wanted = ("released after sending", "peer connection closed", " closed (code")
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and not all(w in server.log() for w in wanted):
        time.sleep(0.1)  # the peer closes asynchronously, after the stream is released
    log = server.log()
    assert "released after sending" in log and "peer connection closed" in log
    assert " closed (code" in log


def test_a_files_audio_is_transcoded_once_for_later_plays(start_server, media):
    server = start_server(media_dir=str(media))
    run(play(server.ws_url, "vod://main.mp4", stop_after=1))
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and "transcoded once" not in server.log():
        time.sleep(0.1)  # the first play started the background job
    again = run(play(server.ws_url, "vod://main.mp4", timeout=30))
    assert server.log().count("audio from the Opus cache") == 1
    assert again.statuses == ["PENDING", "PLAYING", "STOPPED"]
    samples = [row[2] for row in again.audio]
    assert set(samples) == {960} and len(again.audio) >= 8 * 50 - 5  # all 8 s of Opus
    assert abs(again.drift()) < LIP_SYNC
