"""Autobahn glue: WebSocket connections on any path, each driving a Session.

Oversized messages are discarded as they stream in (never buffered) and the
session is told, so one bad frame never costs memory or the connection. What
goes out is bounded too: while the socket's buffer is full, at most
``ws_send_buffer`` more bytes are written; a client that reads no further is
disconnected (and logged as such), never buffered for without limit.

Who may connect is checked at the handshake: a browser page's ``Origin`` must
be this server's own host or one ``ws_allowed_origins`` lists (another site's
page would otherwise act with its visitor's network position), and the
sessions open at once, in all and from one address, are capped for the whole
server (its :class:`Admission` counts every worker's). A session sending more
than ``ws_message_rate`` messages a second is closed.

A page's MSE media socket names its session only by the ``authToken``, which
says which worker holds the session (``<random>@<worker>``). With several
workers the kernel gives that socket to any of them: one that is not the
session's hands the connection itself (a duplicate of its descriptor, the
handshake it opened with and the bytes read after ``connectMediaTransport``)
to the session's worker through the supervisor (:class:`HandOff`), which
replays the handshake without answering it and goes on as if it had accepted
the socket. Media is never relayed between workers. A token of another node
(a cluster behind a load balancer that split the page's sockets) is refused
with the reason, and that node ends the play FAILED saying so.
"""

from __future__ import annotations

import ipaddress
import json
import os
import uuid
from dataclasses import dataclass
from socket import socket as Socket
from typing import Any, Protocol, cast
from urllib.parse import urlsplit

from autobahn.twisted.websocket import (
    ConnectionDeny,
    WebSocketServerFactory,
    WebSocketServerProtocol,
)
from autobahn.websocket.protocol import PreparedMessage
from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IAddress, IReactorTime
from twisted.internet.protocol import connectionDone
from twisted.internet.task import LoopingCall
from twisted.logger import Logger
from twisted.python.failure import Failure

from wcs.cluster.admissions import Admission
from wcs.config import Settings
from wcs.signalling.session import Session, StreamHandler
from wcs.tcp_writes import write_now

log = Logger()


class HandOff(Protocol):
    """The way to the other workers of this machine (the supervisor's hub)."""

    def hand_off(self, worker: str, socket: int, **connection: Any) -> Deferred[str]:
        """Give ``worker`` the connection on (a duplicate of) ``socket``; "" once
        it has taken it, else why not."""


class Uncounted:
    """No caps at all (a factory made without any, as unit tests do)."""

    def enter(self, address: str) -> Deferred[str]:
        return succeed("")

    def leave(self, address: str) -> None:
        pass


@dataclass(frozen=True)
class Adoption:
    """A connection another worker accepted for one of this worker's sessions."""

    handshake: bytes
    token: str
    leftover: bytes
    address: str


#: The close code of a media socket refused for a session elsewhere (4000-4999
#: are the application's; 4421 echoes HTTP's 421 Misdirected Request).
MISDIRECTED_CLOSE_CODE = 4421
#: Most time (s) a media socket about to be handed over waits for what it has
#: already written to go out (its own replies must not follow the new worker's).
DRAIN_WAIT = 1.0


def token_worker(token: str) -> str:
    """The worker whose session gave out ``token`` ("" if it names none)."""
    random, at, worker = token.rpartition("@")
    return worker if at and random else ""


def _node(worker: str) -> str:
    return worker.rpartition("/")[0]


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


class Transport(Protocol):
    """What is used of a connection's transport: Twisted's (a TCP server's, or TLS
    over one), which also consumes what producers write."""

    def getPeer(self) -> IAddress: ...

    def loseConnection(self) -> None: ...

    def registerProducer(self, producer: object, streaming: bool) -> None: ...

    def unregisterProducer(self) -> None: ...


class TcpTransport(Transport, Protocol):
    """A plain TCP server's transport (``twisted.internet.tcp.Server``), whose socket
    can be handed to another worker."""

    socket: Socket
    _shouldShutdown: bool

    def fileno(self) -> int: ...

    def stopReading(self) -> None: ...

    def startReading(self) -> None: ...


