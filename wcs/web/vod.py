"""``/rest-api/vod/``: startup, find, find_all and terminate, as the WCS docs describe.

Every answer is JSON; every refusal says what was wrong. The area only
talks to the stream registry.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from twisted.internet.defer import maybeDeferred
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web import resource
from twisted.web.server import NOT_DONE_YET, Request

from wcs.media.errors import FILE_NOT_FOUND, MediaError
from wcs.streams.registry import NameTaken, StreamRegistry, VodStream
from wcs.web.rest import JsonNotFound, error, preflight, write_json

log = Logger()

#: Largest request body read (bytes).
MAX_BODY = 64 * 1024
MAX_NAME = 256


class BadRequest(Exception):
    """A request that cannot be served; ``status`` and a message for the caller."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def item(stream: VodStream) -> dict[str, Any]:
    """One stream as WCS lists it, plus its number of viewers."""
    return {
        "localMediaSessionId": stream.id,
        "localStreamName": stream.name,
        "uri": str(stream.uri),
        "status": stream.status,
        "hasAudio": stream.info.audio is not None,
        "hasVideo": stream.info.video is not None,
        "record": False,
        "loop": stream.loop,
        "viewers": stream.viewers,
    }


def read_body(request: Request, required: bool = True) -> dict[str, Any]:
    """The JSON object in the body; an empty body is ``{}`` when allowed."""
    content = request.content.read(MAX_BODY + 1) if request.content is not None else b""
    if len(content) > MAX_BODY:
        raise BadRequest(400, f"body larger than {MAX_BODY} bytes")
    if not content.strip():
        if required:
            raise BadRequest(400, "a JSON object body is required")
        return {}
    kind = (request.getHeader("content-type") or "").split(";")[0].strip().lower()
    if kind and kind not in ("application/json", "text/plain"):
        raise BadRequest(400, f"Content-Type {kind} is not JSON")
    try:
        body = json.loads(content.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise BadRequest(400, "body is not valid JSON") from None
    if not isinstance(body, dict):
        raise BadRequest(400, "body must be a JSON object")
    return body


def text(body: dict[str, Any], key: str, required: bool = False) -> str | None:
    value = body.get(key)
    if value is None:
        if required:
            raise BadRequest(400, f"'{key}' is required")
        return None
    if not isinstance(value, str) or not value:
        raise BadRequest(400, f"'{key}' must be a non-empty string")
    if len(value) > 1024:
        raise BadRequest(400, f"'{key}' is longer than 1024 characters")
    return value


def stream_name(body: dict[str, Any]) -> str:
    name = text(body, "localStreamName", required=True)
    assert name is not None
    if len(name) > MAX_NAME or "://" in name or not name.isprintable() or name != name.strip():
        raise BadRequest(400, "'localStreamName' must be printable, without '://' or "
                              f"outer spaces, at most {MAX_NAME} characters")
    return name


def _finish(request: Request, body: bytes) -> None:
    """Complete an answer that waited (a remote source opening)."""
    if not request.finished and not request._disconnected:
        request.write(body)
        request.finish()


class Operation(resource.Resource):
    """One endpoint: checks access, reads the body, maps errors to JSON."""

    isLeaf = True

    def __init__(self, handler: Callable[[Request], Any], api_key: str,
                 get_allowed: bool = False) -> None:
        super().__init__()
        self.handler = handler
        self.api_key = api_key
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
        if isinstance(failure.value, BadRequest):
            return error(request, failure.value.status, failure.value.message)
        log.failure("REST {path} failed", failure,
                    path=request.path.decode("ascii", "replace"))
        return error(request, 500, f"internal error: {type(failure.value).__name__}")

    def _authorised(self, request: Request) -> bool:
        if not self.api_key:
            return True
        if request.getHeader("authorization") == f"Bearer {self.api_key}":
            return True
        return request.getPassword().decode("utf-8", "replace") == self.api_key


class VodApi(resource.Resource):
    """The ``vod`` area of the REST API."""

    def __init__(self, registry: StreamRegistry, api_key: str = "") -> None:
        super().__init__()
        self.registry = registry
        self.putChild(b"startup", Operation(self.startup, api_key))
        self.putChild(b"find", Operation(self.find, api_key))
        self.putChild(b"find_all", Operation(self.find_all, api_key, get_allowed=True))
        self.putChild(b"terminate", Operation(self.terminate, api_key))

    def getChild(self, path: bytes, request: Request) -> resource.Resource:
        return JsonNotFound()

    def startup(self, request: Request) -> tuple[int, Any]:
        body = read_body(request)
        uri = text(body, "uri", required=True)
        name = stream_name(body)
        loop = body.get("loop")
        if loop is not None and not isinstance(loop, bool):
            raise BadRequest(400, "'loop' must be true or false")
        assert uri is not None
        if not uri.startswith("vod-live://"):
            raise BadRequest(400, "startup only creates live VOD: 'uri' must be vod-live://...")

        def started(stream: VodStream) -> tuple[int, Any]:
            log.info("REST startup: {uri} as {name!r} (stream {id})", uri=uri, name=name,
                     id=stream.id)
            return 200, item(stream)

        def refused(failure: Failure) -> None:
            if failure.check(NameTaken):
                raise BadRequest(409, f"a stream named {name!r} already exists")
            if failure.check(MediaError):
                info = failure.value.info
                raise BadRequest(404 if info == FILE_NOT_FOUND else 400, info)
            failure.raiseException()

        return maybeDeferred(self.registry.startup, uri, name, loop).addCallbacks(
            started, refused)

    def _select(self, request: Request) -> list[VodStream]:
        """The streams a find or terminate body names (400 if none named, 404 if none)."""
        body = read_body(request)
        criteria = {"name": text(body, "localStreamName"), "uri": text(body, "uri"),
                    "stream_id": text(body, "localMediaSessionId")}
        if not any(criteria.values()):
            raise BadRequest(400, "give localStreamName, uri or localMediaSessionId")
        found = self.registry.find(**criteria)
        if not found:
            raise BadRequest(404, "no such stream")
        return found

    def find(self, request: Request) -> tuple[int, Any]:
        return 200, [item(stream) for stream in self._select(request)]

    def find_all(self, request: Request) -> tuple[int, Any]:
        if request.method == b"POST":
            read_body(request, required=False)
        streams = list(self.registry.streams.values())
        if not streams:
            raise BadRequest(404, "no VOD streams")
        return 200, [item(stream) for stream in streams]

    def terminate(self, request: Request) -> tuple[int, Any]:
        found = self._select(request)
        for stream in found:
            log.info("REST terminate: stream {id} ({name!r})", id=stream.id, name=stream.name)
            stream.terminate("Stopped by server")
        return 200, [item(stream) for stream in found]
