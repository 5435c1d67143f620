"""The signalling parser and the session's answers, without a socket."""

from __future__ import annotations

import json

import pytest

from wcs.signalling import messages
from wcs.signalling.messages import MessageError, StreamRequest, parse_frame
from wcs.signalling.session import Session


@pytest.mark.parametrize("payload, binary, info", [
    (b"{", False, "not JSON"),
    (b"\xc3\x28", False, "not UTF-8"),
    (b"42", False, "not a JSON object"),
    (b"null", False, "not a JSON object"),
    (b'{"message": 3}', False, "no 'message'"),
    (b'{"message": ""}', False, "no 'message'"),
    (b'{"message": "' + b"m" * 100 + b'"}', False, "no 'message'"),
    (b'{"message": "ping", "data": {}}', False, "'data' is not an array"),
    (b'{"message": "ping", "data": ["x"]}', False, "data[0] is not an object"),
    (b'{"message": "ping"}', True, "binary frames"),
    (b"[" * 100000, False, "not JSON"),
])
def test_malformed_frames(payload, binary, info):
    with pytest.raises(MessageError, match=None) as raised:
        parse_frame(payload, binary)
    assert info in raised.value.info


def test_well_formed_frames():
    assert parse_frame(b'{"message":"ping","data":[null]}', False).body == {}
    assert parse_frame(b'{"message":"ping"}', False).body == {}
    assert parse_frame(b'{"message":"x","data":[{"a":1},2]}', False).body == {"a": 1}


def test_stream_request_fields():
    request = StreamRequest.parse({
        "mediaSessionId": "id1", "name": "vod://a.mp4", "width": "640", "height": 480.0,
        "record": "true", "mediaProvider": "MSE", "sdp": "v=0", "extra": object(),
    })
    assert (request.width, request.height, request.record) == (640, 480, True)
    assert request.media_provider == "MSE"


@pytest.mark.parametrize("body, info, routed", [
    ({}, "'mediaSessionId' is missing", False),
    ({"mediaSessionId": 7}, "'mediaSessionId' must be a string", False),
    ({"mediaSessionId": "x" * 200}, "longer than", False),
    ({"mediaSessionId": "a", "name": ["x"]}, "'name' must be a string", True),
    ({"mediaSessionId": "a", "name": "n" * 5000}, "'name' is longer", True),
    ({"mediaSessionId": "a", "width": "wide"}, "'width' must be a number", True),
    ({"mediaSessionId": "a", "height": True}, "'height' must be a number", True),
    ({"mediaSessionId": "a", "width": 10**9}, "'width' is out of range", True),
    ({"mediaSessionId": "a", "width": float("inf")}, "'width' must be a finite number", True),
    ({"mediaSessionId": "a", "height": float("nan")}, "'height' must be a finite number", True),
    ({"mediaSessionId": "a", "record": "maybe"}, "'record' must be true or false", True),
    ({"mediaSessionId": "a", "mediaProvider": "Flash"}, "unknown mediaProvider", True),
    ({"mediaSessionId": "a", "sdp": 5}, "'sdp' must be a string", True),
    ({"mediaSessionId": "a", "transport": "SCTP"}, "'transport' must be UDP or TCP", True),
    ({"mediaSessionId": "a", "transport": 5}, "'transport' must be UDP or TCP", True),
    ({"mediaSessionId": "a", "transport": ["TCP"]}, "'transport' must be UDP or TCP", True),
])
def test_bad_stream_fields(body, info, routed):
    with pytest.raises(MessageError) as raised:
        StreamRequest.parse(body)
    assert info in raised.value.info
    assert (raised.value.media_session_id == "a") is routed


class FakeStreams:
    def __init__(self):
        self.calls = []
        self.requests = []
        self.answer = None  # what ``connect`` returns (None: allowed at once)

    def connect(self, session):
        from twisted.internet.defer import succeed

        self.calls.append(("connect", session.connection.get("custom")))
        return succeed(None) if self.answer is None else self.answer

    def play(self, session, request):
        self.calls.append(("play", request.media_session_id))
        self.requests.append(request)

    def publish(self, session, request):
        self.calls.append(("publish", request.media_session_id))

    def stop(self, session, request):
        self.calls.append(("stop", request.media_session_id))

    def snapshot(self, session, media_session_id, name):
        from twisted.internet.defer import fail, succeed

        from wcs.errors import NotFound

        return succeed(b"\x89PNG") if name == "cam" else fail(NotFound("Stream not found"))

    def available(self, name):
        return name == "live", "Available" if name == "live" else "Stream not found"

    def release(self, session):
        self.calls.append(("release", session.id))


