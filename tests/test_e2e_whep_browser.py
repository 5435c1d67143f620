"""WHEP and WHIP (RFC 9725) with clients nobody here wrote: medooze's
``whip-whep`` (npm, ``WHEPClient`` and ``WHIPClient``) in headless Chromium,
on a page of another origin than the server (a static server of the test's own
on another loopback port), so every request is a CORS one.

The clients POST an offer without candidates and trickle them by PATCH; their
``stop()`` closes the peer connection and DELETEs the session's URL.
"""

from __future__ import annotations

import functools
import json
import re
import shutil
import threading
import time
from collections.abc import Callable, Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from testkit.browser import recorded_page
from testkit.harness import REPO, free_port
from testkit.pages import open_player, wait_status, wait_video
from testkit.request_steering import RequestSteering
from testkit.rest_client import call, conforms
from testkit.whep_client import endpoint

WHIP_WHEP = REPO / "node_modules" / "whip-whep"
VERSION = "1.2.0"
FIND_ALL = "/rest-api/stream/find_all"
#: How the package's ``stop()`` may be answered: it closes the peer connection
#: before its DELETE, and that DTLS teardown alone ends the session (RFC 9725
#: lets either side end one so), so the DELETE can find it gone already.
ENDING = {("DELETE", 200), ("DELETE", 404)}

#: The page: both modules as the package ships them, and what the test calls.
PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><link rel="icon" href="data:,"><title>whip-whep</title></head>
<body><video id="video" autoplay muted playsinline></video>
<script type="module">
import { WHEPClient } from "./whep.js";
import { WHIPClient } from "./whip.js";

window.errors = [];
addEventListener("unhandledrejection", (event) => errors.push(String(event.reason)));
addEventListener("error", (event) => errors.push(String(event.message)));

// Play url over WHEP, as the package's README does; the resource's URL.
window.view = async (url) => {
  const pc = window.pc = new RTCPeerConnection({ bundlePolicy: "max-bundle" });
  pc.addTransceiver("audio", { direction: "recvonly" });
  pc.addTransceiver("video", { direction: "recvonly" });
  const stream = new MediaStream();
  pc.ontrack = (event) => {
    stream.addTrack(event.track);
    document.getElementById("video").srcObject = stream;
  };
  const whep = window.client = new WHEPClient();
  await whep.view(pc, url);
  return whep.resourceURL.href;
};

// Publish Chromium's fake camera and microphone over WHIP, as the README does.
window.publish = async (url) => {
  const media = await navigator.mediaDevices.getUserMedia(
    { audio: true, video: { width: 640, height: 360 } });
  const pc = window.pc = new RTCPeerConnection({ bundlePolicy: "max-bundle" });
  for (const track of media.getTracks())
    pc.addTransceiver(track, { direction: "sendonly" });
  const whip = window.client = new WHIPClient();
  await whip.publish(pc, url);
  return whip.resourceURL.href;
};

window.video = () => {
  const v = document.getElementById("video");
  return { width: v.videoWidth, height: v.videoHeight, time: v.currentTime };
};

// The peer connection's RTP figures by kind, with the codec each one uses.
window.rtp = async (type) => {
  const report = await window.pc.getStats();
  const out = {};
  for (const s of report.values()) {
    if (s.type !== type) continue;
    const codec = s.codecId && report.get(s.codecId);
    out[s.kind] = {
      packets: s.packetsReceived ?? s.packetsSent ?? 0,
      frames: s.framesDecoded ?? s.framesEncoded ?? 0,
      samples: s.totalSamplesReceived ?? 0,
      codec: codec ? codec.mimeType : "",
    };
  }
  return out;
};
window.ready = true;
</script></body></html>
"""


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def site(tmp_path: Path) -> Iterator[str]:
    """The page and the package's two modules, served from another origin
    (another loopback port) than any server's."""
    shipped = WHIP_WHEP / "package.json"
    if not shipped.exists():
        raise AssertionError(f"{WHIP_WHEP} is missing: run scripts/test.sh, which installs it")
    assert json.loads(shipped.read_text())["version"] == VERSION
    folder = tmp_path / "site"
    folder.mkdir()
    for module in ("whep.js", "whip.js"):
        shutil.copy(WHIP_WHEP / module, folder / module)
    (folder / "index.html").write_text(PAGE)
    httpd = ThreadingHTTPServer(("127.0.0.1", free_port()),
                                functools.partial(_QuietHandler, directory=str(folder)))
    thread = threading.Thread(target=httpd.serve_forever, daemon=True, name="site")
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