class SocketChannel:
    """This socket as a media channel: binary frames out, with backpressure
    (the media viewer becomes the socket's producer while it plays)."""

    def __init__(self, protocol: SignallingProtocol) -> None:
        self.protocol = protocol

    def send(self, data: bytes) -> None:
        """One binary message; nothing once the socket is closing (the client's
        close came, the connection is not gone yet: Autobahn would raise, and the
        play would end FAILED "Internal error" instead of its own ending)."""
        if self.protocol.state == WebSocketServerProtocol.STATE_OPEN:
            self.protocol.sendMessage(data, isBinary=True)

    @staticmethod
    def prepare(payload: bytes) -> PreparedMessage:
        """``payload`` framed once as a binary message (a server's frames are not
        masked), to be sent as it is on every socket of a broadcast."""
        return PreparedMessage(payload, True, False, False)

    def send_prepared(self, message: PreparedMessage) -> None:
        """A message from :meth:`prepare`: its frame written as it is, at once when
        nothing waits before it (Autobahn frames it again for a connection that
        compresses, which ours never do)."""
        protocol = self.protocol
        if protocol.state != WebSocketServerProtocol.STATE_OPEN:
            return
        if protocol._perMessageCompress is None:
            write_now(protocol.transport, message.payloadHybi)
        else:
            protocol.sendPreparedMessage(message)

    def register_producer(self, producer: object) -> None:
        transport = self.protocol.connection
        if getattr(transport, "producer", None) is not None:
            transport.unregisterProducer()
        transport.registerProducer(producer, True)

    def unregister_producer(self) -> None:
        transport = self.protocol.transport
        if transport is not None and getattr(transport, "producer", None) is not None:
            cast(Transport, transport).unregisterProducer()
            self.protocol.watch_buffer()


