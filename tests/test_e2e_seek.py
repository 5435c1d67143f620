"""Seek and pause of a personal ``vod://`` play, in Chromium, read from the picture.

``live.mp4`` carries its frame number as a barcode (30 fps, a keyframe every
2 s): a seek to 12.5 s must show frame 360 (the keyframe at 12 s) and play on
from it; a pause must hold the picture and a resume go on from the same frame.
The own player's scrub bar and pause button over WebRTC and MSE, the REST
calls a backend makes (answered by either worker), and what a hostile page or
caller sends.
"""

from __future__ import annotations

import concurrent.futures
import json
import time

import pytest

from testkit.pages import frame_number
from testkit.rest_client import call
from testkit.workers import on_both
from tests.test_e2e_own_page import start, wait_picture, wait_text

FPS = 30


def wait_frame(page, low: int, high: int, timeout: float = 5.0) -> tuple[int, float]:
    """Wait until the picture's frame number is in [low, high); (number, seconds waited)."""
    began = time.monotonic()
    seen = []
    while time.monotonic() - began < timeout:
        number = frame_number(page, "#video")
        if low <= number < high:
            return number, time.monotonic() - began
        seen.append(number)
        time.sleep(0.02)
    raise AssertionError(f"frame never in [{low}, {high}): saw {seen[-10:]}")


def scrub_to(page, seconds: float) -> None:
    """Drag the scrub bar to ``seconds`` and let go, as a user does."""
    page.evaluate("""s => {
        const bar = document.getElementById('scrub');
        bar.value = String(s);
        bar.dispatchEvent(new Event('input'));
        bar.dispatchEvent(new Event('change'));
    }""", seconds)


def assert_moves_on(page, after: int, seconds: float = 1.5) -> int:
    """The picture plays on from frame ``after`` at about the file's rate."""
    time.sleep(seconds)
    number = frame_number(page, "#video")
    assert after + FPS * seconds * 0.6 <= number <= after + FPS * (seconds + 1.0), (after, number)
    return number


def send(page, message: str, **fields) -> None:
    """A frame on the play's own signalling socket, as any page could send it."""
    page.evaluate("""([message, fields]) => window.__playSocket.send(JSON.stringify(
        {message, data: [Object.assign({mediaSessionId: window.__playId}, fields)]}))""",
                  [message, fields])


@pytest.mark.heavy  # times a reaction: the picture a seek asked for within a second
@pytest.mark.parametrize("provider", ["WebRTC", "MSE"])
def test_own_player_seeks_pauses_and_resumes(start_server, page, media, provider):
    server = start_server(media_dir=str(media), access_log="true")
    start(page, server, "vod://live.mp4", provider)
    wait_text(page, "#status", "PLAYING")
    wait_picture(page, 0.3)
    page.wait_for_selector("#seekBar:not([hidden])")
    assert float(page.get_attribute("#scrub", "max")) == pytest.approx(20.0, abs=0.1)

    # forward to 12.5 s: the keyframe at 12 s (frame 360) is on screen at once
    scrub_to(page, 12.5)
    shown, waited = wait_frame(page, 360, 390)
    assert waited < 1.0, f"the new picture took {waited:.2f} s"
    print(f"{provider}: seek forward shown after {waited * 1000:.0f} ms (frame {shown})")
    moved = assert_moves_on(page, shown)
    assert page.inner_text("#position").startswith("0:1"), page.inner_text("#position")
    # back to 3 s: the keyframe at 2 s (frame 60); the video's clock never went back
    clock = page.evaluate("document.getElementById('video').currentTime")
    scrub_to(page, 3.0)
    shown, waited = wait_frame(page, 60, 90)
    print(f"{provider}: seek back shown after {waited * 1000:.0f} ms (frame {shown})")
    assert waited < 1.0
    assert page.evaluate("document.getElementById('video').currentTime") >= clock
    assert moved > shown
    moved = assert_moves_on(page, shown)

    # pause: the picture holds; resume: it goes on from the same frame
    page.click("#pauseBtn")
    wait_text(page, "#status", "PAUSED")
    assert page.inner_text("#pauseBtn") == "Resume"
    time.sleep(0.3)  # what was on its way
    held = frame_number(page, "#video")
    time.sleep(1.5)
    assert frame_number(page, "#video") == held
    page.click("#pauseBtn")
    wait_text(page, "#status", "PLAYING")
    resumed, _ = wait_frame(page, held + 1, held + 40, timeout=3.0)
    assert_moves_on(page, resumed)
    assert page.evaluate("window.__statuses").count("PAUSED") == 1


