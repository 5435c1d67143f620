"""Autobahn glue: WebSocket connections on any path, each driving a Session.

Oversized messages are discarded as they stream in (never buffered) and the
session is told, so one bad frame never costs memory or the connection. What
goes out is bounded too: while the socket's buffer is full, at most
``ws_send_buffer`` more bytes are written; a client that reads no further is
disconnected (and logged as such), never buffered for without limit.
"""

from __future__ import annotations

from typing import Any

from autobahn.twisted.websocket import WebSocketServerFactory, WebSocketServerProtocol
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

    def onConnect(self, request: Any) -> None:
        self._path = request.path
        self._peer = request.peer

    def onOpen(self) -> None:
        self.session = Session(
            send=self._send_text,
            close=lambda reason: self.sendClose(code=1000, reason=reason),
            streams=self.factory.streams,
            peer=self._peer,
            path=self._path,
            channel=SocketChannel(self),
            lookup=self.factory.by_token,
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
        if self.session is not None:
            self.session.receive(payload, isBinary)

    def onClose(self, wasClean: bool, code: int | None, reason: str | None) -> None:
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
