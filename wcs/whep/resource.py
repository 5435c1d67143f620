"""``/whep/`` and ``/whip/`` on the web port: WebRTC-HTTP playback (WHEP) and
ingest (WHIP, RFC 9725).

- ``POST /whep/<name>`` (``/whip/<name>``), the name URL-encoded (or not: its
  segments are joined again), with an ``application/sdp`` offer: ``201 Created``,
  the answer, ``Location`` (``/whep/<name>/<id>``, ``id`` unguessable), ``ETag``,
  and a ``Link: rel="ice-server"`` per TURN URL when TURN is set.
- ``DELETE`` on that URL ends the play or publication; ``PATCH`` with an
  ``application/trickle-ice-sdpfrag`` adds trickled candidates (204); an ICE
  restart (``If-Match: *``) is answered 422, as RFC 9725 asks of a server that
  does not do them; another session's ``If-Match`` 412.
- Pages of any origin may call (CORS): these doors are for pages anywhere, the
  bearer token and the hooks decide who plays. Errors are JSON, as REST's are.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from urllib.parse import quote, unquote

from twisted.internet.defer import Deferred, maybeDeferred
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web import resource
from twisted.web.server import Request

from wcs.errors import BadRequest, WcsError
from wcs.streams.uri import MAX_URI
from wcs.web.rest import counted, error, http_status, respond
from wcs.whep import sdp
from wcs.whep.sessions import HttpSession, HttpSessions, SessionUrl

log = Logger()

CORS = {
    b"Access-Control-Allow-Origin": b"*",
    b"Access-Control-Allow-Methods": b"POST, PATCH, DELETE, OPTIONS",
    b"Access-Control-Allow-Headers": b"Content-Type, Authorization, If-Match",
    b"Access-Control-Expose-Headers": b"Location, ETag, Link, Accept-Patch",
    b"Access-Control-Max-Age": b"600",
}
ENDPOINT_METHODS = b"POST, OPTIONS"
#: Query fields read (``?record=true``, ``?width=320``...), the rest ignored.
MAX_OPTIONS = 16
SESSION_METHODS = b"PATCH, DELETE, OPTIONS"


def bearer(request: Request) -> str:
    """The ``Authorization: Bearer`` token, or ""."""
    scheme, _, token = (request.getHeader("authorization") or "").strip().partition(" ")
    return token.strip()[:1024] if scheme.lower() == "bearer" else ""


def link_header(server: dict[str, Any]) -> list[bytes]:
    """``Link`` values for one ``iceServers`` entry (RFC 9725 §4.6)."""
    values = []
    for url in server.get("urls", []):
        value = f'<{url}>; rel="ice-server"'
        if "username" in server:
            value += (
                f'; username="{server["username"]}"; credential="{server["credential"]}"'
                '; credential-type="password"'
            )
        values.append(value.encode("utf-8"))
    return values


class Door(resource.Resource):
    """``/whep/`` or ``/whip/``: the endpoint and its sessions' resources."""

    isLeaf = True

    def __init__(
        self,
        door: str,
        sessions: HttpSessions,
        ice_servers: Callable[[], list[dict[str, Any]]] = list,
    ) -> None:
        super().__init__()
        self.door = door
        self.sessions = sessions
        self.ice_servers = ice_servers

    def render(self, request: Request) -> bytes | int:
        counted(request, "/" + self.door.lower())
        for name, value in CORS.items():
            request.setHeader(name, value)
        segments = [unquote(part.decode("utf-8", "replace")) for part in request.postpath or ()]
        segments = [part for part in segments if part] if request.method != b"POST" else segments
        method = request.method
        if method == b"OPTIONS":
            request.setResponseCode(204)
            request.setHeader(b"Accept-Post", sdp.SDP.encode())
            request.setHeader(b"Accept-Patch", sdp.SDPFRAG.encode())
            return b""
        if method == b"POST":
            return self._answered(request, maybeDeferred(self._post, request, segments))
        if method in (b"DELETE", b"PATCH") and len(segments) >= 2:
            work = self._delete if method == b"DELETE" else self._patch
            url = SessionUrl(self.door, "/".join(segments[:-1]), segments[-1], bearer(request))
            return self._answered(request, maybeDeferred(work, request, url))
        allowed = SESSION_METHODS if len(segments) >= 2 else ENDPOINT_METHODS
        request.setHeader(b"Allow", allowed)
        what = "a session's URL" if len(segments) >= 2 else "the endpoint"
        return error(request, 405, f"{method.decode('ascii', 'replace')} is not allowed on {what}")

    # --- methods

    def _post(self, request: Request, segments: list[str]) -> Deferred[tuple[int, bytes]]:
        name = "/".join(segments).strip()
        if not name:
            raise BadRequest(f"POST /{self.door.lower()}/<stream name>: the name is missing")
        if len(name) > MAX_URI:
            raise BadRequest(f"the stream name is longer than {MAX_URI} characters")
        offer = sdp.offer(_body(request), request.getHeader("content-type"))
        address = getattr(request.getClientAddress(), "host", "?")
        options = {
            key.decode("utf-8", "replace"): values[0].decode("utf-8", "replace")
            for key, values in list((request.args or {}).items())[:MAX_OPTIONS]
            if values
        }
        opening = self.sessions.open(self.door, name, offer, bearer(request), address, options)
        return opening.addCallback(self._created, request, name)

    def _created(self, session: HttpSession, request: Request, name: str) -> tuple[int, bytes]:
        if request._disconnected:  # the client left before its answer: nobody will DELETE it
            url = SessionUrl(session.door, session.name, session.resource, session.token)
            self.sessions.delete(url).addErrback(lambda _: None)
            return 499, b""
        location = f"/{self.door.lower()}/{quote(name, safe='')}/{quote(session.resource, safe='')}"
        request.setHeader(b"Location", location.encode("ascii"))
        request.setHeader(b"ETag", session.etag.encode("ascii"))
        request.setHeader(b"Accept-Patch", sdp.SDPFRAG.encode())
        links = [value for server in self.ice_servers() for value in link_header(server)]
        if links:
            request.responseHeaders.setRawHeaders(b"Link", links)
        request.setHeader(b"Content-Type", sdp.SDP.encode())
        return 201, session.answer_sdp.encode("utf-8")

    def _delete(self, request: Request, url: SessionUrl) -> Deferred[tuple[int, bytes]]:
        return self.sessions.delete(url).addCallback(lambda _: (200, b""))

    def _patch(self, request: Request, url: SessionUrl) -> Deferred[tuple[int, bytes]]:
        fragment = sdp.fragment(_body(request), request.getHeader("content-type"))
        if_match = request.getHeader("if-match")
        patched = self.sessions.patch(url, fragment, if_match.strip() if if_match else None)
        return patched.addCallback(lambda _: (204, b""))

    # --- answers

    def _answered(self, request: Request, answer: Deferred[tuple[int, bytes]]) -> bytes | int:
        written = answer.addCallbacks(self._write, self._failed, (request,), errbackArgs=(request,))
        return respond(request, written.addErrback(self._broken, request))

    @staticmethod
    def _write(result: tuple[int, bytes], request: Request) -> bytes:
        status, body = result
        request.setResponseCode(status)
        return body

    def _failed(self, failure: Failure, request: Request) -> bytes:
        if isinstance(failure.value, WcsError):
            return error(request, http_status(failure.value), failure.value.detail)
        log.failure(
            "{door} {path} failed",
            failure,
            door=self.door,
            path=request.path[:200].decode("ascii", "replace"),
        )
        return error(request, 500, f"internal error: {type(failure.value).__name__}")

    def _broken(self, failure: Failure, request: Request) -> bytes:
        """Answering itself failed (a bug): a 500 still, never a request left open."""
        log.failure("{door}: answering failed", failure, door=self.door)
        return error(request, 500, "internal error")


def _body(request: Request) -> bytes:
    """The body, already held whole and capped by the site (413 past its limit)."""
    return request.content.read() if request.content is not None else b""