def test_a_backend_seeks_and_pauses_a_play_on_either_worker(start_server, page, media):
    server = start_server(media_dir=str(media), access_log="true")
    start(page, server, "vod://live.mp4", "MSE")
    wait_text(page, "#status", "PLAYING")
    wait_picture(page, 0.3)
    media_id = page.evaluate("window.__playId")
    body = {"mediaSessionId": media_id}

    # pause and resume, each answered by both workers: one holds the play, the other asks it
    for status, answer, _ in on_both(server, "/rest-api/stream/pause", body, 200):
        assert status == 200 and answer["status"] == "PAUSED", answer
        assert answer["duration"] == pytest.approx(20.0, abs=0.1)
    wait_text(page, "#status", "PAUSED")
    status, found, _ = call(server.http_url, "/rest-api/stream/find", body)
    assert status == 200 and found[0]["status"] == "PAUSED", found
    for status, answer, _ in on_both(server, "/rest-api/stream/resume", body, 200):
        assert status == 200 and answer["status"] == "PLAYING", answer
    wait_text(page, "#status", "PLAYING")

    status, answer, _ = call(server.http_url, "/rest-api/stream/seek", {**body, "position": 15.2})
    assert status == 200 and answer["position"] == pytest.approx(14.0, abs=0.01), answer
    # the own page goes there: the server told it where the new picture starts
    shown, waited = wait_frame(page, 420, 450)
    assert_moves_on(page, shown)

    # refusals: clear, and the play goes on
    refusals = [
        ({**body, "position": 20.0}, 400, "outside the file: give 0 to 20."),
        ({**body, "position": -1}, 400, "outside the file"),
        ({**body, "position": "10"}, 400, "'position' must be a number of seconds"),
        ({**body, "position": True}, 400, "'position' must be a number of seconds"),
        ({"position": 1}, 400, "give the mediaSessionId of the play to seek"),
        ({"mediaSessionId": "nobody", "position": 1}, 404, "no play or publication nobody"),
    ]
    for sent, code, words in refusals:
        status, answer, _ = call(server.http_url, "/rest-api/stream/seek", sent)
        assert status == code and words in answer["message"], (sent, status, answer)
    status, answer, _ = call(server.http_url, "/rest-api/stream/seek",
                             {**body, "position": float("1e400")})
    assert status == 400, answer  # JSON's Infinity is no JSON: refused before it is read
    assert page.inner_text("#status") == "PLAYING"
    assert_moves_on(page, frame_number(page, "#video"))


@pytest.mark.heavy  # a flood of seeks, then the rate it plays on
def test_a_flood_of_seeks_is_bounded_and_the_last_one_wins(start_server, page, media):
    """1,000 seeks a second from the page's own socket, and 200 from REST at once:
    the server does at most ten a second, answers every one, and the play ends
    up where the last seek asked, still playing; another play is unharmed."""
    server = start_server(media_dir=str(media), access_log="true", ws_message_rate="2000")
    start(page, server, "vod://live.mp4", "WebRTC")
    wait_text(page, "#status", "PLAYING")
    wait_picture(page, 0.3)
    page.evaluate("""() => {
        window.__events = [];
        window.__playSocket.addEventListener('message', (e) => {
            const m = JSON.parse(e.data);
            if (m.message === 'notifyStreamEvent') window.__events.push(m.data[0].type);
        });
        const socket = window.__playSocket, id = window.__playId;
        for (let n = 0; n < 1000; n++) {
            socket.send(JSON.stringify({message: 'seekStream',
                data: [{mediaSessionId: id, position: (n % 19) + 0.5}]}));
        }
        socket.send(JSON.stringify({message: 'seekStream',
            data: [{mediaSessionId: id, position: 16.5}]}));
    }""")
    shown, _ = wait_frame(page, 480, 520, timeout=10.0)  # the keyframe at 16 s: the last seek
    page.wait_for_function("window.__events.length >= 1001", timeout=10000)
    events = page.evaluate("window.__events")
    assert set(events) <= {"seeked", "seekFailed", "resize"}, set(events)
    done = events.count("seeked")
    assert 1 <= done <= 20, f"{done} seeks were done for 1001 asked in well under a second"
    assert page.inner_text("#status") == "PLAYING"

    body = {"mediaSessionId": page.evaluate("window.__playId"), "position": 6.5}
    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        answers = list(pool.map(
            lambda _: call(server.http_url, "/rest-api/stream/seek", body), range(200)))
    codes = sorted({status for status, _, _ in answers})
    assert set(codes) <= {200, 409}, codes  # done, or replaced by a later one
    replaced = [a for s, a, _ in answers if s == 409]
    assert all("was replaced" in a["message"] for a in replaced), replaced[:3]
    shown, _ = wait_frame(page, 180, 230, timeout=5.0)
    assert_moves_on(page, shown)
    log = server.log()
    assert log.count("sought to") <= 60, log.count("sought to")
    assert "#critical" not in log


