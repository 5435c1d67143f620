"""End to end: REST hooks ask a real HTTP backend on loopback before a
session, a play or a publish; refusals are ``Restricted access``; a backend
that hangs, breaks or is down refuses, and holds back no one else."""

from __future__ import annotations

import threading
import time

import pytest

from testkit.backend import Backend
from testkit.harness import RawWebSocket, free_port, run
from testkit.mse_client import MSE_OFFER
from testkit.pages import open_player, video_state, wait_status, wait_video
from testkit.rest_client import call
from testkit.workers import Steering, only
from testkit.rtc_client import play, stream_request

HOOK_TIMEOUT_MS = 1000


def rule(method: str, body: dict) -> tuple[int, object, float]:
    """The backend's policy: by login for sessions, by name for streams."""
    if method == "connect":
        login = (body.get("custom") or {}).get("login")
        if login == "mallory":
            return 403, {"error": "not you"}, 0.0
        if login == "slowpoke":
            return 200, None, 30.0
        return 200, None, 0.0
    if method in ("playStream", "publishStream"):
        name = body.get("name", "")
        if "secret" in name:
            return 403, None, 0.0
        if name == "alias":
            return 200, {"name": "vod://main.mp4"}, 0.0
        if name == "hang":
            return 200, None, 30.0
        if name == "broken":
            return 500, None, 0.0
        if name == "chatty":
            return 200, b"[" + b"1," * 100_000 + b"1]", 0.0
    return 200, None, 0.0


@pytest.fixture
def backend():
    server = Backend(rule).start()
    yield server
    server.stop()


def connect(server, custom: dict | None = None) -> tuple[RawWebSocket, dict]:
    client = RawWebSocket(server.ws_url + "/")
    client.send_json("connection", {"appKey": "defaultApp", "clientVersion": "2.0",
                                    "authToken": "the-page-s-own", "custom": custom or {}})
    reply = client.receive_json()
    assert reply["message"] == "getUserData", reply
    return client, reply["data"][0]