class Harness:
    def __init__(self):
        self.sent: list[dict] = []
        self.closed = 0
        self.reasons: list[str] = []
        self.streams = FakeStreams()
        self.session = Session(lambda text: self.sent.append(json.loads(text)),
                               self.close, self.streams)

    def close(self, reason):
        self.closed += 1
        self.reasons.append(reason)

    def send(self, name, *data):
        self.session.receive(json.dumps({"message": name, "data": list(data)}).encode(), False)
        return self.sent.pop() if self.sent else None


@pytest.fixture
def h():
    harness = Harness()
    reply = harness.send("connection", {"appKey": "defaultApp", "clientVersion": "2.0",
                                        "webRTCMetricsServerDescription": {"x": 1}})
    assert reply["message"] == "getUserData"
    assert harness.streams.calls == [("connect", None)]
    harness.streams.calls.clear()
    return harness


def test_connection_answer(h):
    assert h.session.established
    assert h.session.connection["clientVersion"] == "2.0"


def test_a_refused_connection_is_told_why_and_closed():
    from twisted.internet.defer import fail

    from wcs.errors import AccessRefused

    harness = Harness()
    harness.streams.answer = fail(AccessRefused("the backend answered connect with HTTP 403"))
    reply = harness.send("connection", {"appKey": "defaultApp", "custom": {"login": "bob"}})
    assert reply == {"message": "fail", "data": [{"info": "Restricted access"}]}
    assert harness.closed == 1 and harness.reasons == ["Restricted access"]
    assert not harness.session.established
    assert harness.streams.calls == [("connect", {"login": "bob"})]


def test_a_connection_waiting_for_the_backend_holds_everything_else():
    from twisted.internet.defer import Deferred

    harness = Harness()
    waiting = Deferred()
    harness.streams.answer = waiting
    assert harness.send("connection", {"appKey": "defaultApp"}) is None
    assert not harness.session.established
    refused = harness.send("playStream", {"mediaSessionId": "m", "name": "x"})
    assert refused["message"] == "fail" and "before connection" in refused["data"][0]["info"]
    again = harness.send("connection", {"appKey": "defaultApp"})
    assert "connection sent twice" in again["data"][0]["info"]
    assert harness.send("ping")["message"] == "pong"
    waiting.callback(None)
    assert harness.session.established
    assert harness.sent.pop()["message"] == "getUserData"


def test_a_session_gone_before_the_backend_answered_gets_nothing():
    from twisted.internet.defer import Deferred

    harness = Harness()
    waiting = Deferred()
    harness.streams.answer = waiting
    harness.send("connection", {"appKey": "defaultApp"})
    harness.session.released("code 1006")
    waiting.callback(None)
    assert not harness.session.established and harness.sent == []


def test_get_user_data_content():
    sent = json.loads(messages.get_user_data({"a": 1, "webRTCMetricsServerDescription": 2},
                                             "tok", "sid"))
    assert sent == {"message": "getUserData", "data": [
        {"a": 1, "authToken": "tok", "sessionId": "sid", "status": "ESTABLISHED"}]}


def test_every_outgoing_frame_has_a_data_array():
    request = StreamRequest("m", "n")
    for text in (messages.ping(), messages.pong(), messages.stream_status(request, "PLAYING"),
                 messages.set_remote_sdp("m", "v=0"), messages.fail("x"),
                 messages.data_status(1, "ACCEPTED"), messages.available_stream("m", True, ""),
                 messages.stream_event("m", "snapshotFailed", {})):
        assert isinstance(json.loads(text)["data"], list)
    assert json.loads(messages.set_remote_sdp("m", "v=0"))["data"] == ["m", "v=0"]


def test_stream_messages_before_connection_are_refused():
    harness = Harness()
    reply = harness.send("playStream", {"mediaSessionId": "m", "name": "vod://a.mp4"})
    assert reply["message"] == "fail" and "before connection" in reply["data"][0]["info"]
    assert harness.streams.calls == []


def test_connection_twice(h):
    reply = h.send("connection", {})
    assert reply["message"] == "fail" and "twice" in reply["data"][0]["info"]


def test_ping_pong(h):
    assert h.send("ping", None) == {"message": "pong", "data": []}
    assert h.send("pong", None) is None


def test_stream_messages_reach_the_handler(h):
    h.send("playStream", {"mediaSessionId": "p", "name": "vod://a.mp4"})
    h.send("publishStream", {"mediaSessionId": "q", "name": "cam"})
    h.send("stopStream", {"mediaSessionId": "p"})
    h.send("unPublishStream", {"mediaSessionId": "q"})
    assert h.streams.calls == [("play", "p"), ("publish", "q"), ("stop", "p"), ("stop", "q")]