class Client:
    """A page of ``site`` with the package's clients, and what it sent."""

    def __init__(self, browser, site: str) -> None:  # type: ignore[no-untyped-def]
        self.page = recorded_page(browser)
        self.answers: list[tuple[str, str, int]] = []  # method, URL, status
        self.console: list[str] = []
        self.page.on("response", lambda response: self.answers.append(
            (response.request.method, response.url, response.status)))
        self.page.on("console", lambda message: self.console.append(
            f"{message.type}: {message.text}"))
        self.page.goto(f"{site}/index.html")
        self.page.wait_for_function("window.ready === true", timeout=10000)
        self.origin = self.page.evaluate("location.origin")

    def view(self, url: str) -> str:
        return self.page.evaluate("url => view(url)", url)

    def publish(self, url: str) -> str:
        return self.page.evaluate("url => publish(url)", url)

    def stop(self) -> None:
        """The package's own ending: close the peer connection, then DELETE."""
        self.page.evaluate("() => client.stop()")

    def delete(self) -> int:
        """A DELETE of the client's resource from the page, its peer connection up."""
        return self.page.evaluate(
            "async () => (await fetch(client.resourceURL, { method: 'DELETE' })).status")

    def video(self) -> dict:
        return self.page.evaluate("video()")

    def rtp(self, kind: str = "inbound-rtp") -> dict:
        return self.page.evaluate("type => rtp(type)", kind)

    def wait_video(self, timeout_ms: int = 15000) -> dict:
        try:
            self.page.wait_for_function(
                "() => { const v = video(); return v.width > 0 && v.time > 0; }",
                timeout=timeout_ms)
        except Exception as error:
            raise AssertionError(f"no video; errors {self.errors()}, answers {self.answers}, "
                                 f"stats {self.rtp()}") from error
        return self.video()

    def errors(self) -> list[str]:
        """What went wrong in the page: rejected promises (a refused PATCH),
        errors, and the console's errors (a CORS refusal is one). An answer's
        status is not one here: the tests read those from :meth:`methods`."""
        return self.page.evaluate("errors") + [
            line for line in self.console if line.startswith("error")
            and "Failed to load resource: the server responded with a status" not in line]

    def methods(self, server_url: str) -> list[tuple[str, int]]:
        """The requests sent to ``server_url`` and their statuses, in order."""
        return [(method, status) for method, url, status in self.answers
                if url.startswith(server_url + "/")]

    def close(self) -> None:
        self.page.context.close()


def listed(server, wanted: Callable[[list[dict]], bool], seconds: float = 10.0  # type: ignore[no-untyped-def]
           ) -> tuple[int, list[dict], object]:
    """find_all, until ``wanted(items)`` (bounded): its status, items and body.
    (Checked against docs/openapi.json apart, by :func:`documented`, once the
    rest is.)"""
    deadline = time.monotonic() + seconds
    while True:
        status, body, _ = call(server.http_url, FIND_ALL, check=False)
        items = body if status == 200 else []
        if wanted(items) or time.monotonic() > deadline:
            return status, items, body
        time.sleep(0.2)


def documented(answers: list[tuple[int, list[dict], object]]) -> None:
    """find_all's answers are the ones docs/openapi.json describes."""
    for status, _, body in answers:
        conforms(FIND_ALL, "GET", status, body)


def providers(items: list[dict]) -> list[tuple[str, bool, str, str]]:
    return sorted((item["name"], item["published"], item["mediaProvider"], item["status"])
                  for item in items)


