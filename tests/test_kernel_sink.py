"""The benchmark's kernel-counted receivers: RTP and RTCP to a sunk port are
counted and dropped before its socket, STUN still reaches it, other ports are
untouched, and a GSO datagram counts as one packet of all its bytes."""

from __future__ import annotations

import socket
import subprocess
import time

import pytest

from testkit.kernel_sink import TABLE, KernelSink

RTP = b"\x80\x60" + bytes(98)  # version 2, payload type 96
RTCP = b"\x80\xc8" + bytes(26)  # a sender report
STUN = b"\x00\x01" + bytes(18)
UDP_SEGMENT = 103


def udp() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.setblocking(False)
    return sock


def received(sock: socket.socket) -> list[bytes]:
    time.sleep(0.05)
    got = []
    while True:
        try:
            got.append(sock.recv(65536))
        except BlockingIOError:
            return got


@pytest.fixture
def sink(loopback):
    made = KernelSink()
    yield made
    made.close()


def test_rtp_and_rtcp_to_a_sunk_port_are_counted_and_dropped_stun_gets_through(sink):
    sunk, other, sender = udp(), udp(), udp()
    sink.add([sunk.getsockname()[1]])
    for target in (sunk, other):
        for datagram in (RTP, RTP, RTP, RTCP, STUN):
            sender.sendto(datagram, target.getsockname())
    assert received(sunk) == [STUN]  # consent checks go on
    assert received(other) == [RTP, RTP, RTP, RTCP, STUN]  # a port not in the set
    counted = sink.counters()
    assert counted["rtp"] == (3, 3 * (len(RTP) + 28))
    assert counted["rtcp"] == (1, len(RTCP) + 28)
    assert sink.payload() == (3, 3 * len(RTP))


def test_a_gso_datagram_counts_as_one_packet_of_all_its_bytes(sink):
    sunk, sender = udp(), udp()
    sink.add([sunk.getsockname()[1]])
    sender.setsockopt(socket.SOL_UDP, UDP_SEGMENT, len(RTP))
    sender.sendto(RTP * 3 + RTP[:40], sunk.getsockname())
    assert received(sunk) == []
    assert sink.payload() == (1, 3 * len(RTP) + 40)


def test_adding_a_port_twice_is_harmless_and_close_removes_the_table(loopback):
    made = KernelSink()
    sock = udp()
    made.add([sock.getsockname()[1]])
    made.add([sock.getsockname()[1], sock.getsockname()[1]])
    assert made.ports == {sock.getsockname()[1]}
    made.close()
    tables = subprocess.run(["nft", "list", "tables"], capture_output=True, check=True).stdout
    assert TABLE.encode() not in tables