def status_of(client: RawWebSocket, media_session_id: str, timeout: float = 10.0) -> dict:
    """The next status event of that play or publish."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        message = client.receive_json(timeout=max(deadline - time.monotonic(), 0.1))
        if message["message"] == "notifyStreamStatusEvent":
            event = message["data"][0]
            if event["mediaSessionId"] == media_session_id:
                return event
    raise AssertionError(f"no status for {media_session_id}")


def request_play(client: RawWebSocket, name: str, **fields) -> dict:
    request = stream_request(name, provider="MSE", sdp=MSE_OFFER, **fields)
    client.send_json("playStream", request)
    return request


def test_the_backend_allows_refuses_rewrites_and_times_out(start_server, media, backend):
    server = start_server(media_dir=str(media), rest_hook_url=backend.url,
                          rest_hook_timeout=str(HOOK_TIMEOUT_MS))
    client, user = connect(server, {"login": "alice", "room": 7})
    connected = backend.bodies("connect")[0]
    assert connected["custom"] == {"login": "alice", "room": 7}
    assert connected["sessionId"] == user["sessionId"]
    assert connected["clientAddress"] == "127.0.0.1" and connected["appKey"] == "defaultApp"
    assert "authToken" not in connected  # the page's credentials stay with us

    allowed = request_play(client, "vod://main.mp4", custom={"token": "abc", "n": [1, 2]})
    assert status_of(client, allowed["mediaSessionId"])["status"] == "PENDING"
    asked = backend.bodies("playStream")[0]
    assert asked["custom"] == {"token": "abc", "n": [1, 2]}
    assert asked["name"] == "vod://main.mp4" and asked["published"] is False
    assert asked["mediaSessionId"] == allowed["mediaSessionId"]
    assert asked["sessionId"] == user["sessionId"] and asked["mediaProvider"] == "MSE"

    for name in ("vod://secret.mp4", "broken", "chatty"):
        refused = request_play(client, name)
        event = status_of(client, refused["mediaSessionId"])
        assert (event["status"], event["info"]) == ("FAILED", "Restricted access"), name

    renamed = request_play(client, "alias")
    assert status_of(client, renamed["mediaSessionId"])["status"] == "PENDING"
    _, listed, _ = call(server.http_url, "/rest-api/stream/find",
                        {"mediaSessionId": renamed["mediaSessionId"]})
    assert listed[0]["name"] == "vod://main.mp4"

    started = time.monotonic()
    hanging = request_play(client, "hang")
    event = status_of(client, hanging["mediaSessionId"])
    waited = time.monotonic() - started
    assert (event["status"], event["info"]) == ("FAILED", "Restricted access")
    assert HOOK_TIMEOUT_MS / 1000 * 0.9 <= waited < 5, waited

    client.send_json("stopStream", {"mediaSessionId": allowed["mediaSessionId"],
                                    "name": "vod://main.mp4"})
    stopped = backend.wait_for("stopStream")  # the refused plays were never allowed
    assert stopped[0]["mediaSessionId"] == allowed["mediaSessionId"]
    assert stopped[0]["status"] == "STOPPED"
    client.close()
    gone = backend.wait_for("ConnectionStatusEvent")[0]
    assert gone["sessionId"] == user["sessionId"] and gone["status"] == "DISCONNECTED"

    log = server.log()
    assert "HTTP 403" in log or "secret" in log
    assert f"no answer in {HOOK_TIMEOUT_MS} ms (rest_hook_timeout)" in log


def test_a_refused_or_unanswered_connect_closes_the_session_saying_why(start_server, media,
                                                                        backend):
    server = start_server(media_dir=str(media), rest_hook_url=backend.url,
                          rest_hook_timeout=str(HOOK_TIMEOUT_MS))
    for login in ("mallory", "slowpoke"):
        client = RawWebSocket(server.ws_url + "/")
        client.send_json("connection", {"appKey": "defaultApp", "custom": {"login": login}})
        reply = client.receive_json(timeout=5)
        assert reply == {"message": "fail", "data": [{"info": "Restricted access"}]}, login
        with pytest.raises(ConnectionError, match="Restricted access"):
            client.receive_json(timeout=5)
        client.close()
    client, _ = connect(server, {"login": "alice"})  # the server is as it was
    client.close()


def test_a_backend_that_is_down_refuses(start_server, media):
    server = start_server(media_dir=str(media),
                          rest_hook_url=f"http://127.0.0.1:{free_port()}/app")
    client = RawWebSocket(server.ws_url + "/")
    started = time.monotonic()
    client.send_json("connection", {"appKey": "defaultApp"})
    assert client.receive_json(timeout=5)["data"][0]["info"] == "Restricted access"
    assert time.monotonic() - started < 3  # refused at once, not at the timeout
    assert "did not answer connect" in server.log() or "refused" in server.log()


def test_a_hanging_backend_holds_back_no_other_session(start_server, media, backend):
    """A viewer plays on while 256 plays wait for a backend that never answers,
    and the 20 plays and the connect asked after them are refused at once."""
    server = start_server(media_dir=str(media), rest_hook_url=backend.url,
                          rest_hook_timeout="20000", max_plays_per_session="64")
    # on one worker: each worker keeps at most 256 questions in flight to the backend
    with only(server, 1):
        clients = [connect(server)[0] for _ in range(5)]  # all allowed, before the flood
    refused_at_once: list[str] = []
    flooded = threading.Event()

    def flood() -> None:
        time.sleep(3)  # the viewer is playing by now
        for client, plays in zip(clients, (64, 64, 64, 64, 20)):
            for _ in range(plays):
                request_play(client, "hang")
        # sessions are read in any order: any may be refused. "At once": well before
        # the backend's 20 s (a loaded CI box had none in a first second of each)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            for client in clients[:5]:
                client.sock.settimeout(0.3)
                try:
                    while True:
                        message = client.receive_json(timeout=0.3)
                        if message["message"] == "notifyStreamStatusEvent":
                            refused_at_once.append(message["data"][0]["info"])
                except TimeoutError:
                    pass
            if len(refused_at_once) >= 20:
                deadline = min(deadline, time.monotonic() + 1.0)  # and then no more
        with only(server, 1):
            slow = RawWebSocket(server.ws_url + "/")  # the backend is full: refused at once
        slow.send_json("connection", {"appKey": "defaultApp", "custom": {"login": "slowpoke"}})
        clients.append(slow)
        assert slow.receive_json(timeout=5)["data"][0]["info"] == "Restricted access"
        flooded.set()

    flooding = threading.Thread(target=flood)
    flooding.start()
    steering = Steering(server, plan=lambda n: 1)  # the viewer beside the flood, too
    received = run(play(steering.url, "vod://main.mp4", stop_after=7.0, timeout=30))
    flooding.join(30)
    assert flooded.is_set()
    assert "PLAYING" in received.statuses, received.statuses
    after = [row[0] for row in received.video if row[0] > received.video[0][0] + 3]
    assert len(after) > 3 * 25, len(after)  # steady through the flood
    assert received.fps() > 20, received.fps()
    assert refused_at_once == ["Restricted access"] * 20
    assert len(backend.bodies("playStream")) == 256 + 1  # the viewer's, and the waiting
    assert server.saw("questions already wait for the backend")
    started = time.monotonic()
    assert call(server.http_url, "/rest-api/stream/find_all")[0] == 200
    assert time.monotonic() - started < 1
    for client in clients:
        client.close()


def test_a_publish_the_backend_refuses_fails(start_server, media, backend):
    server = start_server(media_dir=str(media), rest_hook_url=backend.url)
    client, _ = connect(server)
    request = stream_request("secret-camera", published=True, sdp="v=0\r\n")
    client.send_json("publishStream", request)
    event = status_of(client, request["mediaSessionId"])
    assert (event["status"], event["info"]) == ("FAILED", "Restricted access")
    asked = backend.bodies("publishStream")[0]
    assert asked["published"] is True and asked["name"] == "secret-camera"
    client.close()


def test_the_sdk_player_page_plays_what_the_backend_allows_only(start_server, media,
                                                                 backend, page):
    server = start_server(media_dir=str(media), rest_hook_url=backend.url)
    open_player(page, server, "vod://main.mp4")
    wait_status(page, "PLAYING")
    first = wait_video(page)
    assert first["width"] > 0
    time.sleep(1)
    assert video_state(page)["time"] > first["time"]  # decoding on
    page.click("#playBtn")  # stop
    wait_status(page, "STOPPED")
    page.fill("#streamName", "vod://secret.mp4")
    page.click("#playBtn")
    wait_status(page, "FAILED")
    assert page.text_content("#info") == "Restricted access"
    names = [body["name"] for body in backend.bodies("playStream")]
    assert names == ["vod://main.mp4", "vod://secret.mp4"]


SDK_PAGE = """<!DOCTYPE html><html><body><div id="display" style="width:320px;height:240px">
</div><div id="status"></div><script src="/client2/flashphoner.js"></script><script>
Flashphoner.init({});
window.statuses = [];
Flashphoner.createSession({urlServer: "%(ws)s", custom: %(session)s})
  .on(Flashphoner.constants.SESSION_STATUS.ESTABLISHED, function (session) {
    session.createStream({name: "%(name)s", display: document.getElementById("display"),
                          custom: %(stream)s})
      .on(Flashphoner.constants.STREAM_STATUS.PLAYING, function () { statuses.push("PLAYING"); })
      .on(Flashphoner.constants.STREAM_STATUS.FAILED, function (s) {
        statuses.push("FAILED:" + s.getInfo()); })
      .play();
  });