def advancing(client: Client, seconds: float = 1.5) -> tuple[dict, dict, dict, dict]:
    """The video and inbound RTP now and ``seconds`` later."""
    video, rtp = client.video(), client.rtp()
    time.sleep(seconds)
    return video, client.video(), rtp, client.rtp()


def assert_plays_audio_and_video(client: Client, width: int, height: int) -> None:
    # the first viewer of a file may hear it a moment after it sees it (its
    # sound is made Opus once, for every later viewer)
    deadline = time.monotonic() + 15
    while client.rtp().get("audio", {}).get("packets", 0) == 0:
        assert time.monotonic() < deadline, f"no audio: {client.rtp()}"
        time.sleep(0.2)
    first_video, video, first_rtp, rtp = advancing(client)
    assert (video["width"], video["height"]) == (width, height), video
    assert video["time"] - first_video["time"] > 0.75, (first_video, video)
    assert rtp["video"]["codec"] == "video/H264", rtp
    assert rtp["video"]["frames"] - first_rtp["video"]["frames"] > 15, (first_rtp, rtp)
    assert rtp["audio"]["codec"] == "audio/opus", rtp
    assert rtp["audio"]["packets"] - first_rtp["audio"]["packets"] > 30, (first_rtp, rtp)
    assert rtp["audio"]["samples"] > first_rtp["audio"]["samples"], (first_rtp, rtp)


@pytest.mark.parametrize("name", ["vod-live://live.mp4", "vod://main.mp4"])
def test_whep_client_plays_from_a_page_of_another_origin(start_server, media, browser, site,
                                                         name):
    server = start_server(media_dir=str(media))
    viewer = Client(browser, site)
    try:
        assert viewer.origin == site != server.http_url
        resource = viewer.view(endpoint(server.http_url, "whep", name))
        assert resource.startswith(endpoint(server.http_url, "whep", name) + "/"), resource
        viewer.wait_video()
        assert_plays_audio_and_video(viewer, 640, 360)
        playing = listed(server, lambda items: len(items) == 1)
        assert providers(playing[1]) == [(name, False, "WHEP", "PLAYING")], playing

        viewer.stop()
        gone = listed(server, lambda items: not items)
        assert gone[:2] == (404, []), gone
        sent = viewer.methods(server.http_url)
        assert sent[0] == ("POST", 201), sent
        assert set(sent[1:-1]) == {("PATCH", 204)}, sent  # the trickled candidates
        assert sent[-1] in ENDING, sent
        assert viewer.errors() == [], viewer.errors()
    finally:
        viewer.close()
    assert "Traceback" not in server.log()
    documented([playing, gone])


@pytest.mark.alone  # a camera and three players in one browser: no freeze only on free cores
def test_whip_client_publishes_to_the_sdk_player_and_a_whep_client(start_server, media,
                                                                  browser, site, page):
    server = start_server(media_dir=str(media))
    publisher, viewer = Client(browser, site), Client(browser, site)
    try:
        resource = publisher.publish(endpoint(server.http_url, "whip", "whip-cam"))
        assert resource.startswith(f"{server.http_url}/whip/whip-cam/"), resource
        publishing = listed(server, lambda items: any(
            item["status"] == "PUBLISHING" for item in items))
        assert providers(publishing[1]) == [("whip-cam", True, "WHIP", "PUBLISHING")], \
            publishing

        # the SDK's own player page plays it by name
        open_player(page, server, "whip-cam")
        wait_status(page, "PLAYING")
        shown = wait_video(page, timeout_ms=15000)
        assert (shown["width"], shown["height"]) == (640, 360), shown
        time.sleep(1.5)
        later = wait_video(page)
        assert later["time"] - shown["time"] > 0.75, (shown, later)

        # and so does another whip-whep page, over WHEP
        viewer.view(endpoint(server.http_url, "whep", "whip-cam"))
        viewer.wait_video()
        assert_plays_audio_and_video(viewer, 640, 360)
        sending = publisher.rtp("outbound-rtp")
        assert sending["video"]["codec"] == "video/H264", sending
        assert sending["audio"]["codec"] == "audio/opus", sending
        everyone = listed(server, lambda items: len(items) == 3)
        assert providers(everyone[1]) == [
            ("whip-cam", False, "WHEP", "PLAYING"),
            ("whip-cam", False, "WebRTC", "PLAYING"),
            ("whip-cam", True, "WHIP", "PUBLISHING")], everyone

        publisher.stop()  # the publication ends: its viewers' plays end with it
        statuses = wait_status(page, "STOPPED")
        assert statuses[-1] == "STOPPED", statuses
        left = listed(server, lambda items: not items)
        assert left[:2] == (404, []), left
        sent = publisher.methods(server.http_url)
        assert sent[0] == ("POST", 201) and sent[-1] in ENDING, sent
        assert set(sent[1:-1]) == {("PATCH", 204)}, sent
        assert publisher.errors() == [] and viewer.errors() == []
    finally:
        publisher.close()
        viewer.close()
    assert "Traceback" not in server.log()
    documented([publishing, everyone, left])


