"""Playlist channels end to end: three files (one of another size) as one looping
broadcast, in the SDK's player page over MSE and WebRTC and its hls.js page; the
REST list, append and skip on either worker; and what a hostile caller sends.

Each file carries its frame number as a barcode (30 fps), so a join shows as the
number starting again at 0; "without a freeze" is read from the page's own
presented frames (``requestVideoFrameCallback``): no gap between two over 0.5 s.
"""

from __future__ import annotations

import asyncio
import re
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

from testkit.pages import VIDEO, open_hls_js, open_player, wait_status, wait_video
from testkit.rest_client import call
from testkit.rtc_client import play, run
from testkit.workers import Steering, on_both
from tools.makemedia import make_mp4

STARTUP = "/rest-api/vod/startup"
FILES = ["a.mp4", "small.mp4", "c.mp4"]

# what the page presents, frame by frame, and every stream event it is sent
WATCH = """
window.__presented = [];
window.__streamEvents = [];
(() => {
  const Native = window.WebSocket;
  const Wrapped = function (...args) {
    const socket = new Native(...args);
    socket.addEventListener('message', (event) => {
      if (typeof event.data !== 'string' || !event.data.includes('notifyStreamEvent')) return;
      try {
        const message = JSON.parse(event.data);
        if (message.message === 'notifyStreamEvent') window.__streamEvents.push(message.data[0]);
      } catch (error) { /* not JSON */ }
    });
    return socket;
  };
  Wrapped.prototype = Native.prototype;
  Object.setPrototypeOf(Wrapped, Native);
  window.WebSocket = Wrapped;
  const hook = () => {
    const video = document.querySelector('#remoteVideo video') || document.querySelector('video');
    if (video && video.requestVideoFrameCallback && !video.__presenting) {
      video.__presenting = true;
      const each = (now, meta) => {
        window.__presented.push([now, video.videoWidth]);
        if (window.__presented.length > 5000) window.__presented.shift();
        video.requestVideoFrameCallback(each);
      };
      video.requestVideoFrameCallback(each);
    }
    setTimeout(hook, 50);
  };
  document.addEventListener('DOMContentLoaded', hook);
})();
"""


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    here = tmp_path_factory.mktemp("channel")
    make_mp4(here / "a.mp4", seconds=3, barcode=True)
    make_mp4(here / "small.mp4", seconds=3, width=320, height=180, barcode=True)
    make_mp4(here / "c.mp4", seconds=3, gop=30, bitrate="400k", barcode=True)
    make_mp4(here / "baseline.mp4", seconds=3, profile="baseline", barcode=True)
    make_mp4(here / "mute.mp4", seconds=2, audio=False)
    (here / "show.m3u").write_text("# three files\n" + "\n".join(FILES) + "\n")
    (here / "evil.m3u").write_text("a.mp4\n../../etc/passwd\n")
    return here


def started(server, name: str = "channel", files: list[str] = FILES) -> dict:
    status, answer, _ = call(server.http_url, STARTUP, {"localStreamName": name,
                                                         "playlist": files})
    assert status == 200, answer
    return answer


def watch(page, seconds: float) -> tuple[list[int], float]:
    """The picture widths seen and the longest gap (s) between presented frames."""
    page.evaluate("window.__presented = []")
    time.sleep(seconds)
    frames = page.evaluate("window.__presented")
    assert len(frames) > seconds * 15, f"{len(frames)} frames in {seconds} s"
    widths = [width for _, width in frames]
    gap = max((b[0] - a[0]) / 1000 for a, b in zip(frames, frames[1:], strict=False))
    return widths, gap


def changes(widths: list[int]) -> list[int]:
    """The widths in the order they came, each once per run."""
    out: list[int] = []
    for width in widths:
        if not out or out[-1] != width:
            out.append(width)
    return out


def owner(server, name: str = "channel") -> int:
    """The worker that reads the channel (the others relay it)."""
    found = re.search(rf"\[worker (\d)\] .*created for vod-live://{name} ", server.log())
    assert found, "no worker reads the channel"
    return int(found.group(1))


@pytest.mark.parametrize(("provider", "where"), [
    ("MSE", "owner"), ("MSE", "relayed"), ("WebRTC", "relayed")])
