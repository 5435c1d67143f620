"""End to end: the SDK's unchanged player page reaches ESTABLISHED against
``twistd wcsvod``, and no malformed frame from a raw client drops a session."""

from __future__ import annotations

import json
import time

from testkit.harness import RawWebSocket
from testkit.pages import open_player, wait_status


def connect_raw(server, path: str = "/") -> tuple[RawWebSocket, dict]:
    client = RawWebSocket(server.ws_url + path)
    client.send_json("connection", {"appKey": "defaultApp", "clientVersion": "2.0"})
    reply = client.receive_json()
    assert reply["message"] == "getUserData"
    return client, reply["data"][0]


def test_sdk_player_page_reaches_established(start_server, page):
    server = start_server()
    open_player(page, server, "vod://sample.mp4")
    statuses = wait_status(page, "ESTABLISHED")
    assert statuses[0] == "ESTABLISHED"
    log = server.log()
    assert "AsyncioSelectorReactor" in log
    assert "established from" in log


def test_any_path_is_accepted(start_server):
    server = start_server()
    client, user_data = connect_raw(server, "/3f2a9c1b")
    assert user_data["status"] == "ESTABLISHED"
    assert user_data["authToken"]
    assert "webRTCMetricsServerDescription" not in user_data
    client.close()


MALFORMED = [
    (b"this is not json", 1, "not JSON"),
    (b"\xff\xfe\xfd", 1, "not UTF-8"),
    (b"[1, 2, 3]", 1, "not a JSON object"),
    (b'{"data": [{}]}', 1, "no 'message'"),
    (b'{"message": "playStream", "data": "x"}', 1, "'data' is not an array"),
    (b'{"message": "playStream", "data": [7]}', 1, "data[0] is not an object"),
    (b'{"message": "playStream", "data": [{"mediaSessionId": 5}]}', 1, "must be a string"),
    (b'{"message": "call", "data": [{}]}', 1, "SIP"),
    (b"\x01\x02\x03", 2, "binary frames"),
    (b'{"message": "x", "data": ["' + b"a" * 400_000 + b'"]}', 1, "discarded"),
]


def test_malformed_frames_never_drop_the_session(start_server, page):
    server = start_server()
    open_player(page, server, "vod://sample.mp4")
    wait_status(page, "ESTABLISHED")
    client, _ = connect_raw(server)
    for payload, opcode, expected in MALFORMED:
        client.send_frame(payload, opcode)
        reply = client.receive_json()
        assert reply["message"] == "fail", (payload[:40], reply)
        assert expected in reply["data"][0]["info"], (payload[:40], reply)
    # a stream message with a usable id but a bad field fails that stream only
    client.send_json("playStream", {"mediaSessionId": "abc", "name": 12})
    reply = client.receive_json()
    assert reply["message"] == "notifyStreamStatusEvent"
    assert reply["data"][0] == {"mediaSessionId": "abc", "status": "FAILED",
                                "info": "'name' must be a string"}
    # unknown messages are ignored; the session still answers
    client.send_json("noSuchMessage", {"x": 1})
    client.send_json("ping", None)
    assert client.receive_json() == {"message": "pong", "data": []}
    client.send_json("availableStream", {"mediaSessionId": "m1", "name": "nothing"})
    reply = client.receive_json()
    assert reply["message"] == "availableStream"
    assert reply["data"][0]["status"] == "false"
    client.close()
    # the browser's session saw none of it
    time.sleep(0.3)
    statuses = page.evaluate("window.__statuses")
    assert "DISCONNECTED" not in statuses and statuses[0] == "ESTABLISHED"
    assert server.process.poll() is None


def test_server_pings_and_drops_silent_clients(start_server):
    server = start_server(keep_alive__server_interval="200", keep_alive__probes="3")
    talker, _ = connect_raw(server)
    silent, _ = connect_raw(server)
    opcode, payload = talker.receive()
    assert opcode == 1 and json.loads(payload) == {"message": "ping", "data": []}
    talker.send_json("pong", None)
    deadline = time.monotonic() + 5
    closed = False
    while time.monotonic() < deadline and not closed:
        opcode, payload = silent.receive()
        closed = opcode == 8
        talker.send_json("pong", None)  # the talker keeps answering
    assert closed, "a client silent for 3 pings must be dropped"
    # the talker, answering its pings, stays
    for _ in range(6):
        talker.send_json("ping", None)
        assert talker.receive_json()["message"] == "pong"
        time.sleep(0.2)
    talker.close()
    assert server.saw("no answer to 3 pings")


def test_requests_are_logged_only_when_access_log_is_on(start_server):
    from testkit.rest_client import call

    quiet = start_server()
    loud = start_server(access_log="true")
    for server in (quiet, loud):
        assert call(server.http_url, "/rest-api/vod/find_all", method="GET")[0] == 404
    assert "GET /rest-api/vod/find_all HTTP/1.1" not in quiet.log()
    assert loud.saw('"GET /rest-api/vod/find_all HTTP/1.1" 404')
