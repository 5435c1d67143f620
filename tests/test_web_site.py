"""The web port's tree and its HTTP guards without a server: what is served and
what never is (paths out of a folder, hidden files, listings), records and their
access check, the range cap, 413 before a large body is read, and the deadline
for a whole request, on a fake clock."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from twisted.internet.address import IPv4Address
from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.error import ConnectionDone
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure
from twisted.web import resource, server

from tests.webcalls import call
from wcs.access.gate import Gate
from wcs.config import Settings
from wcs.errors import AccessRefused
from wcs.web.rest import MAX_BODY
from wcs.web.site import (
    MAX_QUERY_FIELDS,
    MAX_RANGES,
    STATIC_DIR,
    CappedRequest,
    Channel,
    QuietSite,
    build_root,
    build_site,
)

RECORD = b"\x00\x00\x00\x18ftypisom" + bytes(range(256)) * 4


@pytest.fixture
def folders(tmp_path: Path) -> dict[str, Path]:
    """A media folder with a record and what must never be served beside it, an SDK
    folder, and a secret outside both."""
    media, sdk = tmp_path / "media", tmp_path / "sdk"
    media.mkdir()
    sdk.mkdir()
    (tmp_path / "secret.mp4").write_bytes(b"not yours")
    (tmp_path / "secret.txt").write_text("not yours")
    (media / "rec.mp4").write_bytes(RECORD)
    (media / ".rec-in-progress.mp4").write_bytes(b"partial")
    (media / "notes.txt").write_text("text")
    (media / "folder.mp4").mkdir()
    (media / "sub").mkdir()
    (media / "sub" / "inner.mp4").write_bytes(b"inner")
    (media / "escape.mp4").symlink_to(tmp_path / "secret.mp4")
    (media / "alias.mp4").symlink_to(media / "rec.mp4")
    (sdk / "examples").mkdir()
    (sdk / "examples" / "player.html").write_text("<p>player</p>")
    (sdk / ".env").write_text("KEY=1")
    (sdk / "out").symlink_to(tmp_path)
    (sdk / "flashphoner.js").write_text("var Flashphoner = {};")
    return {"media": media, "sdk": sdk, "top": tmp_path}


def site_root(folders: dict[str, Path], gate: Any = None, **settings: Any) -> resource.Resource:
    settings.setdefault("media_dir", folders["media"])
    settings.setdefault("websdk_dir", folders["sdk"])
    root, _ = build_root(Settings(**settings), *([gate] if gate is not None else []))
    return root


def get(root: resource.Resource, path: str, **kwargs: Any):
    return call(root, path, method=b"GET", **kwargs)


def test_config_json_tells_the_pages_the_ports_and_whether_the_sdk_is_served(folders):
    answer = get(site_root(folders, ws_port=9001, hls_port=0), "/config.json")
    assert answer.code == 200 and answer.header(b"content-type") == b"application/json"
    assert answer.json() == {
        "wsPort": 9001,
        "wssPort": 8443,
        "hlsPort": 0,
        "hlsSslPort": 8445,
        "sdk": True,
        "iceServers": [],
    }
    without = get(site_root(folders, websdk_dir=None), "/config.json").json()
    assert without["sdk"] is False
    assert get(site_root(folders, websdk_dir=None), "/client2/flashphoner.js").code == 404


def test_config_json_hands_each_load_a_fresh_expiring_turn_credential(folders):
    import time

    from wcs.access.turn import credential

    root = site_root(folders, turn_url=("turn:127.0.0.1:3478?transport=tcp",),
                     turn_secret="s3cret", turn_ttl=600)
    answer = get(root, "/config.json")
    assert answer.header(b"cache-control") == b"no-store"
    [server] = answer.json()["iceServers"]
    assert server["urls"] == ["turn:127.0.0.1:3478?transport=tcp"]
    expires = int(server["username"].split(":")[0])
    assert abs(expires - (time.time() + 600)) < 5
    assert server["credential"] == credential("s3cret", expires)[1]


def test_the_console_and_the_sdk_are_served(folders):
    index = get(site_root(folders), "/")
    assert index.code == 200 and index.body == (STATIC_DIR / "index.html").read_bytes()
    sdk = get(site_root(folders), "/client2/flashphoner.js")
    assert sdk.code == 200 and sdk.body == b"var Flashphoner = {};"
    page = get(site_root(folders), "/client2/examples/player.html")
    assert page.code == 200 and page.body == b"<p>player</p>"


@pytest.mark.parametrize(
    "path",
    [
        "/client2/../secret.txt",
        "/client2/%2e%2e/secret.txt",
        "/client2/examples/%2e%2e/%2e%2e/secret.txt",
        "/client2/..%2fsecret.txt",
        "/client2/.env",
        "/client2/%2eenv",
        "/client2/flashphoner.js%00.png",
        "/client2/out/secret.txt",  # a symlink out of the folder
        "/client2/examples/",  # no listing
        "/../../etc/passwd",
        "/%2e%2e/%2e%2e/etc/passwd",
    ],
)
def test_nothing_outside_a_folder_nor_hidden_nor_a_listing(folders, path):
    answer = get(site_root(folders), path)
    assert answer.code == 404, (path, answer.body[:80])
    assert b"not yours" not in answer.body and b"KEY=1" not in answer.body
    assert b"player.html" not in answer.body


def test_a_range_header_names_at_most_eight_ranges(folders):
    ranges = ",".join(f"{n}-{n}" for n in range(MAX_RANGES))
    ok = get(
        site_root(folders),
        "/client/records/rec.mp4",
        headers={b"range": b"bytes=" + ranges.encode()},
    )
    assert ok.code == 206 and b"multipart/byteranges" in ok.header(b"content-type")
    many = ranges + f",{MAX_RANGES}-{MAX_RANGES}"
    refused = get(
        site_root(folders), "/client/records/rec.mp4", headers={b"range": b"bytes=" + many.encode()}
    )
    assert refused.code == 416 and refused.body == b"at most 8 ranges in one request\n"
    one = get(site_root(folders), "/client/records/rec.mp4", headers={b"range": b"bytes=4-11"})
    assert one.code == 206 and one.body == RECORD[4:12]


def test_records_are_the_media_folder_s_finished_mp4_files_only(folders):
    root = site_root(folders)
    record = get(root, "/client/records/rec.mp4")
    assert record.code == 200 and record.body == RECORD
    assert get(root, "/client/records/alias.mp4").body == RECORD  # a link inside is fine
    for path in (
        "/client/records/.rec-in-progress.mp4",
        "/client/records/notes.txt",
        "/client/records/folder.mp4",
        "/client/records/sub/inner.mp4",
        "/client/records/sub%2Finner.mp4",
        "/client/records/escape.mp4",
        "/client/records/..%2Fsecret.mp4",
        "/client/records/../secret.mp4",
        "/client/records/",
        "/client/records/absent.mp4",
        "/client/records/rec.mp4%00",
    ):
        answer = get(root, path)
        assert answer.code == 404, path
        assert b"not yours" not in answer.body and answer.body != b"inner"


class FakeGate:
    """The access rules as the records see them: a Deferred per download."""

    guarded = True
    node = "node-7"

    def __init__(self, answer: Deferred[None] | None = None) -> None:
        self.answer = answer if answer is not None else succeed(None)
        self.asked: list[tuple[str, dict[str, str], dict[str, Any]]] = []

    def record(self, name: str, query: dict[str, str], body: dict[str, Any]) -> Deferred[None]:
        self.asked.append((name, query, body))
        return self.answer


def test_a_guarded_record_asks_the_rules_with_the_hook_s_fields(folders):
    gate = FakeGate()
    answer = get(
        site_root(folders, gate), "/client/records/rec.mp4?token=abc&user=u1", peer="198.51.100.4"
    )
    assert answer.code == 200 and answer.body == RECORD
    assert gate.asked == [
        (
            "rec.mp4",
            {"token": "abc", "user": "u1"},
            {
                "nodeId": "node-7",
                "name": "rec.mp4",
                "published": False,
                "record": True,
                "status": "NEW",
                "mediaProvider": "HTTP",
                "custom": {"token": "abc", "user": "u1"},
                "clientAddress": "198.51.100.4",
            },
        )
    ]


def test_a_record_s_query_handed_to_the_rules_is_bounded(folders):
    gate = FakeGate()
    query = "&".join(f"k{n}={'v' * 5000}" for n in range(100))
    assert get(site_root(folders, gate), "/client/records/rec.mp4?" + query).code == 200
    [(_, custom, _)] = gate.asked
    assert len(custom) == MAX_QUERY_FIELDS
    assert all(len(value) == 1024 for value in custom.values())


def test_a_refused_download_is_403_with_why_and_not_a_byte_of_the_file(folders):
    answer = get(
        site_root(folders, FakeGate(fail(AccessRefused("token expired")))),
        "/client/records/rec.mp4",
    )
    assert answer.code == 403
    assert answer.json()["message"] == "Restricted access: token expired"
    assert RECORD[:8] not in answer.body
    broken = get(site_root(folders, FakeGate(fail(KeyError("bug")))), "/client/records/rec.mp4")
    assert broken.code == 500 and broken.json()["message"] == "internal error"


def test_a_guarded_record_answers_when_the_rules_do_and_never_a_caller_who_left(folders):
    waiting: Deferred[None] = Deferred()
    answer = get(site_root(folders, FakeGate(waiting)), "/client/records/rec.mp4")
    assert not answer.finished
    waiting.callback(None)
    assert answer.finished and answer.body == RECORD
    late: Deferred[None] = Deferred()
    gone = get(site_root(folders, FakeGate(late)), "/client/records/rec.mp4")
    gone.connectionLost(Failure(ConnectionDone()))
    late.callback(None)
    assert gone.body == b""


def test_a_guarded_record_keeps_head_and_ranges(folders):
    head = call(site_root(folders, FakeGate()), "/client/records/rec.mp4", method=b"HEAD")
    assert head.code == 200 and head.finished
    assert head.header(b"content-length") == str(len(RECORD)).encode()
    part = get(
        site_root(folders, FakeGate()), "/client/records/rec.mp4", headers={b"range": b"bytes=0-3"}
    )
    assert part.code == 206 and part.body == RECORD[:4]


def test_with_a_play_token_rule_a_record_needs_its_own_token(folders):
    clock = Clock()
    clock.advance(1000)
    gate = Gate(token_secret="s3cret", clock=clock)
    root = site_root(folders, gate)
    refused = get(root, "/client/records/rec.mp4")
    assert refused.code == 403 and refused.json()["message"] == "Restricted access: no token"
    stream_token = gate.sign("rec.mp4", 60)  # a stream's token does not open a record
    assert get(root, f"/client/records/rec.mp4?token={stream_token}").code == 403
    token = gate.sign("records/rec.mp4", 60)
    assert get(root, f"/client/records/rec.mp4?token={token}").body == RECORD
    assert get(root, "/client/records/notes.txt?token=" + token).code == 404


def connected(
    root: resource.Resource | None = None, idle: int = 10, access_log: bool = False
) -> tuple[Channel, StringTransport, Clock]:
    """The web port's protocol on a string transport, its clock a fake one."""
    site = build_site(root or echo_root(), idle, access_log)
    clock = Clock()
    site.reactor = clock
    channel = site.buildProtocol(IPv4Address("TCP", "127.0.0.1", 40000))
    transport = StringTransport(peerAddress=IPv4Address("TCP", "127.0.0.1", 40000))
    channel.makeConnection(transport)
    return channel, transport, clock


