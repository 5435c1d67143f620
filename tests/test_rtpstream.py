"""One viewer's RTP track on the fast path: the C loop and the Python loop write
the same bytes; numbering, timestamps, marker, extensions, keyframe wait, NACK lookup."""

from __future__ import annotations

import os
import socket
import struct
import sys

import pytest
from pylibsrtp import Policy, Session

from wcs.webrtc import rtpstream
from wcs.webrtc.rtpstream import PyRtpStream, open_stream, send_all

KEY = os.urandom(30)
#: mid "1" (id 1) and abs-send-time (id 3), as aiortc writes them for video
EXTENSION = b"\xbe\xde\x00\x02" + b"\x10\x31" + b"\x32\x00\x00\x00" + b"\x00\x00"
ABS_AT = 4 + 2 + 1


def session() -> Session:
    return Session(
        Policy(
            key=KEY,
            ssrc_type=Policy.SSRC_ANY_OUTBOUND,
            srtp_profile=Policy.SRTP_PROFILE_AES128_CM_SHA1_80,
        )
    )


def receiver() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.settimeout(2)
    return sock


def stream(native: bool, to: socket.socket, video: bool = True, gso: bool = True,
           sender: socket.socket | None = None) -> tuple:
    sender = sender or socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    keys = session()
    made = open_stream(
        sender,
        to.getsockname(),
        keys,
        0x11223344,
        102,
        65534,
        4000000000,
        EXTENSION,
        ABS_AT,
        video,
        native=native,
        gso=gso,
    )
    return made, keys, sender


def received(sock: socket.socket, count: int) -> list[bytes]:
    return [sock.recv(2048) for _ in range(count)]


PAYLOADS = [
    (b"\x7c\x85" + bytes(range(200)) * 6, b"\x7c\x45" + b"x" * 300),
    (b"\x41\x9a" + b"p" * 50,),
    (b"\x65" + b"k" * 900, b"\x06\x05" + b"s" * 20),
]


def run(native: bool) -> list[bytes]:
    sock = receiver()
    track, _keys, _sender = stream(native, sock)
    track.send(PAYLOADS[0], 90000, True, 0x123456, 1.5)
    track.send(PAYLOADS[1], 93000, False, 0x123457, 1.6)
    send_all([track], PAYLOADS[2], 96000, True, 0xABCDEF, 1.7)
    return received(sock, 5)


def test_the_c_loop_is_built():
    assert rtpstream._rtpout is not None, "scripts/install.sh builds wcs/webrtc/_rtpout.c"


def test_c_and_python_write_the_same_bytes():
    assert run(native=True) == run(native=False)


@pytest.mark.parametrize("native", [True, False])
def test_headers_numbering_and_state(native):
    sock = receiver()
    track, _keys, _ = stream(native, sock)
    track.send(PAYLOADS[1], 3000, False, 1, 1.0)  # not a keyframe: nothing yet
    assert track.packets == 0 and track.need_key
    track.send(PAYLOADS[0], 90000, True, 0x123456, 2.0)
    track.send(PAYLOADS[1], 93000, False, 0x123457, 3.0)
    packets = received(sock, 3)
    plain = [
        Session(
            Policy(
                key=KEY,
                ssrc_type=Policy.SSRC_ANY_INBOUND,
                srtp_profile=Policy.SRTP_PROFILE_AES128_CM_SHA1_80,
            )
        )
    ]
    decoded = [plain[0].unprotect(p) for p in packets]
    headers = [struct.unpack("!BBHII", d[:12]) for d in decoded]
    ts0 = (4000000000 + 90000) & 0xFFFFFFFF
    assert headers == [
        (0x90, 102, 65534, ts0, 0x11223344),
        (0x90, 0x80 | 102, 65535, ts0, 0x11223344),
        (0x90, 0x80 | 102, 0, (4000000000 + 93000) & 0xFFFFFFFF, 0x11223344),
    ]
    assert decoded[0][12:24] == EXTENSION[:ABS_AT] + b"\x12\x34\x56" + EXTENSION[ABS_AT + 3 :]
    assert [d[24:] for d in decoded] == [*PAYLOADS[0], *PAYLOADS[1]]
    assert (track.seq, track.packets, track.last_time) == (1, 3, 3.0)
    assert track.octets == sum(map(len, PAYLOADS[0] + PAYLOADS[1]))
    assert track.find(65535) == (PAYLOADS[0], 1, ts0)
    assert track.find(0) == (PAYLOADS[1], 0, (4000000000 + 93000) & 0xFFFFFFFF)
    assert track.find(5) is None


