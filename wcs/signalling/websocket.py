"""Autobahn glue: WebSocket connections on any path, each driving a Session.

Oversized messages are discarded as they stream in (never buffered) and the
session is told, so one bad frame never costs memory or the connection. What
goes out is bounded too: while the socket's buffer is full, at most
``ws_send_buffer`` more bytes are written; a client that reads no further is
disconnected (and logged as such), never buffered for without limit.

Who may connect is checked at the handshake: a browser page's ``Origin`` must
be this server's own host or one ``ws_allowed_origins`` lists (another site's
page would otherwise act with its visitor's network position), and the
sessions open at once, in all and from one address, are capped. A session
sending more than ``ws_message_rate`` messages a second is closed.
"""

from __future__ import annotations

import ipaddress
from collections import Counter
from typing import Any
from urllib.parse import urlsplit

import txaio
from autobahn.twisted.websocket import (
    ConnectionDeny,
    WebSocketServerFactory,
    WebSocketServerProtocol,
)
from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import LoopingCall
from twisted.logger import Logger

from wcs.config import Settings
from wcs.signalling.session import Session, StreamHandler

log = Logger()


class SendBudget:
    """How much more may be written while the socket's buffer is full
    (Twisted pauses this producer then, and resumes it once drained)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.paused = False
        self.written = 0  # bytes written since the pause

    def pauseProducing(self) -> None:
        if not self.paused:  # Twisted says it again at every write while full
            self.paused, self.written = True, 0

    def resumeProducing(self) -> None:
        self.paused = False

    def stopProducing(self) -> None:
        self.paused = False

    def spend(self, size: int) -> bool:
        """Whether ``size`` more bytes may go out now."""
        if not self.paused:
            return True
        self.written += size
        return self.written <= self.limit


#: The close code for a session over ``ws_message_rate`` (4000-4999 are the
#: application's own; 4429 echoes HTTP's 429 Too Many Requests).
RATE_CLOSE_CODE = 4429


class MessageRate:
    """A token bucket: ``rate`` messages a second, in bursts of up to twice that."""

    def __init__(self, rate: int, clock: IReactorTime) -> None:
        self.rate = rate
        self.clock = clock
        self.tokens = 2.0 * rate
        self.last = clock.seconds()

    def take(self) -> bool:
        now = self.clock.seconds()
        self.tokens = min(2.0 * self.rate, self.tokens + (now - self.last) * self.rate)
        self.last = now
        if self.tokens < 1.0:
            return False
        self.tokens -= 1.0
        return True


def _host(text: str) -> str:
    """The host of a ``Host`` header or an origin's netloc, lower case."""
    try:
        return (urlsplit(f"//{text}").hostname or "").lower()
    except ValueError:
        return ""


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def origin_allowed(origin: str | None, host_header: str, allowed: tuple[str, ...]) -> bool:
    """Whether a page of ``origin`` may open a session: not a browser (no
    ``Origin``), a page of this server's own host (any port: the SDK's pages are
    served on the web port), or one ``allowed`` lists (``*`` for any)."""
    if origin is None:
        return True
    origin = origin.strip().lower().rstrip("/")
    if "*" in allowed or origin in allowed:
        return True
    scheme, sep, netloc = origin.partition("://")
    if scheme not in ("http", "https") or not sep:
        return False
    own, theirs = _host(host_header), _host(netloc)
    return bool(theirs) and (theirs == own or (_is_loopback(theirs) and _is_loopback(own)))


class SocketChannel:
    """This socket as a media channel: binary frames out, with backpressure
    (the media viewer becomes the socket's producer while it plays)."""

    def __init__(self, protocol: SignallingProtocol) -> None:
        self.protocol = protocol

    def send(self, data: bytes) -> None:
        self.protocol.sendMessage(data, isBinary=True)

    def register_producer(self, producer: object) -> None:
        transport = self.protocol.transport
        if getattr(transport, "producer", None) is not None:
            transport.unregisterProducer()
        transport.registerProducer(producer, True)

    def unregister_producer(self) -> None:
        transport = self.protocol.transport
        if transport is not None and getattr(transport, "producer", None) is not None:
            transport.unregisterProducer()
            self.protocol.watch_buffer()


