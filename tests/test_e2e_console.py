"""The operator's console at ``/`` in Chromium: the library's verdicts, a
broadcast started and terminated from it (an SDK player page watching it hears
the stop), its player over WebRTC and MSE with live stats, and the REST key.

A screenshot of the console goes to ``artifacts/console.png`` (kept, not in git).
"""

from __future__ import annotations

import time
from urllib.parse import urljoin

from testkit.browser import recorded_page
from testkit.harness import REPO
from testkit.pages import open_player, video_state, wait_status, wait_video
from testkit.rest_client import http_status

ARTIFACTS = REPO / "artifacts"
ROW = "#liveTable tr[data-name='{name}']"


def library(page) -> dict[str, str]:
    """The library's verdicts by file name, once none is still being checked."""
    page.wait_for_function("""() => {
        const rows = [...document.querySelectorAll('#libraryTable tbody tr')];
        return rows.length > 0 && rows.every(r => r.cells[1].textContent !== 'checking');
    }""", timeout=20000)
    return page.evaluate("""() => Object.fromEntries(
        [...document.querySelectorAll('#libraryTable tbody tr')].map(
            r => [r.dataset.name, r.cells[1].textContent]))""")


def wait_text(page, selector: str, wanted: str, timeout: int = 15000) -> None:
    page.wait_for_function("([s, w]) => document.querySelector(s)?.textContent === w",
                           arg=[selector, wanted], timeout=timeout)


def play_in_console(page, name: str, provider: str) -> dict:
    page.select_option("#playProvider", provider)
    page.fill("#playName", name)
    page.click("#playBtn")
    wait_text(page, "#playStatus", "PLAYING")
    first = wait_video(page, "#consoleVideo")
    page.wait_for_function("() => /[kM]bps/.test(document.getElementById('statBitrate')"
                           ".textContent)", timeout=10000)
    return first


def test_library_broadcast_terminate_and_stats(start_server, page, browser, media):
    server = start_server(media_dir=str(media))
    page.set_viewport_size({"width": 1400, "height": 1000})
    page.goto(f"{server.http_url}/")
    verdicts = library(page)
    assert not page.is_visible("#keyForm")  # no key is set: none is asked for
    assert verdicts["main.mp4"] == "plays as is"
    assert verdicts["sub/nested.mp4"] == "plays as is"
    assert verdicts["video-only.mp4"] == "plays as is"
    assert verdicts["bframes.mp4"] == "plays with re-encode"
    assert verdicts["not-an-mp4.mp4"] == "will not play"
    why = page.get_attribute("#libraryTable tr[data-name='not-an-mp4.mp4'] td.verdict", "title")
    assert why, "a file that will not play says why"
    assert page.inner_text("#libraryTable tr[data-name='main.mp4'] td:nth-child(4)") \
        .startswith("640×360")
    page.fill("#libraryFilter", "nested")
    page.wait_for_function("() => document.querySelectorAll('#libraryTable tbody tr').length"
                           " === 1", timeout=5000)
    page.fill("#libraryFilter", "")

    # a broadcast started from the console is listed, and plays in its player
    page.fill("#startUri", "vod-live://live.mp4")
    page.fill("#startName", "show")
    page.check("#startLoop")
    page.click("#startBtn")
    row = ROW.format(name="show")
    page.wait_for_selector(row, timeout=10000)
    assert "vod-live" in page.inner_text(f"{row} td:nth-child(2)")
    page.click(f"{row} button.play")
    wait_text(page, "#playStatus", "PLAYING")
    first = wait_video(page, "#consoleVideo")
    assert (first["width"], first["height"]) == (640, 360)
    page.wait_for_function("() => /[kM]bps/.test(document.getElementById('statBitrate')"
                           ".textContent)", timeout=10000)
    assert page.inner_text("#statResolution") == "640×360"
    time.sleep(2)
    assert video_state(page, "#consoleVideo")["time"] - first["time"] >= 1.5

    # an SDK player page watches it too; the console counts both viewers
    viewer = recorded_page(browser)
    context = viewer.context
    try:
        open_player(viewer, server, "show")
        wait_status(viewer, "PLAYING")
        wait_video(viewer)
        wait_text(page, f"{row} td.webrtc", "2", timeout=10000)
        # its HLS: the playlist by the console's link, and the SDK's hls.js demo in its
        # low-latency mode by the other link, playing at once
        playlist = page.get_attribute(f"{row} a.hls-link", "href")
        assert playlist == f"{server.hls_url}/show/show.m3u8", playlist
        assert http_status(playlist) == 200
        viewer.goto(urljoin(server.http_url + "/",
                            page.get_attribute(f"{row} a.hls-play", "href")))
        assert wait_video(viewer, "#remoteVideo", timeout_ms=20000)["width"] == 640
        wait_text(page, f"{row} td.hls", "1", timeout=10000)
        open_player(viewer, server, "show")  # back to WebRTC beside the console
        wait_status(viewer, "PLAYING")
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "console.png"), full_page=True)
        print(f"console screenshot: {ARTIFACTS / 'console.png'}")
        # terminating it from the console stops the viewer page and the console's player
        page.click(f"{row} button.terminate")
        wait_status(viewer, "STOPPED")
        wait_text(page, "#playStatus", "STOPPED")
        page.wait_for_selector(row, state="detached", timeout=10000)
    finally:
        context.close()