@pytest.mark.parametrize("native", [True, False])
def test_audio_never_waits_for_a_keyframe(native):
    sock = receiver()
    track, _, _ = stream(native, sock, video=False)
    track.send((b"opus",), 960, False, 0, 1.0)
    assert track.packets == 1 and not track.need_key
    track.need_key = True
    assert not track.need_key  # only video waits


def test_a_stream_keeps_its_socket_when_the_owner_closes_its_own():
    sock = receiver()
    track, _, sender = stream(True, sock)
    sender.close()
    track.send(PAYLOADS[0], 0, True, 0, 1.0)
    assert len(received(sock, 2)) == 2


class FullSocket:
    """A socket whose buffer is full: every send would block."""

    def __init__(self) -> None:
        self.sent = 0

    def dup(self) -> FullSocket:
        return self

    def fileno(self) -> int:
        return -1

    def sendto(self, data: bytes, address: object) -> int:
        self.sent += 1
        if self.sent > 1:
            raise BlockingIOError
        return len(data)


def test_python_a_full_socket_cuts_the_sample_short_and_waits_for_a_keyframe():
    full = FullSocket()
    track = PyRtpStream(full, ("127.0.0.1", 9), session(), 1, 96, 0, 0, b"", -1, True)
    track.send(PAYLOADS[0], 0, True, 0, 1.0)  # two packets: the second does not fit
    assert (track.packets, track.dropped, track.need_key, track.seq) == (1, 1, True, 1)
    track.send(PAYLOADS[1], 3000, False, 0, 1.1)
    assert full.sent == 2  # a delta frame is not even tried


def test_c_a_socket_that_refuses_cuts_the_sample_short_and_waits_for_a_keyframe():
    wrong = socket.socket(socket.AF_INET, socket.SOCK_STREAM)  # not connected: refuses
    keys = session()
    track = open_stream(wrong, ("127.0.0.1", 9), keys, 1, 96, 0, 0, b"", -1, True)
    track.send(PAYLOADS[0], 0, True, 0, 1.0)
    assert (track.packets, track.dropped, track.need_key, track.seq) == (0, 1, True, 0)


@pytest.mark.parametrize("native", [True, False])
def test_a_sample_that_cannot_go_out_whole_is_refused_before_anything_is_sent(native):
    sock = receiver()
    track, _, _ = stream(native, sock)
    with pytest.raises(ValueError, match="too large"):
        track.send((b"\x65" + b"k" * 100, b"x" * 1490), 0, True, 0, 1.0)
    with pytest.raises(ValueError, match="too large"):
        send_all([track], (b"x" * 1480,), 0, True, 0, 1.0)
    assert (track.packets, track.seq, track.need_key) == (0, 65534, True)
    sock.settimeout(0.2)
    with pytest.raises(TimeoutError):
        sock.recv(2048)


@pytest.mark.parametrize("native", [True, False])
def test_a_closed_stream_sends_nothing_more(native):
    sock = receiver()
    track, _, _ = stream(native, sock)
    track.close()
    assert track.closed
    track.send(PAYLOADS[0], 0, True, 0, 1.0)
    send_all([track], PAYLOADS[0], 0, True, 0, 1.0)
    track.send_raw(b"raw")
    assert track.packets == 0
    sock.settimeout(0.2)
    with pytest.raises(TimeoutError):
        sock.recv(2048)


@pytest.mark.parametrize("native", [True, False])
def test_bad_parameters_are_refused(native):
    sock = receiver()
    sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    for extension, at, payload_type in (
        (b"\xbe\xde\x00", -1, 96),
        (EXTENSION, 10, 96),
        (EXTENSION, ABS_AT, 128),
    ):
        with pytest.raises(ValueError):
            open_stream(
                sender,
                sock.getsockname(),
                session(),
                1,
                payload_type,
                0,
                0,
                extension,
                at,
                True,
                native=native,
            )


