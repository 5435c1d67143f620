"""One viewer's RTP track on the fast path: its header, its SRTP, its socket.

:func:`open_stream` gives the C implementation (``wcs/webrtc/_rtpout.c``) when
it is built and pylibsrtp's ``srtp_protect`` has the signature it calls (libsrtp
2's: checked here, at import), else :class:`PyRtpStream`, the same loop in
Python that writes the same bytes (``tests/test_rtpstream.py`` holds them side
by side). Either way :func:`send_all` sends one sample to every viewer of a broadcast at once.

A stream numbers its own packets: the sample's payloads are shared, the
header (sequence number, timestamp base, SSRC, payload type, extensions) is
the viewer's. A socket that cannot take a packet cuts the sample short and
the video waits for the next keyframe; nothing queues.
"""

from __future__ import annotations

import importlib
import socket
import struct
from dataclasses import dataclass
from typing import Any, Protocol

from pylibsrtp import Session

from wcs.webrtc import internals

#: The signature _rtpout.c's protect_fn has: libsrtp 2's srtp_protect, as
#: pylibsrtp's cffi declares it. libsrtp 3 changed it; the C loop must not call that.
PROTECT_SIGNATURE = "srtp_err_status_t(*)(struct srtp_ctx_t_ *, void *, int *)"


def _load_native() -> tuple[Any, int, str]:
    """The C loop's module and the address of the protect function it calls, or
    None and why not (what the server logs at start-up)."""
    try:
        _rtpout = importlib.import_module("wcs.webrtc._rtpout")
    except ImportError as error:
        return None, 0, f"the C helper is not built ({error}): RTP goes out through the Python loop"
    try:
        signature, int_status, address = internals.srtp_protect()
    except Exception as error:
        return None, 0, f"pylibsrtp's srtp_protect cannot be checked ({error!r}): Python loop"
    if signature != PROTECT_SIGNATURE or not int_status:
        return (
            None,
            0,
            (
                f"pylibsrtp's srtp_protect is {signature}, not the libsrtp 2 {PROTECT_SIGNATURE}"
                " the C helper calls: RTP goes out through the Python loop"
            ),
        )
    return _rtpout, address, ""


_rtpout, _PROTECT_ADDRESS, NATIVE_UNUSABLE = _load_native()

#: Samples remembered per stream, to find the packet a NACK names.
SENT_HISTORY = 256
#: Largest RTP packet, header and extensions included (before SRTP's tag).
MAX_PACKET = 1500
MAX_EXTENSION = 64
_HEADER = struct.Struct("!BBHII")


#: RFC 4571's frame: a 16-bit length, then that many bytes.
MAX_FRAME = 65535
#: Frames a sink gives one sendmsg (as the C loop's batch).
_BATCH = 64


class TcpSink(Protocol):
    """One ICE-TCP connection's writing side (both implementations)."""

    @property
    def closed(self) -> bool: ...

    @property
    def broken(self) -> bool: ...

    @property
    def waiting(self) -> int: ...

    @property
    def frames(self) -> int: ...

    @property
    def refused(self) -> int: ...

    def write(self, data: bytes) -> bool: ...

    def close(self) -> None: ...