class SignallingProtocol(WebSocketServerProtocol):
    """One WebSocket: frames in and out of its :class:`Session`."""

    factory: SignallingFactory
    session: Session | None = None
    _address: str | None = None  # counted against the caps while set
    _throttled = False
    #: Set (by the factory) on a connection handed over by another worker.
    adoption: Adoption | None = None
    _silent = False  # the handshake of an adopted connection is replayed, unanswered
    _handed_to = ""  # the worker this connection was handed to
    _gone = False

    @property
    def connection(self) -> Transport:
        """The transport, while connected."""
        assert self.transport is not None
        return cast(Transport, self.transport)

    @property
    def tcp_connection(self) -> TcpTransport:
        """The transport, while connected over plain TCP (it has a ``socket``)."""
        assert hasattr(self.transport, "socket")
        return cast(TcpTransport, self.transport)

    def connectionMade(self) -> None:
        super().connectionMade()
        if self.adoption is not None:
            self._silent = True  # the client had its 101 from the worker that accepted
            self.dataReceived(self.adoption.handshake)

    def sendData(self, data: bytes, sync: bool = False, chopsize: int | None = None) -> None:
        if not self._silent:
            super().sendData(data, sync, chopsize)

    # Autobahn's annotation leaves out the Deferred its documentation allows
    def onConnect(self, request: Any) -> Deferred[None] | None:  # type: ignore[override]
        self._path = request.path
        self._peer = request.peer
        settings, limits = self.factory.settings, self.factory.settings.limits
        self._rate = MessageRate(limits.ws_message_rate, self.factory.clock)
        origin = request.headers.get("origin")
        if not origin_allowed(origin, request.headers.get("host", ""), settings.ws_allowed_origins):
            log.info(
                "WebSocket from {peer}: page origin {origin!r} refused",
                peer=self._peer,
                origin=origin[:200],
            )
            raise ConnectionDeny(
                403,
                f"pages of {origin[:200]} may not connect (list the origin in ws_allowed_origins)",
            )
        if self.adoption is not None:  # counted where it was accepted, and moved here
            self._address = self.adoption.address
            return None
        address = getattr(self.connection.getPeer(), "host", "?")

        def answered(refusal: str) -> None:
            if refusal:
                log.warn("WebSocket from {peer} refused: {reason}", peer=self._peer, reason=refusal)
                raise ConnectionDeny(503, refusal)
            if self._gone:  # the client left while the caps were asked
                self.factory.admission.leave(address)
                return
            self._address = address

        return self.factory.admission.enter(address).addCallback(answered)

    def onOpen(self) -> None:
        self._silent = False
        self.session = Session(
            send=self._send_text,
            close=lambda reason: self.sendClose(code=1000, reason=reason),
            streams=self.factory.streams,
            peer=self._peer,
            path=self._path,
            channel=SocketChannel(self),
            lookup=self.factory.by_token,
            address=self._address or "?",
            auth_token=f"{uuid.uuid4()}@{self.factory.worker}",
            elsewhere=self._media_elsewhere,
        )
        self.factory.sessions[self.session.id] = self.session
        self.budget = SendBudget(self.factory.settings.ws_send_buffer)
        self.watch_buffer()
        adoption, self.adoption = self.adoption, None
        if adoption is None:
            log.info(
                "session {session} opened from {peer} on {path}",
                session=self.session.id,
                peer=self._peer,
                path=self._path,
            )
            return
        log.info(
            "session {session} opened from {peer} on {path}, handed over by another worker",
            session=self.session.id,
            peer=self._peer,
            path=self._path,
        )
        self.session.receive(
            json.dumps(
                {"message": "connectMediaTransport", "data": [{"authToken": adoption.token}]}
            ).encode(),
            False,
        )
        self.data += adoption.leftover  # read on once this returns (succeedHandshake)

    # --- a media socket of a session elsewhere

    def _media_elsewhere(self, token: str) -> bool:
        """Whether ``token``'s session is another worker's, and this socket was
        sent its way (or, for another node's, refused with why)."""
        worker, here = token_worker(token), self.factory.worker
        if not worker or worker == here:
            return False
        session = self.session
        assert session is not None
        if _node(worker) != _node(here):
            info = (
                f"Media transport refused: the page's media WebSocket reached node "
                f"{_node(here) or '?'}, its session is on node {_node(worker) or '?'} "
                "(keep both WebSockets of a page on one node)"
            )
            log.warn("session {session}: {info}", session=session.id, info=info)
            self.factory.streams.media_transport_misrouted(token, info)
            self.sendClose(code=MISDIRECTED_CLOSE_CODE, reason=info[:120])
            return True
        if self.factory.handoff is None or not hasattr(self.transport, "socket"):
            return False  # no other worker here to hand it to (or TLS: it cannot move)
        self.tcp_connection.stopReading()  # what comes next is the other worker's to read
        self.factory.sessions.pop(session.id, None)  # nor pinged from here
        leftover, self.data = self.data, b""
        self._drained(worker, token, leftover, self.factory.clock.seconds() + DRAIN_WAIT)
        return True

    def _drained(self, worker: str, token: str, leftover: bytes, deadline: float) -> None:
        """Hand over once nothing of ours waits to go out (else our last bytes could
        follow the other worker's first)."""
        if self._gone:
            return
        transport = self.tcp_connection
        if getattr(transport, "dataBuffer", b"") or getattr(transport, "_tempDataBuffer", []):
            if self.factory.clock.seconds() < deadline:
                self.factory.clock.callLater(0.02, self._drained, worker, token, leftover, deadline)
            else:
                self._not_handed(worker, "its socket would not drain")
            return
        socket = os.dup(transport.fileno())
        address, self._address = self._address or "", None  # the supervisor moves its count
        handoff = self.factory.handoff
        assert handoff is not None  # checked before the socket was drained
        handing = handoff.hand_off(
            worker,
            socket,
            family=int(transport.socket.family),
            handshake=self.http_request_data,
            token=token,
            leftover=leftover,
            address=address,
        )

        def answered(why: str) -> None:
            os.close(socket)
            if why:
                self._address = address
                self._not_handed(worker, why)
                return
            self._handed_to = worker
            if not self._gone:
                transport._shouldShutdown = False  # the other worker goes on with it
                transport.loseConnection()

        def failed(failure: Any) -> None:
            answered(failure.getErrorMessage() or "the supervisor did not answer")

        handing.addCallbacks(answered, failed)

    def _not_handed(self, worker: str, why: str) -> None:
        session = self.session
        log.warn(
            "session {session}: media transport for worker {worker} not handed over: {why}",
            session=session.id if session else "?",
            worker=worker,
            why=why,
        )
        if not self._gone:
            self.tcp_connection.startReading()
            self.sendClose(code=1000, reason="unknown media token")

    def watch_buffer(self) -> None:
        """Be told when the socket's buffer fills (unless a media viewer is)."""
        transport = self.transport
        if transport is not None and getattr(transport, "producer", None) is None:
            cast(Transport, transport).registerProducer(self.budget, True)

    def _send_text(self, text: str) -> None:
        if self.state != self.STATE_OPEN:  # closing: an answer that came late is dropped
            return
        data = text.encode("utf-8")
        if self.budget.spend(len(data)):
            self.sendMessage(data, isBinary=False)
        elif self.session is not None and not self.session.closed:
            log.warn(
                "session {session}: the client reads nothing (over {n} bytes wait to "
                "go out); disconnected",
                session=self.session.id,
                n=self.budget.limit,
            )
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

    # Autobahn's annotation says bytes: it is given (and extends the message by)
    # the frame's list of chunks
    def onMessageFrame(self, payload: list[bytes]) -> None:  # type: ignore[override]
        if self._received <= self.factory.settings.ws_max_message_size:
            super().onMessageFrame(payload)  # type: ignore[arg-type]

    def onMessageEnd(self) -> None:
        limit = self.factory.settings.ws_max_message_size
        if self._received > limit:
            self.message_data = []
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
            log.warn(
                "session {session}: more than {rate} messages a second; closing",
                session=self.session.id,
                rate=rate,
            )
            self.sendClose(
                code=RATE_CLOSE_CODE,
                reason=f"Limit reached: messages a second (ws_message_rate={rate})",
            )
            return
        self.session.receive(payload, isBinary)

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        super().connectionLost(reason)
        # Autobahn resolves is_closed (and is_open) with the protocol itself: a
        # cycle per connection, freed only by the collector unless let go here
        self.is_closed = succeed(None)
        self.is_open = succeed(None)

    def onClose(self, wasClean: bool, code: int | None, reason: str | None) -> None:
        self._gone = True
        if self._address is not None:
            self.factory.admission.leave(self._address)
            self._address = None
        session, self.session = self.session, None
        if session is not None:
            self.factory.sessions.pop(session.id, None)
            session.released(
                f"handed over to worker {self._handed_to}"
                if self._handed_to
                else f"code {code}" + (f", {reason}" if reason else "")
            )


