"""The signalling socket's rules: what may still go out while the client reads
nothing, which pages may connect, how many messages a second."""

from __future__ import annotations

import pytest
from twisted.internet.task import Clock

from wcs.signalling.websocket import MessageRate, SendBudget, origin_allowed


def test_the_budget_counts_from_the_first_pause_whatever_twisted_repeats():
    budget = SendBudget(1000)
    assert budget.spend(10**6)  # not paused: anything goes
    budget.pauseProducing()
    assert budget.spend(600)
    budget.pauseProducing()  # Twisted says it again at every write while the buffer is full
    assert not budget.spend(600)
    budget.resumeProducing()
    assert budget.spend(5000)
    budget.pauseProducing()
    assert budget.spend(900)  # a new pause starts a new count


@pytest.mark.parametrize("origin, host, allowed, ok", [
    (None, "h:8080", (), True),  # not a browser
    ("http://h:8081", "h:8080", (), True),  # the server's own pages (another port)
    ("http://localhost:8081", "127.0.0.1:8080", (), True),  # both loopback
    ("https://evil.example", "h:8080", (), False),
    ("null", "h:8080", (), False),
    ("https://app.example", "h:8080", ("https://app.example",), True),
    ("https://APP.example/", "h:8080", ("https://app.example",), True),
    ("https://evil.example", "h:8080", ("*",), True),
])
def test_which_pages_may_open_a_session(origin, host, allowed, ok):
    assert origin_allowed(origin, host, allowed) is ok


def test_messages_a_second_in_bursts_of_twice_the_rate():
    clock = Clock()
    rate = MessageRate(5, clock)
    assert [rate.take() for _ in range(11)] == [True] * 10 + [False]
    clock.advance(0.2)  # one more message's worth
    assert rate.take() and not rate.take()
    clock.advance(100)
    assert sum(rate.take() for _ in range(20)) == 10


def test_a_token_names_the_worker_whose_session_gave_it_out():
    from wcs.signalling.websocket import token_worker

    assert token_worker("0f6e…-uuid@2.3") == "2.3"
    assert token_worker("abc@node-b/1.1") == "node-b/1.1"
    for foreign in ("plain-uuid", "@2.3", "", "abc@"):
        assert token_worker(foreign) == ""


class Streams:
    """The stream side, as far as a session's connection and media socket go."""

    def __init__(self) -> None:
        self.media: list[tuple[object, object]] = []

    def connect(self, session):
        from twisted.internet.defer import succeed

        return succeed(None)

    def media_transport(self, owner, media) -> None:
        self.media.append((owner, media))

    def release(self, session) -> None:
        pass


def _factory(worker: str = "1.1"):
    from wcs import config
    from wcs.signalling.websocket import SignallingFactory

    return SignallingFactory(config.load(None, {"media_dir": "/tmp"}), Streams(), Clock(),
                             worker=worker)


HANDSHAKE = (b"GET /x HTTP/1.1\r\nHost: 127.0.0.1:8080\r\nUpgrade: websocket\r\n"
             b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
             b"Sec-WebSocket-Version: 13\r\n\r\n")


def _connect(factory, adoption=None):
    from twisted.internet.address import IPv4Address
    from twisted.internet.testing import StringTransport

    factory._adopting = adoption
    protocol = factory.buildProtocol(IPv4Address("TCP", "127.0.0.1", 40000))
    factory._adopting = None
    transport = StringTransport(peerAddress=IPv4Address("TCP", "127.0.0.1", 40000))
    protocol.makeConnection(transport)
    return protocol, transport


def test_a_connection_handed_over_is_replayed_unanswered_and_reaches_its_session():
    import json

    from testkit.harness import encode_frame
    from wcs.signalling.websocket import Adoption

    factory = _factory()
    page, page_wire = _connect(factory)
    page.dataReceived(HANDSHAKE)
    assert page_wire.value().startswith(b"HTTP/1.1 101")
    page.dataReceived(encode_frame(json.dumps({"message": "connection",
                                               "data": [{"appKey": "a"}]}).encode()))
    owner = next(iter(factory.sessions.values()))
    assert owner.established and owner.auth_token.endswith("@1.1")
    ping = encode_frame(json.dumps({"message": "ping", "data": []}).encode())
    media, media_wire = _connect(factory, Adoption(HANDSHAKE, owner.auth_token, ping,
                                                   "127.0.0.1"))
    assert factory.streams.media == [(owner, media.session)]
    out = media_wire.value()
    assert not out.startswith(b"HTTP/1.1")  # the client had its 101 from the other worker
    assert b'"pong"' in out  # the bytes read after connectMediaTransport were read here


def test_an_adopted_socket_with_a_token_no_session_here_has_is_closed():
    from wcs.signalling.websocket import Adoption

    factory = _factory()
    media, wire = _connect(factory, Adoption(HANDSHAKE, "nobody@1.1", b"", "127.0.0.1"))
    assert factory.streams.media == []
    assert b"unknown media token" in wire.value()


def test_a_media_socket_for_another_nodes_session_is_refused_and_that_node_told():
    import json

    from testkit.harness import encode_frame
    from wcs.signalling.websocket import MISDIRECTED_CLOSE_CODE

    factory = _factory("node-b/1.1")
    told: list[tuple[str, str]] = []
    factory.streams.media_transport_misrouted = lambda token, info: told.append((token, info))
    media, wire = _connect(factory)
    media.dataReceived(HANDSHAKE)
    media.dataReceived(encode_frame(json.dumps({
        "message": "connectMediaTransport", "data": [{"authToken": "x@node-a/2.1"}]}).encode()))
    assert told and told[0][0] == "x@node-a/2.1"
    assert "reached node node-b, its session is on node node-a" in told[0][1]
    close = wire.value().split(b"\r\n\r\n", 1)[1]
    assert close[0] == 0x88 and int.from_bytes(close[2:4], "big") == MISDIRECTED_CLOSE_CODE


def test_media_sent_on_a_closing_socket_is_dropped_not_an_error():
    from testkit.harness import encode_frame
    from wcs.signalling.websocket import SocketChannel

    factory = _factory()
    media, wire = _connect(factory)
    media.dataReceived(HANDSHAKE)
    channel = SocketChannel(media)
    channel.send(b"\x09media")
    sent = len(wire.value())
    media.dataReceived(encode_frame(b"\x03\xe8", opcode=8))  # the client's close
    assert media.state == media.STATE_CLOSING or media.state == media.STATE_CLOSED
    channel.send(b"\x09more media")  # a sample due meanwhile: no exception
    assert b"more media" not in wire.value()[sent:]