class PyTcpSink:
    """The C sink in Python: whole RFC 4571 frames or none, never blocking.

    The kernel may take part of a frame; its rest is kept (never more than one
    frame) and goes out before anything else, or the byte stream would be torn.
    While it cannot go, every frame is refused: a viewer's full socket drops
    samples (the video then waits for a keyframe) and queues nothing."""

    def __init__(self, sock: socket.socket) -> None:
        self._sock: socket.socket | None = sock.dup()
        self._sock.setblocking(False)
        self._rest = b""
        self.broken = False
        self.frames = self.refused = 0

    @property
    def closed(self) -> bool:
        return self._sock is None

    @property
    def waiting(self) -> int:
        return len(self._rest)

    def _flush(self) -> bool:
        if self._sock is None or self.broken:
            return False
        while self._rest:
            try:
                sent = self._sock.send(self._rest, socket.MSG_NOSIGNAL)
            except BlockingIOError:
                return False
            except InterruptedError:
                continue
            except OSError:
                self.broken = True
                return False
            self._rest = self._rest[sent:]
        return True

    def send_frames(self, packets: list[bytes]) -> int:
        """Frame and write ``packets``; how many the kernel took (the rest are refused)."""
        if not packets:
            return 0
        if not self._flush():
            self.refused += len(packets)
            return 0
        assert self._sock is not None
        frames = [len(packet).to_bytes(2, "big") + packet for packet in packets]
        taken = 0
        for first in range(0, len(frames), _BATCH):  # (sendmsg takes at most IOV_MAX buffers)
            batch = frames[first : first + _BATCH]
            try:
                sent = self._sock.sendmsg(batch, [], socket.MSG_NOSIGNAL)
            except (BlockingIOError, InterruptedError):
                sent = 0
            except OSError:
                self.broken = True
                sent = 0
            whole = True
            for frame in batch:
                if sent <= 0:
                    whole = False
                    break
                if sent < len(frame):
                    self._rest = frame[sent:]
                    whole = False
                sent -= len(frame)
                taken += 1
            if not whole:
                break
        self.frames += taken
        self.refused += len(packets) - taken
        return taken

    def write(self, data: bytes) -> bool:
        data = bytes(memoryview(data))  # (a wide memoryview's len() counts items, not bytes)
        if len(data) > MAX_FRAME:
            raise ValueError("a frame holds at most 65535 bytes")
        return self.send_frames([data]) == 1

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None
        self._rest = b""


def open_sink(sock: socket.socket, native: bool = True) -> TcpSink:
    """An ICE-TCP connection's sink: in C when built (and ``native``), else in Python.
    It writes on a descriptor of its own (``close()`` gives it back)."""
    if native and _rtpout is not None:
        sink: TcpSink = _rtpout.TcpSink(fd=sock.fileno())
        return sink
    return PyTcpSink(sock)


class RtpStream(Protocol):
    """What both implementations offer."""

    seq: int
    packets: int
    octets: int
    dropped: int
    last_rtp: int
    last_time: float
    ts_base: int
    need_key: bool

    @property
    def closed(self) -> bool: ...

    def send(
        self,
        payloads: tuple[bytes, ...],
        media_ts: int,
        keyframe: bool,
        abs_send_time: int,
        now: float,
    ) -> None: ...

    def send_raw(self, data: bytes) -> None: ...

    def protect(self, packet: bytes) -> bytes: ...

    def find(self, seq: int) -> tuple[tuple[bytes, ...], int, int] | None: ...

    def close(self) -> None: ...


def check_payloads(payloads: tuple[bytes, ...], header_room: int) -> None:
    """Refuse a sample that could not go out whole, before any of it is sent
    (exact types, as the C loop takes)."""
    if type(payloads) is not tuple:
        raise TypeError("payloads must be a tuple")
    for payload in payloads:
        if type(payload) is not bytes:
            raise TypeError("payloads must be bytes")
        if 12 + header_room + len(payload) > MAX_PACKET:
            raise ValueError("RTP packet too large")


def parameters_problem(
    port: int,
    ssrc: int,
    payload_type: int,
    seq: int,
    ts_base: int,
    extension: bytes,
    abs_send_time_at: int,
) -> str:
    """What is wrong with a stream's parameters ("" if nothing): the C loop's
    checks, in its words."""
    if not 0 <= port <= 65535:
        return "port must be 0-65535"
    if not 0 <= ssrc <= 0xFFFFFFFF:
        return "ssrc must be 0-4294967295"
    if not 0 <= payload_type <= 127:
        return "payload_type must be 0-127"
    if not 0 <= seq <= 0xFFFF:
        return "seq must be 0-65535"
    if not 0 <= ts_base <= 0xFFFFFFFF:
        return "ts_base must be 0-4294967295"
    if len(extension) > MAX_EXTENSION or len(extension) % 4:
        return "extension must be a multiple of 4 bytes, at most 64"
    if abs_send_time_at < -1 or (abs_send_time_at >= 0 and abs_send_time_at > len(extension) - 3):
        return "abs_send_time_at must be -1 or leave 3 bytes inside the extension"
    return ""


