"""The ICE-TCP sink, C (``_rtpout.TcpSink``) and Python (``PyTcpSink``), on real
sockets: RFC 4571 framing, a reader that stops (at most one frame's rest kept,
never a torn stream), the 65535-byte limit, a peer that goes away, close(), and
RtpStreams that write through a sink (alike in C and Python, cut by a full
sink, sharing one connection, through send_all).

Most tests run on a ``socketpair(AF_UNIX, SOCK_STREAM)`` (sendmsg works the same
there) and again on a loopback TCP connection (127.0.0.1 only) with small
buffers. Every loop is bounded; every test takes well under a second.
"""

from __future__ import annotations

import array
import os
import select
import socket
import struct
import time

import pytest
from pylibsrtp import Policy, Session

from tests.test_rtpstream import ABS_AT, EXTENSION, KEY, PAYLOADS, session
from wcs.webrtc import rtpstream
from wcs.webrtc.rtpstream import PyRtpStream, PyTcpSink, open_sink, open_stream, send_all

IMPLEMENTATIONS = [pytest.param(True, id="C"), pytest.param(False, id="Python")]
KINDS = ["unix", "tcp"]
#: A 1200-byte message's frame: its 2-byte length, then it.
FRAME_1200 = 1202
#: The largest frame a stream below writes: length, header, extension, 1200, SRTP tag.
STREAM_FRAME = 2 + 12 + len(EXTENSION) + 1200 + 10
SMALL_BUFFER = 4096
NOWHERE = ("127.0.0.1", 9)  # a framed stream has no address; this one is never used


# sockets


def unix_pair(buffer: int = 0) -> tuple[socket.socket, socket.socket]:
    """A connected AF_UNIX stream pair (writer, reader); a small send buffer if asked."""
    writer, reader = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    if buffer:
        writer.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, buffer)
        reader.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, buffer)
    return writer, reader


def tcp_pair(buffer: int = 0) -> tuple[socket.socket, socket.socket]:
    """A loopback TCP connection on 127.0.0.1 (writer, reader), small buffers if asked
    (set before connecting, so the window is small from the start)."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    if buffer:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, buffer)
    listener.listen(1)
    writer = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if buffer:
        writer.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, buffer)
    writer.connect(listener.getsockname())
    reader, _ = listener.accept()
    listener.close()
    writer.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return writer, reader


def pair(kind: str, buffer: int = 0) -> tuple[socket.socket, socket.socket]:
    return unix_pair(buffer) if kind == "unix" else tcp_pair(buffer)


def available(sock: socket.socket, wait: float = 0.0) -> bytes:
    """What the reader can read now (after waiting up to ``wait`` for something)."""
    out = bytearray()
    ready, _, _ = select.select([sock], [], [], wait)
    while ready:
        try:
            chunk = sock.recv(1 << 20, socket.MSG_DONTWAIT)
        except BlockingIOError:
            break
        if not chunk:
            break
        out += chunk
        ready, _, _ = select.select([sock], [], [], 0)
    return bytes(out)


def read_exactly(sock: socket.socket, size: int, timeout: float = 1.0) -> bytes:
    """``size`` bytes from the reader (whatever came if the deadline passes first)."""
    out = bytearray()
    deadline = time.monotonic() + timeout
    while len(out) < size and time.monotonic() < deadline:
        out += available(sock, 0.01)
    return bytes(out)


def sees_end(sock: socket.socket, timeout: float = 1.0) -> bool:
    """Whether the reader reaches end-of-stream (after whatever data is still there)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready, _, _ = select.select([sock], [], [], 0.02)
        if ready and sock.recv(1 << 20, socket.MSG_DONTWAIT) == b"":
            return True
    return False


def parse(data: bytes) -> list[bytes]:
    """RFC 4571 frames; the byte stream must end on a frame boundary (nothing torn)."""
    frames, at = [], 0
    while at < len(data):
        assert at + 2 <= len(data), f"a torn length at byte {at}"
        (length,) = struct.unpack_from("!H", data, at)
        assert at + 2 + length <= len(data), f"a torn frame at byte {at}"
        frames.append(data[at + 2 : at + 2 + length])
        at += 2 + length
    return frames


def framed_size(messages: list[bytes]) -> int:
    return sum(2 + len(message) for message in messages)


def open_descriptors() -> int:
    return len(os.listdir("/proc/self/fd"))


