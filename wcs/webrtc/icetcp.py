"""ICE-TCP: WebRTC media over TCP, for viewers whose network blocks UDP.

aioice gathers UDP candidates only. Here a passive TCP host candidate (RFC
6544) is offered beside them on one port of the node, ``ice_tcp_port``,
shared by every peer: a browser connects to it, and each connection carries
RFC 4571 frames (a 16-bit length, then a STUN message, DTLS record or SRTP
packet). aiortc keeps doing everything else: the ICE checks and consent (an
:class:`IceTcpCandidate` is one of aioice's STUN protocols, so its check list
pairs and checks it), DTLS and the SRTP keys; the fast path writes a TCP
viewer's packets through the connection's sink (:mod:`wcs.webrtc.rtpstream`).

A connection's first frame must be a STUN Binding request whose USERNAME
(``ours:theirs``) names a peer of this process and whose MESSAGE-INTEGRITY
that peer's password proves; it is then that peer's. With workers, the
kernel gives the connection to any of them: one that does not hold the peer
asks the others and hands the socket (and the bytes it read) to the one that
does, as the MSE media sockets are. Anything else is closed: garbage, a
stranger's username, silence past :data:`FIRST_FRAME_WAIT`. Connections still
waiting for their first frame are capped (:data:`MAX_UNCLAIMED`, the oldest
goes), so that a flood of idle connections cannot take every descriptor.
"""

from __future__ import annotations

import os
import socket
from collections import OrderedDict
from collections.abc import Callable
from typing import Any, Protocol

from aioice import stun
from aioice.candidate import Candidate, candidate_foundation, candidate_priority
from aioice.ice import Connection, StunProtocol
from twisted.internet import protocol
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IAddress, IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure

from wcs.metrics import METERS
from wcs.webrtc import internals
from wcs.webrtc.rtpstream import TcpSink, open_sink

log = Logger()

#: Seconds a connection may stay before its first whole frame.
FIRST_FRAME_WAIT = 10.0
#: Connections of this process waiting for their first frame; past it, the oldest goes.
MAX_UNCLAIMED = 1024
#: Connections one peer takes (a browser opens one for each of its TCP candidates).
MAX_LINKS = 8
#: Longest first frame taken (a browser's Binding request is ~100-200 bytes): a
#: connection that announces more is not ICE, and is closed without waiting for it.
MAX_FIRST_FRAME = 1024
_BINDING_REQUEST = b"\x00\x01"
_MAGIC_COOKIE = b"\x21\x12\xa4\x42"
#: RFC 6544's local preference for a passive host candidate (direction 4 of 7,
#: then the largest other-preference): below a UDP host candidate's 65535, so
#: that a browser that can use UDP does.
PASSIVE_PREFERENCE = (4 << 13) + 8191
#: What a worker asks the others: which of you holds this username fragment?
WHO_HOLDS = "ice-tcp-ufrag"


#: A claimed connection's send buffer (the kernel doubles it: 512 KiB, 8 s of a
#: 0.5 Mb/s stream, 0.5 s of 8 Mb/s). Autotuned, it grew to 4 MiB for a viewer
#: that never reads, which then lagged by a minute before anything was dropped.
SEND_BUFFER = 256 * 1024


class HandOff(Protocol):
    """The other workers of this machine (the supervisor's hub)."""

    def ask_all(self, what: str, argument: Any) -> Deferred[list[Any]]: ...

    def answer(self, what: str, answerer: Callable[[Any], Any]) -> None: ...

    def hand_off(self, worker: str, socket: int, **connection: Any) -> Deferred[str]: ...


