"""The RTMP publishing client against a scripted server: the handshake, the
commands in order, chunking both ways, refusals and hostile answers."""

from __future__ import annotations

import struct

import pytest
from OpenSSL import SSL
from service_identity import VerificationError
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure

from wcs.errors import BadRequest
from wcs.push import amf0
from wcs.push.rtmp import (
    CHUNK_SIZE,
    HANDSHAKE,
    MAX_INCOMING,
    ChunkReader,
    RtmpError,
    RtmpPublisher,
    message,
    target,
    tls_refusal,
)


def test_targets_follow_wcs():
    plain = target("rtmp://example.com/live", "show")
    assert (plain.host, plain.port, plain.app, plain.key) == ("example.com", 1935, "live",
                                                              "rtmp_show")
    assert plain.tc_url == "rtmp://example.com:1935/live"
    assert target("rtmp://h/live", "vod-live://a b.mp4").key == "rtmp_vod-live___a_b.mp4"
    nested = target("rtmp://10.0.0.1:1936/app/inst", "cam", prefix="")
    assert (nested.port, nested.app, nested.key) == (1936, "app/inst", "cam")
    full = target("rtmp://a.example.com/live2/KEY-123?auth=x", "ignored", full_url=True)
    assert (full.app, full.key) == ("live2", "KEY-123?auth=x")
    assert not plain.secure and not full.secure


def test_rtmps_targets_go_over_tls_on_443():
    secure = target("rtmps://live.example.com/rtmp", "show")
    assert (secure.host, secure.port, secure.app, secure.secure) == (
        "live.example.com", 443, "rtmp", True)
    assert secure.tc_url == "rtmps://live.example.com:443/rtmp"
    assert target("rtmps://h:8443/app/KEY", "x", full_url=True).port == 8443


@pytest.mark.parametrize("url, why", [
    ("http://example.com/live", "only rtmp:// and rtmps://"),
    ("rtmpt://example.com/live", "only rtmp:// and rtmps://"),
    ("rtmp://example.com", "application"),
    ("rtmps://example.com", "rtmps://host"),
    ("rtmp:///live", "application"),
    ("rtmp://example.com:port/live", "port"),
    ("rtmp://example.com/live\n", "must be an rtmp:// or rtmps:// URL"),
    (7, "must be an rtmp:// or rtmps:// URL"),
])
def test_bad_targets_say_why(url, why):
    with pytest.raises(BadRequest, match=why):
        target(url, "show")


def test_full_urls_need_a_key():
    with pytest.raises(BadRequest, match="application/key"):
        target("rtmp://example.com/live", "show", full_url=True)


def read_all(data: bytes, chunk_size: int = 128) -> list[tuple[int, int, int, bytes]]:
    reader = ChunkReader()
    reader.chunk_size = chunk_size
    buffer = bytearray(data)
    out = reader.feed(buffer)
    assert not buffer, "bytes left over"
    return out


def test_messages_are_chunked_and_read_back_whole():
    body = bytes(range(256)) * 40  # 10240 bytes: three chunks of 4096
    chunks = b"".join(message(6, 9, 1234, body, 1))
    assert chunks.count(bytes([0xC6])) >= 2  # type 3 continuations on chunk stream 6
    assert read_all(chunks, CHUNK_SIZE) == [(9, 1, 1234, body)]


def test_an_extended_timestamp_travels_in_every_chunk():
    body = b"v" * 9000
    stamp = 0x1234567
    chunks = b"".join(message(6, 9, stamp, body, 1))
    assert chunks.count(struct.pack(">I", stamp)) == 3
    assert read_all(chunks, CHUNK_SIZE) == [(9, 1, stamp, body)]


def test_a_bodys_chunks_are_cut_once_and_shared_by_every_push():
    from wcs.push import rtmp

    body = bytes(range(256)) * 40
    one, two = message(6, 9, 1000, body, 1), message(6, 9, 2000, body, 1)
    assert one[1] is two[1] and one[0] != two[0]  # only the header is a push's own
    assert read_all(b"".join(two), CHUNK_SIZE) == [(9, 1, 2000, body)]
    for n in range(rtmp.CHUNKED + 20):
        message(6, 9, n, n.to_bytes(4, "big") * 2000, 1)
    assert len(rtmp._chunked) <= rtmp.CHUNKED