def test_console_asks_for_the_rest_key_and_sends_it(start_server, page, media):
    key = "console-key-0123456789abcdef"
    server = start_server(media_dir=str(media), rest_api_key=key)
    page.goto(f"{server.http_url}/")
    page.wait_for_selector("#keyForm:not([hidden])", timeout=10000)
    assert page.query_selector_all("#libraryTable tbody tr") == []
    page.fill("#keyInput", "not the key")
    page.click("#keyBtn")
    page.wait_for_function("() => document.getElementById('keyError').textContent"
                           ".includes('refused')", timeout=10000)
    page.fill("#keyInput", key)
    page.click("#keyBtn")
    assert library(page)["main.mp4"] == "plays as is"
    page.fill("#startUri", "vod-live://loop.mp4")
    page.fill("#startName", "keyed")
    page.click("#startBtn")
    page.wait_for_selector(ROW.format(name="keyed"), timeout=10000)
    # its player over MSE this time (the WebSocket needs no key)
    first = play_in_console(page, "vod://main.mp4", "MSE")
    assert (first["width"], first["height"]) == (640, 360)
    time.sleep(2)
    assert video_state(page, "#consoleVideo")["time"] - first["time"] >= 1.5
    assert page.inner_text("#statResolution") == "640×360"
    wait_text(page, ROW.format(name="vod://main.mp4") + " td.mse", "1", timeout=10000)
    page.click("#playBtn")
    wait_text(page, "#playStatus", "STOPPED")


def test_whep_and_whip_sessions_show_in_the_console(start_server, page, media):
    """A WHIP publication is a live row ("published (WHIP)"); the console's player
    plays it over WHEP, counted in the row's WHEP column; Terminate ends it."""
    import threading

    from testkit.harness import run
    from testkit.whep_client import Published, whip_publish

    server = start_server(media_dir=str(media))
    page.set_viewport_size({"width": 1400, "height": 1000})
    page.goto(f"{server.http_url}/")
    published = Published()
    publisher = threading.Thread(target=lambda: run(whip_publish(
        server.http_url, "whip-cam", media / "live.mp4", seconds=18, result=published),
        timeout=60))
    publisher.start()
    try:
        row = ROW.format(name="whip-cam")
        page.wait_for_selector(row, timeout=20000)
        assert page.inner_text(f"{row} td:nth-child(2)") == "published (WHIP)"
        page.fill("#playName", "whip-cam")
        page.select_option("#playProvider", "WHEP")
        page.click("#playBtn")
        wait_text(page, "#playStatus", "PLAYING")
        first = wait_video(page, "#consoleVideo")
        assert (first["width"], first["height"]) == (640, 360)
        wait_text(page, f"{row} td.whep", "1", timeout=10000)
        assert page.inner_text(f"{row} td.webrtc") == "0"
        page.click(f"{row} button.terminate")
        page.wait_for_selector(row, state="detached", timeout=10000)
        publisher.join(30)
        assert not publisher.is_alive()
        # the server ended it: the publisher's later DELETE finds nothing
        assert published.deleted is not None and published.deleted.status == 404
    finally:
        publisher.join(60)