def test_the_sdk_player_plays_a_channel_across_its_joins(start_server, page, folder, provider,
                                                          where):
    """On the worker that reads the channel, and on the other (relayed to it)."""
    server = start_server(media_dir=str(folder))
    started(server)
    reader = owner(server)
    steering = Steering(server, lambda n: reader if where == "owner" else 3 - reader)
    page.add_init_script(WATCH)
    open_player(page, server, "channel", f"&mediaProvider={provider}", url=steering.url)
    wait_status(page, "PLAYING")
    try:
        wait_video(page)
    except Exception:
        raise AssertionError(f"no picture: {page.console_messages[-30:]}") from None
    widths, gap = watch(page, 10.0)  # three joins at least, the size change among them
    seen = changes(widths)
    assert 320 in seen and seen.count(640) >= 1 and len(seen) >= 2, seen
    assert gap < 0.5, f"a freeze of {gap:.2f} s across the joins ({provider})"
    print(f"{provider}: widths {seen}, longest gap between frames {gap * 1000:.0f} ms")
    if provider == "WebRTC":  # the page was told each new size, once
        events = page.evaluate("window.__streamEvents")
        sizes = [(e["payload"]["streamerVideoWidth"], e["payload"]["streamerVideoHeight"])
                 for e in events if e["type"] == "resize"]
        assert (320, 180) in sizes and (640, 360) in sizes, sizes
        assert all(a != b for a, b in zip(sizes, sizes[1:])), sizes
        assert len(sizes) >= len(seen), (sizes, seen)  # every size the page showed was told
    assert page.inner_text("#status") == "PLAYING"
    relayed = re.search(r"\[worker (\d)\] .*\('channel'\) relayed from", server.log())
    assert (relayed is not None) == (where == "relayed"), relayed
    steering.close()


def test_the_sdk_hls_js_page_plays_a_channel_across_its_joins(start_server, page, folder):
    server = start_server(media_dir=str(folder))
    started(server)
    quoted = urllib.parse.quote("channel", safe="")
    text = ""
    deadline = time.monotonic() + 15
    while "#EXT-X-DISCONTINUITY" not in text:  # a join with another size is listed so
        assert time.monotonic() < deadline, text
        text = urllib.request.urlopen(f"{server.hls_url}/{quoted}/{quoted}.m3u8").read().decode()
        time.sleep(0.5)
    page.add_init_script(WATCH)
    open_hls_js(page, server, "channel")
    widths, gap = watch(page, 10.0)
    seen = changes(widths)
    assert 320 in seen and 640 in seen, seen
    # a join that stalls hls.js waits for a segment (2 s); CI's loaded Chromium once
    # presented a frame 0.58 s after the one before, between joins
    assert gap < 1.0, f"a freeze of {gap:.2f} s across the joins (HLS)"
    print(f"HLS: widths {seen}, longest gap between frames {gap * 1000:.0f} ms")


def test_rest_lists_appends_and_skips_on_either_worker(start_server, page, folder):
    server = start_server(media_dir=str(folder), access_log="true")
    started(server, files=["a.mp4", "baseline.mp4", "c.mp4"])  # (another profile: passed over)
    body = {"localStreamName": "channel"}
    for status, answer, _ in on_both(server, "/rest-api/vod/playlist", body, 200):
        assert status == 200 and answer["items"] == ["a.mp4", "baseline.mp4", "c.mp4"], answer
        assert answer["current"] in (0, 1) and answer["position"] >= 0
    status, answer, _ = call(server.http_url, "/rest-api/vod/playlist_append",
                             {**body, "playlist": ["small.mp4"]})
    assert status == 200 and answer["items"] == ["a.mp4", "baseline.mp4", "c.mp4", "small.mp4"]
    # a viewer, then a skip: the picture moves on to the next file at once
    page.add_init_script(WATCH)
    open_player(page, server, "channel", "&mediaProvider=MSE")
    wait_status(page, "PLAYING")
    wait_video(page)
    time.sleep(1.0)
    for _ in range(3):  # until the small one plays: a skip answers what plays next
        status, answer, _ = call(server.http_url, "/rest-api/vod/playlist_skip", body)
        assert status == 200 and answer["position"] == 0.0, answer
        if answer["items"][answer["current"]] == "small.mp4":
            break
        time.sleep(0.3)
    assert answer["items"][answer["current"]] == "small.mp4", answer
    try:
        page.wait_for_function(f"document.querySelector('{VIDEO}').videoWidth === 320",
                               timeout=6000)
    except Exception:
        widths = changes([w for _, w in page.evaluate("window.__presented")])
        raise AssertionError(f"never 320 wide: {widths}, {page.console_messages[-12:]}"
                             ) from None
    widths, gap = watch(page, 2.0)
    assert gap < 0.5, gap
    assert "baseline.mp4 passed over: its H.264 profile differs" in server.log()
    # the channel shows in vod/find_all like any broadcast, and ends on terminate
    status, found, _ = call(server.http_url, "/rest-api/vod/find", body)
    assert status == 200 and found[0]["loop"] is True, found
    status, _, _ = call(server.http_url, "/rest-api/vod/terminate", body)
    assert status == 200
    wait_status(page, "STOPPED")


