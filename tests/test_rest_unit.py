"""REST plumbing without a server: a bug becomes a 500, each error kind its status, the key."""

from __future__ import annotations

import base64
import io
import json
from http import HTTPStatus

import pytest
from twisted.web.server import Request
from twisted.web.test.requesthelper import DummyChannel, DummyRequest

from wcs.errors import (
    BadRequest,
    InvalidName,
    NameTaken,
    NotFound,
    SourceUnavailable,
    Unsupported,
    WrongFormat,
)
from wcs.web.rest import Operation, http_status


def test_an_internal_failure_is_a_500_with_its_reason():
    def broken(request):
        raise KeyError("oops")

    request = DummyRequest([b""])
    request.method = b"POST"
    request.path = b"/rest-api/vod/startup"
    body = Operation(broken, api_key="").render(request)
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
    body = json.loads(Operation(refusing, api_key="").render(request))
    assert request.code == status == http_status(error)
    assert body == {"status": status, "error": HTTPStatus(status).phrase, "message": error.info}


def post(headers: dict[bytes, bytes] | None = None) -> Request:
    """A real ``twisted.web`` request (its Basic credentials parsing included)."""
    request = Request(DummyChannel(), False)
    request.method = b"POST"
    request.path = b"/rest-api/vod/find_all"
    request.content = io.BytesIO(b"")
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
    Operation(lambda request: (200, []), api_key="k3y-for-tests").render(request)
    assert request.code == (200 if allowed else 401)
