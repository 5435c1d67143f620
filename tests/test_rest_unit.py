"""REST plumbing without a server: a bug becomes a 500, each error kind its status, the key."""

from __future__ import annotations

import base64
import io
import json
from http import HTTPStatus

import pytest
from twisted.internet.address import IPv4Address
from twisted.web.server import Request
from twisted.web.test.requesthelper import DummyChannel, DummyRequest

from wcs.errors import (
    BadRequest,
    InvalidName,
    LimitReached,
    NameTaken,
    NotFound,
    NotJson,
    SourceUnavailable,
    Unsupported,
    WrongFormat,
)
from wcs.web.rest import Access, Operation, http_status, read_body


def test_an_internal_failure_is_a_500_with_its_reason():
    def broken(request):
        raise KeyError("oops")

    request = DummyRequest([b""])
    request.method = b"POST"
    request.path = b"/rest-api/vod/startup"
    body = Operation(broken, Access()).render(request)
    assert request.responseCode == 500
    assert json.loads(body) == {"status": 500, "error": "Internal Server Error",
                                "message": "internal error: KeyError"}


@pytest.mark.parametrize("error, status", [
    (NotFound(), 404), (NotFound("no such stream"), 404),
    (NameTaken("a stream named 'x' already exists", "x"), 409),
    (InvalidName.because("'..' is not allowed"), 400), (WrongFormat("no moov box"), 400),
    (Unsupported("Unsupported stream scheme 'rtsp'"), 400),
    (SourceUnavailable("S3 endpoint unreachable"), 400), (BadRequest("bad"), 400),
])
def test_each_kind_of_error_has_one_status_and_says_its_info(error, status):
    def refusing(request):
        raise error

    request = post()
    body = json.loads(Operation(refusing, Access()).render(request))
    assert request.code == status == http_status(error)
    assert body == {"status": status, "error": HTTPStatus(status).phrase, "message": error.info}


def post(headers: dict[bytes, bytes] | None = None, peer: str = "127.0.0.1",
         body: bytes = b"", method: bytes = b"POST") -> Request:
    """A real ``twisted.web`` request (its Basic credentials parsing included)."""
    channel = DummyChannel()
    channel.transport.client = (peer, 40000)
    request = Request(channel, False)
    request.client = IPv4Address("TCP", peer, 40000)
    request.method = method
    request.path = b"/rest-api/vod/find_all"
    request.content = io.BytesIO(body)
    for name, value in (headers or {}).items():
        request.requestHeaders.setRawHeaders(name, [value])
    return request


@pytest.mark.parametrize("headers, allowed", [
    ({}, False),
    ({b"authorization": b"Bearer k3y-for-tests"}, True),
    ({b"authorization": b"Bearer k3y-for-test"}, False),
    ({b"authorization": b"bearer k3y-for-tests"}, False),
    ({b"authorization": b"Basic " + base64.b64encode(b"admin:k3y-for-tests")}, True),
    ({b"authorization": b"Basic " + base64.b64encode(b"k3y-for-tests:x")}, False),
    ({b"authorization": "Bearer k3y-for-tests\u00e9".encode()}, False),
])
def test_the_key_as_a_bearer_token_or_a_basic_password(headers, allowed):
    request = post(headers)
    Operation(lambda request: (200, []), Access(api_key="k3y-for-tests")).render(request)
    assert request.code == (200 if allowed else 401)


def test_without_a_key_only_this_machine_may_call():
    for peer, status in (("127.0.0.1", 200), ("127.8.9.1", 200), ("192.0.2.7", 403)):
        request = post(peer=peer)
        body = Operation(lambda request: (200, []), Access()).render(request)
        assert request.code == status, peer
    assert "rest_api_key" in json.loads(body)["message"]
    request = post({b"authorization": b"Bearer k3y-for-tests"}, peer="192.0.2.7")
    Operation(lambda request: (200, []), Access(api_key="k3y-for-tests")).render(request)
    assert request.code == 200


@pytest.mark.parametrize("host, status", [
    (b"localhost:8081", 200), (b"127.0.0.1:8081", 200), (b"[::1]:8081", 200),
    (b"api.localhost", 200),
    (b"rebound.example:8081", 403),  # another site's name pointed at 127.0.0.1
    (b"192.0.2.7", 403),
])
def test_without_a_key_the_host_asked_for_must_be_this_machine_too(host, status):
    request = post({b"host": host, b"origin": b"http://" + host})
    Operation(lambda request: (200, []), Access()).render(request)
    assert request.code == status, host


@pytest.mark.parametrize("origins, origin, status, allow", [
    ((), b"http://evil.example", 403, None),
    ((), b"http://127.0.0.1:8081", 200, None),  # the API's own origin
    (("https://app.example",), b"https://app.example", 200, b"https://app.example"),
    (("https://app.example",), b"https://other.example", 403, None),
    (("*",), b"https://any.example", 200, b"*"),
])
def test_pages_of_other_origins_only_when_listed(origins, origin, status, allow):
    request = post({b"origin": origin, b"host": b"127.0.0.1:8081"})
    body = Operation(lambda request: (200, []), Access(cors_origins=origins)).render(request)
    assert request.code == status
    assert request.responseHeaders.getRawHeaders(b"access-control-allow-origin",
                                                 [None])[0] == allow
    if status == 403:
        assert "rest_cors_origins" in json.loads(body)["message"]


def test_a_preflight_is_answered_only_for_a_listed_origin():
    access = Access(cors_origins=("https://app.example",))
    ok = post({b"origin": b"https://app.example", b"host": b"h:8081"}, method=b"OPTIONS")
    assert Operation(lambda r: (200, []), access).render(ok) == b"" and ok.code == 204
    assert ok.responseHeaders.getRawHeaders(b"access-control-allow-methods")
    bad = post({b"origin": b"https://evil.example", b"host": b"h:8081"}, method=b"OPTIONS")
    Operation(lambda r: (200, []), access).render(bad)
    assert bad.code == 403 and not bad.responseHeaders.hasHeader(b"access-control-allow-origin")


@pytest.mark.parametrize("kind", [None, b"text/plain", b"application/x-www-form-urlencoded",
                                  b"multipart/form-data; boundary=x"])
def test_only_json_bodies(kind):
    """What a page may POST to another origin without a preflight is refused (415)."""
    request = post({b"content-type": kind} if kind else {}, body=b'{"uri": "vod-live://a"}')
    with pytest.raises(NotJson):
        read_body(request)
    assert http_status(NotJson("x")) == 415
    request = post({b"content-type": b"application/json; charset=utf-8"}, body=b'{"a": 1}')
    assert read_body(request) == {"a": 1}


def test_a_limit_is_a_429_naming_its_key():
    error = LimitReached("broadcasts", "max_broadcasts", 3)
    assert http_status(error) == 429 and "max_broadcasts=3" in error.info