def test_a_page_over_the_message_rate_is_closed_with_seeks_on_their_way(start_server, page,
                                                                        media):
    """At the default ``ws_message_rate`` a flood of seeks closes the session
    (the page hears why) and the answers still on their way are dropped quietly."""
    server = start_server(media_dir=str(media))
    start(page, server, "vod://live.mp4", "WebRTC")
    wait_text(page, "#status", "PLAYING")
    page.evaluate("""() => {
        for (let n = 0; n < 300; n++) window.__playSocket.send(JSON.stringify({
            message: 'seekStream', data: [{mediaSessionId: window.__playId, position: n % 19}]}));
    }""")
    wait_text(page, "#status", "DISCONNECTED")
    time.sleep(0.5)
    log = server.log()
    assert "Limit reached: messages a second (ws_message_rate=50)" in log
    assert "#critical" not in log


def test_a_page_cannot_seek_what_it_may_not(start_server, page, media):
    """A broadcast, another session's play, bad fields: each refused with why
    (``seekFailed``), and the play goes on as it was."""
    server = start_server(media_dir=str(media))
    start(page, server, "vod-live://live.mp4", "WebRTC")
    wait_text(page, "#status", "PLAYING")
    wait_picture(page, 0.3)
    assert page.is_hidden("#seekBar")  # a broadcast has no scrub bar
    page.evaluate("""() => {
        window.__failed = [];
        window.__playSocket.addEventListener('message', (e) => {
            const m = JSON.parse(e.data);
            if (m.message === 'notifyStreamEvent' && m.data[0].type.endsWith('Failed')) {
                window.__failed.push([m.data[0].type, m.data[0].payload.info]);
            }
        });
    }""")
    send(page, "seekStream", position=3)
    send(page, "pauseStream")
    send(page, "seekStream", position=3, mediaSessionId="someone-else")
    send(page, "resumeStream", mediaSessionId="x" * 100_000)
    page.wait_for_function("window.__failed.length >= 3", timeout=5000)
    failed = page.evaluate("window.__failed")
    assert failed[0][0] == "seekFailed" and "personal vod:// plays" in failed[0][1], failed
    assert failed[1][0] == "pauseFailed" and "personal vod:// plays" in failed[1][1], failed
    assert failed[2] == ["seekFailed", "no play someone-else in this session"], failed
    assert page.inner_text("#status") == "PLAYING"
    # the over-long id is no play's: a bad message, said with ``fail``, shown as the info
    page.wait_for_function("document.getElementById('info').textContent.includes("
                           "\"'mediaSessionId' is longer than 128 characters\")")
    before = frame_number(page, "#video")
    time.sleep(1.0)
    assert frame_number(page, "#video") > before
    assert json.dumps(failed)  # every refusal was JSON the page could read


def test_an_s3_play_seeks_far_past_what_was_downloaded(start_server, page, media, s3):
    """A 45 s object played from S3 (the download runs 8 MiB ahead): a seek to 40 s
    fetches what is read from there first, and the picture is the keyframe at 40 s."""
    from testkit.s3 import s3_settings

    server = start_server(media_dir=str(media), **s3_settings(s3.url))
    start(page, server, "vod://s3/media/long-live.mp4", "MSE")
    wait_text(page, "#status", "PLAYING")
    wait_picture(page, 0.3)
    page.wait_for_selector("#seekBar:not([hidden])")
    scrub_to(page, 40.5)
    shown, waited = wait_frame(page, 1200, 1230, timeout=10.0)  # the keyframe at 40 s
    print(f"S3: seek to 40.5 s shown after {waited * 1000:.0f} ms (frame {shown})")
    assert_moves_on(page, shown)
    scrub_to(page, 1.0)  # and back to the start, read before
    shown, _ = wait_frame(page, 0, 30, timeout=10.0)
    assert_moves_on(page, shown)