def test_an_uninitialised_c_stream_does_not_crash():
    stream_type = rtpstream._rtpout.RtpStream
    blank = stream_type.__new__(stream_type)
    blank.send(PAYLOADS[0], 0, True, 0, 1.0)  # nothing to send with: nothing sent
    assert blank.packets == 0


# samples around the C loop's batch of 64 packets, and many streams at once


def sample_of(count: int) -> tuple[bytes, ...]:
    """``count`` distinct payloads small enough that 200 fit a receive buffer."""
    return tuple(
        bytes([0x7C, 0x05 | (0x40 if i == count - 1 else 0)]) + i.to_bytes(2, "big") * 20
        for i in range(count)
    )


def unprotected(packets: list[bytes]) -> list[bytes]:
    keys = Session(
        Policy(
            key=KEY,
            ssrc_type=Policy.SSRC_ANY_INBOUND,
            srtp_profile=Policy.SRTP_PROFILE_AES128_CM_SHA1_80,
        )
    )
    return [keys.unprotect(p) for p in packets]


@pytest.mark.parametrize("count", [1, 64, 65, 200])
def test_samples_across_the_batch_boundary_go_out_whole_and_alike(count):
    payloads = sample_of(count)
    sent = {}
    for native in (True, False):
        sock = receiver()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        track, _keys, _sender = stream(native, sock)
        track.send(payloads, 90000, True, 0x10203, 1.0)
        sent[native] = received(sock, count)
        assert (track.packets, track.dropped, track.seq) == (count, 0, (65534 + count) & 0xFFFF)
        assert track.find((65534 + count - 1) & 0xFFFF) == (
            payloads,
            count - 1,
            (4000000000 + 90000) & 0xFFFFFFFF,
        )
    assert sent[True] == sent[False]
    decoded = unprotected(sent[True])
    numbers = [struct.unpack("!H", d[2:4])[0] for d in decoded]
    assert numbers == [(65534 + i) & 0xFFFF for i in range(count)]
    markers = [d[1] & 0x80 for d in decoded]
    assert markers == [0] * (count - 1) + [0x80]
    assert [d[24:] for d in decoded] == list(payloads)


@pytest.mark.parametrize("native", [True, False])
def test_send_all_numbers_each_of_many_streams_on_its_own(native):
    sock = receiver()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
    keys = session()
    senders = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(30)]
    tracks = [
        open_stream(
            s,
            sock.getsockname(),
            keys,
            1000 + i,
            96,
            i * 1000,
            i,
            EXTENSION,
            ABS_AT,
            True,
            native=native,
        )
        for i, s in enumerate(senders)
    ]
    payloads = sample_of(70)
    send_all(tracks, payloads, 90000, True, 0x111111, 1.0)
    send_all(tracks, payloads[:3], 93000, False, 0x111112, 1.1)
    decoded = unprotected(received(sock, 30 * 73))
    by_ssrc: dict[int, list[tuple[int, int]]] = {}
    for d in decoded:
        _, _, seq, ts, ssrc = struct.unpack("!BBHII", d[:12])
        by_ssrc.setdefault(ssrc, []).append((seq, ts))
    assert sorted(by_ssrc) == [1000 + i for i in range(30)]
    for i in range(30):
        rows = by_ssrc[1000 + i]
        assert [seq for seq, _ in rows] == [i * 1000 + n for n in range(73)]
        assert {ts for _, ts in rows[:70]} == {i + 90000} and {ts for _, ts in rows[70:]} == {
            i + 93000
        }
    assert [t.packets for t in tracks] == [73] * 30


# UDP GSO: a sample's equal-size packets as one datagram the kernel cuts


def sizes(*lengths: int) -> tuple[bytes, ...]:
    """Payloads of these lengths (each distinct, so order shows)."""
    return tuple(bytes([0x7C, i]) + bytes([i]) * (n - 2) for i, n in enumerate(lengths))