class IceTcpCandidate(StunProtocol):
    """One peer's passive TCP candidate: aioice's STUN protocol over the
    connections the browser opened to the shared port, one per remote address."""

    def __init__(self, connection: Connection, server: IceTcpServer, host: str) -> None:
        super().__init__(connection)
        self.server = server
        self.ufrag = connection.local_username
        self.password = connection.local_password.encode()
        self.local_candidate = Candidate(
            foundation=candidate_foundation("host", "tcp", host),
            component=1,
            transport="tcp",
            priority=candidate_priority(1, "host", PASSIVE_PREFERENCE),
            host=host,
            port=server.port,
            type="host",
            tcptype="passive",
        )
        self.links: dict[tuple[str, int], IceTcpLink] = {}
        self.closed = False

    def accepts(self, message: stun.Message) -> bool:
        """Whether a first frame proves it is for this peer (its password signs it)."""
        return (
            not self.closed
            and len(self.links) < MAX_LINKS
            and message.check_message_integrity(self.password)
        )

    def attach(self, link: IceTcpLink) -> None:
        old = self.links.get(link.address)
        if old is not None and old is not link:
            old.close()
        self.links[link.address] = link

    def link_lost(self, link: IceTcpLink) -> None:
        if self.links.get(link.address) is not link:
            return
        del self.links[link.address]
        nominated = internals.nominated_pair(self.receiver)
        if nominated is not None and nominated[0] is self and nominated[1] == link.address:
            self.receiver.protocol_lost(self)  # the media's connection: the peer is lost

    def sink(self, address: tuple[str, int]) -> TcpSink | None:
        """Where the fast path writes to ``address`` (None: no such connection)."""
        link = self.links.get(address)
        return link.sink if link is not None else None

    # aioice's side

    def send_stun(self, message: stun.Message, addr: tuple[str, int]) -> None:
        link = self.links.get(addr)
        if link is not None:  # (a check to a browser's active candidate goes nowhere)
            link.write(bytes(message))

    async def send_data(self, data: bytes, addr: tuple[str, int]) -> None:
        link = self.links.get(addr)
        if link is not None:
            link.write(data)

    async def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self.server.forget(self)
        for link in list(self.links.values()):
            link.close()
        self.links.clear()

    def __repr__(self) -> str:
        return f"IceTcpCandidate({self.ufrag})"


