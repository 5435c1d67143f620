"""An RTMP publishing client on Twisted: the handshake, ``connect``,
``createStream``, ``publish``, then FLV tags as audio and video messages.

Adobe's RTMP specification, as encoders (OBS, ffmpeg) speak it to servers
(nginx-rtmp, YouTube, ffmpeg's own ``-listen 1``): the plain handshake,
over TCP or, for ``rtmps://``, over TLS (the connector's concern, not this one's),
commands in AMF0, our chunks of :data:`CHUNK_SIZE` with a full header per
message. What the server sends is parsed in full (its chunk size, window
acknowledgements, pings, command answers) and bounded: a message over
:data:`MAX_INCOMING` bytes ends the connection.
"""

from __future__ import annotations

import os
import re
import struct
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, cast
from typing import Protocol as Structural
from urllib.parse import urlsplit

from OpenSSL import SSL
from service_identity import VerificationError
from twisted.internet.interfaces import IPushProducer
from twisted.internet.protocol import Protocol, connectionDone
from twisted.logger import Logger
from twisted.python.failure import Failure

from wcs.errors import BadRequest
from wcs.metrics import METERS
from wcs.push import amf0
from wcs.tcp_writes import write_now

log = Logger()

HANDSHAKE = 1536
#: Our chunk size (what OBS uses): a keyframe is a few chunks.
CHUNK_SIZE = 4096
#: The largest message we accept from a server (its are commands, a few bytes).
MAX_INCOMING = 1 << 20
DEFAULT_PORT = 1935
#: rtmps:// with no port: 443, where YouTube's and Facebook's RTMPS ingest listen.
DEFAULT_TLS_PORT = 443

# message types
SET_CHUNK_SIZE, ABORT, ACK, USER_CONTROL, WINDOW_ACK_SIZE, PEER_BANDWIDTH = 1, 2, 3, 4, 5, 6
DATA_AMF0, COMMAND_AMF3, COMMAND_AMF0 = 18, 17, 20
# chunk streams we send on
CONTROL_CS, COMMAND_CS, AUDIO_CS, VIDEO_CS, DATA_CS = 2, 3, 4, 6, 5


@dataclass(frozen=True)
class RtmpTarget:
    """Where a stream goes: the server, its application and the stream key."""

    url: str  # as given (shown in listings)
    host: str
    port: int
    app: str
    key: str
    secure: bool = False  # rtmps://: RTMP over TLS

    @property
    def tc_url(self) -> str:
        scheme = "rtmps" if self.secure else "rtmp"
        return f"{scheme}://{self.host}:{self.port}/{self.app}"


_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")


def target(url: str, stream_name: str, prefix: str = "rtmp_", full_url: bool = False) -> RtmpTarget:
    """The target ``url`` means for ``stream_name``: as WCS does, the key is
    ``prefix`` + the stream name appended to ``url`` (``rtmp://host/live`` →
    ``live``/``rtmp_name``; ``vod-live://a.mp4`` → ``rtmp_vod-live___a.mp4``), unless
    ``full_url`` when the url's last part is the key
    (``rtmp://a.rtmp.youtube.com/live2/KEY``)."""
    if not isinstance(url, str) or len(url) > 2048 or not url.isprintable():
        raise BadRequest("'rtmpUrl' must be an rtmp:// or rtmps:// URL")
    parts = urlsplit(url)
    if parts.scheme not in ("rtmp", "rtmps"):
        raise BadRequest(f"'rtmpUrl' {url!r}: only rtmp:// and rtmps:// URLs are supported")
    secure = parts.scheme == "rtmps"
    try:
        port = parts.port or (DEFAULT_TLS_PORT if secure else DEFAULT_PORT)
    except ValueError:
        raise BadRequest(f"'rtmpUrl' {url!r}: the port is not a number") from None
    path = parts.path.strip("/")
    if not parts.hostname or not path:
        raise BadRequest(f"'rtmpUrl' {url!r}: give {parts.scheme}://host[:port]/application")
    if full_url:
        app, _, key = path.rpartition("/")
        if not app or not key:
            raise BadRequest(f"'rtmpUrl' {url!r}: give {parts.scheme}://host/application/key")
        key += f"?{parts.query}" if parts.query else ""
    else:  # a uri's ':' and '/' would read as more of the URL: '_' for anything odd
        app, key = path, prefix + _UNSAFE.sub("_", stream_name)
    return RtmpTarget(url, parts.hostname, port, app, key, secure)


