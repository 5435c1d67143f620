"""The ``/rest-api/`` tree: JSON in, JSON out, CORS for pages on other origins.

Areas (such as ``vod``) are added as children by whoever owns them, each
operation an :class:`Operation`; any path nobody owns answers 404 with a
JSON body naming it. Errors become HTTP statuses here and nowhere else
(:data:`HTTP_STATUS`).
"""

from __future__ import annotations

import hmac
import json
from collections.abc import Callable
from http import HTTPStatus
from typing import Any

from twisted.internet.defer import maybeDeferred
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web import resource
from twisted.web.server import NOT_DONE_YET, Request

from wcs.errors import BadRequest, NameTaken, NotFound, WcsError
from wcs.streams.uri import MAX_URI

log = Logger()

CORS_HEADERS = {
    b"Access-Control-Allow-Origin": b"*",
    b"Access-Control-Allow-Methods": b"GET, POST, OPTIONS",
    b"Access-Control-Allow-Headers": b"Content-Type, Authorization",
    b"Access-Control-Max-Age": b"600",
}
#: Largest request body read (bytes).
MAX_BODY = 64 * 1024


#: The HTTP status of each kind of error; the first class in an error's MRO wins.
HTTP_STATUS: dict[type[WcsError], int] = {
    NotFound: 404,
    NameTaken: 409,
    WcsError: 400,
}


def http_status(error: WcsError) -> int:
    return next(HTTP_STATUS[kind] for kind in type(error).__mro__ if kind in HTTP_STATUS)


def write_json(request: Request, status: int, body: Any) -> bytes:
    """Set the status and headers of a JSON answer and return its bytes."""
    request.setResponseCode(status)
    request.setHeader(b"Content-Type", b"application/json; charset=utf-8")
    for name, value in CORS_HEADERS.items():
        request.setHeader(name, value)
    return json.dumps(body).encode("utf-8")


def error(request: Request, status: int, message: str) -> bytes:
    """A JSON error: ``{"status": 404, "error": "Not Found", "message": ...}``."""
    return write_json(request, status, {
        "status": status,
        "error": HTTPStatus(status).phrase,
        "message": message,
    })


def preflight(request: Request) -> bytes:
    """Answer a CORS preflight: no body, just the allowances."""
    request.setResponseCode(204)
    for name, value in CORS_HEADERS.items():
        request.setHeader(name, value)
    return b""


def read_body(request: Request, required: bool = True) -> dict[str, Any]:
    """The JSON object in the body; an empty body is ``{}`` when allowed."""
    content = request.content.read(MAX_BODY + 1) if request.content is not None else b""
    if len(content) > MAX_BODY:
        raise BadRequest(f"body larger than {MAX_BODY} bytes")
    if not content.strip():
        if required:
            raise BadRequest("a JSON object body is required")
        return {}
    kind = (request.getHeader("content-type") or "").split(";")[0].strip().lower()
    if kind and kind not in ("application/json", "text/plain"):
        raise BadRequest(f"Content-Type {kind} is not JSON")
    try:
        body = json.loads(content.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise BadRequest("body is not valid JSON") from None
    if not isinstance(body, dict):
        raise BadRequest("body must be a JSON object")
    return body


def text(body: dict[str, Any], key: str, required: bool = False) -> str | None:
    """A non-empty string field of the body."""
    value = body.get(key)
    if value is None:
        if required:
            raise BadRequest(f"'{key}' is required")
        return None
    if not isinstance(value, str) or not value:
        raise BadRequest(f"'{key}' must be a non-empty string")
    if len(value) > MAX_URI:
        raise BadRequest(f"'{key}' is longer than {MAX_URI} characters")
    return value


class Operation(resource.Resource):
    """One endpoint: checks access, reads the body, maps errors to JSON.

    ``handler`` returns ``(status, body)`` or a Deferred of it, or raises a
    :class:`~wcs.errors.WcsError`.
    """

    isLeaf = True

    def __init__(self, handler: Callable[[Request], Any], api_key: str,
                 get_allowed: bool = False) -> None:
        super().__init__()
        self.handler = handler
        self.api_key = api_key.encode("utf-8")
        self.get_allowed = get_allowed

    def render(self, request: Request) -> bytes:
        if request.method == b"OPTIONS":
            return preflight(request)
        if not self._authorised(request):
            request.setHeader(b"WWW-Authenticate", b'Bearer realm="wcsvod", Basic realm="wcsvod"')
            return error(request, 401, "missing or wrong REST API key")
        if request.method != b"POST" and not (self.get_allowed and request.method == b"GET"):
            request.setHeader(b"Allow", b"GET, POST, OPTIONS" if self.get_allowed
                              else b"POST, OPTIONS")
            return error(request, 405, f"{request.method.decode('ascii', 'replace')} is not "
                                       "allowed here")
        answer = maybeDeferred(self.handler, request)
        answer.addCallbacks(lambda result: write_json(request, *result), self._failed,
                            errbackArgs=(request,))
        written: list[bytes] = []
        answer.addCallback(written.append)
        if written:
            return written[0]
        answer.addCallback(lambda _: _finish(request, written[0]))
        return NOT_DONE_YET

    @staticmethod
    def _failed(failure: Failure, request: Request) -> bytes:
        if isinstance(failure.value, WcsError):
            return error(request, http_status(failure.value), failure.value.info)
        log.failure("REST {path} failed", failure,
                    path=request.path.decode("ascii", "replace"))
        return error(request, 500, f"internal error: {type(failure.value).__name__}")

    def _authorised(self, request: Request) -> bool:
        """The key as a Bearer token or a Basic password, compared in constant time."""
        if not self.api_key:
            return True
        bearer = (request.getHeader("authorization") or "").encode("utf-8", "replace")
        password = request.getPassword()
        return (hmac.compare_digest(bearer, b"Bearer " + self.api_key)
                | hmac.compare_digest(password, self.api_key))


def _finish(request: Request, body: bytes) -> None:
    """Complete an answer that waited (a remote source opening)."""
    if not request.finished and not request._disconnected:
        request.write(body)
        request.finish()


class JsonNotFound(resource.Resource):
    """Any path under ``/rest-api/`` that no area owns."""

    isLeaf = True

    def render(self, request: Request) -> bytes:
        if request.method == b"OPTIONS":
            return preflight(request)
        path = request.path.decode("utf-8", "replace")
        return error(request, 404, f"no such REST endpoint: {path}")


class RestRoot(resource.Resource):
    """``/rest-api/``: children are the API areas."""

    def getChild(self, path: bytes, request: Request) -> resource.Resource:
        return JsonNotFound()

    def render(self, request: Request) -> bytes:
        return JsonNotFound().render(request)