def test_the_reader_follows_set_chunk_size_and_waits_for_more():
    reader = ChunkReader()
    data = b"".join(message(2, 1, 0, struct.pack(">I", 1000)))
    data += b"".join(message(3, 20, 0, b"c" * 900, chunk_size=1000))
    buffer = bytearray(data[:-10])
    assert [kind for kind, *_ in reader.feed(buffer)] == [1]
    assert reader.chunk_size == 1000
    buffer += data[-10:]
    assert reader.feed(buffer) == [(20, 0, 0, b"c" * 900)] and not buffer


def test_hostile_chunks_are_refused():
    with pytest.raises(RtmpError, match="message of"):
        ChunkReader().feed(bytearray(b"\x03" + b"\x00" * 3 + (MAX_INCOMING + 1).to_bytes(
            3, "big") + b"\x14" + b"\x00" * 4))
    streams = bytearray(b"".join(b"".join(message(n, 20, 0, b"x")) for n in range(2, 63)))
    for extra in range(10):  # chunk streams 64 and up, each new: too many
        streams += b"\x00" + bytes([extra]) + b"\x00" * 11
    with pytest.raises(RtmpError, match="too many chunk streams"):
        ChunkReader().feed(streams)


class Server:
    """The server's side of one publisher, driven by hand."""

    def __init__(self) -> None:
        self.events: list[object] = []
        self.publisher = RtmpPublisher(
            target("rtmp://127.0.0.1/live", "show"), {"width": 640.0},
            lambda: self.events.append("publishing"), self.events.append)
        self.transport = StringTransport()
        self.publisher.makeConnection(self.transport)
        self.reader = ChunkReader()
        self.seen = bytearray()

    def handshake(self) -> None:
        c0c1 = self.transport.value()
        assert len(c0c1) == 1 + HANDSHAKE and c0c1[0] == 3
        self.transport.clear()
        s1 = b"\x00" * 8 + b"s" * (HANDSHAKE - 8)
        self.publisher.dataReceived(b"\x03" + s1 + c0c1[1:])
        assert self.transport.value()[:HANDSHAKE] == s1  # C2 echoes S1
        self.seen += self.transport.value()[HANDSHAKE:]
        self.transport.clear()

    def sent(self) -> list[tuple[int, int, list]]:
        """The messages the client sent since last asked, commands decoded."""
        self.seen += self.transport.value()
        self.transport.clear()
        return [(kind, stream, amf0.decode(body) if kind in (18, 20) else body)
                for kind, stream, _, body in self.reader.feed(self.seen)]

    def publishing(self) -> None:
        """The handshake, then yes to connect, createStream and publish."""
        self.handshake()
        self.command("_result", 1.0, None, {})
        self.command("_result", 4.0, None, 1.0)
        self.command("onStatus", 0.0, None, {"code": "NetStream.Publish.Start"}, stream=1)

    def command(self, *values: object, stream: int = 0) -> None:
        self.publisher.dataReceived(b"".join(message(3, 20, 0, amf0.encode(*values), stream,
                                                     chunk_size=128)))


def test_a_publish_goes_through_the_commands_in_order():
    server = Server()
    server.handshake()
    sent = server.sent()
    assert sent[0] == (1, 0, struct.pack(">I", CHUNK_SIZE))
    assert sent[1][2][0] == "connect" and sent[1][2][2]["app"] == "live"
    assert sent[1][2][2]["tcUrl"] == "rtmp://127.0.0.1:1935/live"
    server.command("_result", 1.0, None, {"code": "NetConnection.Connect.Success"})
    assert [values[0] for _, _, values in server.sent()] == [
        "releaseStream", "FCPublish", "createStream"]
    server.command("_result", 4.0, None, 7.0)
    (kind, stream, values), = server.sent()
    assert (values[0], stream, values[3], values[4]) == ("publish", 7, "rtmp_show", "live")
    server.command("onStatus", 0.0, None, {"level": "status", "code": "NetStream.Publish.Start"},
                   stream=7)
    assert server.events == ["publishing"]
    (kind, stream, values), = server.sent()
    assert (kind, stream, values[:2]) == (18, 7, ["@setDataFrame", "onMetaData"])
    server.publisher.send_media(9, 40, b"\x17\x01\x00\x00\x00frame")
    assert server.sent() == [(9, 7, b"\x17\x01\x00\x00\x00frame")]


