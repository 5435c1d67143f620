"""The ``/rest-api/`` tree: JSON in, JSON out, safe by default.

Areas (such as ``vod``) are added as children by whoever owns them, each
operation an :class:`Operation`; any path nobody owns answers 404 with a
JSON body naming it. Errors become HTTP statuses here and nowhere else
(:data:`HTTP_STATUS`).

Who may call (:class:`Access`): with no ``rest_api_key`` only callers on
this machine (loopback); with one, whoever sends it. Web pages of other
origins only when ``rest_cors_origins`` lists them: their ``Origin`` is
refused otherwise, and bodies must be ``application/json``, which no page
can send to another origin without asking first (a CORS preflight).
"""

from __future__ import annotations

import hmac
import ipaddress
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any, TypeVar

from twisted.internet.defer import Deferred, maybeDeferred
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web import resource
from twisted.web.server import NOT_DONE_YET, Request

from wcs.errors import (
    AccessRefused,
    BadRequest,
    ClusterUnavailable,
    Conflict,
    LimitReached,
    NameTaken,
    NotFound,
    NotJson,
    PreconditionFailed,
    Unauthenticated,
    Unprocessable,
    WcsError,
    WrongContentType,
)
from wcs.metrics import METERS
from wcs.streams.uri import MAX_URI

log = Logger()
T = TypeVar("T")

CORS_HEADERS = {
    b"Access-Control-Allow-Methods": b"GET, POST, OPTIONS",
    b"Access-Control-Allow-Headers": b"Content-Type, Authorization",
    b"Access-Control-Max-Age": b"600",
}
#: Largest request body read (bytes).
MAX_BODY = 64 * 1024


#: The HTTP status of each kind of error; the first class in an error's MRO wins.
HTTP_STATUS: dict[type[WcsError], int] = {
    Unauthenticated: 401,
    AccessRefused: 403,
    NotFound: 404,
    NameTaken: 409,
    Conflict: 409,
    PreconditionFailed: 412,
    WrongContentType: 415,
    Unprocessable: 422,
    LimitReached: 429,
    ClusterUnavailable: 503,
    WcsError: 400,
}


@dataclass(frozen=True)
class Access:
    """Who may call the API: the key (empty: loopback callers only) and the
    web origins whose pages may (``*`` for any)."""

    api_key: str = field(default="", repr=False)
    cors_origins: tuple[str, ...] = ()

    def allows_origin(self, request: Request) -> bool:
        """No ``Origin`` (not a browser), the API's own origin, or a listed one."""
        origin = (request.getHeader("origin") or "").lower().rstrip("/")
        if not origin:
            return True
        scheme = "https" if request.isSecure() else "http"
        own = f"{scheme}://{(request.getHeader('host') or '').lower()}"
        return origin == own or "*" in self.cors_origins or origin in self.cors_origins

    def cross_origin(self, request: Request) -> None:
        """Set the CORS headers when the request's origin is a listed one."""
        origin = request.getHeader("origin")
        if not origin or not self.cors_origins:
            return
        if "*" in self.cors_origins:
            request.setHeader(b"Access-Control-Allow-Origin", b"*")
        elif origin.lower().rstrip("/") in self.cors_origins:
            request.setHeader(b"Access-Control-Allow-Origin", origin.encode("utf-8"))
            request.setHeader(b"Vary", b"Origin")
        else:
            return
        for name, value in CORS_HEADERS.items():
            request.setHeader(name, value)

    def refusal(self, request: Request) -> bytes | None:
        """The answer for a caller who may not call, or None."""
        self.cross_origin(request)
        if not self.allows_origin(request):
            origin = request.getHeader("origin")
            return error(
                request,
                403,
                f"calls from pages of {origin} are not allowed "
                "(list the origin in rest_cors_origins)",
            )
        if request.method == b"OPTIONS":
            request.setResponseCode(204)
            return b""
        if not self.api_key and not (_loopback(request) and _local_host(request)):
            return error(
                request,
                403,
                "the REST API answers only this machine (as "
                "localhost or a loopback address) until "
                "rest_api_key is set",
            )
        return None

    def guard(self, request: Request) -> bytes | None:
        """:meth:`refusal`, then the key: the answer for a caller who may not
        call (403, 204 for a preflight, 401 without the key), or None."""
        refused = self.refusal(request)
        if refused is not None:
            return refused
        if not key_given(self.api_key.encode("utf-8"), request):
            request.setHeader(b"WWW-Authenticate", b'Bearer realm="wcsvod", Basic realm="wcsvod"')
            return error(request, 401, "missing or wrong REST API key")
        return None


def _local_host(request: Request) -> bool:
    """Whether the ``Host`` the caller asked for is this machine by name: a page
    of another site whose name was made to point at 127.0.0.1 (DNS rebinding)
    asks for its own name, and is same-origin with itself."""
    host = (request.getHeader("host") or "localhost").lower()
    name = host[1:].split("]")[0] if host.startswith("[") else host.rsplit(":", 1)[0]
    if name == "localhost" or name.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def _loopback(request: Request) -> bool:
    address = request.getClientAddress()
    host = getattr(address, "host", None)
    if host is None:  # a UNIX socket, or a test's request: this machine
        return True
    try:
        return ipaddress.ip_address(host.removeprefix("::ffff:")).is_loopback
    except ValueError:
        return False