class IceTcpLink(protocol.Protocol):
    """One TCP connection to the shared port: frames in, through the sink out."""

    def __init__(self, server: IceTcpServer) -> None:
        self.server = server
        self.address: tuple[str, int] = ("", 0)
        self.candidate: IceTcpCandidate | None = None
        self.sink: TcpSink | None = None
        self._buffer = bytearray()
        self._gone = False
        self._handing = False

    def connectionMade(self) -> None:
        peer: Any = self.transport.getPeer()  # type: ignore[union-attr]
        self.address = (peer.host, peer.port)
        self.server.waiting(self)

    def _fileno(self) -> int:
        return self.transport.fileno()  # type: ignore[union-attr]

    def dataReceived(self, data: bytes) -> None:
        if self._gone or self._handing:
            return
        self._buffer += data
        if self.candidate is None and not self._may_be_ice():
            self.server.refuse()
            self.close()  # not ICE: nobody's, and not worth waiting for
            return
        buffer = self._buffer
        at = 0  # frames are cut at an offset, and what they took dropped once
        while len(buffer) - at >= 2 and not (self._gone or self._handing):
            length = (buffer[at] << 8) | buffer[at + 1]
            if len(buffer) - at < 2 + length:
                break  # (never more than one frame waits: 2 + 65535 bytes)
            frame = bytes(buffer[at + 2 : at + 2 + length])
            if self.candidate is None:
                self._first(frame)  # may hand the unread rest over: keep it till then
                if self.candidate is None:
                    return
            at += 2 + length
            self.candidate.datagram_received(frame, self.address)
        if at and buffer is self._buffer:
            del buffer[:at]

    def _may_be_ice(self) -> bool:
        """Whether what came so far can begin a Binding request's frame."""
        head = bytes(self._buffer[:10])
        if len(head) >= 2 and not 20 <= int.from_bytes(head[:2], "big") <= MAX_FIRST_FRAME:
            return False
        if len(head) >= 4 and head[2:4] != _BINDING_REQUEST:
            return False
        return len(head) < 10 or head[6:10] == _MAGIC_COOKIE

    def _first(self, frame: bytes) -> None:
        """A first frame: whose is it?"""
        try:
            message = stun.parse_message(frame)
        except ValueError:
            message = None
        if (
            message is None
            or message.message_method != stun.Method.BINDING
            or message.message_class != stun.Class.REQUEST
            or not isinstance(message.attributes.get("USERNAME"), str)
        ):
            self.server.refuse()
            self.close()  # not ICE: nobody's
            return
        ufrag = message.attributes["USERNAME"].partition(":")[0]
        candidate = self.server.candidates.get(ufrag)
        if candidate is not None:
            if candidate.accepts(message):
                self.server.claimed(self)
                METERS.ice_tcp["claimed"] += 1
                self.candidate = candidate
                # (its own descriptor: made only now, so that a silent connection holds one)
                with socket.socket(fileno=os.dup(self._fileno())) as sock:
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SEND_BUFFER)
                    self.sink = open_sink(sock)  # (which takes a duplicate of its own)
                candidate.attach(self)
            else:
                self.server.refuse()
                self.close()
            return
        if self.server.peers is None:  # no other worker to hold it: a stranger's
            self.server.refuse()
            self.close()
            return
        self._handing = True
        self.transport.stopReading()  # type: ignore[union-attr]  # the next bytes are its
        self.server.misdirected(self, ufrag, bytes(self._buffer))

    def write(self, data: bytes) -> None:
        sink = self.sink
        if sink is not None and len(data) <= 65535:
            sink.write(data)

    def handed(self) -> None:
        """Another worker serves the connection now: let go of it quietly."""
        self._gone = True
        self._close_sink()
        transport: Any = self.transport
        transport._shouldShutdown = False  # (a shutdown would end it for that worker too)
        transport.loseConnection()

    def not_handed(self) -> None:
        self._handing = False
        self.close()

    def close(self) -> None:
        if not self._gone:
            self._gone = True
            self._close_sink()
            self.server.claimed(self)  # (no longer waiting for its first frame)
            self.transport.loseConnection()  # type: ignore[union-attr]

    def _close_sink(self) -> None:
        sink, self.sink = self.sink, None
        if sink is not None:
            sink.close()

    def connectionLost(self, reason: Failure = protocol.connectionDone) -> None:
        self._gone = True
        self._close_sink()
        self._buffer = bytearray()
        self.server.gone(self)
        if self.candidate is not None:
            self.candidate.link_lost(self)
            self.candidate = None