@pytest.mark.parametrize(
    "lengths, datagrams",
    [
        ((1000,), 1),
        ((1000, 1000, 1000), 1),
        ((1000, 1000, 999), 1),  # only the last may be shorter
        ((1001, 1000, 1000), 2),  # aiortc's FU-A cut: the first ones a byte longer
        ((30, 1000, 1000), 2),  # a STAP-A before a keyframe's fragments
        ((1000, 30, 1000), 2),
        ((42,) * 64, 1),
        ((42,) * 65, 2),  # a batch (and the kernel's segment limit) is 64
        ((1200,) * 60, 2),  # a datagram carries at most 60,000 bytes
    ],
)
def test_gso_sends_a_run_of_equal_packets_as_one_datagram(lengths, datagrams):
    payloads = sizes(*lengths)
    got = {}
    for gso in (True, False):
        sock = receiver()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 22)
        track, _keys, _ = stream(True, sock, gso=gso)
        track.send(payloads, 90000, True, 0x10203, 1.0)
        got[gso] = received(sock, len(payloads))
        assert track.packets == len(payloads) and track.gso == gso
        assert track.datagrams == (datagrams if gso else len(payloads))
    assert got[True] == got[False]  # the receiver sees the same packets
    assert [d[24:] for d in unprotected(got[True])] == list(payloads)


def test_a_socket_that_refuses_gso_falls_back_to_a_datagram_a_packet():
    sock = receiver()
    sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sender.setsockopt(socket.SOL_SOCKET, 11, 1)  # SO_NO_CHECK: Linux refuses GSO (EINVAL)
    track, _keys, _ = stream(True, sock, sender=sender)
    payloads = sizes(1000, 1000, 700)
    track.send(payloads, 90000, True, 0x10203, 1.0)
    track.send(payloads, 93000, False, 0x10204, 1.1)
    assert not track.gso and (track.packets, track.datagrams, track.dropped) == (6, 6, 0)
    assert [d[24:] for d in unprotected(received(sock, 6))] == list(payloads) * 2


def test_gso_is_not_used_over_tcp():
    left, right = socket.socketpair()
    sink = rtpstream.open_sink(left)
    track = open_stream(None, ("127.0.0.1", 9), session(), 1, 96, 0, 0, b"", -1, True, sink=sink,
                        gso=True)
    assert not track.gso
    track.send(sizes(500, 500), 90000, True, 0, 1.0)
    assert track.datagrams == 0 and track.packets == 2
    right.close()
    left.close()


# every refusal, and the ways a caller could break a C loop that trusted it


def c_stream(**changes):
    sock = receiver()
    sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    keys = session()
    made = open_stream(sender, sock.getsockname(), keys, 1, 96, 0, 0, EXTENSION, ABS_AT, True)
    arguments = dict(
        fd=sender.fileno(),
        host="127.0.0.1",
        port=sock.getsockname()[1],
        protect=1,
        context=1,
        session=keys,
        ssrc=1,
        payload_type=96,
        seq=0,
        ts_base=0,
        extension=EXTENSION,
        abs_send_time_at=ABS_AT,
        video=True,
    )
    arguments.update(changes)
    return made, arguments, (sock, sender)


@pytest.mark.parametrize(
    "change, problem",
    [
        ({"fd": -1}, "fd"),
        ({"port": -1}, "port"),
        ({"port": 65536}, "port"),
        ({"port": 2**31 - 1}, "port"),
        ({"protect": 0}, "protect"),
        ({"context": 0}, "protect"),
        ({"ssrc": -1}, "ssrc"),
        ({"ssrc": 2**32}, "ssrc"),
        ({"payload_type": -1}, "payload_type"),
        ({"payload_type": 128}, "payload_type"),
        ({"seq": -1}, "seq"),
        ({"seq": 65536}, "seq"),
        ({"ts_base": -1}, "ts_base"),
        ({"ts_base": 2**32}, "ts_base"),
        ({"extension": b"\xbe\xde\x00"}, "extension"),
        ({"extension": b"\x00" * 68}, "extension"),
        ({"abs_send_time_at": -2}, "abs_send_time_at"),
        ({"abs_send_time_at": 10}, "abs_send_time_at"),
        ({"abs_send_time_at": sys.maxsize}, "abs_send_time_at"),
        ({"abs_send_time_at": 0, "extension": b""}, "abs_send_time_at"),
        ({"host": "not an address"}, "not an IP address"),
        ({"key": b"k" * 30}, "key"),
        ({"key": b"k" * 16}, "key"),
        ({"key": bytearray(28)}, "key"),
    ],
)
def test_c_stream_refuses_every_bad_parameter_by_name(change, problem):
    made, arguments, _keep = c_stream(**change)
    with pytest.raises(ValueError, match=problem):
        type(made)(**arguments)
    # the refused re-initialisation changed nothing of a working stream
    with pytest.raises(ValueError, match=problem):
        made.__init__(**arguments)
    made.send(PAYLOADS[0], 0, True, 0, 1.0)
    assert made.packets == 2 and not made.closed