def test_pings_are_answered_and_windows_acknowledged():
    server = Server()
    server.handshake()
    server.sent()
    server.publisher.dataReceived(b"".join(message(2, 5, 0, struct.pack(">I", 5000))))
    server.publisher.dataReceived(b"".join(message(2, 4, 0, b"\x00\x06\x00\x00\x01\x02")))
    assert (4, 0, b"\x00\x07\x00\x00\x01\x02") in server.sent()
    server.command("onBWDone", 0.0, None, "x" * 4000)
    assert any(kind == 3 for kind, _, _ in server.sent())  # an acknowledgement


@pytest.mark.parametrize("answer, why", [
    (("_error", 1.0, None, {"code": "NetConnection.Connect.Rejected",
                            "description": "no such app"}), "no such app"),
    (("onStatus", 0.0, None, {"level": "error", "code": "NetStream.Publish.BadName"}),
     "BadName"),
])
def test_a_refusal_is_final(answer, why):
    server = Server()
    server.handshake()
    server.command(*answer)
    assert server.transport.disconnecting
    server.publisher.connectionLost()
    error, = server.events
    assert isinstance(error, RtmpError) and error.final and why in str(error)


def test_a_server_that_is_not_rtmp_is_left():
    server = Server()
    server.publisher.dataReceived(b"HTTP/1.1 400 Bad Request\r\n" + b"x" * 4000)
    assert server.transport.disconnecting
    server.publisher.connectionLost()
    error, = server.events
    assert "not an RTMP server" in str(error) and not error.final


def test_a_drop_after_publishing_can_be_tried_again():
    server = Server()
    server.publishing()
    server.publisher.connectionLost()
    error = server.events[-1]
    assert "closed the connection" in str(error) and not error.final


class Producer:
    def pauseProducing(self) -> None: ...
    def resumeProducing(self) -> None: ...
    def stopProducing(self) -> None: ...


def test_a_hang_up_lets_go_of_the_push_first():
    """TLS sends its close only once no producer is registered: a push that is
    stopped (or refused) must not keep the connection half open."""
    server = Server()
    server.publisher.attach(Producer())
    assert server.transport.producer is not None
    server.publisher.close()
    assert server.transport.producer is None and server.transport.disconnecting


def test_a_certificate_refused_is_final_and_says_why():
    server = Server()  # TLS fails before any RTMP comes back
    server.publisher.connectionLost(Failure(SSL.Error([
        ("SSL routines", "", "certificate verify failed")])))
    error, = server.events
    assert str(error) == "TLS: certificate verify failed" and error.final
    other_host = Server()
    other_host.publisher.connectionLost(Failure(VerificationError(["no match"])))
    error, = other_host.events
    assert str(error).startswith("TLS: the certificate is not for this host") and error.final
    assert tls_refusal(Failure(ConnectionRefusedError())) == ""
    assert tls_refusal(Failure(SSL.SysCallError(104, "ECONNRESET"))) == \
        "SysCallError (104, 'ECONNRESET')"


def test_a_tls_error_while_publishing_may_be_tried_again():
    server = Server()
    server.publishing()
    server.publisher.connectionLost(Failure(SSL.Error([("SSL routines", "", "bad record mac")])))
    error = server.events[-1]
    assert str(error) == "TLS: bad record mac" and not error.final


def test_only_a_publishing_connection_is_closed_in_order():
    waiting = Server()
    waiting.publisher.close()  # nothing worth sending: at once (TLS would wait)
    assert waiting.transport.disconnected  # StringTransport's mark of an abort
    publishing = Server()
    publishing.publishing()
    publishing.publisher.close()  # what was written goes out first
    assert publishing.transport.disconnecting and not publishing.transport.disconnected
    stalled = Server()
    stalled.publishing()
    stalled.publisher.close(abort=True)  # a server that reads nothing
    assert stalled.transport.disconnected
