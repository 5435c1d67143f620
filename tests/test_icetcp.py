"""The ICE-TCP port's bookkeeping, without a browser: who is closed, and when.

(Browsers over it: tests/test_e2e_ice_tcp.py; attacks: tests/test_e2e_ice_tcp_attacks.py.)
"""

from __future__ import annotations

import struct

import pytest
from aioice import stun
from twisted.internet.address import IPv4Address
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport

from wcs.webrtc import icetcp
from wcs.webrtc.icetcp import FIRST_FRAME_WAIT, MAX_UNCLAIMED, IceTcpServer


def connect(server: IceTcpServer, port: int = 40000) -> tuple[icetcp.IceTcpLink, StringTransport]:
    link = server.buildProtocol(None)
    transport = StringTransport(peerAddress=IPv4Address("TCP", "127.0.0.1", port))
    link.makeConnection(transport)
    return link, transport


def binding_frame(username: str) -> bytes:
    message = stun.Message(message_method=stun.Method.BINDING, message_class=stun.Class.REQUEST)
    message.attributes["USERNAME"] = username
    message.add_message_integrity(b"p" * 22)
    message.add_fingerprint()
    data = bytes(message)
    return struct.pack("!H", len(data)) + data


@pytest.fixture
def server() -> IceTcpServer:
    return IceTcpServer(8083, Clock())


def test_a_silent_connection_is_closed_after_the_first_frame_wait(server):
    _link, transport = connect(server)
    server.clock.advance(FIRST_FRAME_WAIT - 0.1)
    assert not transport.disconnecting
    server.clock.advance(0.2)
    assert transport.disconnecting
    assert server.stats()["unclaimed"] == 0 and server.refused == 1


def test_past_the_cap_the_oldest_silent_connection_goes(server):
    transports = [connect(server, 10000 + n)[1] for n in range(MAX_UNCLAIMED + 3)]
    assert [t.disconnecting for t in transports[:3]] == [True, True, True]
    assert not any(t.disconnecting for t in transports[3:])
    assert server.stats()["unclaimed"] == MAX_UNCLAIMED


@pytest.mark.parametrize("first_bytes", [
    b"GET / HTTP/1.1\r\n",               # not a frame's length at all
    struct.pack("!H", 5000),              # a frame longer than any Binding request
    struct.pack("!H", 100) + b"\x01\x01",  # a Binding response, not a request
    struct.pack("!H", 100) + b"\x00\x01\x00\x50\xde\xad\xbe\xef",  # no magic cookie
])
def test_bytes_that_cannot_begin_a_binding_request_are_closed_at_once(server, first_bytes):
    link, transport = connect(server)
    link.dataReceived(first_bytes)
    assert transport.disconnecting
    assert server.stats()["unclaimed"] == 0


def test_the_start_of_a_binding_request_is_waited_for_byte_by_byte(server):
    link, transport = connect(server)
    frame = binding_frame("abcd:efgh")
    for index in range(10):  # up to the magic cookie, nothing to refuse yet
        link.dataReceived(frame[index:index + 1])
        assert not transport.disconnecting, index


def test_a_strangers_username_is_closed_when_no_other_worker_holds_it(server):
    link, transport = connect(server)
    link.dataReceived(binding_frame("nobody:efgh"))
    assert transport.disconnecting
    assert server.refused == 1


class Workers:
    """The hub, as far as the ICE-TCP port uses it."""

    def __init__(self, holder: str) -> None:
        self.holder = holder
        self.asked: list[tuple[str, object]] = []
        self.handed: list[dict] = []

    def answer(self, what, answerer):
        self.answerer = answerer

    def ask_all(self, what, argument):
        from twisted.internet.defer import succeed

        self.asked.append((what, argument))
        return succeed([self.holder] if self.holder else [None])

    def hand_off(self, worker, socket, **connection):
        from twisted.internet.defer import succeed

        self.handed.append({"worker": worker, **connection})
        return succeed("")


class TcpishTransport(StringTransport):
    """A StringTransport with what a hand-off reads of a TCP one."""

    def __init__(self, fd: int, **kwargs) -> None:
        super().__init__(**kwargs)
        import socket as sockets

        self.socket = sockets.socket(fileno=fd)
        self.reading = True

    def fileno(self) -> int:
        return self.socket.fileno()

    def stopReading(self) -> None:
        self.reading = False


def test_a_connection_for_another_workers_peer_is_handed_over_with_what_was_read():
    import socket as sockets

    workers = Workers("2.2")
    server = IceTcpServer(8083, Clock(), worker="1.1", peers=workers)
    ours, theirs = sockets.socketpair()
    link = server.buildProtocol(None)
    transport = TcpishTransport(ours.detach(),
                                peerAddress=IPv4Address("TCP", "127.0.0.1", 40001))
    link.makeConnection(transport)
    frame = binding_frame("zzzz:efgh")
    link.dataReceived(frame + b"\x00\x05more")  # the first frame, and what followed it
    assert workers.asked == [(icetcp.WHO_HOLDS, "zzzz")]
    [handed] = workers.handed
    assert handed["worker"] == "2.2" and handed["kind"] == "ice-tcp"
    assert handed["token"] == "zzzz" and handed["leftover"] == frame + b"\x00\x05more"
    assert not transport.reading  # the rest is the other worker's to read
    assert transport.disconnecting and not transport._shouldShutdown
    theirs.close()
    transport.socket.close()


def test_each_worker_says_whether_it_holds_a_username_fragment():
    workers = Workers("")
    server = IceTcpServer(8083, Clock(), worker="1.1", peers=workers)
    server.candidates["abcd"] = object()  # type: ignore[assignment]
    assert workers.answerer("abcd") == "1.1"
    assert workers.answerer("zzzz") is None
    assert workers.answerer(["abcd"]) is None