# messages that say which they are: a torn or foreign one shows


def numbered(number: int, size: int = 1200) -> bytes:
    return number.to_bytes(4, "big") + bytes([number & 0xFF]) * (size - 4)


def check_numbered(received: list[bytes], written: list[bytes]) -> None:
    """Each received frame is a whole message that was written, in the order written."""
    numbers = []
    for message in received:
        number = int.from_bytes(message[:4], "big")
        assert message == numbered(number, len(message)), f"message {number} is not whole"
        numbers.append(number)
    assert numbers == sorted(set(numbers)), "out of order or repeated"
    assert set(numbers) <= {int.from_bytes(m[:4], "big") for m in written}


def test_the_c_sink_is_built():
    assert rtpstream._rtpout is not None and hasattr(rtpstream._rtpout, "TcpSink")


@pytest.mark.parametrize("native", IMPLEMENTATIONS)
def test_open_sink_chooses_the_implementation(native):
    writer, _reader = unix_pair()
    sink = open_sink(writer, native)
    assert isinstance(sink, PyTcpSink) is not native
    assert (sink.closed, sink.broken, sink.waiting, sink.frames, sink.refused) == (
        False,
        False,
        0,
        0,
        0,
    )


# 1. framing


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("native", IMPLEMENTATIONS)
def test_messages_of_every_size_are_read_back_exactly_and_in_order(native, kind):
    writer, reader = pair(kind)
    if kind == "tcp":  # room for every message at once: nothing refused here
        writer.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 20)
        reader.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
    sink = open_sink(writer, native)
    messages = [
        b"",
        b"\x01",
        bytes(range(256)) * 5 + b"\xff" * 220,  # 1500
        b"",
        bytes((n * 7) & 0xFF for n in range(65535)),
        b"\x00\x02",  # looks like a length: must be read as a message
        b"z" * 1500,
    ]
    assert [len(m) for m in messages] == [0, 1, 1500, 0, 65535, 2, 1500]
    got = b""
    for message in messages:
        assert sink.write(message)
        got += available(reader)
    got += read_exactly(reader, framed_size(messages) - len(got))
    assert parse(got) == messages
    assert got[:2] == b"\x00\x00" and got[2:5] == b"\x00\x01\x01"  # big-endian lengths
    assert (sink.frames, sink.refused, sink.waiting, sink.broken) == (len(messages), 0, 0, False)


# 2. a reader that stops reading


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("native", IMPLEMENTATIONS)
def test_a_reader_that_stops_gets_only_whole_frames_and_the_sink_keeps_one_at_most(native, kind):
    writer, reader = pair(kind, SMALL_BUFFER)
    sink = open_sink(writer, native)
    written: list[bytes] = []  # what write() took, in order
    attempts = 0

    def write(number: int) -> bool:
        nonlocal attempts
        attempts += 1
        message = numbered(number)
        taken = sink.write(message)
        if taken:
            written.append(message)
        assert sink.waiting <= FRAME_1200  # never more than the rest of one frame
        assert (sink.frames, sink.refused) == (len(written), attempts - len(written))
        return taken

    # the reader reads nothing: write until the socket refuses
    number = 0
    while write(number):
        number += 1
        assert number < 2000, "the socket never filled"
    assert 0 < len(written) < 2000
    full_at = sink.refused
    for _ in range(20):  # still full: every new frame is refused, the rest stays one
        number += 1
        assert not write(number)
    assert sink.refused == full_at + 20
    assert not sink.broken

    # the reader drains: writes are taken again (the kept rest goes first)
    got = available(reader, 0.05)
    taken_after = 0
    for _ in range(200):
        number += 1
        taken = write(number)
        taken_after += taken
        got += available(reader, 0 if taken else 0.005)
        if taken_after >= 20:
            break
    assert taken_after >= 20

    # finish: a write with nothing kept after it leaves the stream on a frame boundary
    for _ in range(200):
        if sink.waiting == 0:
            break
        got += available(reader, 0.005)
        number += 1
        write(number)
    assert sink.waiting == 0
    got += read_exactly(reader, framed_size(written) - len(got))

    received = parse(got)  # whole frames only: nothing torn anywhere
    check_numbered(received, written)
    assert received == written  # every frame write() took, and only those
    assert len(written) + sink.refused == attempts


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("native", IMPLEMENTATIONS)
def test_a_frame_the_kernel_took_in_part_is_finished_before_any_other(native, kind):
    writer, reader = pair(kind, SMALL_BUFFER)
    sink = open_sink(writer, native)
    big = numbered(1, 65535)
    assert sink.write(big)  # taken: in part by the kernel, the rest kept
    rest = sink.waiting
    assert 0 < rest < 65537
    for number in range(2, 12):  # refused whole while the rest cannot go
        assert not sink.write(numbered(number, 100))
        assert 0 < sink.waiting <= rest
    assert (sink.frames, sink.refused) == (1, 10)
    got = b""
    small = numbered(99, 100)
    for _ in range(300):  # the reader reads: the rest goes, then the new frame
        got += available(reader, 0.002)
        if sink.write(small):
            break
    assert sink.frames == 2
    got += read_exactly(reader, framed_size([big, small]) - len(got))
    assert parse(got) == [big, small]