class PyRtpStream:
    """The C loop in Python, for when it is not built (and to check it)."""

    def __init__(
        self,
        sock: socket.socket | None,
        address: tuple[str, int],
        session: Session,
        ssrc: int,
        payload_type: int,
        seq: int,
        ts_base: int,
        extension: bytes,
        abs_send_time_at: int,
        video: bool,
        sink: PyTcpSink | None = None,
    ) -> None:
        bad = parameters_problem(
            address[1], ssrc, payload_type, seq, ts_base, extension, abs_send_time_at
        )
        if sink is not None and not isinstance(sink, PyTcpSink):
            bad = "sink must be a PyTcpSink"
        elif sink is None and sock is None:
            bad = "a socket or a sink is needed"
        if bad:
            raise ValueError(f"bad RtpStream parameters: {bad}")
        self._sink = sink
        # its own descriptor, as the C stream has (over TCP the sink has one)
        self._sock: socket.socket | None = sock.dup() if sink is None and sock else None
        self._address = address
        self._protect = session.protect
        self._source = ssrc
        self._payload_type = payload_type
        self.seq = seq
        self.ts_base = ts_base
        self._extension = bytearray(extension)
        self._abs_send_time_at = abs_send_time_at
        self._video = video
        self._need_key = video
        self.packets = self.octets = self.dropped = self.last_rtp = 0
        self.last_time = 0.0
        self._sent: list[tuple[tuple[bytes, ...], int, int, int] | None] = [None] * SENT_HISTORY
        self._next = 0

    @property
    def need_key(self) -> bool:
        return self._need_key

    @need_key.setter
    def need_key(self, value: bool) -> None:
        self._need_key = bool(value) and self._video

    @property
    def closed(self) -> bool:
        return self._sock is None and self._sink is None

    def send(
        self,
        payloads: tuple[bytes, ...],
        media_ts: int,
        keyframe: bool,
        abs_send_time: int,
        now: float,
    ) -> None:
        check_payloads(payloads, len(self._extension))
        self._send(payloads, media_ts, keyframe, abs_send_time, now)

    def _send(
        self,
        payloads: tuple[bytes, ...],
        media_ts: int,
        keyframe: bool,
        abs_send_time: int,
        now: float,
    ) -> None:
        if (self._sock is None and self._sink is None) or not payloads:
            return
        if self._need_key:
            if not keyframe:
                return
            self._need_key = False
        ts = (self.ts_base + media_ts) & 0xFFFFFFFF
        at = self._abs_send_time_at
        if at >= 0:
            self._extension[at : at + 3] = (abs_send_time & 0xFFFFFF).to_bytes(3, "big")
        extension = bytes(self._extension)
        first = 0x90 if extension else 0x80
        last = len(payloads) - 1
        done = 0
        protected: list[bytes] = []
        for index, payload in enumerate(payloads):
            marker = 0x80 if index == last else 0
            number = (self.seq + index) & 0xFFFF
            packet = (
                _HEADER.pack(first, marker | self._payload_type, number, ts, self._source)
                + extension
                + payload
            )
            try:
                packet = self._protect(packet)
                if self._sink is not None:
                    protected.append(packet)
                    continue
                assert self._sock is not None
                self._sock.sendto(packet, self._address)
            except Exception:  # a full socket, or protection that failed: cut here
                break
            self.octets += len(payload)
            done += 1
        if self._sink is not None:
            done = self._sink.send_frames(protected)
            self.octets += sum(len(payload) for payload in payloads[:done])
        if done < len(payloads):
            self.dropped += 1
            self._need_key = self._video
        if done:
            self._sent[self._next % SENT_HISTORY] = (payloads, self.seq, done, ts)
            self._next += 1
            self.seq = (self.seq + done) & 0xFFFF
            self.packets += done
            self.last_rtp = ts
            self.last_time = now

    def send_raw(self, data: bytes) -> None:
        if self._sink is not None:
            if memoryview(data).nbytes <= MAX_FRAME:
                self._sink.write(data)
        elif self._sock is not None:
            try:
                self._sock.sendto(data, self._address)
            except OSError:
                pass

    def protect(self, packet: bytes) -> bytes:
        """A packet protected as this stream's are (a resend): by the session."""
        return self._protect(packet)

    def find(self, seq: int) -> tuple[tuple[bytes, ...], int, int] | None:
        for entry in self._sent:
            if entry is not None:
                offset = (seq - entry[1]) & 0xFFFF
                if offset < entry[2]:
                    return entry[0], offset, entry[3]
        return None

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None
        self._sink = None  # the connection's: it closes it
        self._sent = [None] * SENT_HISTORY


