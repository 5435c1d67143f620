"""Without the C helper (a machine with no C compiler builds none: setup.py marks
it optional), the server says so at start-up and plays over the Python loop.

The extension is hidden from the server's interpreters by a sitecustomize that
refuses to import it, which is what an install without gcc leaves.
"""

from __future__ import annotations

from pathlib import Path

import time

from testkit.pages import open_player, wait_status, wait_video
from testkit.rtc_client import play, run
from tools.makemedia import frames_in, make_mp4

BLOCKER = '''
import importlib.abc, sys

class NotBuilt(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "wcs.webrtc._rtpout":
            raise ImportError("No module named 'wcs.webrtc._rtpout' (hidden by the test)")
        return None

sys.meta_path.insert(0, NotBuilt())
'''


def test_without_the_c_helper_the_python_loop_plays_every_frame(start_server, page, tmp_path):
    hide = tmp_path / "hide"
    hide.mkdir()
    (hide / "sitecustomize.py").write_text(BLOCKER)
    media = tmp_path / "media"
    media.mkdir()
    make_mp4(media / "clip.mp4", seconds=5)
    root = Path(__file__).resolve().parent.parent
    server = start_server(wrap=["env", f"PYTHONPATH={hide}:{root}"], media_dir=str(media))
    assert server.saw("WebRTC sender: the C helper is not built")
    assert server.log().count("the C helper is not built") == 2  # each worker says it
    got = run(play(server.ws_url, "vod://clip.mp4", timeout=30))
    assert got.statuses == ["PENDING", "PLAYING", "STOPPED"], got.infos
    assert len(got.video) == frames_in(media / "clip.mp4") - 1
    # and the SDK's own player page, in Chromium, shows the picture playing
    open_player(page, server, "vod://clip.mp4")
    wait_status(page, "PLAYING")
    first = wait_video(page)
    time.sleep(1.0)
    later = page.evaluate("() => document.querySelector('#remoteVideo video').currentTime")
    assert first["width"] == 640 and later > first["time"]
    # over TCP too (ICE-TCP, through the Python sink)
    from tests.test_e2e_ice_tcp import plays_without_freezing, sdk_play, selected, wait_statuses

    tcp_page = page.context.new_page()
    try:
        sdk_play(tcp_page, server, "vod://clip.mp4", transport="TCP")
        wait_statuses(tcp_page, "PLAYING")
        plays_without_freezing(tcp_page, 1.5, strict=False)
        assert selected(tcp_page)["local"] == "tcp"
    finally:
        tcp_page.close()
    assert "Traceback" not in server.log()
