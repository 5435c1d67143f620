"""The web port's resource tree: pages at ``/``, REST at ``/rest-api/``,
the Web SDK (when configured) at ``/client2/`` as on a real WCS.

What a caller sends is bounded before it is read: a body over
:data:`~wcs.web.rest.MAX_BODY` is answered 413 from its headers (or as soon as a
chunked one grows past it) and the connection closed, never spooled to disk;
a ``Range`` header may name at most :data:`MAX_RANGES` ranges; a connection
idle between requests for ``http_idle_timeout`` seconds is closed, and so is one
that takes longer than that to send a whole request (a byte at a time, say:
Twisted's own timeout restarts at every byte).
"""

from __future__ import annotations

import io
import json
import time
from collections.abc import Callable
from pathlib import Path

from twisted.internet.interfaces import IDelayedCall
from twisted.internet.protocol import connectionDone
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web import http, resource, server, static
from twisted.web.server import Request

from wcs.access.gate import OPEN, Gate
from wcs.access.turn import ice_servers
from wcs.config import Settings
from wcs.errors import AccessRefused
from wcs.web.rest import MAX_BODY, Access, RestRoot, error

log = Logger()

#: Most ranges one request may ask for (more would turn a small request into an
#: answer many times the file's size).
MAX_RANGES = 8

STATIC_DIR = Path(__file__).resolve().parent / "static"


class PageConfig(resource.Resource):
    """``/config.json``: what our own pages need to know to reach the WebSocket and
    HLS ports (0: off), whether the SDK's demo pages are served, and the ICE
    servers a peer connection should use (a TURN server's, with a credential
    made for this load, when one is set)."""

    isLeaf = True

    def __init__(self, settings: Settings, clock: Callable[[], float] = time.time) -> None:
        super().__init__()
        self.settings = settings
        self.clock = clock

    def render_GET(self, request: Request) -> bytes:
        settings = self.settings
        request.setHeader(b"Content-Type", b"application/json")
        request.setHeader(b"Cache-Control", b"no-store")  # the credential is this load's
        body = {
            "wsPort": settings.ws_port,
            "wssPort": settings.wss_port,
            "hlsPort": settings.hls_port,
            "hlsSslPort": settings.hls_ssl_port,
            "sdk": settings.websdk_dir is not None,
            "iceServers": ice_servers(
                settings.turn_url, settings.turn_secret, settings.turn_ttl, self.clock()
            ),
        }
        return json.dumps(body).encode()


class Folder(static.File):
    """The files of one folder, read-only: no listing, no hidden files, no NUL
    bytes, and nothing outside the folder, whatever a symlink says."""

    top: Path | None = None

    def directoryListing(self) -> resource.Resource:
        return resource.NoResource()

    def render_GET(self, request: Request) -> bytes | int:
        ranges = request.getHeader("range")
        if ranges is not None and ranges.count(",") >= MAX_RANGES:
            request.setResponseCode(416)
            request.setHeader(b"Content-Type", b"text/plain; charset=utf-8")
            return f"at most {MAX_RANGES} ranges in one request\n".encode()
        return super().render_GET(request)

    def getChild(self, path: bytes, request: Request) -> resource.Resource:
        if b"\x00" in path or path.startswith(b"."):
            return resource.NoResource()
        child = super().getChild(path, request)
        if isinstance(child, static.File):
            top = self.top or Path(self.path).resolve()
            if not Path(child.path).resolve().is_relative_to(top):
                return resource.NoResource()  # a symlink that leads out of the folder
            if isinstance(child, Folder):
                child.top = top
        return child


class Records(Folder):
    """``/client/records/NAME.mp4``: finished recordings, where the SDK's
    recording page links them. Plain ``.mp4`` files of the media folder only:
    no sub-folders and no partial (hidden) files either. When access rules
    are set (hooks or play tokens) each download is asked about first."""

    gate: Gate = OPEN

    def getChild(self, path: bytes, request: Request) -> resource.Resource:
        if not path.endswith(b".mp4") or b"/" in path:
            return resource.NoResource()
        child = super().getChild(path, request)
        if not isinstance(child, static.File) or not child.isfile():
            return resource.NoResource()
        if self.gate.guarded:
            return GuardedRecord(child, path.decode("utf-8", "replace"), self.gate)
        return child


#: The most query fields of a record's URL handed to the hook as ``custom``.
MAX_QUERY_FIELDS = 32