def tls_refusal(reason: Failure) -> str:
    """What a TLS error that ended a connection says (``certificate verify
    failed``, ``wrong version number``...), or "" when it was no TLS error."""
    if reason.check(VerificationError):  # the certificate names another host
        return f"the certificate is not for this host ({reason.getErrorMessage()})"
    if not reason.check(SSL.Error):
        return ""
    error = reason.value
    assert error is not None  # an SSL.Error, checked above
    # pyOpenSSL's errors mostly carry [(library, function, reason), ...]
    listed = error.args[0] if error.args and isinstance(error.args[0], list) else []
    said = [part[-1] for part in listed if isinstance(part, tuple) and part and part[-1]]
    return "; ".join(said) or f"{type(error).__name__} {error}".strip()


def _chunk_basic(fmt: int, stream: int) -> bytes:
    return bytes([(fmt << 6) | stream])  # our chunk streams are all below 64


#: Message bodies whose chunks after the first header are kept: a stream's tag
#: bodies are the same bytes for every push of it (wcs/media/flv.py), so each is
#: cut into chunks once, and a push writes only its own header before them.
CHUNKED = 256

_chunked: dict[tuple[int, int, bytes], bytes] = {}


def message(
    stream: int,
    kind: int,
    timestamp: int,
    body: bytes,
    message_stream: int = 0,
    chunk_size: int = CHUNK_SIZE,
) -> list[bytes]:
    """One message as chunks: a full (type 0) header, then type 3 continuations."""
    timestamp &= 0xFFFFFFFF
    extended = timestamp >= 0xFFFFFF
    stamp = struct.pack(">I", timestamp) if extended else b""
    header = (
        _chunk_basic(0, stream)
        + (0xFFFFFF if extended else timestamp).to_bytes(3, "big")
        + len(body).to_bytes(3, "big")
        + bytes([kind])
        + struct.pack("<I", message_stream)
        + stamp
    )
    if len(body) <= chunk_size:
        return [header, body]
    if extended:  # each continuation carries the timestamp too
        return [header, _chunks(body, stream, stamp, chunk_size)]
    key = (stream, chunk_size, body)
    rest = _chunked.get(key)
    if rest is None:
        rest = _chunks(body, stream, b"", chunk_size)
        if len(_chunked) >= CHUNKED:
            del _chunked[next(iter(_chunked))]
        _chunked[key] = rest
    return [header, rest]


def _chunks(body: bytes, stream: int, stamp: bytes, chunk_size: int) -> bytes:
    """``body`` cut at ``chunk_size``, a type 3 header before each chunk but the first."""
    continuation = _chunk_basic(3, stream) + stamp
    parts = [body[:chunk_size]]
    for start in range(chunk_size, len(body), chunk_size):
        parts.append(continuation)
        parts.append(body[start : start + chunk_size])
    return b"".join(parts)


class RtmpError(Exception):
    """The server refused (``final``: trying again would not help) or broke."""

    def __init__(self, reason: str, final: bool = False) -> None:
        super().__init__(reason)
        self.final = final


@dataclass
class _Incoming:
    """A chunk stream's last header and the message being put together."""

    timestamp: int = 0
    length: int = 0
    kind: int = 0
    message_stream: int = 0
    extended: bool = False
    parts: list[bytes] | None = None
    received: int = 0


class ChunkReader:
    """Messages out of a byte stream of chunks, whatever their header types;
    it follows the sender's Set Chunk Size itself. Bounded: at most 64 chunk
    streams, messages of at most :data:`MAX_INCOMING` bytes."""

    def __init__(self) -> None:
        self.chunk_size = 128
        self._streams: dict[int, _Incoming] = {}

    def feed(self, buffer: bytearray) -> list[tuple[int, int, int, bytes]]:
        """Every whole message in ``buffer`` as (type, message stream, timestamp,
        body); what is used is removed from it, a partial chunk stays."""
        out: list[tuple[int, int, int, bytes]] = []
        while buffer:
            first = buffer[0]
            fmt, stream = first >> 6, first & 0x3F
            position = 1
            if stream == 0:
                if len(buffer) < 2:
                    break
                stream, position = 64 + buffer[1], 2
            elif stream == 1:
                if len(buffer) < 3:
                    break
                stream, position = 64 + buffer[1] + buffer[2] * 256, 3
            header_size = (11, 7, 3, 0)[fmt]
            if len(buffer) < position + header_size:
                break
            state = self._streams.get(stream)
            if state is None:
                if len(self._streams) >= 64:
                    raise RtmpError("the RTMP peer opened too many chunk streams")
                state = self._streams[stream] = _Incoming()
            header = bytes(buffer[position : position + header_size])
            position += header_size
            stamp = int.from_bytes(header[:3], "big") if fmt < 3 else 0
            extended = (stamp == 0xFFFFFF) if fmt < 3 else state.extended
            if extended:
                if len(buffer) < position + 4:
                    break
                stamp = struct.unpack_from(">I", buffer, position)[0]
                position += 4
            starting = state.parts is None
            length, kind, message_stream = state.length, state.kind, state.message_stream
            if fmt <= 1:
                length, kind = int.from_bytes(header[3:6], "big"), header[6]
                if length > MAX_INCOMING:
                    raise RtmpError(f"the RTMP peer sent a message of {length} bytes")
            if fmt == 0:
                message_stream = struct.unpack("<I", header[7:11])[0]
            need = min(self.chunk_size, length - (0 if starting else state.received))
            if len(buffer) < position + need:
                break
            if starting:
                state.length, state.kind, state.message_stream = length, kind, message_stream
                state.extended = extended
                if fmt == 0:
                    state.timestamp = stamp
                elif fmt < 3 or extended:
                    state.timestamp += stamp
                state.parts, state.received = [], 0
            assert state.parts is not None
            state.parts.append(bytes(buffer[position : position + need]))
            state.received += need
            del buffer[: position + need]
            if state.received >= state.length:
                body = b"".join(state.parts)
                state.parts = None
                if state.kind == SET_CHUNK_SIZE:
                    size = struct.unpack(">I", body[:4])[0] & 0x7FFFFFFF
                    if not 1 <= size <= MAX_INCOMING:
                        raise RtmpError(f"the RTMP peer asked for a chunk size of {size}")
                    self.chunk_size = size
                out.append((state.kind, state.message_stream, state.timestamp, body))
        return out


