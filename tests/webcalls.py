"""A request to a ``twisted.web`` resource tree in memory, for the web unit tests:
a real :class:`~twisted.web.server.Request` on a fake channel, routed by a real
:class:`~twisted.web.server.Site` (its path splitting, unquoting, ``render``)."""

from __future__ import annotations

import io
import json
from typing import Any

from twisted.internet.address import IPv4Address, IPv6Address
from twisted.web import resource
from twisted.web.server import Request, Site
from twisted.web.test.requesthelper import DummyChannel


class Transport(DummyChannel.TCP):
    """A connection that asks a pull producer (a static file's) for everything at once,
    as a real one would as its buffer empties."""

    producing: object = None

    def registerProducer(self, producer: Any, streaming: bool) -> None:
        super().registerProducer(producer, streaming)
        self.producing = producer
        for _ in range(100_000):
            if streaming or self.producing is not producer:
                break
            producer.resumeProducing()

    def unregisterProducer(self) -> None:
        self.producing = None


class Connection(DummyChannel):
    TCP = Transport


class Call(Request):
    """A request that keeps the body it answered (none for HEAD, as on the wire)."""

    def __init__(self, channel: Connection) -> None:
        super().__init__(channel, False)
        self.body = b""
        self.connection = channel  # (a finished request lets go of its channel)

    def write(self, data: bytes) -> None:
        if self.method != b"HEAD":
            self.body += data
        super().write(data)

    def json(self) -> Any:
        return json.loads(self.body)

    def header(self, name: bytes) -> bytes | None:
        return self.responseHeaders.getRawHeaders(name, [None])[0]

    @property
    def wire(self) -> bytes:
        """Every byte written to the connection (the status line and headers too)."""
        return self.connection.transport.written.getvalue()


def call(
    root: resource.Resource,
    path: bytes | str,
    body: Any = None,
    *,
    method: bytes = b"POST",
    raw: bytes | None = None,
    headers: dict[bytes, bytes] | None = None,
    peer: str = "127.0.0.1",
) -> Call:
    """``method path`` with ``body`` as JSON (or ``raw`` bytes as they are)."""
    kind = IPv6Address if ":" in peer else IPv4Address
    channel = Connection(kind("TCP", peer, 40000))
    channel.site = Site(root)
    request = Call(channel)
    headers = dict(headers or {})
    if body is not None:
        raw = json.dumps(body).encode()
        headers.setdefault(b"content-type", b"application/json")
    request.content = io.BytesIO(raw or b"")
    for name, value in headers.items():
        request.requestHeaders.setRawHeaders(name, [value])
    request.requestReceived(method, path.encode() if isinstance(path, str) else path, b"HTTP/1.1")
    return request
