"""The fast path over TCP: a TcpSink (C and Python) writes whole RFC 4571 frames
or none, never blocks, keeps at most the rest of one frame, and an RtpStream
over it writes the same framed bytes in C as in Python."""

from __future__ import annotations

import socket
import struct

import pytest

from pylibsrtp import Policy, Session

from tests.test_rtpstream import ABS_AT, EXTENSION, KEY, PAYLOADS, session
from wcs.webrtc import rtpstream
from wcs.webrtc.rtpstream import PyTcpSink, open_sink, open_stream, send_all

IMPLEMENTATIONS = [pytest.param(True, id="C"), pytest.param(False, id="Python")]


def pair(buffer: int = 0) -> tuple[socket.socket, socket.socket]:
    """A loopback TCP connection (writer, reader), with small buffers if asked."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    writer = socket.socket()
    if buffer:
        writer.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, buffer)
    writer.connect(listener.getsockname())
    reader, _ = listener.accept()
    if buffer:
        reader.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, buffer)
    listener.close()
    writer.setblocking(False)
    return writer, reader


def drain(sock: socket.socket, timeout: float = 0.3) -> bytes:
    sock.settimeout(timeout)
    out = bytearray()
    try:
        while chunk := sock.recv(1 << 20):
            out += chunk
    except (TimeoutError, BlockingIOError):
        pass
    return bytes(out)


def frames(data: bytes) -> list[bytes]:
    """Parse RFC 4571 frames; the stream must end on a frame boundary."""
    out, at = [], 0
    while at < len(data):
        assert at + 2 <= len(data), "a torn length"
        (length,) = struct.unpack_from("!H", data, at)
        assert at + 2 + length <= len(data), "a torn frame"
        out.append(data[at + 2 : at + 2 + length])
        at += 2 + length
    return out


def resending_session() -> Session:
    """Keys as aiortc sets them: a packet number protected but never sent (a cut
    sample) may be protected again (``allow_repeat_tx``)."""
    policy = Policy(key=KEY, ssrc_type=Policy.SSRC_ANY_OUTBOUND,
                    srtp_profile=Policy.SRTP_PROFILE_AES128_CM_SHA1_80)
    policy.allow_repeat_tx = True
    policy.window_size = 1024
    return Session(policy)


def test_the_c_sink_is_built():
    assert rtpstream._rtpout is not None and hasattr(rtpstream._rtpout, "TcpSink")


@pytest.mark.parametrize("native", IMPLEMENTATIONS)
def test_messages_go_out_framed_in_order(native):
    writer, reader = pair()
    sink = open_sink(writer, native)
    assert isinstance(sink, PyTcpSink) != native
    messages = [b"", b"x", bytes(range(256)) * 6, b"y" * 65535]
    for message in messages:
        assert sink.write(message)
    assert sink.write(bytearray(b"ba")) and sink.write(memoryview(b"mv"))
    got = b""
    while len(got) < sum(2 + len(m) for m in messages) + 8:
        got += drain(reader)
    assert frames(got) == [*messages, b"ba", b"mv"]
    assert (sink.frames, sink.refused, sink.waiting) == (6, 0, 0)


@pytest.mark.parametrize("native", IMPLEMENTATIONS)
def test_a_frame_over_65535_bytes_is_refused_as_an_error(native):
    writer, _reader = pair()
    with pytest.raises(ValueError):
        open_sink(writer, native).write(b"z" * 65536)


@pytest.mark.parametrize("native", IMPLEMENTATIONS)
def test_a_reader_that_stops_gets_whole_frames_and_the_sink_holds_one_at_most(native):
    writer, reader = pair(buffer=8192)
    sink = open_sink(writer, native)
    written = []
    for number in range(2000):  # far more than the buffers hold
        message = number.to_bytes(4, "big") + b"m" * 1196
        if sink.write(message):
            written.append(message)
        assert sink.waiting <= 1202  # never more than the rest of one frame
    assert sink.refused > 0 and len(written) < 2000
    got = drain(reader, 0.05)
    for _ in range(50):  # the reader reads again: the rest goes first, then new frames
        message = (5000 + _).to_bytes(4, "big") + b"n" * 1196
        if sink.write(message):
            written.append(message)
        got += drain(reader, 0.005)
    got += drain(reader, 0.2)
    received = frames(got)  # untorn: the kept rest went out before anything else
    assert received == written
    assert received[-1].startswith((5000).to_bytes(4, "big")[:2])


@pytest.mark.parametrize("native", IMPLEMENTATIONS)
def test_a_reset_connection_breaks_the_sink_without_an_exception(native):
    writer, reader = pair()
    sink = open_sink(writer, native)
    reader.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    reader.close()  # a reset
    results = [sink.write(b"after the reset" * 10) for _ in range(20)]
    assert not results[-1] and sink.broken


@pytest.mark.parametrize("native", IMPLEMENTATIONS)
def test_a_closed_sink_writes_nothing_and_gives_its_descriptor_back(native):
    writer, reader = pair()
    sink = open_sink(writer, native)
    sink.close()
    assert sink.closed and not sink.write(b"late")
    writer.close()  # the sink's own descriptor is gone too: the reader sees the end
    assert drain(reader, 1.0) == b""


def tcp_run(native: bool) -> bytes:
    """The framed bytes a video stream over a sink writes for a fixed set of sends."""
    writer, reader = pair()
    sink = open_sink(writer, native)
    track = open_stream(None, ("127.0.0.1", 9), session(), 0x11223344, 102, 65534,
                        4000000000, EXTENSION, ABS_AT, True, native=native, sink=sink)
    track.send(PAYLOADS[0], 90000, True, 0x123456, 1.5)
    track.send(PAYLOADS[1], 93000, False, 0x123457, 1.6)
    send_all([track], PAYLOADS[2], 96000, True, 0xABCDEF, 1.7)
    track.send_raw(b"\x80\xc8raw")
    got = b""
    while len(frames_or_none(got) or []) < 6:
        got += drain(reader)
    return got


def frames_or_none(data: bytes) -> list[bytes] | None:
    try:
        return frames(data)
    except AssertionError:
        return None


def test_c_and_python_streams_write_the_same_framed_bytes():
    c, python = tcp_run(True), tcp_run(False)
    assert c == python
    sent = frames(c)
    assert len(sent) == 6 and sent[-1] == b"\x80\xc8raw"
    assert [packet[2:4] for packet in sent[:5]] == [
        b"\xff\xfe", b"\xff\xff", b"\x00\x00", b"\x00\x01", b"\x00\x02"]


@pytest.mark.parametrize("native", IMPLEMENTATIONS)
def test_a_full_sink_cuts_the_sample_and_the_video_waits_for_a_keyframe(native):
    writer, reader = pair(buffer=4096)
    sink = open_sink(writer, native)
    video = open_stream(None, ("127.0.0.1", 9), resending_session(), 1, 102, 0, 0,
                        EXTENSION, ABS_AT, True, native=native, sink=sink)
    audio = open_stream(None, ("127.0.0.1", 9), resending_session(), 2, 111, 0, 0, b"", -1,
                        False, native=native, sink=sink)
    big = tuple(bytes([n]) * 1200 for n in range(40))
    video.send(big, 0, True, 0, 1.0)
    assert video.dropped == 1 and video.need_key
    video.send((b"delta",), 3000, False, 0, 1.1)  # not a keyframe: nothing goes
    audio.send((b"opus",), 960, False, 0, 1.1)  # audio goes on once the socket drains
    sent_before = video.packets
    got = b""
    for attempt in range(100):  # the reader reads: once the socket takes it, the key goes
        got += drain(reader, 0.02)
        audio.send((b"opus%d" % attempt,), 1920 + attempt, False, 0, 1.2)
        video.send((b"key",), 6000, True, 0, 1.2)
        if not video.need_key:
            break
    assert video.packets == sent_before + 1 and not video.need_key
    got += drain(reader)
    parsed = frames(got)  # both streams' frames interleave whole
    ssrcs = {packet[8:12] for packet in parsed}
    assert ssrcs == {(1).to_bytes(4, "big"), (2).to_bytes(4, "big")}


def test_a_c_stream_takes_only_a_c_sink():
    writer, _reader = pair()
    with pytest.raises((ValueError, TypeError)):
        rtpstream._rtpout.RtpStream(
            fd=-1, host="", port=0, protect=1, context=1, session=session(), ssrc=1,
            payload_type=96, seq=0, ts_base=0, extension=b"", abs_send_time_at=-1,
            video=True, sink=PyTcpSink(writer))
    with pytest.raises((ValueError, TypeError)):
        rtpstream.PyRtpStream(None, ("127.0.0.1", 9), session(), 1, 96, 0, 0, b"", -1, True,
                              sink=object())