</script></body></html>"""


def sdk_play(page, server, name: str, session: str = "{}", stream: str = "{}") -> None:
    """The official SDK, unchanged, on a page that sends ``custom`` objects."""
    page.goto(server.http_url + "/config.json")
    page.set_content(SDK_PAGE % {"ws": server.ws_url, "name": name, "session": session,
                                 "stream": stream})


def test_the_backend_sees_the_custom_objects_the_sdk_sent(start_server, media, backend,
                                                          page):
    server = start_server(media_dir=str(media), rest_hook_url=backend.url)
    sdk_play(page, server, "vod://main.mp4", session='{"login": "alice"}',
             stream='{"seat": "A12", "tags": ["vip"]}')
    page.wait_for_function("window.statuses.length > 0", timeout=15000)
    assert page.evaluate("window.statuses") == ["PLAYING"]
    assert wait_video(page, "#display video")["width"] > 0
    assert backend.bodies("connect")[0]["custom"] == {"login": "alice"}
    assert backend.bodies("playStream")[0]["custom"] == {"seat": "A12", "tags": ["vip"]}


SECRET = "sixteen-or-more-characters"


def test_play_tokens_open_their_stream_only_until_they_expire(start_server, media):
    from wcs.access.tokens import sign

    server = start_server(media_dir=str(media), play_token_secret=SECRET)
    client, _ = connect(server)
    now = int(time.time())
    good = sign(SECRET, "vod://main.mp4", now + 60)
    cases = {
        "valid": ({"token": good}, "PENDING"),
        "expired": ({"token": sign(SECRET, "vod://main.mp4", now - 1)}, "FAILED"),
        "wrong name": ({"token": sign(SECRET, "vod://baseline.mp4", now + 60)}, "FAILED"),
        "forged": ({"token": sign("another-secret-of-16", "vod://main.mp4", now + 60)},
                   "FAILED"),
        "later expiry": ({"token": f"{now + 3600}.{good.split('.')[1]}"}, "FAILED"),
        "missing": ({}, "FAILED"),
        "not a string": ({"token": ["x"]}, "FAILED"),
    }
    for case, (custom, expected) in cases.items():
        request = request_play(client, "vod://main.mp4", custom=custom)
        event = status_of(client, request["mediaSessionId"])
        assert event["status"] == expected, case
        if expected == "FAILED":
            assert event["info"] == "Restricted access", case
    log = server.log()
    for why in ("token expired", "does not match", "no token"):
        assert why in log
    client.close()


def test_startup_hands_out_a_token_its_viewers_play_with(start_server, media, page):
    server = start_server(media_dir=str(media), play_token_secret=SECRET)
    status, body, _ = call(server.http_url, "/rest-api/vod/startup",
                           {"uri": "vod-live://main.mp4", "localStreamName": "show",
                            "playTokenLifetime": 600})
    assert status == 200 and body["playToken"].count(".") == 1
    for bad in (0, -5, "600", True, 10**9):
        status, answer, _ = call(server.http_url, "/rest-api/vod/startup",
                                 {"uri": "vod-live://baseline.mp4", "localStreamName": "x",
                                  "playTokenLifetime": bad})
        assert status == 400 and "playTokenLifetime" in answer["message"], bad
    sdk_play(page, server, "show", stream='{"token": "%s"}' % body["playToken"])
    page.wait_for_function("window.statuses.length > 0", timeout=15000)
    assert page.evaluate("window.statuses") == ["PLAYING"]
    first = wait_video(page, "#display video")
    time.sleep(1)
    assert video_state(page, "#display video")["time"] > first["time"]
    sdk_play(page, server, "show")  # no token: the SDK hears why
    page.wait_for_function("window.statuses.length > 0", timeout=15000)
    assert page.evaluate("window.statuses") == ["FAILED:Restricted access"]


def test_startup_refuses_to_sign_without_a_secret(start_server, media):
    server = start_server(media_dir=str(media))
    status, answer, _ = call(server.http_url, "/rest-api/vod/startup",
                             {"uri": "vod-live://main.mp4", "localStreamName": "show",
                              "playTokenLifetime": 600})
    assert status == 400 and "play_token_secret" in answer["message"]


def fetch(url: str, headers: dict | None = None) -> tuple[int, bytes, dict]:
    import urllib.error
    import urllib.request

    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read(), dict(response.headers)
    except urllib.error.HTTPError as failure:
        return failure.code, failure.read(), dict(failure.headers)


def test_records_need_a_token_of_their_own(start_server, media):
    import json

    from wcs.access.tokens import sign

    server = start_server(media_dir=str(media), play_token_secret=SECRET)
    url = server.http_url + "/client/records/main.mp4"
    whole = (media / "main.mp4").read_bytes()
    now = int(time.time())
    good = sign(SECRET, "records/main.mp4", now + 60)
    status, content, _ = fetch(f"{url}?token={good}")
    assert status == 200 and content == whole
    status, content, _ = fetch(f"{url}?token={good}", {"Range": "bytes=100-199"})
    assert status == 206 and content == whole[100:200]
    for token in ("", sign(SECRET, "main.mp4", now + 60),  # the stream's, not the record's
                  sign(SECRET, "records/main.mp4", now - 1), "1.abc"):
        status, content, headers = fetch(f"{url}?token={token}")
        assert status == 403, token
        assert headers["Content-Type"].startswith("application/json")
        assert json.loads(content)["message"].startswith("Restricted access: ")
    assert fetch(server.http_url + "/client/records/nothing.mp4?token=" + good)[0] == 404


def test_records_ask_the_backend_too(start_server, media, backend):
    server = start_server(media_dir=str(media), rest_hook_url=backend.url)
    allowed = fetch(server.http_url + "/client/records/main.mp4?login=alice")
    assert allowed[0] == 200 and allowed[1] == (media / "main.mp4").read_bytes()
    asked = backend.bodies("playStream")[0]
    assert asked["name"] == "main.mp4" and asked["mediaProvider"] == "HTTP"
    assert asked["record"] is True and asked["custom"] == {"login": "alice"}
    (media / "secret.mp4").write_bytes(b"")  # refused before anything is read
    try:
        status, content, _ = fetch(server.http_url + "/client/records/secret.mp4")
    finally:
        (media / "secret.mp4").unlink()
    assert status == 403 and b"HTTP 403" in content
