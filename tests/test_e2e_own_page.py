"""The project's own player page, ``/player.html``, in Chromium: WebRTC and MSE."""

from __future__ import annotations

import base64
import struct
import time
from pathlib import Path

import pytest

from testkit.pages import video_state

PAGE = "/player.html"


def start(page, server, name: str, provider: str = "WebRTC", query: str = "") -> None:
    """Open the page (once per test), fill it in and press Start."""
    if not page.url.endswith(PAGE + query):
        page.goto(f"{server.http_url}{PAGE}{query}")
        page.wait_for_function("document.getElementById('url').value.startsWith('ws://')")
        assert page.input_value("#url") == f"ws://127.0.0.1:{server.ports['ws.port']}/"
    page.fill("#streamName", name)
    page.select_option("#provider", provider)
    page.click("#playBtn")


def wait_text(page, selector: str, text: str, timeout_ms: int = 15000) -> None:
    """Wait until ``selector`` reads ``text``; on a timeout, say what the page showed."""
    try:
        page.wait_for_function("([s, t]) => document.querySelector(s).textContent === t",
                               arg=[selector, text], timeout=timeout_ms)
    except Exception as error:
        shown = page.evaluate("[window.__statuses, document.getElementById('info').textContent]")
        raise AssertionError(f"{selector} never read {text!r}: statuses {shown[0]}, info "
                             f"{shown[1]!r}, console {page.console_messages[-10:]}") from error


def wait_picture(page, after: float = 0.0) -> dict:
    """Wait for a picture whose clock has passed ``after``; returns the video's state."""
    page.wait_for_function("after => document.getElementById('video').videoWidth > 0 "
                           "&& document.getElementById('video').currentTime > after", arg=after)
    return video_state(page, "#video")


def assert_plays_on(page, seconds: float = 3.1) -> dict:
    """The picture is 640x360 and its clock keeps wall time (measured once playing
    has settled: the first tenths of a second may wait for the decoder)."""
    first = wait_picture(page, 0.3)
    assert (first["width"], first["height"]) == (640, 360)
    time.sleep(seconds)
    later = video_state(page, "#video")
    # (a player on a loaded machine may fall a few frames behind wall time; one that
    # falls further must have had media in hand throughout: then the lag is its own
    # machine's, not the server's)
    assert later["time"] - first["time"] >= seconds / 2, (first, later)
    if later["time"] - first["time"] < seconds - 0.25:
        assert later["ahead"] > 0.5 and later["waits"] == first["waits"], (first, later)
    return later


def assert_stats_shown(page, provider: str) -> None:
    """The stats panel shows this play: its provider, size and a bitrate above 0."""
    page.wait_for_function("document.getElementById('statBitrate').dataset.value > 0 "
                           "&& document.getElementById('statResolution').textContent "
                           "=== '640x360'", timeout=5000)
    assert page.inner_text("#statProvider") == provider
    assert float(page.inner_text("#statFps")) > 0
    assert page.inner_text("#statLost") == "0"
    assert int(page.inner_text("#statFreezes")) >= 0  # a count (not asserted 0: a busy CI)
    assert int(page.inner_text("#statFrames")) > 0
    assert int(page.get_attribute("#statBitrate", "data-value")) > 50_000  # a 280 kb/s file
    # the plot got the figures: some pixel of the line's green is drawn
    assert page.evaluate("""() => {
        const c = document.getElementById('bitratePlot');
        const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
        for (let i = 0; i < d.length; i += 4) if (d[i + 1] > 150 && d[i] < 120) return true;
        return false;
    }""")


@pytest.mark.parametrize("provider", ["WebRTC", "MSE"])
def test_own_page_plays_stops_and_plays_again(start_server, page, media, provider):
    server = start_server(media_dir=str(media))
    start(page, server, "vod://main.mp4", provider)
    wait_text(page, "#status", "PLAYING")
    assert page.inner_text("#playBtn") == "Stop"
    assert_plays_on(page)
    assert_stats_shown(page, provider)
    page.click("#playBtn")
    wait_text(page, "#status", "STOPPED")
    assert page.inner_text("#playBtn") == "Start"
    # the same session plays again, with a new media connection
    sent = page.evaluate("window.__playSent")
    page.click("#playBtn")
    wait_text(page, "#status", "PLAYING")
    assert page.evaluate("window.__playSent") > sent
    assert_plays_on(page, 1.5)
    assert page.evaluate("window.__statuses") == [
        "CONNECTING", "ESTABLISHED", "PENDING", "PLAYING", "STOPPED", "PENDING", "PLAYING"]


def test_own_page_plays_over_whep_with_no_websocket(start_server, page, media):
    """WHEP: one POST to the web port; listed as a WHEP play while it plays, and
    gone once the page's Stop DELETEd it; a refusal is shown with the server's words."""
    from tests.test_e2e_whep import listed, listed_until

    server = start_server(media_dir=str(media))
    start(page, server, "vod-live://live.mp4", "WHEP")
    wait_text(page, "#status", "PLAYING")
    assert_plays_on(page)
    assert_stats_shown(page, "WHEP")
    assert [i["mediaProvider"] for i in listed(server.http_url)] == ["WHEP"]
    page.click("#playBtn")
    wait_text(page, "#status", "STOPPED")
    assert not listed_until(server.http_url, lambda items: not items)
    start(page, server, "vod://main.mp4", "WHEP")
    wait_text(page, "#status", "PLAYING")
    assert_plays_on(page, 1.5)
    page.click("#playBtn")
    wait_text(page, "#status", "STOPPED")
    start(page, server, "vod://nothing-here.mp4", "WHEP")
    wait_text(page, "#status", "FAILED")
    assert page.inner_text("#info") == "File not found"
    assert page.evaluate("window.__statuses") == [
        "PENDING", "PLAYING", "STOPPED", "PENDING", "PLAYING", "STOPPED", "PENDING", "FAILED"]
    assert page.evaluate("window.__playSent") is None  # no WebSocket message at all