def test_a_channel_is_read_once_and_relayed_to_the_other_worker(start_server, folder):
    """A viewer on each worker: the owner reads the files, the other relays it,
    and both see every frame in order across the joins."""
    server = start_server(media_dir=str(folder))
    started(server)
    reader = owner(server)
    steerings = [Steering(server, lambda n, w=w: w) for w in (reader, 3 - reader)]

    async def scenario() -> list:
        first = asyncio.ensure_future(play(steerings[0].url, "channel", stop_after=7.0))
        await asyncio.sleep(2.0)  # one at a time: each steering pauses the other worker
        second = await play(steerings[1].url, "channel", stop_after=5.0)
        return [await first, second]

    for got, seconds in zip(run(scenario()), (7.0, 5.0), strict=True):  # (aiortc decodes)
        assert got.statuses == ["PENDING", "PLAYING", "STOPPED"], got.statuses
        sizes = {(row[2], row[3]) for row in got.video}
        began = got.video[0][0] if got.video else 0.0
        runs = [(round(row[0] - began, 2), row[2]) for n, row in enumerate(got.video)
                if n == 0 or row[2] != got.video[n - 1][2]]  # (s into the play, width)
        assert sizes == {(640, 360), (320, 180)}, (sizes, runs)  # across a join, either worker
        assert len(got.video) >= 20 * seconds, len(got.video)  # of 30 a second
        pts = [row[1] for row in got.video]
        assert pts == sorted(pts), runs  # in order
    for steering in steerings:
        steering.close()
    log = server.log()
    assert re.search(rf"\[worker {3 - reader}\] .*\('channel'\) relayed from", log)
    assert log.count("created for vod-live://channel") == 1  # one reader for the server


BAD_LISTS = [
    ({"localStreamName": "x", "playlist": ["a.mp4", "../../etc/passwd"]}, 400,
     "playlist item 2 ('../../etc/passwd'): "),
    ({"localStreamName": "x", "playlist": ["a.mp4", "/etc/passwd"]}, 400, "playlist item 2"),
    ({"localStreamName": "x", "playlist": ["a.mp4", "nothing.mp4"]}, 404, "playlist item 2"),
    ({"localStreamName": "x", "playlist": ["show.m3u"]}, 400, "a playlist cannot name a playlist"),
    ({"localStreamName": "x", "playlist": "a.mp4"}, 400, "'playlist' must be a list"),
    ({"localStreamName": "x", "playlist": []}, 400, "'playlist' must be a list"),
    ({"localStreamName": "x", "playlist": [1, 2]}, 400, "'playlist' must be a list"),
    ({"localStreamName": "x", "playlist": ["a.mp4"] * 1001}, 429, "max_playlist_items"),
    ({"localStreamName": "x", "playlist": ["a.mp4"], "uri": "vod-live://a.mp4"}, 400,
     "not both"),
]


def test_startup_refuses_a_bad_list_with_why(start_server, folder):
    server = start_server(media_dir=str(folder))
    for body, code, words in BAD_LISTS:
        status, answer, _ = call(server.http_url, STARTUP, body)
        assert status == code and words in answer["message"], (body, status, answer)
    assert "Traceback" not in server.log()
    status, _, _ = call(server.http_url, "/rest-api/vod/find_all", {})
    assert status == 404  # nothing was started by any of them


def test_hostile_lists_and_calls_leave_the_channel_playing(start_server, page, folder):
    server = start_server(media_dir=str(folder), max_playlist_items="5")
    started(server, files=["a.mp4", "small.mp4"])
    body = {"localStreamName": "channel"}
    refusals = [
        ("/rest-api/vod/playlist_append", {**body, "playlist": ["a.mp4"] * 4}, 429,
         "max_playlist_items"),
        ("/rest-api/vod/playlist_append", {**body, "playlist": ["../x.mp4"]}, 400,
         "playlist item 1"),
        ("/rest-api/vod/playlist_append", {**body, "playlist": ["x" * 2000]}, 400,
         "'playlist' must be a list"),
        ("/rest-api/vod/playlist_skip", {"localStreamName": "nobody"}, 404, "no stream named"),
        ("/rest-api/vod/playlist", {}, 400, "localStreamName"),
    ]
    status, _, _ = call(server.http_url, STARTUP, {"localStreamName": "plain",
                                                     "uri": "vod-live://a.mp4"})
    assert status == 200
    refusals.append(("/rest-api/vod/playlist_skip", {"localStreamName": "plain"}, 400,
                     "not a playlist channel"))
    for path, sent, code, words in refusals:
        status, answer, _ = call(server.http_url, path, sent)
        assert status == code and words in answer["message"], (path, status, answer)
    # 200 skips at once: each answered, the channel plays on
    for _ in range(200):
        status, answer, _ = call(server.http_url, "/rest-api/vod/playlist_skip", body)
        assert status == 200, answer
    # a playlist file naming a file outside the media folder: FAILED, saying which line
    open_player(page, server, "vod-live://evil.m3u", "&mediaProvider=MSE")
    wait_status(page, "FAILED")
    assert "playlist item 2" in page.inner_text("#info"), page.inner_text("#info")
    # and a file of the list is a channel, not a personal play
    page.goto("about:blank")
    open_player(page, server, "vod://show.m3u", "&mediaProvider=MSE")
    wait_status(page, "FAILED")
    assert "play it as vod-live://show.m3u" in page.inner_text("#info")
    page.goto("about:blank")
    open_player(page, server, "channel", "&mediaProvider=MSE")
    wait_status(page, "PLAYING")
    wait_video(page)
    assert "#critical" not in server.log()
