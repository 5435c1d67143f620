"""write_now: a broadcast's bytes sent at once on an idle TCP connection, queued
behind what waits, split where the kernel's buffer ends, in order always."""

from __future__ import annotations

import socket

from twisted.internet import tcp
from twisted.internet.protocol import Protocol
from twisted.internet.testing import StringTransport

from wcs.tcp_writes import write_now


class Reactor:
    """Just what a tcp.Server asks of its reactor: who reads, who waits to write."""

    def __init__(self) -> None:
        self.readers: set[object] = set()
        self.writers: set[object] = set()

    def addReader(self, reader: object) -> None:
        self.readers.add(reader)

    def removeReader(self, reader: object) -> None:
        self.readers.discard(reader)

    def addWriter(self, writer: object) -> None:
        self.writers.add(writer)

    def removeWriter(self, writer: object) -> None:
        self.writers.discard(writer)


def connection(send_buffer: int | None = None) -> tuple[tcp.Server, socket.socket, Reactor]:
    ours, peer = socket.socketpair()
    if send_buffer is not None:
        ours.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, send_buffer)
    ours.setblocking(False)
    reactor = Reactor()
    server = tcp.Server(ours, Protocol(), ("127.0.0.1", 1), None, 1, reactor)  # type: ignore[arg-type]
    return server, peer, reactor


def read_all(peer: socket.socket, count: int) -> bytes:
    got = b""
    peer.settimeout(2)
    while len(got) < count:
        got += peer.recv(1 << 20)
    return got


def test_an_idle_connection_sends_at_once_without_waking_the_reactor():
    server, peer, reactor = connection()
    write_now(server, b"head", b"-body")
    assert not reactor.writers  # nothing queued: nothing to watch for
    assert read_all(peer, 9) == b"head-body"


def test_bytes_already_queued_go_first():
    server, peer, reactor = connection()
    server.write(b"first ")
    write_now(server, b"second")
    assert reactor.writers == {server}
    peer.setblocking(False)
    try:
        early = peer.recv(100)
    except BlockingIOError:
        early = b""
    assert early == b""  # nothing jumped the queue
    server.doWrite()
    assert read_all(peer, 12) == b"first second"


def test_what_the_kernel_does_not_take_is_queued_after_the_part_it_took():
    server, peer, reactor = connection(send_buffer=4096)
    parts = [bytes([n]) * 300_000 for n in range(1, 4)]  # far more than the buffer
    write_now(server, *parts)
    assert reactor.writers == {server}  # the rest waits for room
    total = sum(map(len, parts))
    got = b""
    peer.setblocking(False)
    for _ in range(10_000):
        try:
            got += peer.recv(1 << 20)
        except BlockingIOError:
            server.doWrite()
        if len(got) == total:
            break
    assert got == b"".join(parts)


def test_a_transport_that_is_not_plain_tcp_is_written_as_usual():
    transport = StringTransport()
    write_now(transport, b"a", b"b")
    assert transport.value() == b"ab"


def test_a_closed_peer_is_left_for_twisted_to_find():
    server, peer, reactor = connection()
    peer.close()
    for _ in range(3):  # the first may still go; then EPIPE or ECONNRESET
        write_now(server, b"x" * 1000)
    assert reactor.writers == {server}  # queued: Twisted's doWrite meets the error
    assert server.doWrite() is not None or server.doWrite() is not None