def test_bad_field_fails_that_stream(h):
    reply = h.send("playStream", {"mediaSessionId": "p", "name": 3})
    assert reply == {"message": "notifyStreamStatusEvent", "data": [
        {"mediaSessionId": "p", "status": "FAILED", "info": "'name' must be a string"}]}
    assert h.streams.calls == []


def test_available_stream_status_is_a_string(h):
    reply = h.send("availableStream", {"mediaSessionId": "m", "name": "live"})
    assert reply["data"][0] == {"id": "m", "status": "true", "info": "Available"}
    reply = h.send("availableStream", {"mediaSessionId": "m", "name": "x"})
    assert reply["data"][0]["status"] == "false"


def test_send_data_accepted(h):
    reply = h.send("sendData", {"operationId": "op1", "payload": {"a": 1}})
    assert reply == {"message": "DataStatusEvent",
                     "data": [{"operationId": "op1", "status": "ACCEPTED"}]}


def test_snapshot_answers_with_the_picture_or_why_not(h):
    reply = h.send("snapshot", {"mediaSessionId": "m", "name": "cam"})
    assert reply["message"] == "notifyStreamEvent"
    assert reply["data"][0] == {"mediaSessionId": "m", "type": "snapshotCompleted",
                                "payload": {"snapshot": "iVBORw=="}}
    reply = h.send("snapshot", {"mediaSessionId": "m2", "name": "nothing"})
    assert reply["data"][0] == {"mediaSessionId": "m2", "type": "snapshotFailed",
                                "payload": {"info": "Stream not found"}}
    reply = h.send("snapshot", {"name": "cam"})
    assert reply["message"] == "fail" and "mediaSessionId" in reply["data"][0]["info"]


def test_sip_and_unknown_messages(h):
    assert "SIP" in h.send("call", {"callId": "c"})["data"][0]["info"]
    assert h.send("somethingNew", {}) is None
    assert h.send("sendStreamEvent", {"mediaSessionId": "m", "type": "audioMuted"}) is None


def test_handler_crash_is_contained(h):
    def boom(session, request):
        raise RuntimeError("bug")
    h.streams.play = boom
    reply = h.send("playStream", {"mediaSessionId": "p", "name": "x"})
    assert reply["message"] == "fail" and "internal error" in reply["data"][0]["info"]
    assert h.send("ping", None)["message"] == "pong"


def test_oversized(h):
    h.session.oversized(500000, 1000)
    assert "500000 bytes discarded" in h.sent.pop()["data"][0]["info"]


def test_ping_timer_drops_silent_clients(h):
    for _ in range(3):
        h.session.tick(3)
    assert [m["message"] for m in h.sent] == ["ping"] * 3 and h.closed == 0
    h.session.tick(3)
    assert h.closed == 1


def test_any_message_resets_the_ping_counter(h):
    h.session.tick(2)
    h.session.tick(2)
    h.send("pong", None)
    h.session.tick(2)
    assert h.closed == 0


def test_release_once(h):
    h.session.released("gone")
    h.session.released("again")
    assert h.streams.calls == [("release", h.session.id)]
    h.session.send(messages.ping())
    assert h.sent == []


def test_each_close_names_its_cause(h):
    for _ in range(3):
        h.session.tick(2)
    assert h.reasons == ["ping timeout"]
    stranger = Harness()
    stranger.session.receive(json.dumps({"message": "connectMediaTransport",
                                         "data": [{"authToken": "nobody's"}]}).encode(), False)
    assert stranger.reasons == ["unknown media token"]


def test_fields_that_cannot_be_honoured_are_logged_once_per_session(h):
    from twisted.logger import globalLogPublisher

    seen: list[str] = []

    def observer(event):
        if "ignored" in (event.get("log_format") or ""):
            seen.append(f"{event['key']}: {event['why']}")

    globalLogPublisher.addObserver(observer)
    try:
        body = {"mediaSessionId": "m1", "name": "vod://a.mp4", "sdp": "v=0",
                "transport": "TCP", "bitrate": 500, "quality": 0, "cvoExtension": True,
                "width": "320", "height": 240}
        h.send("playStream", body)
        h.send("playStream", {**body, "mediaSessionId": "m2"})  # the same again: no more
        h.send("playStream", {"mediaSessionId": "m3", "name": "x", "transport": "UDP"})
    finally:
        globalLogPublisher.removeObserver(observer)
    assert sorted(seen) == sorted([
        "bitrate: a file's stream is sent at its own bitrate",
        "cvoExtension: video orientation (CVO) is not sent",
    ])  # width and height are honoured (a rendition at that size), and transport (ICE-TCP)
    assert [call[0] for call in h.streams.calls].count("play") == 3  # played all the same
    transports = [request.transport for request in h.streams.requests]
    assert transports == ["TCP", "TCP", "UDP"]
