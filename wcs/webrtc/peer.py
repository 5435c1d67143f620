"""aiortc's peer connection, with what it leaves behind taken care of.

- Its connect task (ICE, then DTLS, then the senders) runs on its own and
  nobody awaits it: when the peer is closed under it (the viewer left while
  connecting, or consent expired), it raised "RTCIceTransport is closed" and
  asyncio logged "Task exception was never retrieved". Here its errors are
  caught: expected ones (the peer is closed) are only logged at debug level,
  others go to ``on_connect_error`` so that the play fails at once, saying why.
- Once closed, it and its transports still point at each other through event
  listeners and back references, so only the garbage collector frees them (and
  the sockets' buffers, the SRTP sessions, the statistics behind them). After
  :meth:`close` those references are dropped.
- Closed while it gathers its ICE candidates (the page left as it was being
  answered), aioice's connection closes the sockets it lists, and the sockets
  still being bound are listed after that and never closed: each kept a UDP
  port open for the life of the server (the soak bench: ~1 in 1,300 plays).
  Those are closed once the gathering ends.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from aiortc import (
    RTCConfiguration,
    RTCIceTransportPolicy,
    RTCPeerConnection,
    RTCSessionDescription,
)
from aiortc.sdp import candidate_from_sdp
from twisted.internet.defer import Deferred, fail
from twisted.logger import Logger

from wcs import aio
from wcs.errors import BadRequest, Unprocessable
from wcs.transports.interfaces import IceFragment
from wcs.webrtc import ice, internals
from wcs.webrtc.icetcp import IceTcpServer

log = Logger()

_END_OF_CANDIDATES = re.compile(r"^a=end-of-candidates[ \t]*(\r?\n|$)", re.MULTILINE)
_UFRAG = re.compile(r"^a=ice-ufrag:(\S+)", re.MULTILINE)
_PWD = re.compile(r"^a=ice-pwd:(\S+)", re.MULTILINE)
#: What some WHIP clients write before the first media section, where aiortc does not look.
_SESSION_LEVEL = ("a=candidate:", "a=end-of-candidates")
#: ICE restarts are not done (RFC 9725 lets a server say so with 422).
NO_RESTART = "ICE restart is not supported: the fragment's ICE credentials are not this session's"


def session_candidates_moved(sdp: str) -> str:
    """``sdp`` with the candidates (and end-of-candidates) written at session
    level moved to the end of the first media section, where aiortc reads
    them: with BUNDLE every section shares that section's transport."""
    lines = sdp.splitlines()
    media = [index for index, line in enumerate(lines) if line.startswith("m=")]
    if not media:
        return sdp
    first, after = media[0], media[1] if len(media) > 1 else len(lines)
    moved = [line for line in lines[:first] if line.startswith(_SESSION_LEVEL)]
    if not moved:
        return sdp
    kept = [line for line in lines[:first] if not line.startswith(_SESSION_LEVEL)]
    return "\r\n".join([*kept, *lines[first:after], *moved, *lines[after:]]) + "\r\n"


def _ignore(_error: Exception) -> None:
    """What a closed peer reports its connect errors to: nobody."""


