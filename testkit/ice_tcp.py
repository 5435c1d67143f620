"""A client's active ICE-TCP candidate (RFC 6544, RFC 4571 framing), for test
viewers: aiortc and aioice have none, and a viewer that plays with
``transport: "TCP"`` gets only the server's passive TCP candidate.

:func:`add_active_tcp` gives each ICE connection of an aiortc peer one
:class:`ActiveTcp`, one of aioice's STUN protocols: when aioice's checks pair it
with the server's ``tcp ... tcptype passive`` candidate and send a request, it
connects (once per address) and carries every STUN message, DTLS record and
SRTP packet as a frame. Private aioice and aiortc names are used here, in the
test kit only (the server's are all in ``wcs/webrtc/internals.py``).
"""

from __future__ import annotations

import asyncio
import socket
from typing import Any

from aioice import stun
from aioice.candidate import Candidate, candidate_priority
from aioice.ice import StunProtocol
from aiortc import RTCPeerConnection

#: RFC 6544's local preference for an active host candidate (direction 6 of 7).
ACTIVE_PREFERENCE = (6 << 13) + 8191


class ActiveTcp(StunProtocol):
    """An active TCP candidate: it connects to the passive ones it is checked against."""

    def __init__(self, connection: Any) -> None:
        super().__init__(connection)
        self.local_candidate = Candidate(
            foundation="tcpactive", component=1, transport="tcp",
            priority=candidate_priority(1, "host", ACTIVE_PREFERENCE), host="127.0.0.1",
            port=9, type="host", tcptype="active")
        self.writers: dict[tuple[str, int], asyncio.StreamWriter] = {}
        self.readers: dict[tuple[str, int], asyncio.Task] = {}
        self._connecting: dict[tuple[str, int], asyncio.Future] = {}
        self.closed = False

    async def _connect(self, addr: tuple[str, int]) -> None:
        if addr in self.writers:
            return
        if addr not in self._connecting:
            self._connecting[addr] = asyncio.ensure_future(self._open(addr))
        await asyncio.shield(self._connecting[addr])

    async def _open(self, addr: tuple[str, int]) -> None:
        reader, writer = await asyncio.open_connection(addr[0], addr[1])
        writer.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.writers[addr] = writer
        self.readers[addr] = asyncio.ensure_future(self._read(reader, addr))

    async def _read(self, reader: asyncio.StreamReader, addr: tuple[str, int]) -> None:
        try:
            while True:
                length = int.from_bytes(await reader.readexactly(2), "big")
                self.datagram_received(await reader.readexactly(length), addr)
        except (asyncio.IncompleteReadError, ConnectionError):
            self.receiver.protocol_lost(self)

    def socket_to(self, addr: tuple[str, int]) -> socket.socket | None:
        writer = self.writers.get(addr)
        return writer.get_extra_info("socket") if writer is not None else None

    def stop_reading(self, addr: tuple[str, int]) -> None:
        """Nothing more is read through aioice (a counter reads the socket, or nobody)."""
        task = self.readers.pop(addr, None)
        if task is not None:
            task.cancel()
        writer = self.writers.get(addr)
        if writer is not None:
            writer.transport.pause_reading()

    # aioice's side

    async def request(self, request: stun.Message, addr: tuple[str, int],
                      integrity_key: bytes | None = None,
                      retransmissions: int | None = None) -> tuple[stun.Message, tuple[str, int]]:
        try:
            await self._connect(addr)
        except OSError as error:
            raise stun.TransactionFailed(stun.Message(
                message_method=request.message_method, message_class=stun.Class.ERROR,
                transaction_id=request.transaction_id)) from error
        return await super().request(request, addr, integrity_key, retransmissions)

    def send_stun(self, message: stun.Message, addr: tuple[str, int]) -> None:
        self._write(bytes(message), addr)

    async def send_data(self, data: bytes, addr: tuple[str, int]) -> None:
        self._write(data, addr)

    def _write(self, data: bytes, addr: tuple[str, int]) -> None:
        writer = self.writers.get(addr)
        if writer is not None and not writer.is_closing():
            writer.write(len(data).to_bytes(2, "big") + data)

    async def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        for task in self.readers.values():
            task.cancel()
        for writer in self.writers.values():
            writer.close()
        self.readers.clear()
        self.writers.clear()

    def __repr__(self) -> str:
        return "ActiveTcp()"


def add_active_tcp(pc: RTCPeerConnection) -> list[ActiveTcp]:
    """An active TCP candidate on each ICE connection of ``pc`` (once it has
    gathered, before the answer is set)."""
    added: list[ActiveTcp] = []
    seen: set[int] = set()
    for transceiver in pc.getTransceivers():
        connection = transceiver.receiver.transport.transport._connection
        if id(connection) in seen:
            continue
        seen.add(id(connection))
        protocol = ActiveTcp(connection)
        connection._protocols.append(protocol)
        connection._local_candidates.append(protocol.local_candidate)
        added.append(protocol)
    return added


def nominated(pc: RTCPeerConnection) -> tuple[Any, tuple[str, int]] | None:
    """The protocol and server address the peer's media goes by."""
    for transceiver in pc.getTransceivers():
        pair = transceiver.receiver.transport.transport._connection._nominated.get(1)
        if pair is not None:
            return pair.protocol, pair.remote_addr
    return None
