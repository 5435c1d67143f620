"""The SDK's unchanged stream_recording page publishes with record: true; the
record downloads from the page's link and plays back in the SDK player."""

from __future__ import annotations

import time
import urllib.request

import av

from testkit.pages import open_player, wait_status, wait_video
from wcs.media import boxes

RECORDING = "/client2/examples/demo/streaming/stream_recording/recording.html"


def test_record_download_and_play_back(start_server, page, browser, tmp_path):
    folder = tmp_path / "records"
    folder.mkdir()
    server = start_server(media_dir=str(folder))
    page.goto(server.http_url + RECORDING)
    page.fill("#url", f"{server.ws_url}/a1b2c3d4")
    page.click("#publishBtn")
    wait_status(page, "PUBLISHING")
    started = time.monotonic()
    time.sleep(4)
    page.click("#publishBtn")
    statuses = wait_status(page, "UNPUBLISHED")
    published = time.monotonic() - started
    assert statuses[-3:] == ["PUBLISHING", "PROCESSING", "UNPUBLISHED"]
    page.wait_for_selector("#downloadDiv", state="visible")
    link = page.get_attribute("#link", "href")
    assert link.startswith(f"{server.http_url}/client/records/a1b2c3d4-")
    name = link.rsplit("/", 1)[1]
    with urllib.request.urlopen(link, timeout=10) as response:
        body = response.read()
    path = folder / name
    assert body == path.read_bytes()
    with path.open("rb") as handle:
        kinds = [box.kind for box in boxes.check_layout(handle, path.stat().st_size)]
    assert kinds.index("moov") < kinds.index("mdat")
    with av.open(str(path)) as container:
        codecs = sorted(s.codec_context.name for s in container.streams)
        duration = container.duration / 1e6
    assert codecs == ["aac", "h264"]
    assert abs(duration - published) < 0.5, (duration, published)

    player = browser.new_context()
    from testkit.browser import STATUS_RECORDER

    player.add_init_script(STATUS_RECORDER)
    viewer = player.new_page()
    try:
        open_player(viewer, server, f"vod://{name}")
        wait_status(viewer, "PLAYING")
        assert wait_video(viewer)["width"] > 0
    finally:
        player.close()