def test_the_query_chooses_stream_and_provider(start_server, page, media):
    server = start_server(media_dir=str(media))
    page.goto(f"{server.http_url}{PAGE}?streamName=vod://main.mp4&mediaProvider=mse")
    page.wait_for_function("document.getElementById('url').value.startsWith('ws://')")
    assert page.input_value("#streamName") == "vod://main.mp4"
    assert page.input_value("#provider") == "MSE"
    page.click("#playBtn")
    wait_text(page, "#status", "PLAYING")
    wait_picture(page)
    assert page.evaluate("window.__pcs.length") == 0, "MSE opens no peer connection"
    # WebRTC is the default
    page.goto(f"{server.http_url}{PAGE}")
    assert page.input_value("#provider") == "WebRTC"


def test_video_only_and_audio_only_files_play_over_mse(start_server, page, media):
    server = start_server(media_dir=str(media))
    start(page, server, "vod://video-only.mp4", "MSE")
    wait_text(page, "#status", "PLAYING")
    first = wait_picture(page)
    assert (first["width"], first["height"]) == (640, 360)
    time.sleep(2.0)
    later = video_state(page, "#video")
    assert later["time"] - first["time"] >= 1.9, (first, later)
    assert later["frames"] > first["frames"]
    page.click("#playBtn")
    wait_text(page, "#status", "STOPPED")
    start(page, server, "vod://audio-only.mp4", "MSE")
    wait_text(page, "#status", "PLAYING")
    page.wait_for_function("document.getElementById('video').currentTime > 0.5")
    first = video_state(page, "#video")
    time.sleep(2.0)
    later = video_state(page, "#video")
    # (a page on a loaded machine may stall a moment: 1.63 s of 2 was seen)
    assert later["time"] - first["time"] >= 1.5, (first, later)
    assert page.evaluate("document.getElementById('video').webkitAudioDecodedByteCount") > 0


@pytest.mark.parametrize("provider", ["WebRTC", "MSE"])
def test_own_page_shows_errors(start_server, page, media, provider):
    server = start_server(media_dir=str(media))
    start(page, server, "vod://absent.mp4", provider)
    wait_text(page, "#status", "FAILED")
    assert page.inner_text("#info") == "File not found"
    assert page.inner_text("#playBtn") == "Start"
    page.fill("#streamName", "vod://../secret.mp4")
    page.click("#playBtn")
    page.wait_for_function("document.getElementById('info').textContent.includes('..')")
    assert page.inner_text("#status") == "FAILED"
    # the session is still up: a good name plays on it
    start(page, server, "vod://main.mp4", provider)
    wait_text(page, "#status", "PLAYING")
    wait_picture(page)


def mse_records(path: Path, shift_ms: int = 0) -> tuple[bytes, int]:
    """A file as the server's MSE records (its own packetizer), with timestamps
    moved on by ``shift_ms``; and the last video timestamp."""
    from wcs.media.mp4 import Mp4File
    from wcs.mse.packetizer import MsePacketizer

    mp4 = Mp4File(path, path.name, announce=False)
    try:
        info = mp4.info
        packetizer = MsePacketizer(info.audio.aac_config if info.audio else b"")
        out, last, started = [], 0, False
        for sample in mp4.samples():
            started = started or (sample.kind == "video" and sample.keyframe)
            data = packetizer.pack(sample) if started else None  # as the server: key first
            position = 0
            while data and position < len(data):
                kind, stamp, size = struct.unpack_from(">BiI", data, position)
                body = data[position + 9:position + 9 + size]
                stamp = ((stamp + 2**30) % 2**31) - 2**30  # the server's ms are mod 2^31
                if kind == 9:
                    last = max(last, stamp)
                out.append(struct.pack(">BiI", kind, (stamp + shift_ms) & 0x7FFFFFFF, size)
                           + body)
                position += 9 + size
        return b"".join(out), last
    finally:
        mp4.close()


def test_mse_remuxer_follows_a_new_resolution(start_server, page, media, tmp_path):
    """A new avcC in the middle of a stream is a new init segment: the picture
    changes size without a new play (the records are fed to the page's own
    MsePlayback straight, as the media socket would)."""
    from tools.makemedia import make_mp4

    small = make_mp4(tmp_path / "small.mp4", seconds=2, width=320, height=240, profile="high")
    large = make_mp4(tmp_path / "large.mp4", seconds=2)
    first, last = mse_records(large)
    second, _ = mse_records(small, shift_ms=last + 33)
    server = start_server(media_dir=str(media))
    page.goto(f"{server.http_url}{PAGE}")
    page.evaluate("""async ([a, b]) => {
        const {MsePlayback} = await import('./mse.js');
        const bytes = (text) => Uint8Array.from(atob(text), (c) => c.charCodeAt(0)).buffer;
        const video = document.getElementById('video');
        window.__sizes = [];
        video.addEventListener('resize', () =>
            window.__sizes.push(video.videoWidth + 'x' + video.videoHeight));
        window.__mse = new MsePlayback(video, {video: true, audio: true});
        window.__mse.feed(bytes(a));
        window.__mse.feed(bytes(b));
        window.__mse.end();
    }""", [base64.b64encode(first).decode(), base64.b64encode(second).decode()])
    page.wait_for_function("window.__sizes.includes('320x240')", timeout=10000)
    assert page.evaluate("window.__sizes")[:2] == ["640x360", "320x240"]
    page.wait_for_function("document.getElementById('video').ended", timeout=5000)
    assert page.evaluate("document.getElementById('video').currentTime") >= 3.8