# 3. the size limit and bytes-like data


@pytest.mark.parametrize("native", IMPLEMENTATIONS)
def test_a_frame_over_65535_bytes_raises_and_bytes_like_data_is_taken(native):
    writer, reader = unix_pair()
    sink = open_sink(writer, native)
    for too_big in (b"z" * 65536, bytearray(65536), memoryview(b"y" * 70000)):
        with pytest.raises(ValueError):
            sink.write(too_big)
    assert (sink.frames, sink.refused, sink.waiting) == (0, 0, 0)  # nothing sent
    data = bytes(range(200))
    messages = [bytearray(b"ba"), memoryview(data), memoryview(data)[10:20], b"end"]
    for message in messages:
        assert sink.write(message)
    assert sink.write(bytearray(65535))  # the limit itself is fine
    expected = [bytes(m) for m in messages] + [bytes(65535)]
    assert parse(read_exactly(reader, framed_size(expected))) == expected
    with pytest.raises(TypeError):
        sink.write("text")
    assert sink.frames == 5


@pytest.mark.parametrize("native", IMPLEMENTATIONS)
def test_a_memoryview_of_wide_items_is_measured_in_bytes(native):
    """A buffer's size is its bytes, not its items: 32768 two-byte items are 65536 bytes."""
    writer, reader = unix_pair()
    sink = open_sink(writer, native)
    wide = array.array("H", range(100))
    assert sink.write(memoryview(wide))
    assert parse(read_exactly(reader, 2 + 200)) == [wide.tobytes()]
    with pytest.raises(ValueError):
        sink.write(memoryview(array.array("H", bytes(65536))))
    assert (sink.frames, sink.broken) == (1, False)


# 4. a peer that goes away


@pytest.mark.parametrize("how", ["unix-close", "tcp-reset", "tcp-close"])
@pytest.mark.parametrize("native", IMPLEMENTATIONS)
def test_a_peer_that_goes_away_breaks_the_sink_without_an_exception(native, how):
    kind = how.split("-")[0]
    writer, reader = pair(kind)
    sink = open_sink(writer, native)
    assert sink.write(b"before")
    assert read_exactly(reader, 8) == b"\x00\x06before"
    if how == "tcp-reset":
        reader.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    reader.close()
    results = []
    for _ in range(50):  # a write may still be taken before the peer's RST is seen
        results.append(sink.write(b"after" * 100))
        if sink.broken:
            break
        time.sleep(0.002)
    assert sink.broken and not results[-1]
    assert results.count(True) <= 1
    frames = sink.frames
    for _ in range(5):  # broken for good: refused, quietly
        assert not sink.write(b"more")
    assert sink.broken and sink.frames == frames and not sink.closed
    sink.close()
    assert sink.closed


# 5. close()


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("native", IMPLEMENTATIONS)
def test_close_stops_the_sink_and_gives_its_own_descriptor_back(native, kind):
    writer, reader = pair(kind)
    before = open_descriptors()
    sink = open_sink(writer, native)
    assert open_descriptors() == before + 1  # a descriptor of its own
    assert sink.write(b"one")
    sink.close()
    assert open_descriptors() == before
    assert sink.closed and sink.waiting == 0
    assert not sink.write(b"two")
    assert not sink.broken
    sink.close()  # twice is fine
    assert sink.closed
    assert read_exactly(reader, 5) == b"\x00\x03one"
    assert not sees_end(reader, 0.05)  # the original descriptor still holds it open
    writer.close()
    assert sees_end(reader)