@pytest.mark.parametrize(
    "change",
    [
        {"port": 65536},
        {"ssrc": 2**32},
        {"seq": 65536},
        {"ts_base": -1},
        {"abs_send_time_at": sys.maxsize},
        {"abs_send_time_at": -2},
    ],
)
def test_python_stream_refuses_what_the_c_stream_refuses(change):
    sock = receiver()
    sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    values = dict(
        address=("127.0.0.1", 9),
        ssrc=1,
        payload_type=96,
        seq=0,
        ts_base=0,
        extension=EXTENSION,
        abs_send_time_at=ABS_AT,
    )
    if "port" in change:
        values["address"] = ("127.0.0.1", change.pop("port"))
    values.update(change)
    with pytest.raises(ValueError, match="bad RtpStream parameters"):
        PyRtpStream(
            sender,
            values["address"],
            session(),
            values["ssrc"],
            values["payload_type"],
            values["seq"],
            values["ts_base"],
            values["extension"],
            values["abs_send_time_at"],
            True,
        )
    sock.close()


def test_need_key_cannot_be_deleted():
    made, _arguments, _keep = c_stream()
    with pytest.raises(AttributeError, match="cannot be deleted"):
        del made.need_key
    assert made.need_key


class Payloads(tuple):
    def __len__(self):  # a subclass could lie; the C loop must never ask it
        return 10**6


class Payload(bytes):
    pass


class Streams(list):
    pass


@pytest.mark.parametrize("native", [True, False])
def test_only_exact_tuples_and_bytes_are_sent(native):
    sock = receiver()
    track, _, _ = stream(native, sock)
    for bad, message in (
        (Payloads(PAYLOADS[0]), "tuple"),
        ([b"x"], "tuple"),
        ((Payload(b"x"),), "bytes"),
        ((bytearray(b"x"),), "bytes"),
    ):
        with pytest.raises(TypeError, match=message):
            track.send(bad, 0, True, 0, 1.0)
        with pytest.raises(TypeError, match=message):
            send_all([track], bad, 0, True, 0, 1.0)
    assert track.packets == 0


def test_c_send_all_takes_only_a_plain_list_of_c_streams():
    made, _arguments, _keep = c_stream()
    with pytest.raises(TypeError, match="list"):
        rtpstream._rtpout.send_all(Streams([made]), PAYLOADS[0], 0, True, 0, 1.0)
    with pytest.raises(TypeError, match="list"):
        rtpstream._rtpout.send_all((made,), PAYLOADS[0], 0, True, 0, 1.0)
    with pytest.raises(TypeError, match="RtpStream"):
        rtpstream._rtpout.send_all([made, object()], PAYLOADS[0], 0, True, 0, 1.0)
    assert made.packets == 0  # refused before any stream sent
    with pytest.raises(TypeError):
        type("Sub", (type(made),), {})  # not a base type: no subclass can be made


def test_c_send_all_holds_its_streams_while_it_sends():
    """The list is copied first: dropping every other reference mid-call is safe."""
    sock = receiver()
    tracks, kept = [], []
    for _ in range(3):
        made, _arguments, keep = c_stream()
        kept.append(keep)  # its receiver and sender outlive the call
        tracks.append(made)
    streams = list(tracks)
    del tracks, made
    rtpstream._rtpout.send_all(streams, PAYLOADS[0], 0, True, 0, 1.0)
    assert [s.packets for s in streams] == [2, 2, 2]
    sock.close()