class SignallingProtocol(WebSocketServerProtocol):
    """One WebSocket: frames in and out of its :class:`Session`."""

    factory: SignallingFactory
    session: Session | None = None
    _address: str | None = None  # counted against the caps while set
    _throttled = False

    def onConnect(self, request: Any) -> None:
        self._path = request.path
        self._peer = request.peer
        settings, limits = self.factory.settings, self.factory.settings.limits
        origin = request.headers.get("origin")
        if not origin_allowed(origin, request.headers.get("host", ""),
                              settings.ws_allowed_origins):
            log.info("WebSocket from {peer}: page origin {origin!r} refused",
                     peer=self._peer, origin=origin[:200])
            raise ConnectionDeny(403, f"pages of {origin[:200]} may not connect "
                                      "(list the origin in ws_allowed_origins)")
        address = getattr(self.transport.getPeer(), "host", "?")
        counts = self.factory.by_address
        if sum(counts.values()) >= limits.max_sessions:
            self._deny("sessions open on this server", "max_sessions", limits.max_sessions)
        if counts[address] >= limits.max_sessions_per_address:
            self._deny("sessions open from one address", "max_sessions_per_address",
                       limits.max_sessions_per_address)
        counts[address] += 1
        self._address = address
        self._rate = MessageRate(limits.ws_message_rate, self.factory.clock)

    def _deny(self, what: str, key: str, value: int) -> None:
        reason = f"Limit reached: {what} ({key}={value})"
        log.warn("WebSocket from {peer} refused: {reason}", peer=self._peer, reason=reason)
        raise ConnectionDeny(503, reason)

    def onOpen(self) -> None:
        self.session = Session(
            send=self._send_text,
            close=lambda reason: self.sendClose(code=1000, reason=reason),
            streams=self.factory.streams,
            peer=self._peer,
            path=self._path,
            channel=SocketChannel(self),
            lookup=self.factory.by_token,
            address=self._address or "?",
        )
        self.factory.sessions[self.session.id] = self.session
        self.budget = SendBudget(self.factory.settings.ws_send_buffer)
        self.watch_buffer()
        log.info("session {session} opened from {peer} on {path}",
                 session=self.session.id, peer=self._peer, path=self._path)

    def watch_buffer(self) -> None:
        """Be told when the socket's buffer fills (unless a media viewer is)."""
        if self.transport is not None and getattr(self.transport, "producer", None) is None:
            self.transport.registerProducer(self.budget, True)

    def _send_text(self, text: str) -> None:
        data = text.encode("utf-8")
        if self.budget.spend(len(data)):
            self.sendMessage(data, isBinary=False)
        elif self.session is not None and not self.session.closed:
            log.warn("session {session}: the client reads nothing (over {n} bytes wait to "
                     "go out); disconnected", session=self.session.id, n=self.budget.limit)
            self.session.released("the client does not read")
            self.dropConnection(abort=True)

    # streaming receive, so that an oversized message is dropped, not buffered

    def onMessageBegin(self, isBinary: bool) -> None:
        super().onMessageBegin(isBinary)
        self._received = 0

    def onMessageFrameData(self, payload: bytes) -> None:
        self._received += len(payload)
        if self._received <= self.factory.settings.ws_max_message_size:
            super().onMessageFrameData(payload)

    def onMessageFrame(self, payload: list[bytes]) -> None:
        if self._received <= self.factory.settings.ws_max_message_size:
            super().onMessageFrame(payload)

    def onMessageEnd(self) -> None:
        limit = self.factory.settings.ws_max_message_size
        if self._received > limit:
            self.message_data = None
            if self.session is not None:
                self.session.oversized(self._received, limit)
            return
        super().onMessageEnd()

    def onMessage(self, payload: bytes, isBinary: bool) -> None:
        if self.session is None or self._throttled:
            return
        if not self._rate.take():
            self._throttled = True
            rate = self.factory.settings.limits.ws_message_rate
            log.warn("session {session}: more than {rate} messages a second; closing",
                     session=self.session.id, rate=rate)
            self.sendClose(code=RATE_CLOSE_CODE, reason=f"Limit reached: messages a second "
                                             f"(ws_message_rate={rate})")
            return
        self.session.receive(payload, isBinary)

    def connectionLost(self, reason: Any) -> None:
        super().connectionLost(reason)
        # Autobahn resolves is_closed (and is_open) with the protocol itself: a
        # cycle per connection, freed only by the collector unless let go here
        self.is_closed = txaio.create_future_success(None)
        self.is_open = txaio.create_future_success(None)

    def onClose(self, wasClean: bool, code: int | None, reason: str | None) -> None:
        if self._address is not None:
            counts = self.factory.by_address
            counts[self._address] -= 1
            if counts[self._address] <= 0:
                del counts[self._address]
            self._address = None
        session, self.session = self.session, None
        if session is not None:
            self.factory.sessions.pop(session.id, None)
            session.released(f"code {code}" + (f", {reason}" if reason else ""))


class SignallingFactory(WebSocketServerFactory):
    """Accepts the upgrade on any path and pings every session on a timer."""

    protocol = SignallingProtocol

    def __init__(self, settings: Settings, streams: StreamHandler,
                 clock: IReactorTime) -> None:
        super().__init__()
        self.settings = settings
        self.streams = streams
        self.sessions: dict[str, Session] = {}
        self.by_address: Counter[str] = Counter()  # sockets past the handshake's start
        self.clock = clock
        self.setProtocolOptions(
            maxMessagePayloadSize=0,  # enforced above, without dropping the socket
            maxFramePayloadSize=0,
            autoPingInterval=0,
            utf8validateIncoming=False,  # bad UTF-8 is refused by the parser instead
            openHandshakeTimeout=10,
            closeHandshakeTimeout=3,
        )
        self._pinger = LoopingCall(self._ping_all)
        self._pinger.clock = clock

    def startFactory(self) -> None:
        if not self._pinger.running:
            self._pinger.start(self.settings.ping_interval / 1000.0, now=False)

    def stopFactory(self) -> None:
        if self._pinger.running:
            self._pinger.stop()

    def _ping_all(self) -> None:
        for session in list(self.sessions.values()):
            session.tick(self.settings.ping_probes)

    def by_token(self, token: str) -> Session | None:
        """The session that was given this ``authToken`` (media sockets use it)."""
        for session in self.sessions.values():
            if session.auth_token == token:
                return session
        return None