class GuardedRecord(resource.Resource):
    """One record, served once the access rules allow it: 403 with why, otherwise."""

    isLeaf = True

    def __init__(self, file: static.File, name: str, gate: Gate) -> None:
        super().__init__()
        self.file = file
        self.name = name
        self.gate = gate

    def render(self, request: Request) -> bytes | int:
        query = {
            key.decode("utf-8", "replace"): values[0].decode("utf-8", "replace")[:1024]
            for key, values in list(request.args.items())[:MAX_QUERY_FIELDS]
            if values
        }
        address = getattr(request.getClientAddress(), "host", "?")
        body = {
            "nodeId": self.gate.node,
            "name": self.name,
            "published": False,
            "record": True,
            "status": "NEW",
            "mediaProvider": "HTTP",
            "custom": query,
            "clientAddress": address,
        }
        self.gate.record(self.name, query, body).addCallbacks(
            self._allowed, self._refused, callbackArgs=(request,), errbackArgs=(request,)
        )
        return server.NOT_DONE_YET

    def _allowed(self, _: None, request: Request) -> None:
        if request.finished or request._disconnected:
            return
        result = self.file.render(request)
        if result != server.NOT_DONE_YET:  # a HEAD, or a range refused: already whole
            request.write(result)
            request.finish()

    def _refused(self, failure: Failure, request: Request) -> None:
        if request.finished or request._disconnected:
            return
        if isinstance(failure.value, AccessRefused):
            body = error(request, 403, failure.value.detail)
        else:
            log.failure("record {name}: access check failed", failure, name=self.name)
            body = error(request, 500, "internal error")
        request.write(body)
        request.finish()


def build_root(settings: Settings, gate: Gate = OPEN) -> tuple[resource.Resource, RestRoot]:
    """The root resource, and the REST root that API areas attach to."""
    root = Folder(str(STATIC_DIR))
    root.indexNames = ["index.html"]
    root.putChild(b"config.json", PageConfig(settings))
    rest = RestRoot(Access(settings.rest_api_key, settings.rest_cors_origins))
    root.putChild(b"rest-api", rest)
    client = resource.Resource()
    records = Records(str(settings.media_dir))
    records.gate = gate
    client.putChild(b"records", records)
    root.putChild(b"client", client)
    if settings.websdk_dir is not None:
        root.putChild(b"client2", Folder(str(settings.websdk_dir)))
    return root, rest


class CappedRequest(server.Request):
    """A request whose body is held in memory up to :data:`MAX_BODY` bytes and
    refused (413, connection closed) past it, before any more is read."""

    max_body = MAX_BODY

    def gotLength(self, length: int | None) -> None:
        self._body_size = 0
        self.content = io.BytesIO()
        if length is not None and length > self.max_body:
            self._too_large(length)

    def handleContentChunk(self, data: bytes) -> None:
        if self.content is None:
            return  # refused already; the connection is closing
        self._body_size += len(data)
        if self._body_size > self.max_body:
            self._too_large(self._body_size)
            return
        self.content.write(data)

    def _too_large(self, size: int) -> None:
        log.info(
            "HTTP {method} {uri}: body of {size} bytes refused (413)",
            method=self.method.decode("ascii", "replace"),
            uri=self.uri[:200].decode("ascii", "replace"),
            size=size,
        )
        body = json.dumps(
            {
                "status": 413,
                "error": "Content Too Large",
                "message": f"request bodies are limited to {self.max_body} bytes",
            }
        ).encode()
        self.content = None
        transport = self.channel.transport
        assert transport is not None  # its body is being received
        transport.write(
            b"HTTP/1.1 413 Content Too Large\r\nContent-Type: application/json\r\n"
            b"Connection: close\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)
        )
        transport.loseConnection()

    def requestReceived(self, command: bytes, path: bytes, version: bytes) -> None:
        if self.content is None:
            return  # answered 413 already
        self.content.seek(0)
        super().requestReceived(command, path, version)


class Channel(http.HTTPChannel):
    """An HTTP connection whose every request must arrive whole within the
    site's timeout, however slowly its bytes trickle in."""

    _deadline: IDelayedCall | None = None
    site: server.Site  # set by the site that built it

    def connectionMade(self) -> None:
        super().connectionMade()
        self._arm()

    def _arm(self) -> None:
        self._disarm()
        if self.timeOut:
            self._deadline = self.site.reactor.callLater(self.timeOut, self._too_slow)

    def _disarm(self) -> None:
        if self._deadline is not None and self._deadline.active():
            self._deadline.cancel()
        self._deadline = None

    def allContentReceived(self) -> None:
        self._disarm()
        super().allContentReceived()

    def requestDone(self, request: http.Request) -> None:
        super().requestDone(request)
        if self.persistent and not self._handlingRequest:
            self._arm()  # the next request has as long

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self._disarm()
        super().connectionLost(reason)

    def _too_slow(self) -> None:
        self._deadline = None
        transport = self.transport
        assert transport is not None  # disarmed once the connection is lost
        log.info(
            "HTTP client {peer}: no whole request within {n} s; closed",
            peer=transport.getPeer(),
            n=self.timeOut,
        )
        transport.write(
            b"HTTP/1.1 408 Request Timeout\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"
        )
        transport.loseConnection()


class QuietSite(server.Site):
    """A site that keeps Twisted's line per request out of the log (``access_log``
    false, the default): an HLS player alone makes one every second."""

    def log(self, request: http.Request) -> None:
        pass


def build_site(root: resource.Resource, idle_timeout: int, access_log: bool = False) -> server.Site:
    kind = server.Site if access_log else QuietSite
    site = kind(root, requestFactory=CappedRequest, timeout=idle_timeout)
    # plain HTTP/1.1 (no HTTP/2): all this server speaks. Twisted types ``protocol``
    # as its own HTTP/2-negotiating channel factory, yet builds with any callable
    site.protocol = Channel  # type: ignore[method-assign, assignment]
    site.displayTracebacks = False
    return site