class SignallingFactory(WebSocketServerFactory):
    """Accepts the upgrade on any path and pings every session on a timer."""

    # Autobahn's factory is not generic (Twisted's Factory of any protocol), so a
    # protocol whose ``factory`` is typed as this one is not its "protocol"
    protocol = SignallingProtocol  # type: ignore[assignment]

    def __init__(
        self,
        settings: Settings,
        streams: StreamHandler,
        clock: IReactorTime,
        admission: Admission | None = None,
        worker: str = "0",
        handoff: HandOff | None = None,
    ) -> None:
        """``admission`` counts sessions against the caps (all the server's);
        ``worker`` is this worker's id, which its sessions' tokens carry;
        ``handoff`` reaches the other workers of this machine (none: one process)."""
        super().__init__()
        self.settings = settings
        self.streams = streams
        self.sessions: dict[str, Session] = {}
        self.admission: Admission = admission if admission is not None else Uncounted()
        self.worker = worker
        self.handoff = handoff
        self.clock = clock
        self._adopting: Adoption | None = None
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

    def buildProtocol(self, addr: IAddress | None) -> SignallingProtocol:  # type: ignore[override]
        # (the same: not Twisted's "protocol of its factory") made by self.protocol
        protocol = cast(SignallingProtocol, super().buildProtocol(addr))
        protocol.adoption = self._adopting
        return protocol

    def adopt(
        self, socket: int, family: int, handshake: bytes, token: str, leftover: bytes, address: str
    ) -> None:
        """Serve a media socket another worker accepted for one of our sessions
        (the descriptor stays the caller's: the transport takes a duplicate)."""
        from twisted.internet import reactor

        self._adopting = Adoption(handshake, token, leftover, address)
        try:
            reactor.adoptStreamConnection(socket, family, self)  # type: ignore[attr-defined]
        finally:
            self._adopting = None

    def transport_refused(self, token: str, info: str) -> None:
        """Another node refused this token's media socket: its plays waiting for
        one end FAILED with ``info``."""
        session = self.by_token(token)
        if session is not None:
            self.streams.media_transport_refused(session, info)

    def by_token(self, token: str) -> Session | None:
        """The session that was given this ``authToken`` (media sockets use it)."""
        for session in self.sessions.values():
            if session.auth_token == token:
                return session
        return None