class Connection(Structural):
    """What is used of the transport: TCP's, or TLS over it (a consumer too)."""

    def write(self, data: bytes) -> None: ...

    def writeSequence(self, data: Iterable[bytes]) -> None: ...

    def loseConnection(self) -> None: ...

    def abortConnection(self) -> None: ...

    def registerProducer(self, producer: IPushProducer, streaming: bool) -> None: ...

    def unregisterProducer(self) -> None: ...


class RtmpPublisher(Protocol):
    """One connection publishing ``target``; ``publishing()`` once the server
    has said ``NetStream.Publish.Start``, ``ended(error)`` once, at the end."""

    def __init__(
        self,
        rtmp: RtmpTarget,
        metadata: dict[str, Any],
        publishing: Callable[[], None],
        ended: Callable[[RtmpError], None],
    ) -> None:
        self.rtmp = rtmp
        self.metadata = metadata
        self._publishing = publishing
        self._ended = ended
        self.state = "handshake"
        self._buffer = bytearray()
        self._c1 = b""
        self._reader = ChunkReader()
        self._window = 2_500_000
        self._received = 0
        self._acked = 0
        self._stream_id = 0
        self._error: RtmpError | None = None
        self._producer: IPushProducer | None = None
        self.sent = 0  # media bytes written
        self.messages = 0  # and the messages they went in
        METERS.traffic("RTMP").opened(self, _sent_by)

    # --- connection

    @property
    def connection(self) -> Connection:
        """The transport, while connected."""
        assert self.transport is not None
        return cast(Connection, self.transport)

    def connectionMade(self) -> None:
        self._c1 = struct.pack(">II", 0, 0) + os.urandom(HANDSHAKE - 8)
        self.connection.write(b"\x03" + self._c1)

    def dataReceived(self, data: bytes) -> None:
        self._received += len(data)
        self._buffer += data
        try:
            if self.state == "handshake":
                if len(self._buffer) < 1 + 2 * HANDSHAKE:
                    return
                if self._buffer[0] != 3:
                    raise RtmpError(f"not an RTMP server (version byte {self._buffer[0]})")
                s1 = bytes(self._buffer[1 : 1 + HANDSHAKE])
                del self._buffer[: 1 + 2 * HANDSHAKE]
                self.connection.write(s1)  # C2: S1 echoed
                self.state = "connecting"
                self._send(CONTROL_CS, SET_CHUNK_SIZE, struct.pack(">I", CHUNK_SIZE))
                self._command(
                    "connect",
                    1,
                    {
                        "app": self.rtmp.app,
                        "type": "nonprivate",
                        "flashVer": "FMLE/3.0 (compatible; wcsvod)",
                        "tcUrl": self.rtmp.tc_url,
                    },
                )
            self._read_chunks()
            if self._received - self._acked >= self._window:
                self._acked = self._received
                self._send(CONTROL_CS, ACK, struct.pack(">I", self._received & 0xFFFFFFFF))
        except RtmpError as error:
            self._fail(error)
        except (amf0.AmfError, struct.error, IndexError) as error:
            self._fail(RtmpError(f"the RTMP server sent what is not RTMP ({error})"))

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        state, self.state = self.state, "closed"
        METERS.traffic("RTMP").closed(self)
        refusal = tls_refusal(reason) if self._error is None else ""
        if refusal:  # a certificate refused will be refused a second later too
            self._error = RtmpError(f"TLS: {refusal}", final=state == "handshake")
        if self._error is None:
            why = reason.getErrorMessage() if state != "closing" else "closed"
            self._error = RtmpError(
                f"the RTMP server closed the connection ({why})"
                if state == "publishing"
                else f"the connection ended before publishing ({why})"
            )
        self._ended(self._error)

    def close(self, abort: bool = False) -> None:
        """End the connection (our side: a stop, not a failure); ``abort``, at once,
        whatever is still unsent."""
        if self.state != "closed":
            self._error = self._error or RtmpError("stopped", final=True)
            self._hang_up(abort)

    def fail(self, error: RtmpError) -> None:
        """End the connection at once, for ``error``."""
        if self.state != "closed":
            self._fail(error)

    def _fail(self, error: RtmpError) -> None:
        if self._error is None:
            self._error = error
        self._hang_up(abort=True)

    def attach(self, producer: IPushProducer) -> None:
        """``producer`` (the push) is paused while the socket's buffer is full."""
        self.connection.registerProducer(producer, True)
        self._producer = producer

    def _hang_up(self, abort: bool = False) -> None:
        """A publishing connection is closed in order (what is written goes out
        first); any other, or ``abort``, at once: a TLS close would wait for a
        handshake the server may never finish."""
        publishing, self.state = self.state == "publishing", "closing"
        if self._producer is not None:  # TLS closes only once no producer is left
            self._producer = None
            self.connection.unregisterProducer()
        if publishing and not abort:
            self.connection.loseConnection()
        else:
            self.connection.abortConnection()

    # --- media

    def send_media(self, kind: int, timestamp: int, body: bytes) -> None:
        """An FLV tag body as an audio (8) or video (9) message."""
        chunks = message(
            VIDEO_CS if kind == 9 else AUDIO_CS, kind, timestamp, body, self._stream_id
        )
        self.sent += len(body)
        self.messages += 1
        write_now(self.connection, *chunks)

    # --- reading

    def _read_chunks(self) -> None:
        for kind, _stream, _stamp, body in self._reader.feed(self._buffer):
            self._on_message(kind, body)
            if self.state in ("closing", "closed"):
                return

    def _on_message(self, kind: int, body: bytes) -> None:
        if kind == WINDOW_ACK_SIZE:
            self._window = max(struct.unpack(">I", body[:4])[0], 4096)
        elif kind == USER_CONTROL and len(body) >= 6 and body[:2] == b"\x00\x06":
            self._send(CONTROL_CS, USER_CONTROL, b"\x00\x07" + body[2:6])  # ping → pong
        elif kind in (COMMAND_AMF0, COMMAND_AMF3):
            self._on_command(amf0.decode(body[1:] if kind == COMMAND_AMF3 else body))

    def _on_command(self, values: list[Any]) -> None:
        if not values:
            return
        name, transaction = values[0], values[1] if len(values) > 1 else 0
        info = next((v for v in values[2:] if isinstance(v, dict)), {})
        code = str(info.get("code", ""))
        if name == "_error":
            raise RtmpError(
                f"the RTMP server refused: {code or 'error'} {info.get('description', '')}".strip(),
                final=True,
            )
        if name == "_result" and transaction == 1:
            key = self.rtmp.key
            self._command("releaseStream", 2, None, key)
            self._command("FCPublish", 3, None, key)
            self._command("createStream", 4, None)
        elif name == "_result" and transaction == 4:
            stream_id = values[3] if len(values) > 3 else None
            if not isinstance(stream_id, float) or not 0 < stream_id < 2**31:
                raise RtmpError("the RTMP server gave no stream id")
            self._stream_id = int(stream_id)
            self._command("publish", 5, None, self.rtmp.key, "live")
        elif name == "onStatus":
            if code == "NetStream.Publish.Start" and self.state == "connecting":
                self.state = "publishing"
                self._send(
                    DATA_CS,
                    DATA_AMF0,
                    amf0.encode("@setDataFrame", "onMetaData") + amf0.ecma_array(self.metadata),
                    self._stream_id,
                )
                self._publishing()
            elif info.get("level") == "error" or "Failed" in code or "BadName" in code:
                raise RtmpError(
                    f"the RTMP server refused: {code} {info.get('description', '')}".strip(),
                    final=True,
                )

    # --- writing

    def _command(self, name: str, transaction: int, *arguments: Any) -> None:
        stream_id = self._stream_id if name == "publish" else 0
        self._send(COMMAND_CS, COMMAND_AMF0, amf0.encode(name, transaction, *arguments), stream_id)

    def _send(self, stream: int, kind: int, body: bytes, message_stream: int = 0) -> None:
        self.connection.writeSequence(message(stream, kind, 0, body, message_stream))


def _sent_by(publisher: RtmpPublisher) -> tuple[int, int]:
    return publisher.messages, publisher.sent
