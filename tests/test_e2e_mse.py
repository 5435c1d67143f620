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
    time.sleep(3.2)
    later = video_state(page)
    assert later["time"] - first["time"] >= 2.8, (first, later)
    audio = page.evaluate("""() => {
        const v = document.querySelector('#remoteVideo video');
        const tracks = v.srcObject ? v.srcObject.getAudioTracks().length : null;
        return {tracks, decoded: v.webkitAudioDecodedByteCount || 0};
    }""")
    assert audio["decoded"] > 0 or audio["tracks"], audio
    page.click("#playBtn")
    assert wait_status(page, "STOPPED")[-2:] == ["PLAYING", "STOPPED"]
    assert "MSE" in page.evaluate("Flashphoner.getMediaProviders().join()")


def test_mse_missing_file(start_server, page, media):
    server = start_server(media_dir=str(media))
    open_player(page, server, "vod://absent.mp4", "&mediaProvider=MSE")
    wait_status(page, "FAILED")
    assert page.inner_text("#info") == "File not found"