def test_another_worker_serves_the_trickle_and_the_delete(start_server, media, browser, site):
    """The page's POST reaches worker 1, which holds the session; its PATCHes
    and DELETEs reach worker 2, which asks worker 1 through the hub."""
    server = start_server(media_dir=str(media), workers="2", access_log="true")
    steering = RequestSteering(server, lambda method, path: (
        2 if method in ("PATCH", "DELETE") else 1))
    viewer = Client(browser, site)
    name = "vod-live://live.mp4"
    try:
        resource = viewer.view(endpoint(steering.url, "whep", name))
        assert resource.startswith(endpoint(steering.url, "whep", name) + "/"), resource
        holder = resource.rpartition("/")[2].partition(".")[2]  # the id names its worker
        viewer.wait_video()
        assert_plays_audio_and_video(viewer, 640, 360)
        playing = listed(server, lambda items: len(items) == 1)
        assert [(item["mediaProvider"], item["worker"].split(".")[0])
                for item in playing[1]] == [("WHEP", "1")], playing

        # a DELETE while the peer connection is up ends the play on worker 1...
        assert viewer.delete() == 200
        gone = listed(server, lambda items: not items)
        assert gone[:2] == (404, []), gone
        time.sleep(1.0)
        ended = viewer.rtp()
        time.sleep(1.0)
        later = viewer.rtp()  # nothing more came
        assert later["video"]["packets"] == ended["video"]["packets"], (ended, later)
        assert later["audio"]["packets"] == ended["audio"]["packets"], (ended, later)
        # ...and the package's stop() finds it gone, from worker 2 too
        viewer.stop()
        sent = viewer.methods(steering.url)
        assert sent[0] == ("POST", 201), sent
        assert set(sent[1:-2]) == {("PATCH", 204)}, sent
        assert sent[-2:] == [("DELETE", 200), ("DELETE", 404)], sent
        assert viewer.errors() == [], viewer.errors()
        assert steering.errors == []
    finally:
        viewer.close()
        steering.close()
    assert holder.split(".")[0].rpartition("/")[2] == "1", holder
    print(f"held by worker {holder}; steered: {[vars(each) for each in steering.steered]}")
    served = [(each.method, each.worker, each.status) for each in steering.steered
              if each.method != "OPTIONS"]
    assert served[0] == ("POST", 1, 201), served
    assert served[-2:] == [("DELETE", 2, 200), ("DELETE", 2, 404)], served
    assert set(served[1:-2]) == {("PATCH", 2, 204)}, served
    # the server's own log says which worker answered each (in the order its
    # workers' lines reached it, so as a whole, not line by line)
    answered = [(found[2], int(found[1]), int(found[3])) for found in re.finditer(
        r'\[worker (\d)\] .*"(POST|PATCH|DELETE) /whep/\S+ HTTP/1.1" (\d+) ', server.log())]
    assert sorted(answered) == sorted(served), answered
    assert "Traceback" not in server.log()
    documented([playing, gone])