@pytest.mark.parametrize("native", IMPLEMENTATIONS)
def test_a_sink_outlives_the_socket_it_was_given(native):
    writer, reader = unix_pair()
    sink = open_sink(writer, native)
    writer.close()  # the owner's descriptor goes; the sink's stays
    assert sink.write(b"still here")
    assert parse(read_exactly(reader, 12)) == [b"still here"]
    assert not sees_end(reader, 0.05)
    sink.close()
    assert sees_end(reader)


# 6. RtpStreams over a sink


def resending_session() -> Session:
    """Keys as aiortc sets them (``allow_repeat_tx``): a cut sample's packet numbers,
    protected but never sent, are protected again with the next sample."""
    policy = Policy(
        key=KEY,
        ssrc_type=Policy.SSRC_ANY_OUTBOUND,
        srtp_profile=Policy.SRTP_PROFILE_AES128_CM_SHA1_80,
    )
    policy.allow_repeat_tx = True
    policy.window_size = 1024
    return Session(policy)


def inbound() -> Session:
    policy = Policy(
        key=KEY,
        ssrc_type=Policy.SSRC_ANY_INBOUND,
        srtp_profile=Policy.SRTP_PROFILE_AES128_CM_SHA1_80,
    )
    policy.window_size = 1024
    return Session(policy)


def video_over(sink, native: bool, keys: Session | None = None, ssrc: int = 0x11223344):
    return open_stream(
        None,
        NOWHERE,
        keys or session(),
        ssrc,
        102,
        65534,
        4000000000,
        EXTENSION,
        ABS_AT,
        True,
        native=native,
        sink=sink,
    )


def audio_over(sink, native: bool, keys: Session | None = None, ssrc: int = 0x55667788):
    return open_stream(
        None,
        NOWHERE,
        keys or session(),
        ssrc,
        111,
        100,
        7,
        b"",
        -1,
        False,
        native=native,
        sink=sink,
    )