GCM = {16: Policy.SRTP_PROFILE_AEAD_AES_128_GCM, 32: Policy.SRTP_PROFILE_AEAD_AES_256_GCM}


def gcm_pair(key_length: int) -> tuple:
    """Two senders of one track from 65534 on (the numbers wrap): the C loop
    protecting with its own AES-GCM, and the Python loop through libsrtp; and a
    receiving libsrtp session, as a browser's."""
    master = os.urandom(key_length + 12)

    def policy(direction: int) -> Policy:
        return Policy(key=master, ssrc_type=direction, srtp_profile=GCM[key_length])

    sock = receiver()
    own = open_stream(socket.socket(socket.AF_INET, socket.SOCK_DGRAM), sock.getsockname(),
                      Session(policy(Policy.SSRC_ANY_OUTBOUND)), 0x11223344, 102, 65534,
                      4000000000, EXTENSION, ABS_AT, True, native=True, key=master)
    libsrtp = open_stream(socket.socket(socket.AF_INET, socket.SOCK_DGRAM), sock.getsockname(),
                          Session(policy(Policy.SSRC_ANY_OUTBOUND)), 0x11223344, 102, 65534,
                          4000000000, EXTENSION, ABS_AT, True, native=False)
    return own, libsrtp, sock, Session(policy(Policy.SSRC_ANY_INBOUND))


@pytest.mark.parametrize("key_length", [16, 32])
def test_the_c_loop_protects_aes_gcm_itself_with_the_bytes_libsrtp_makes(key_length):
    own, libsrtp, sock, browser = gcm_pair(key_length)
    assert own.own_srtp
    sent = []
    for track in (own, libsrtp):
        for n, payloads in enumerate(PAYLOADS * 3):  # 15 packets: 65534, 65535, 0, 1...
            track.send(payloads, 90000 + 3000 * n, n == 0, 0x123456 + n, 1.5 + n / 30)
        sent.append(received(sock, 15))
    assert sent[0] == sent[1]
    numbers = [browser.unprotect(packet)[2:4] for packet in sent[0]]  # a receiver reads them
    assert [int.from_bytes(n, "big") for n in numbers] == [65534, 65535, *range(13)]


@pytest.mark.parametrize("key_length", [16, 32])
def test_a_resend_is_protected_with_its_number_s_rollover_counter(key_length):
    """A NACKed packet sent again as it was: from before the numbers wrapped
    and after, it comes out as the first send did."""
    own, _libsrtp, sock, browser = gcm_pair(key_length)
    for n, payloads in enumerate(PAYLOADS * 3):
        own.send(payloads, 90000 + 3000 * n, n == 0, 0x123456 + n, 1.5 + n / 30)
    first = received(sock, 15)
    for packet in (first[1], first[2], first[-1]):  # numbers 65535, 0, 12
        plain = browser.unprotect(packet)
        assert own.protect(plain) == packet
    for junk in (b"", b"\x80" * 11, b"\x00" * 40, b"\x90" + b"\x00" * 11, b"\x80" * 2000):
        with pytest.raises(ValueError, match="RTP packet"):
            own.protect(junk)


def test_a_stream_without_a_key_protects_a_resend_through_libsrtp():
    sock = receiver()
    track, keys, _sender = stream(True, sock)
    packet = struct.pack("!BBHII", 0x80, 102, 7, 1, 0x11223344) + b"p" * 10
    assert not track.own_srtp
    protected = track.protect(packet)
    assert protected[:12] == packet[:12] and len(protected) == len(packet) + 10  # SHA1-80 tag


def test_the_c_loop_is_taken_only_for_libsrtp_2s_protect():
    assert rtpstream.PROTECT_SIGNATURE == (
        "srtp_err_status_t(*)(struct srtp_ctx_t_ *, void *, int *)"
    )
    assert rtpstream.NATIVE_UNUSABLE == ""
    from pylibsrtp._binding import ffi, lib

    assert ffi.typeof(lib.srtp_protect).cname == rtpstream.PROTECT_SIGNATURE