class Echo(resource.Resource):
    """Answers with the length of the body it was sent."""

    isLeaf = True
    bodies: list[int] = []

    def render_POST(self, request: server.Request) -> bytes:
        data = request.content.read()
        Echo.bodies.append(len(data))
        return b"got %d" % len(data)

    def render_GET(self, request: server.Request) -> bytes:
        return b"hello"


def echo_root() -> resource.Resource:
    root = resource.Resource()
    root.putChild(b"echo", Echo())
    return root


def test_the_site_s_parts():
    quiet = build_site(echo_root(), 10)
    assert type(quiet) is QuietSite and quiet.protocol is Channel
    assert quiet.requestFactory is CappedRequest and quiet.displayTracebacks is False
    assert quiet.timeOut == 10
    logged = build_site(echo_root(), 10, access_log=True)
    assert type(logged) is server.Site and logged.protocol is Channel


def test_a_body_declared_too_large_is_413_before_it_is_read():
    Echo.bodies.clear()
    channel, transport, _ = connected()
    channel.dataReceived(
        b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Content-Length: %d\r\n\r\n" % (MAX_BODY + 1)
    )
    head, _, body = transport.value().partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 413 Content Too Large")
    assert b"Connection: close" in head
    assert json.loads(body) == {
        "status": 413,
        "error": "Content Too Large",
        "message": f"request bodies are limited to {MAX_BODY} bytes",
    }
    assert transport.disconnecting
    channel.dataReceived(b"x" * 1000)  # what still comes is dropped, never answered
    assert Echo.bodies == [] and transport.value().count(b"HTTP/1.1") == 1


