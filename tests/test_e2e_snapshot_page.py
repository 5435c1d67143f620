"""The SDK's unchanged stream-snapshot demo: a page publishes its camera (a
barcoded video Chromium plays as one), asks for a snapshot, and shows the PNG."""

from __future__ import annotations

import base64
import io
import time

import av
import pytest

from testkit.browser import CHROMIUM_ARGS, STATUS_RECORDER
from testkit.harness import CHROMIUM
from testkit.pages import wait_status
from testkit.rest_client import call
from tools.makemedia import frame_number, make_camera

SNAPSHOT = "/client2/examples/demo/streaming/stream-snapshot/stream-snapshot.html"
LOOP = 180  # frames in the camera's loop (6 s at 30 fps)


@pytest.fixture
def camera_page(browser, tmp_path):
    """A page of a Chromium whose camera shows the barcoded video."""
    # 4:3, as the SDK asks the camera for 320x240: scaled, never cropped
    camera = make_camera(tmp_path / "camera.y4m", seconds=LOOP / 30, height=480)
    chromium = browser.browser_type.launch(
        executable_path=str(CHROMIUM), headless=True,
        args=[*CHROMIUM_ARGS, f"--use-file-for-fake-video-capture={camera}"])
    context = chromium.new_context()
    context.add_init_script(STATUS_RECORDER)
    yield context.new_page()
    context.close()
    chromium.close()


def shown_number(page) -> int:
    """The barcode of the camera picture the page's preview shows now."""
    return page.evaluate("""() => {
        const v = document.querySelector('#localVideo video');
        const canvas = document.createElement('canvas');
        canvas.width = 640;
        canvas.height = 480;
        const g = canvas.getContext('2d');
        g.drawImage(v, 0, 0, 640, 480);
        const row = g.getImageData(0, 16, 640, 1).data;
        let n = 0;
        for (let bit = 0; bit < 16; bit++) if (row[(40 * bit + 20) * 4] > 128) n |= 1 << bit;
        return n;
    }""")


def png_number(src: str, size: tuple[int, int]) -> int:
    data = base64.b64decode(src.removeprefix("data:image/png;base64,"))
    with av.open(io.BytesIO(data)) as container:
        frame = next(container.decode(video=0))
    assert (frame.width, frame.height) == size
    return frame_number(frame.reformat(format="yuv420p"))


def test_the_stream_snapshot_demo_shows_the_published_picture(start_server, camera_page,
                                                              tmp_path):
    server = start_server(media_dir=str(tmp_path))
    page = camera_page
    page.goto(server.http_url + SNAPSHOT)
    page.fill("#url", f"{server.ws_url}/snap1234")
    page.click("#publishBtn")
    wait_status(page, "PUBLISHING")
    time.sleep(3)  # a few keyframe intervals of the page's encoder
    taken = []
    for _ in range(3):
        shown = shown_number(page)
        page.click("#snapshotBtn")
        page.wait_for_function("() => document.getElementById('dynImg').src.startsWith("
                               "'data:image/png') && document.getElementById('snapshotBtn')"
                               ".disabled === false", timeout=10000)
        src = page.get_attribute("#dynImg", "src")
        size = page.evaluate("() => [document.getElementById('dynImg').naturalWidth, "
                             "document.getElementById('dynImg').naturalHeight]")
        taken.append((shown, png_number(src, tuple(size)), tuple(size)))
        page.evaluate("() => document.getElementById('dynImg').removeAttribute('src')")
        time.sleep(0.7)
    status, [published], _ = call(server.http_url, "/rest-api/stream/find", {"name": "snap1234"})
    assert published["status"] == "PUBLISHING"
    assert page.inner_text("#snapshotStatus") == ""
    for shown, number, size in taken:
        # the stream's own size, and the picture the camera showed a moment before
        assert size == (published["width"], published["height"]), (size, published)
        behind = (shown - number) % LOOP
        # within 20 frames of it, either way: the GOP cached a moment ago, or a
        # picture taken after the click (later still on a loaded machine)
        assert behind <= 20 or behind >= LOOP - 20, taken
    assert len({number for _, number, _ in taken}) == 3  # a new picture each time