def http_status(error: WcsError) -> int:
    return next(HTTP_STATUS[kind] for kind in type(error).__mro__ if kind in HTTP_STATUS)


def write_json(request: Request, status: int, body: Any) -> bytes:
    """Set the status and headers of a JSON answer and return its bytes."""
    request.setResponseCode(status)
    request.setHeader(b"Content-Type", b"application/json; charset=utf-8")
    return json.dumps(body).encode("utf-8")


def error(request: Request, status: int, message: str) -> bytes:
    """A JSON error: ``{"status": 404, "error": "Not Found", "message": ...}``."""
    return write_json(
        request,
        status,
        {
            "status": status,
            "error": HTTPStatus(status).phrase,
            "message": message,
        },
    )


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
    if kind != "application/json":
        raise NotJson(
            f"the body must be sent as Content-Type application/json, not {kind or 'none'}"
        )
    try:
        body = json.loads(content.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise BadRequest("body is not valid JSON") from None
    if not isinstance(body, dict):
        raise BadRequest("body must be a JSON object")
    return body


def some(found: list[T], none: str) -> list[T]:
    """What a lookup found; none at all is 404 saying ``none``."""
    if not found:
        raise NotFound(none)
    return found


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

    def __init__(
        self, handler: Callable[[Request], Any], access: Access, get_allowed: bool = False
    ) -> None:
        super().__init__()
        self.handler = handler
        self.access = access
        self.get_allowed = get_allowed

    def render(self, request: Request) -> bytes | int:
        counted(
            request,
            "/" + "/".join(part.decode("ascii", "replace") for part in request.prepath or ()),
        )
        refused = self.access.guard(request)
        if refused is not None:
            return refused
        if request.method != b"POST" and not (self.get_allowed and request.method == b"GET"):
            request.setHeader(
                b"Allow", b"GET, POST, OPTIONS" if self.get_allowed else b"POST, OPTIONS"
            )
            return error(
                request, 405, f"{request.method.decode('ascii', 'replace')} is not allowed here"
            )
        answer = maybeDeferred(self.handler, request)
        answer.addCallbacks(
            lambda result: write_json(request, *result), self._failed, errbackArgs=(request,)
        )
        return respond(request, answer)

    @staticmethod
    def _failed(failure: Failure, request: Request) -> bytes:
        if isinstance(failure.value, WcsError):
            return error(request, http_status(failure.value), failure.value.detail)
        log.failure("REST {path} failed", failure, path=request.path.decode("ascii", "replace"))
        return error(request, 500, f"internal error: {type(failure.value).__name__}")


def key_given(api_key: bytes, request: Request) -> bool:
    """Whether the request carries the key (if there is one) as a Bearer token
    or a Basic password, compared in constant time."""
    if not api_key:
        return True
    bearer = (request.getHeader("authorization") or "").encode("utf-8", "replace")
    password = request.getPassword()
    return hmac.compare_digest(bearer, b"Bearer " + api_key) | hmac.compare_digest(
        password, api_key
    )


def counted(request: Request, route: str) -> None:
    """Count the request's answer by route and status once it is sent."""
    request.notifyFinish().addBoth(lambda _: METERS.answered(route, request.code))


def respond(request: Request, answer: Deferred[bytes]) -> bytes | int:
    """What ``render`` returns for an answer that may come later (a remote
    source opening, a peer answering): its bytes now, or NOT_DONE_YET and the
    request completed when they come (unless the caller left)."""
    written: list[bytes] = []
    answer.addCallback(written.append)
    if written:
        return written[0]
    answer.addCallback(lambda _: _finish(request, written[0]))
    return NOT_DONE_YET


def _finish(request: Request, body: bytes) -> None:
    """Complete an answer that waited."""
    if not request.finished and not request._disconnected:
        request.write(body)
        request.finish()


class JsonNotFound(resource.Resource):
    """Any path under ``/rest-api/`` that no area owns."""

    isLeaf = True

    def __init__(self, access: Access) -> None:
        super().__init__()
        self.access = access

    def render(self, request: Request) -> bytes | int:
        counted(request, "unknown")
        refused = self.access.refusal(request)
        if refused is not None:
            return refused
        path = request.path.decode("utf-8", "replace")
        return error(request, 404, f"no such REST endpoint: {path}")


class RestArea(resource.Resource):
    """One area of the API (``vod``, ``stream``...): its operations by name,
    and a JSON 404 naming any other path."""

    def __init__(self, access: Access) -> None:
        super().__init__()
        self.access = access

    def operation(
        self, name: str, handler: Callable[[Request], Any], get_allowed: bool = False
    ) -> None:
        self.putChild(name.encode("ascii"), Operation(handler, self.access, get_allowed))

    def getChild(self, path: bytes, request: Request) -> resource.Resource:
        return JsonNotFound(self.access)


class RestRoot(resource.Resource):
    """``/rest-api/``: children are the API areas."""

    def __init__(self, access: Access) -> None:
        super().__init__()
        self.access = access

    def getChild(self, path: bytes, request: Request) -> resource.Resource:
        return JsonNotFound(self.access)

    def render(self, request: Request) -> bytes | int:
        return JsonNotFound(self.access).render(request)