def test_a_chunked_body_is_refused_as_soon_as_it_grows_too_large():
    Echo.bodies.clear()
    channel, transport, _ = connected()
    channel.dataReceived(b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n")
    chunk = b"a" * 16384
    for _ in range(MAX_BODY // len(chunk)):
        channel.dataReceived(b"%x\r\n%s\r\n" % (len(chunk), chunk))
    assert transport.value() == b"" and not transport.disconnecting  # exactly the limit so far
    channel.dataReceived(b"1\r\nb\r\n")
    assert transport.value().startswith(b"HTTP/1.1 413 ") and transport.disconnecting
    channel.dataReceived(b"0\r\n\r\n")
    assert Echo.bodies == [] and transport.value().count(b"HTTP/1.1") == 1


def test_a_body_at_the_limit_is_read_whole():
    Echo.bodies.clear()
    channel, transport, _ = connected()
    channel.dataReceived(
        b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % MAX_BODY + b"z" * MAX_BODY
    )
    assert transport.value().startswith(b"HTTP/1.1 200 OK")
    assert transport.value().endswith(b"got %d" % MAX_BODY) and Echo.bodies == [MAX_BODY]


def test_a_request_trickled_in_is_closed_408_at_the_deadline():
    """Twisted's own timeout restarts at every byte: a byte every few seconds would
    hold the connection for ever."""
    channel, transport, clock = connected(idle=10)
    for byte in b"GET /echo HTTP/1.1\r\nHo":
        clock.advance(0.4)
        channel.dataReceived(bytes([byte]))
        if clock.seconds() >= 10:
            break
    assert transport.value() == b""
    clock.advance(10 - clock.seconds() - 0.01)
    assert transport.value() == b"" and not transport.disconnecting
    clock.advance(0.02)
    assert transport.value() == (
        b"HTTP/1.1 408 Request Timeout\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"
    )
    assert transport.disconnecting


def test_each_request_of_a_kept_connection_gets_the_whole_deadline():
    channel, transport, clock = connected(idle=10)
    clock.advance(9)
    channel.dataReceived(b"GET /echo HTTP/1.1\r\nHost: x\r\n\r\n")
    assert transport.value().startswith(b"HTTP/1.1 200 OK") and transport.value().endswith(b"hello")
    transport.clear()
    clock.advance(9)  # 18 s after the connection was made: the second request's 9th
    channel.dataReceived(b"GET /echo HTTP/1.1\r\nHost: x\r\n\r\n")
    assert transport.value().startswith(b"HTTP/1.1 200 OK") and not transport.disconnecting
    transport.clear()
    clock.advance(10)
    assert transport.value().startswith(b"HTTP/1.1 408") and transport.disconnecting


def test_a_closed_connection_leaves_no_deadline_behind():
    channel, transport, clock = connected(idle=10)
    channel.dataReceived(b"GET /ec")
    channel.connectionLost(Failure(ConnectionDone()))
    assert [each for each in clock.getDelayedCalls() if each.active()] == []
    clock.advance(60)
    assert transport.value() == b""
