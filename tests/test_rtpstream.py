"""One viewer's RTP track on the fast path: the C loop and the Python loop write
the same bytes; numbering, timestamps, marker, extensions, keyframe wait, NACK lookup."""

from __future__ import annotations

import os
import socket
import struct

import pytest
from pylibsrtp import Policy, Session

from wcs.webrtc import rtpstream
from wcs.webrtc.rtpstream import PyRtpStream, open_stream, send_all

KEY = os.urandom(30)
#: mid "1" (id 1) and abs-send-time (id 3), as aiortc writes them for video
EXTENSION = b"\xbe\xde\x00\x02" + b"\x10\x31" + b"\x32\x00\x00\x00" + b"\x00\x00"
ABS_AT = 4 + 2 + 1


def session() -> Session:
    return Session(Policy(key=KEY, ssrc_type=Policy.SSRC_ANY_OUTBOUND,
                          srtp_profile=Policy.SRTP_PROFILE_AES128_CM_SHA1_80))


def receiver() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.settimeout(2)
    return sock


def stream(native: bool, to: socket.socket, video: bool = True) -> tuple:
    sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    keys = session()
    made = open_stream(sender, to.getsockname(), keys, 0x11223344, 102, 65534, 4000000000,
                       EXTENSION, ABS_AT, video, native=native)
    return made, keys, sender


def received(sock: socket.socket, count: int) -> list[bytes]:
    return [sock.recv(2048) for _ in range(count)]


PAYLOADS = [(b"\x7c\x85" + bytes(range(200)) * 6, b"\x7c\x45" + b"x" * 300),
            (b"\x41\x9a" + b"p" * 50,), (b"\x65" + b"k" * 900, b"\x06\x05" + b"s" * 20)]


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
    track, keys, _ = stream(native, sock)
    track.send(PAYLOADS[1], 3000, False, 1, 1.0)  # not a keyframe: nothing yet
    assert track.packets == 0 and track.need_key
    track.send(PAYLOADS[0], 90000, True, 0x123456, 2.0)
    track.send(PAYLOADS[1], 93000, False, 0x123457, 3.0)
    packets = received(sock, 3)
    plain = [Session(Policy(key=KEY, ssrc_type=Policy.SSRC_ANY_INBOUND,
                            srtp_profile=Policy.SRTP_PROFILE_AES128_CM_SHA1_80))]
    decoded = [plain[0].unprotect(p) for p in packets]
    headers = [struct.unpack("!BBHII", d[:12]) for d in decoded]
    ts0 = (4000000000 + 90000) & 0xFFFFFFFF
    assert headers == [(0x90, 102, 65534, ts0, 0x11223344),
                       (0x90, 0x80 | 102, 65535, ts0, 0x11223344),
                       (0x90, 0x80 | 102, 0, (4000000000 + 93000) & 0xFFFFFFFF, 0x11223344)]
    assert decoded[0][12:24] == EXTENSION[:ABS_AT] + b"\x12\x34\x56" + EXTENSION[ABS_AT + 3:]
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
    for extension, at, payload_type in ((b"\xbe\xde\x00", -1, 96), (EXTENSION, 10, 96),
                                        (EXTENSION, ABS_AT, 128)):
        with pytest.raises(ValueError):
            open_stream(sender, sock.getsockname(), session(), 1, payload_type, 0, 0,
                        extension, at, True, native=native)


def test_an_uninitialised_c_stream_does_not_crash():
    stream_type = rtpstream._rtpout.RtpStream
    blank = stream_type.__new__(stream_type)
    blank.send(PAYLOADS[0], 0, True, 0, 1.0)  # nothing to send with: nothing sent
    assert blank.packets == 0