class IceTcpServer(protocol.Factory):
    """The shared ICE-TCP port of this process: its peers' candidates by username
    fragment, and the connections that have not said whose they are yet."""

    def __init__(
        self,
        port: int,
        clock: IReactorTime,
        worker: str = "",
        peers: HandOff | None = None,
    ) -> None:
        self.port = port
        self.clock = clock
        self.worker = worker
        self.peers = peers
        self.candidates: dict[str, IceTcpCandidate] = {}
        self._unclaimed: OrderedDict[IceTcpLink, Any] = OrderedDict()
        self._adopting = b""
        self.refused = 0  # connections closed as nobody's
        if peers is not None:
            peers.answer(WHO_HOLDS, self._who_holds)

    def offer(self, connection: Connection, hosts: list[str]) -> bool:
        """Add a passive TCP candidate on each of ``hosts`` to an aioice
        connection that has gathered (before the answer is made); False if
        another connection of this process has its username fragment."""
        ufrag = connection.local_username
        if ufrag in self.candidates:
            return False
        for host in hosts[:1]:  # one port: one candidate (on the first address offered)
            candidate = IceTcpCandidate(connection, self, host)
            self.candidates[ufrag] = candidate
            internals.add_local_candidate(connection, candidate)
        return bool(hosts)

    def forget(self, candidate: IceTcpCandidate) -> None:
        if self.candidates.get(candidate.ufrag) is candidate:
            del self.candidates[candidate.ufrag]

    # connections

    def buildProtocol(self, addr: IAddress | None) -> IceTcpLink:
        return IceTcpLink(self)

    def waiting(self, link: IceTcpLink) -> None:
        """A new connection: it has FIRST_FRAME_WAIT to say whose it is."""
        adopted, self._adopting = self._adopting, b""
        while len(self._unclaimed) >= MAX_UNCLAIMED:
            oldest = next(iter(self._unclaimed))
            self.refuse()
            oldest.close()
            self._unclaimed.pop(oldest, None)
        self._unclaimed[link] = self.clock.callLater(FIRST_FRAME_WAIT, self._silent, link)
        if adopted:
            link.dataReceived(adopted)

    def _silent(self, link: IceTcpLink) -> None:
        if self._unclaimed.pop(link, None) is not None:
            self.refuse()
            link.close()

    def refuse(self) -> None:
        """A connection closed as nobody's (garbage, a stranger, silence, the cap)."""
        self.refused += 1
        METERS.ice_tcp["refused"] += 1

    def claimed(self, link: IceTcpLink) -> None:
        timer = self._unclaimed.pop(link, None)
        if timer is not None and timer.active():
            timer.cancel()

    def gone(self, link: IceTcpLink) -> None:
        self.claimed(link)

    # workers

    def _who_holds(self, ufrag: Any) -> str | None:
        return self.worker if isinstance(ufrag, str) and ufrag in self.candidates else None

    def misdirected(self, link: IceTcpLink, ufrag: str, leftover: bytes) -> None:
        """A connection for a peer this process does not hold: hand it to the
        worker that does, else close it."""
        peers = self.peers
        assert peers is not None  # (the link closes a stranger's connection itself then)
        asking = peers.ask_all(WHO_HOLDS, ufrag)

        def found(answers: list[Any]) -> Deferred[str] | str:
            holders = [answer for answer in answers if isinstance(answer, str) and answer]
            if not holders or link._gone:
                return "no worker holds it"
            sock: Any = link.transport
            descriptor = os.dup(sock.fileno())
            handing = peers.hand_off(
                holders[0],
                descriptor,
                kind="ice-tcp",
                family=int(sock.socket.family),
                handshake=b"",
                token=ufrag,
                leftover=leftover,
                address="",
            )
            return handing.addBoth(_closing(descriptor))

        def done(why: str) -> None:
            if why:
                self.refuse()
                log.debug("ICE-TCP connection for {ufrag!r} closed: {why}", ufrag=ufrag, why=why)
                link.not_handed()
            else:
                log.info(
                    "ICE-TCP connection from {host}:{port} handed to the worker of its peer",
                    host=link.address[0],
                    port=link.address[1],
                )
                METERS.ice_tcp["handed"] += 1
                link.handed()

        def failed(failure: Failure) -> None:
            done(failure.getErrorMessage() or "the supervisor did not answer")

        asking.addCallback(found).addCallbacks(done, failed)

    def adopt(self, socket: int, family: int, leftover: bytes, **_connection: Any) -> None:
        """Serve a connection another worker accepted for one of our peers (the
        descriptor stays the caller's: the transport takes a duplicate)."""
        from twisted.internet import reactor

        self._adopting = leftover
        try:
            reactor.adoptStreamConnection(socket, family, self)  # type: ignore[attr-defined]
        finally:
            self._adopting = b""

    def stats(self) -> dict[str, int]:
        return {
            "peers": len(self.candidates),
            "links": sum(len(c.links) for c in self.candidates.values()),
            "unclaimed": len(self._unclaimed),
            "refused": self.refused,
        }


def _closing(descriptor: int) -> Callable[[Any], Any]:
    def close(result: Any) -> Any:
        os.close(descriptor)
        return result

    return close


def sink_of(protocol: Any, address: tuple[str, int]) -> TcpSink | None:
    """The fast path's way to ``address`` when the nominated pair is ICE-TCP."""
    if isinstance(protocol, IceTcpCandidate):
        return protocol.sink(address)
    return None