def sample_of(count: int, size: int = 40) -> tuple[bytes, ...]:
    return tuple(bytes([0x7C, 0x05]) + i.to_bytes(2, "big") * (size // 2) for i in range(count))


def headers(packets: list[bytes], keys: Session) -> list[tuple[int, int, int, int, int]]:
    """(first byte, marker|pt, seq, ts, ssrc) of each packet, unprotected."""
    return [struct.unpack("!BBHII", keys.unprotect(p)[:12]) for p in packets]


def framed_run(native: bool, kind: str) -> bytes:
    """The byte stream a video and an audio stream on one sink write for fixed sends."""
    writer, reader = pair(kind)
    if kind == "tcp":
        writer.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 20)
        reader.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
    sink = open_sink(writer, native)
    video = video_over(sink, native)
    audio = audio_over(sink, native)
    assert isinstance(video, PyRtpStream) is not native
    assert isinstance(audio, PyRtpStream) is not native
    video.send(PAYLOADS[0], 90000, True, 0x123456, 1.5)
    audio.send((b"opus one",), 960, False, 0, 1.5)
    video.send(PAYLOADS[1], 93000, False, 0x123457, 1.6)
    send_all([video], PAYLOADS[2], 96000, True, 0xABCDEF, 1.7)
    video.send(sample_of(130), 99000, False, 0x100000, 1.8)  # across the C batch of 64
    audio.send((b"opus two",), 1920, False, 0, 1.8)
    video.send_raw(b"\x80\xc8 a report")
    audio.send_raw(b"")
    count = 2 + 1 + 1 + 2 + 130 + 1 + 1 + 1
    assert (video.packets, audio.packets, sink.frames, sink.refused) == (135, 2, count, 0)
    got = b""
    for _ in range(200):
        got += available(reader, 0.01)
        try:
            if len(parse(got)) == count:
                break
        except AssertionError:
            continue  # not all there yet
    return got


@pytest.mark.parametrize("kind", KINDS)
def test_c_and_python_streams_write_byte_identical_framed_streams(kind):
    c, python = framed_run(True, kind), framed_run(False, kind)
    assert c == python
    frames = parse(c)
    assert frames[-2:] == [b"\x80\xc8 a report", b""]
    rows = headers(frames[:-2], inbound())
    video = [row for row in rows if row[4] == 0x11223344]
    audio = [row for row in rows if row[4] == 0x55667788]
    assert [row[2] for row in video] == [(65534 + n) & 0xFFFF for n in range(135)]
    assert [row[2] for row in audio] == [100, 101]
    assert [row[3] for row in audio] == [7 + 960, 7 + 1920]
    order = [row[4] for row in rows]  # the streams' frames in the order they were sent
    assert order == [0x11223344] * 2 + [0x55667788] + [0x11223344] * 133 + [0x55667788]


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("native", IMPLEMENTATIONS)
def test_a_full_sink_cuts_the_sample_and_the_video_waits_for_a_keyframe(native, kind):
    writer, reader = pair(kind, SMALL_BUFFER)
    sink = open_sink(writer, native)
    video = video_over(sink, native, resending_session())
    big = tuple(bytes([0x7C, n]) + bytes([n]) * 1198 for n in range(60))  # more than fits
    video.send(big, 90000, True, 0, 1.0)
    cut_at = video.packets
    assert 0 < cut_at < 60
    assert (video.dropped, video.need_key, video.seq) == (1, True, (65534 + cut_at) & 0xFFFF)
    assert sink.refused == 60 - cut_at and sink.frames == cut_at
    assert sink.waiting <= STREAM_FRAME
    octets = video.octets
    assert octets == sum(map(len, big[:cut_at]))
    video.send((b"\x41delta",), 93000, False, 0, 1.1)  # not a keyframe: not even tried
    assert (video.packets, video.dropped, sink.refused) == (cut_at, 1, 60 - cut_at)
    got = b""
    for attempt in range(300):  # the reader reads; a keyframe goes once the socket takes it
        got += available(reader, 0.002)
        video.send((b"\x65key",), 96000 + attempt, True, 0, 1.2)
        if not video.need_key:
            break
    assert not video.need_key and video.packets == cut_at + 1
    assert video.dropped == 1 + (sink.refused - (60 - cut_at))  # each refused key is a drop
    got += read_exactly(reader, 10**6, 0.1)
    frames = parse(got)  # every frame whole
    rows = headers(frames, inbound())
    # the numbers run on: a cut sample's refused packets never took any
    assert [row[2] for row in rows] == [(65534 + n) & 0xFFFF for n in range(cut_at + 1)]
    assert rows[cut_at - 1][1] == 102  # the cut sample's last packet sent has no marker
    assert rows[-1][1] == 0x80 | 102


@pytest.mark.parametrize("native", IMPLEMENTATIONS)
def test_a_sample_of_more_packets_than_one_sendmsg_takes_goes_out(native):
    """Linux takes at most 1024 buffers in one sendmsg (UIO_MAXIOV): a sample of
    1100 small packets must not break the connection."""
    writer, reader = unix_pair()
    writer.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 20)
    sink = open_sink(writer, native)
    video = video_over(sink, native)
    payloads = sample_of(1100, 8)
    video.send(payloads, 90000, True, 0, 1.0)
    assert not sink.broken
    assert (video.packets, video.dropped, sink.frames) == (1100, 0, 1100)
    size = 1100 * (2 + 12 + len(EXTENSION) + 10 + 10)
    assert len(parse(read_exactly(reader, size))) == 1100


