"""The SDK's unchanged player with ?mediaProvider=MSE: H.264 and AAC as stored."""

from __future__ import annotations

import time

import pytest

from testkit.pages import open_player, video_state, wait_status, wait_video


@pytest.mark.parametrize("name", ["vod://main.mp4", "vod-live://live.mp4",
                                  "vod://bframes.mp4"])
def test_mse_plays_decoded_frames_with_audio(start_server, page, media, name):
    server = start_server(media_dir=str(media))
    open_player(page, server, name, "&mediaProvider=MSE")
    wait_status(page, "PLAYING")
    first = wait_video(page)
    assert (first["width"], first["height"]) == (640, 360)
    # read through 3.2 s, the last reading with a picture: a starved client may see
    # the 6 s file end meanwhile, and the SDK then takes its video element away
    later, until = first, time.monotonic() + 3.2
    while time.monotonic() < until:
        time.sleep(0.2)
        state = video_state(page)
        if state["width"]:
            later = state
    assert later["time"] - first["time"] >= 2.8, (  # (what the page saw, when it did not)
        first, later, page.evaluate("window.__statuses"),
        page.evaluate("document.querySelectorAll('#remoteVideo video').length"),
        page.console_messages[-12:])
    audio = page.evaluate("""() => {
        const v = document.querySelector('#remoteVideo video');
        const tracks = v.srcObject ? v.srcObject.getAudioTracks().length : null;
        return {tracks, decoded: v.webkitAudioDecodedByteCount || 0};
    }""")
    assert audio["decoded"] > 0 or audio["tracks"], audio
    # the page's Stop, unless a starved client let the 6 s file end first (CI did:
    # a click then would have started it again)
    if "STOPPED" not in page.evaluate("window.__statuses"):
        page.click("#playBtn")
    assert wait_status(page, "STOPPED")[-2:] == ["PLAYING", "STOPPED"]
    assert "MSE" in page.evaluate("Flashphoner.getMediaProviders().join()")


def test_mse_missing_file(start_server, page, media):
    server = start_server(media_dir=str(media))
    open_player(page, server, "vod://absent.mp4", "&mediaProvider=MSE")
    wait_status(page, "FAILED")
    assert page.inner_text("#info") == "File not found"


def first_frame_after_playing(page) -> float:
    """Milliseconds from the page's PLAYING to its first picture (the page's clock)."""
    wait_status(page, "PLAYING")
    wait_video(page)
    playing = page.evaluate("window.__statusTimes[window.__statuses.indexOf('PLAYING')]")
    shown = page.wait_for_function("window.__firstFrameAt").json_value()
    return shown - playing


def test_mse_shows_its_first_picture_at_once(start_server, page, browser, media):
    """The SDK's MSE player appends nothing until it holds over 2 s of each track:
    a personal play sends that much at once, a live one keeps that much history."""
    from testkit.browser import recorded_page

    server = start_server(media_dir=str(media))
    open_player(page, server, "vod://main.mp4", "&mediaProvider=MSE")
    personal = first_frame_after_playing(page)
    open_player(page, server, "vod-live://live.mp4", "&mediaProvider=MSE")  # a new page
    wait_status(page, "PLAYING")
    time.sleep(3.5)  # then a late joiner
    late = recorded_page(browser)
    context = late.context
    try:
        open_player(late, server, "vod-live://live.mp4", "&mediaProvider=MSE")
        joined = first_frame_after_playing(late)
    finally:
        context.close()
    print(f"MSE first picture after PLAYING: vod:// {personal:.0f} ms, "
          f"late vod-live:// {joined:.0f} ms")
    # (before: 2.0-2.2 s for both)
    assert personal < 500 and joined < 500, (personal, joined)