@dataclass(frozen=True)
class SendPath:
    """How the C loop sends: ``gso``, a sample's equal-size packets to a viewer
    as one UDP GSO datagram; ``own_srtp``, AES-GCM SRTP protected by the stream
    itself rather than by libsrtp; ``audio_frames``, the 20 ms Opus frames
    joined into each audio packet (the configuration's ``webrtc_udp_gso``,
    ``webrtc_own_srtp`` and ``webrtc_audio_packet_ms``)."""

    gso: bool = True
    own_srtp: bool = True
    audio_frames: int = 1


def open_stream(
    sock: socket.socket | None,
    address: tuple[str, int],
    session: Session,
    ssrc: int,
    payload_type: int,
    seq: int,
    ts_base: int,
    extension: bytes,
    abs_send_time_at: int,
    video: bool,
    native: bool = True,
    sink: TcpSink | None = None,
    gso: bool = True,
    key: bytes | None = None,
) -> RtpStream:
    """A viewer's track: in C when built (and ``native``), else in Python.

    The stream keeps ``session`` (the C loop uses its libsrtp context) and a
    descriptor of ``sock`` of its own, so that neither can go before it does;
    ``close()`` ends its sending. Over ICE-TCP ``sink`` (from :func:`open_sink`,
    of the same implementation) carries its packets, and ``sock`` is None.
    With ``gso`` the C stream sends a sample's equal-size packets as one UDP GSO
    datagram (the receiver gets the same packets); Python sends them one by one.
    ``key`` (an AES-GCM profile's master key and salt) has the C stream protect
    its packets itself, with the same bytes libsrtp would make; Python leaves
    that to ``session``.
    """
    if sink is not None:  # the stream writes through it: the same implementation
        native = not isinstance(sink, PyTcpSink)
    if native and _rtpout is not None:
        return _rtpout.RtpStream(
            fd=sock.fileno() if sock is not None else -1,
            host=address[0],
            port=address[1],
            protect=_PROTECT_ADDRESS,
            context=internals.srtp_context(session),
            session=session,
            ssrc=ssrc,
            payload_type=payload_type,
            seq=seq,
            ts_base=ts_base,
            extension=extension,
            abs_send_time_at=abs_send_time_at,
            video=video,
            sink=sink,
            gso=gso,
            key=key,
        )
    return PyRtpStream(
        sock,
        address,
        session,
        ssrc,
        payload_type,
        seq,
        ts_base,
        extension,
        abs_send_time_at,
        video,
        sink,  # type: ignore[arg-type]
    )


def send_all(
    streams: list[Any],
    payloads: tuple[bytes, ...],
    media_ts: int,
    keyframe: bool,
    abs_send_time: int,
    now: float,
) -> None:
    """One sample to every stream of a broadcast (all of one implementation); a
    sample that cannot go out whole is refused before any stream sends."""
    if streams and _rtpout is not None and isinstance(streams[0], _rtpout.RtpStream):
        _rtpout.send_all(streams, payloads, media_ts, keyframe, abs_send_time, now)
        return
    check_payloads(payloads, MAX_EXTENSION)
    for stream in streams:
        stream._send(payloads, media_ts, keyframe, abs_send_time, now)