@pytest.mark.parametrize("native", IMPLEMENTATIONS)
def test_send_all_writes_through_sinks_and_a_full_one_holds_back_no_other(native):
    keys = session()
    pairs = [unix_pair() for _ in range(3)]
    full_writer, full_reader = unix_pair(SMALL_BUFFER)
    sinks = [open_sink(writer, native) for writer, _ in pairs]
    full_sink = open_sink(full_writer, native)
    streams = [video_over(sink, native, keys, ssrc=1000 + i) for i, sink in enumerate(sinks)]
    stuck = video_over(full_sink, native, resending_session(), ssrc=2000)
    everyone = [streams[0], stuck, *streams[1:]]
    udp_reader = None
    if native:  # a UDP viewer beside the TCP ones, in the same call
        udp_reader = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        udp_reader.bind(("127.0.0.1", 0))
        udp_writer = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        everyone.append(
            open_stream(
                udp_writer,
                udp_reader.getsockname(),
                keys,
                3000,
                102,
                0,
                0,
                EXTENSION,
                ABS_AT,
                True,
                native=True,
            )
        )
        udp_writer.close()
    big = tuple(bytes([0x7C, n]) + bytes([n]) * 1198 for n in range(30))
    send_all(everyone, big, 90000, True, 0x111111, 1.0)
    send_all(everyone, PAYLOADS[1], 93000, False, 0x111112, 1.1)
    assert [s.packets for s in streams] == [31, 31, 31]
    assert stuck.dropped == 1 and stuck.need_key and 0 < stuck.packets < 30
    frame = 2 + 12 + len(EXTENSION) + 1200 + 10
    size = 30 * frame + (2 + 12 + len(EXTENSION) + len(PAYLOADS[1][0]) + 10)
    for i, (_, reader) in enumerate(pairs):
        rows = headers(parse(read_exactly(reader, size)), inbound())
        assert [(row[2], row[4]) for row in rows] == [
            ((65534 + n) & 0xFFFF, 1000 + i) for n in range(31)
        ]
    # what the full one's reader gets and what its sink keeps are the frames taken, whole
    got = read_exactly(full_reader, stuck.packets * frame - full_sink.waiting)
    assert len(got) + full_sink.waiting == stuck.packets * frame
    whole = len(got) - len(got) % frame
    assert len(parse(got[:whole])) == whole // frame
    if udp_reader is not None:
        udp_reader.settimeout(1)
        assert len([udp_reader.recv(2048) for _ in range(31)]) == 31
        assert everyone[-1].packets == 31


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("native", IMPLEMENTATIONS)
def test_two_streams_on_one_sink_interleave_whole_frames(native, kind):
    writer, reader = pair(kind, SMALL_BUFFER)
    sink = open_sink(writer, native)
    video = video_over(sink, native, resending_session())
    audio = audio_over(sink, native, resending_session())
    got = b""
    for n in range(120):  # the reader reads now and then: the sink fills and drains
        if video.need_key:
            video.send(tuple(bytes([0x65, n]) * 300 for _ in range(3)), n * 3000, True, 0, n)
        else:
            video.send((bytes([0x41, n]) * 500,), n * 3000, False, 0, n)
        audio.send((bytes([n]) * 80,), n * 960, False, 0, n)
        if n % 10 == 9:
            got += available(reader, 0.005)
    assert sink.refused > 0  # it did fill
    for _ in range(200):  # leave nothing kept: the stream ends on a frame boundary
        if sink.waiting == 0:
            break
        got += available(reader, 0.005)
        audio.send((b"last",), 200000, False, 0, 200)
    got += read_exactly(reader, 10**6, 0.1)
    rows = headers(parse(got), inbound())
    video_rows = [row for row in rows if row[4] == 0x11223344]
    audio_rows = [row for row in rows if row[4] == 0x55667788]
    assert len(video_rows) + len(audio_rows) == len(rows) == sink.frames
    assert (len(video_rows), len(audio_rows)) == (video.packets, audio.packets)
    assert [row[2] for row in video_rows] == [(65534 + n) & 0xFFFF for n in range(video.packets)]
    assert [row[2] for row in audio_rows] == [(100 + n) & 0xFFFF for n in range(audio.packets)]
    assert video.dropped > 0


@pytest.mark.parametrize("native", IMPLEMENTATIONS)
def test_closing_a_stream_leaves_its_sink_open(native):
    writer, reader = unix_pair()
    sink = open_sink(writer, native)
    video = video_over(sink, native)
    video.send(PAYLOADS[1], 0, True, 0, 1.0)
    video.close()
    assert video.closed and not sink.closed
    video.send(PAYLOADS[0], 3000, True, 0, 1.1)
    video.send_raw(b"late")
    assert video.packets == 1 and sink.frames == 1
    assert sink.write(b"the connection goes on")
    audio = audio_over(sink, native)  # another stream on the same sink
    audio.send((b"opus",), 960, False, 0, 1.2)
    size = 2 + 12 + len(EXTENSION) + len(PAYLOADS[1][0]) + 10 + 24 + 2 + 12 + 4 + 10
    frames = parse(read_exactly(reader, size))
    assert frames[1] == b"the connection goes on" and len(frames) == 3


@pytest.mark.parametrize("native", IMPLEMENTATIONS)
def test_a_stream_over_a_closed_sink_sends_nothing_and_raises_nothing(native):
    writer, reader = unix_pair()
    sink = open_sink(writer, native)
    video = video_over(sink, native, resending_session())
    sink.close()
    video.send(PAYLOADS[0], 0, True, 0, 1.0)
    video.send_raw(b"raw")
    send_all([video], PAYLOADS[2], 3000, True, 0, 1.1)
    assert (video.packets, video.dropped, video.need_key) == (0, 2, True)
    assert sink.frames == 0 and sink.refused == 2 + 1 + 2
    writer.close()
    assert sees_end(reader)