class Peer(RTCPeerConnection):
    """A peer connection with no ICE servers of its own (the SDK never trickles).

    With ``ice_tcp`` its answer offers a passive TCP candidate on the node's
    ICE-TCP port beside the UDP ones; with ``tcp_only`` too (the SDK's
    ``transport: "TCP"``), only that one: no UDP socket is even opened (aioice's
    relay-only policy gathers nothing without a TURN server)."""

    def __init__(
        self,
        label: str,
        on_connect_error: Callable[[Exception], None],
        ice_tcp: IceTcpServer | None = None,
        tcp_only: bool = False,
    ) -> None:
        policy = RTCIceTransportPolicy.RELAY if tcp_only else RTCIceTransportPolicy.ALL
        with internals.one_certificate():
            super().__init__(RTCConfiguration(iceServers=[], iceTransportPolicy=policy))
        self.label = label
        self._on_connect_error = on_connect_error
        self._ice_tcp = ice_tcp

    @property
    def closing(self) -> bool:
        """Whether :meth:`close` has begun (aiortc closes the peer by itself when
        every DTLS transport closed)."""
        return self.signalingState == "closed" or self.connectionState == "closed"

    async def setRemoteDescription(self, sessionDescription: RTCSessionDescription) -> None:
        """aiortc's; with ICE-TCP, an offer's ``a=end-of-candidates`` is not
        passed on. A passive TCP candidate cannot check its way to anyone: its
        pairs come from the connections made to it, after the offer, as peer-
        reflexive ones. Told that no candidate will come, aioice would fail a
        check list with nothing yet to check at once (an offer with no TCP
        candidate of its own); the connect deadline decides instead, as it does
        for a browser, which never says end-of-candidates."""
        sdp = session_candidates_moved(sessionDescription.sdp)
        if self._ice_tcp is not None and "a=end-of-candidates" in sdp:
            sdp = _END_OF_CANDIDATES.sub("", sdp)
        if sdp != sessionDescription.sdp:
            sessionDescription = RTCSessionDescription(sdp, sessionDescription.type)
        await super().setRemoteDescription(sessionDescription)

    async def trickle(self, fragment: IceFragment) -> None:
        """Candidates the client found after its offer (WHEP/WHIP PATCH). With
        BUNDLE they go to the one transport whatever section they name; the
        end of candidates is not passed on with ICE-TCP (see above)."""
        remote = self.remoteDescription
        if remote is None or self.closing:
            raise Unprocessable("the ICE session is not under way")
        ufrag, pwd = _UFRAG.search(remote.sdp), _PWD.search(remote.sdp)
        if (
            ufrag is None
            or fragment.ufrag != ufrag.group(1)
            or (fragment.pwd and pwd is not None and fragment.pwd != pwd.group(1))
        ):
            raise Unprocessable(NO_RESTART)
        transceivers = self.getTransceivers()
        if not transceivers:
            raise Unprocessable("the ICE session is not under way")
        master = transceivers[0]
        for mid, line in fragment.candidates:
            named = next((t for t in transceivers if mid is not None and t.mid == mid), master)
            if named.receiver.transport is master.receiver.transport:
                named = master
            try:
                candidate = candidate_from_sdp(line.split(":", 1)[1])
            except (AssertionError, IndexError, KeyError, ValueError) as error:
                raise BadRequest(f"candidate {line[:120]!r} cannot be read ({error})") from None
            candidate.sdpMid = named.mid
            await self.addIceCandidate(candidate)
        if fragment.end and self._ice_tcp is None:
            await self.addIceCandidate(None)

    async def connect_task(self) -> None:
        """aiortc's connect task, whose errors are taken care of (installed
        under aiortc's name below)."""
        try:
            await getattr(super(), internals.PEER_CONNECT)()
        except Exception as error:
            if self.closing:
                log.debug(
                    "{label}: connecting stopped, the peer is closed ({error})",
                    label=self.label,
                    error=error,
                )
                return
            log.warn("{label}: connecting failed: {error!r}", label=self.label, error=error)
            self._on_connect_error(error)

    async def setLocalDescription(
        self, sessionDescription: RTCSessionDescription | None = None
    ) -> None:
        """aiortc's; then, if the peer was closed meanwhile, the sockets its
        gathering bound after the close are closed too. With ICE-TCP, the
        candidates are gathered first, and the TCP one added to them, so that
        the answer and the checks have it."""
        try:
            if self._ice_tcp is not None:
                await self._gather_with_tcp(self._ice_tcp)
            await super().setLocalDescription(sessionDescription)
        finally:
            if self.closing:
                await close_sockets(self)

    async def _gather_with_tcp(self, server: IceTcpServer) -> None:
        gatherers = {t.receiver.transport.transport.iceGatherer for t in self.getTransceivers()}
        for gatherer in gatherers:
            if gatherer.state != "new":
                continue
            await gatherer.gather()
            connection = internals.ice_connection(
                next(
                    t.receiver.transport
                    for t in self.getTransceivers()
                    if t.receiver.transport.transport.iceGatherer is gatherer
                )
            )
            if connection is not None and not self.closing:
                server.offer(connection, ice.offered_addresses())

    async def close(self) -> None:
        await super().close()
        self._on_connect_error = _ignore
        release(self)


setattr(Peer, internals.PEER_CONNECT, Peer.connect_task)


def trickle_into(pc: Peer | None, fragment: IceFragment) -> Deferred[None]:
    """:meth:`Peer.trickle` for a viewer's or a publisher's peer, if it has one."""
    if pc is None:
        return fail(Unprocessable("the ICE session is not under way"))
    return aio.deferred(pc.trickle(fragment))


def release(pc: RTCPeerConnection) -> None:
    """Drop the references a closed peer's parts keep to each other.

    aiortc removes the peer's own event listeners when it closes, but not
    those it put on its DTLS transports (the peer's state follows theirs), and
    aioice's closed connection keeps its check list, whose candidate pairs
    hold its STUN protocols, which point back at the connection. Measured:
    without this, the peer, its transports, SRTP sessions, sockets and
    statistics were freed only by the garbage collector. Nothing of a closed
    peer uses these references any more."""
    for transceiver in pc.getTransceivers():
        dtls: Any = transceiver.receiver.transport
        dtls.remove_all_listeners()
        connection = internals.ice_connection(dtls)
        if connection is not None:
            internals.forget_checks(connection)


async def close_sockets(pc: RTCPeerConnection) -> None:
    """Close whatever sockets a closed peer's ICE connections still list (those
    bound after the close); closing one already closed does nothing."""
    for transceiver in pc.getTransceivers():
        connection = internals.ice_connection(transceiver.receiver.transport)
        if connection is None:
            continue
        for protocol in internals.take_protocols(connection):
            await protocol.close()