# 7. bad parameters


def c_stream_arguments(**changes):
    arguments = dict(
        fd=-1,
        host="",
        port=0,
        protect=1,
        context=1,
        session=session(),
        ssrc=1,
        payload_type=96,
        seq=0,
        ts_base=0,
        extension=b"",
        abs_send_time_at=-1,
        video=True,
    )
    arguments.update(changes)
    return arguments


def test_a_c_stream_refuses_a_python_sink_or_anything_not_a_sink():
    writer, _reader = unix_pair()
    stream_type = rtpstream._rtpout.RtpStream
    for wrong in (PyTcpSink(writer), object(), writer, 3):
        with pytest.raises(ValueError, match="sink must be a TcpSink"):
            stream_type(**c_stream_arguments(sink=wrong))
    with pytest.raises(ValueError, match="fd must be a descriptor"):
        stream_type(**c_stream_arguments())  # no sink, no descriptor
    c_sink = rtpstream._rtpout.TcpSink(writer.fileno())
    stream_type(**c_stream_arguments(sink=c_sink))  # a C sink: accepted


@pytest.mark.parametrize("native", IMPLEMENTATIONS)
def test_open_stream_refuses_a_sink_that_is_not_one(native):
    # anything not a PyTcpSink is taken for a C sink, and the C stream refuses it
    for wrong in (object(), b"sink", 0):
        with pytest.raises(ValueError, match="sink must be a TcpSink"):
            open_stream(
                None, NOWHERE, session(), 1, 96, 0, 0, b"", -1, True, native=native, sink=wrong
            )


def test_the_sink_decides_the_streams_implementation():
    writer, _reader = unix_pair()
    python_sink, c_sink = open_sink(writer, False), open_sink(writer, True)
    made = open_stream(None, NOWHERE, session(), 1, 96, 0, 0, b"", -1, True, sink=python_sink)
    assert isinstance(made, PyRtpStream)
    made = open_stream(
        None, NOWHERE, session(), 1, 96, 0, 0, b"", -1, True, native=False, sink=c_sink
    )
    assert isinstance(made, rtpstream._rtpout.RtpStream)


def test_a_python_stream_refuses_a_c_sink_or_anything_not_a_sink():
    writer, _reader = unix_pair()
    for wrong in (open_sink(writer, True), object()):
        with pytest.raises(ValueError, match="sink must be a PyTcpSink"):
            PyRtpStream(None, NOWHERE, session(), 1, 96, 0, 0, b"", -1, True, sink=wrong)
    with pytest.raises(ValueError, match="a socket or a sink is needed"):
        PyRtpStream(None, NOWHERE, session(), 1, 96, 0, 0, b"", -1, True)


def test_the_c_sink_refuses_bad_descriptors_and_survives_misuse():
    sink_type = rtpstream._rtpout.TcpSink
    with pytest.raises(ValueError, match="descriptor"):
        sink_type(fd=-1)
    with pytest.raises(TypeError):
        sink_type()
    spare = socket.socket()
    number = spare.fileno()
    spare.close()
    with pytest.raises(OSError):
        sink_type(fd=number)  # closed: nothing to duplicate
    with pytest.raises(TypeError):
        type("Sub", (sink_type,), {})  # not a base type
    blank = sink_type.__new__(sink_type)  # never initialised: refuses, does not crash
    assert blank.closed and not blank.write(b"x") and blank.refused == 1
    blank.close()


def test_the_c_sink_initialised_again_forgets_its_connection_and_kept_rest():
    first_writer, first_reader = unix_pair(SMALL_BUFFER)
    sink = rtpstream._rtpout.TcpSink(fd=first_writer.fileno())
    assert sink.write(numbered(1, 65535)) and sink.waiting > 0  # a rest kept
    writer, reader = unix_pair()
    sink.__init__(fd=writer.fileno())
    assert (sink.waiting, sink.frames, sink.refused, sink.closed) == (0, 0, 0, False)
    assert sink.write(b"new")
    assert parse(read_exactly(reader, 5)) == [b"new"]
    first_writer.close()  # the first connection's last descriptor: its reader sees the end
    assert sees_end(first_reader)
