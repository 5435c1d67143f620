"""Published streams between workers: fetched once per worker that plays them.

A page publishes to one worker; a viewer of its name may land on any other.
That worker connects once to the publishing worker's :class:`RelayService` (TCP,
its address in the stream's entry) and feeds a local stream with what comes,
for every viewer it has. The publishing side is a subscriber like any viewer:
samples go out as they arrive, framed by length (Twisted's
``Int32StringReceiver``); while the socket's buffer is full they are dropped
and the relay resumes at the next keyframe, so a worker that reads slowly costs
the publisher nothing. A keyframe request travels back to the publishing page.
Connections must open with the server's relay secret (kept with the server's
names: in the supervisor, or in the cluster's Redis), so only its own workers and
nodes can take a stream this way.

Frames: ``H`` + JSON (hello, then the stream's description), ``S`` + header +
payload (a sample), ``K`` (a keyframe, please), ``E`` + JSON (the end, and why).
"""

from __future__ import annotations

import hmac
import json
import struct
from collections.abc import Callable
from typing import Any

from twisted.application import service
from twisted.internet import protocol
from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IListeningPort, IReactorTCP
from twisted.logger import Logger
from twisted.protocols.basic import Int32StringReceiver
from twisted.python.failure import Failure

from wcs.cluster.store import Entry
from wcs.errors import NotFound, WcsError
from wcs.media.sample import AudioInfo, MediaInfo, Sample, VideoInfo

log = Logger()

#: Largest frame accepted (a keyframe of a large picture fits many times).
MAX_FRAME = 16 * 2**20
#: Seconds a relay may take to connect and describe its stream.
CONNECT_TIMEOUT = 5.0
#: Seconds a connection to a relay may take to say hello before it is dropped.
HELLO_TIMEOUT = 5.0
#: Bytes still sent once the socket's buffer is full (Twisted's 64 KiB): a late
#: joiner's history (``RelaySender.lead``) goes out whole, not cut back to the
#: next keyframe; past it, samples are dropped until the next keyframe.
PAUSED_ALLOWANCE = 2 * 2**20
#: What a relayed stream that lost its source tells its viewers.
RELAY_LOST = "Failed by relay: the publishing worker is gone"

_HEADER = struct.Struct(">ccBqId")  # kind, codec, keyframe, pts, clock, time
_KINDS = {"video": b"v", "audio": b"a"}
_CODECS = {"h264": b"h", "opus": b"o", "aac": b"a", "": b"-"}
_KIND_NAMES = {value: key for key, value in _KINDS.items()}
_CODEC_NAMES = {value: key for key, value in _CODECS.items()}


def pack(sample: Sample) -> bytes:
    return (
        b"S"
        + _HEADER.pack(
            _KINDS[sample.kind],
            _CODECS[sample.codec],
            sample.keyframe,
            sample.pts,
            sample.clock,
            sample.time,
        )
        + sample.data
    )


def unpack(frame: bytes) -> Sample:
    kind, codec, keyframe, pts, clock, time = _HEADER.unpack_from(frame, 1)
    return Sample(
        _KIND_NAMES[kind],
        frame[1 + _HEADER.size :],
        pts,
        clock,
        time,
        bool(keyframe),
        _CODEC_NAMES[codec],
    )


def describe(info: MediaInfo) -> dict[str, Any]:
    return {
        "duration": info.duration,
        "bitrate": info.bitrate,  # the ladder's worth is judged by it on either side
        "video": vars(info.video) if info.video else None,
        "audio": {
            "sample_rate": info.audio.sample_rate,
            "channels": info.audio.channels,
            "aac_config": info.audio.aac_config.hex(),
        }
        if info.audio
        else None,
    }


def described(data: dict[str, Any]) -> MediaInfo:
    audio = data["audio"]
    return MediaInfo(
        data["duration"],
        VideoInfo(**data["video"]) if data["video"] else None,
        AudioInfo(audio["sample_rate"], audio["channels"], bytes.fromhex(audio["aac_config"]))
        if audio
        else None,
        int(data.get("bitrate") or 0),
    )


def _json(kind: bytes, value: Any) -> bytes:
    return kind + json.dumps(value).encode()


class RelayService(service.Service):
    """A worker's relay: serves its published streams and fetches others'.

    It listens on ``interface`` and is reached at ``advertised`` (its address in
    the entries); ``secret`` fetches the server's relay secret, once.
    ``find_published`` looks a published stream up by name (the registry's,
    set when composed).
    """

    def __init__(
        self,
        reactor: IReactorTCP,
        interface: str,
        advertised: str,
        secret: Callable[[], Deferred[str]],
    ) -> None:
        self.reactor = reactor
        self.interface = interface
        self.advertised = advertised
        self._fetch_secret = secret
        self.secret = ""  # until it has come, every relay is refused
        self.find_published: Callable[[str], Any] = lambda name: None
        self.port: IListeningPort | None = None
        self.address = ""

    def startService(self) -> None:
        super().startService()
        factory = protocol.ServerFactory()
        factory.protocol = lambda: RelaySender(self)
        self.port = self.reactor.listenTCP(0, factory, interface=self.interface)
        port = self.port.getHost().port  # type: ignore[attr-defined]
        self.address = f"{self.advertised}:{port}"
        log.info("relay of published streams on {address}", address=self.address)
        self._secret_fetched()

    def _secret_fetched(self) -> Deferred[str]:
        if self.secret:
            return succeed(self.secret)

        def known(secret: str) -> str:
            self.secret = secret
            return secret

        return self._fetch_secret().addCallback(known)

    def stopService(self) -> Deferred[None] | None:
        super().stopService()
        port, self.port = self.port, None
        return port.stopListening() if port is not None else None

    def subscribe(self, entry: Entry, stream: Any) -> Deferred[None]:
        """Feed ``stream`` (a local :class:`PublishedStream`) from the worker
        publishing ``entry``; fires once its description has come."""
        host, _, port = entry.relay.rpartition(":")

        def connect(secret: str) -> Deferred[None]:
            receiver = RelayReceiver(entry.name, secret, stream)
            creator = protocol.ClientCreator(self.reactor, lambda: receiver)
            return creator.connectTCP(host, int(port), timeout=CONNECT_TIMEOUT).addCallback(
                lambda _: receiver.described
            )

        def lost(failure: Failure) -> Failure:
            if failure.check(WcsError):  # it answered: why there is no stream
                return failure
            log.warn(
                "relay of {name!r} from {relay} failed: {why}",
                name=entry.name,
                relay=entry.relay,
                why=failure.getErrorMessage(),
            )
            raise NotFound(f"Stream not found: its worker cannot be reached ({entry.relay})")

        return self._secret_fetched().addCallback(connect).addErrback(lost)


class RelaySender(Int32StringReceiver):
    """The publishing side of one relay connection: a subscriber of the stream."""

    MAX_LENGTH = 64 * 1024  # a receiver only says hello and asks for keyframes
    pressed_join = False  # the receiving worker caches the GOP itself
    #: The history a late joiner there may need, sent at once: the most any player
    #: holds before it shows anything (MSE's 2.5 s), with the sound of its GOP, so
    #: that the receiving worker's viewers start as they would here.
    lead = 3.0
    gop_audio = True

    def __init__(self, relay: RelayService) -> None:
        self.relay = relay
        self.stream: Any = None
        self.paused = False
        self.held = 0  # bytes sent on since the socket's buffer filled
        self.need_key = True
        self.dropped = 0
        self._hello_timer: Any = None

    def connectionMade(self) -> None:
        self._hello_timer = self.relay.reactor.callLater(  # type: ignore[attr-defined]
            HELLO_TIMEOUT, self._silent
        )

    def _silent(self) -> None:
        self._hello_timer = None
        if self.stream is None:
            self.transport.loseConnection()  # type: ignore[union-attr]

    def stringReceived(self, frame: bytes) -> None:
        if self._hello_timer is not None and self._hello_timer.active():
            self._hello_timer.cancel()
        self._hello_timer = None
        if frame[:1] == b"K" and self.stream is not None:
            self.stream.request_keyframe()
        elif frame[:1] == b"H" and self.stream is None:
            self._hello(frame[1:])
        else:
            self.transport.loseConnection()  # type: ignore[union-attr]

    def _hello(self, data: bytes) -> None:
        try:
            hello = json.loads(data)
            name, secret = str(hello["name"]), str(hello["secret"])
        except (ValueError, KeyError, TypeError):
            self._refuse("bad hello")
            return
        if not self.relay.secret or not hmac.compare_digest(
            secret.encode(), self.relay.secret.encode()
        ):
            self._refuse("wrong secret")
            return
        stream = self.relay.find_published(name)
        if stream is None or stream.closed or stream.info is None:
            self._refuse("Stream not found")
            return
        self.stream = stream
        self.sendString(_json(b"H", describe(stream.info)))
        self.transport.registerProducer(self, True)  # type: ignore[union-attr]
        stream.subscribe(self)

    def _refuse(self, why: str) -> None:
        self.sendString(_json(b"E", {"info": why, "failed": True}))
        self.transport.loseConnection()  # type: ignore[union-attr]

    # Subscriber
    def deliver(self, sample: Sample) -> None:
        over = self.paused and self.held >= PAUSED_ALLOWANCE
        if over or (self.need_key and sample.kind == "video" and not sample.keyframe):
            self.dropped += 1
            if sample.kind == "video":
                self.need_key = True
            return
        if sample.kind == "video":
            self.need_key = False
        frame = pack(sample)
        if self.paused:
            self.held += len(frame)
        self.sendString(frame)

    def keyframe_wanted(self) -> bool:
        return self.need_key

    def closed(self, info: str | None, failed: bool) -> None:
        self.stream = None
        if self.transport is not None and self.connected:
            self.sendString(_json(b"E", {"info": info, "failed": failed}))
            self.transport.loseConnection()

    # IPushProducer: the receiving worker is slow, skip to a later keyframe
    def pauseProducing(self) -> None:
        if not self.paused:
            self.paused, self.held = True, 0

    def resumeProducing(self) -> None:
        self.paused = False

    def stopProducing(self) -> None:
        self.paused, self.held = True, PAUSED_ALLOWANCE  # going: nothing more

    def connectionLost(self, reason: Failure = protocol.connectionDone) -> None:
        if self._hello_timer is not None and self._hello_timer.active():
            self._hello_timer.cancel()
        stream, self.stream = self.stream, None
        if stream is not None:
            stream.unsubscribe(self)
        if self.dropped:
            log.info(
                "relay of {name!r}: {n} samples skipped for a slow worker",
                name=getattr(stream, "name", "?"),
                n=self.dropped,
            )


class RelayReceiver(Int32StringReceiver):
    """The playing side: feeds a local stream for every viewer of this worker,
    and closes when the last of them leaves."""

    MAX_LENGTH = MAX_FRAME

    def __init__(self, name: str, secret: str, stream: Any) -> None:
        self.name = name
        self.secret = secret
        self.stream = stream
        self.described: Deferred[None] = Deferred()
        self.leaving = False

    def connectionMade(self) -> None:
        self.sendString(_json(b"H", {"name": self.name, "secret": self.secret}))
        self.stream.ask_publisher = lambda: self.sendString(b"K")
        self.stream.idle = self.leave

    def leave(self) -> None:
        """The last viewer here left: this worker needs the stream no more."""
        self.leaving = True
        self.transport.loseConnection()  # type: ignore[union-attr]

    def stringReceived(self, frame: bytes) -> None:
        kind = frame[:1]
        try:
            if kind == b"S" and not self.described.called:
                return
            if kind == b"S":
                self.stream.send(unpack(frame))
            elif kind == b"H" and not self.described.called:
                self.stream.info = described(json.loads(frame[1:]))
                self.described.callback(None)
            elif kind == b"E":
                end = json.loads(frame[1:])
                self._end(end.get("info"), bool(end.get("failed")))
        except (ValueError, KeyError, TypeError, struct.error) as error:
            log.warn("relay of {name!r}: bad frame ({error})", name=self.name, error=error)
            self.transport.loseConnection()  # type: ignore[union-attr]

    def _end(self, info: str | None, failed: bool) -> None:
        if not self.described.called:
            self.described.errback(NotFound(info or "Stream not found"))
        else:
            self.stream.end(info or "Stopped by publisher stop", failed)
        self.transport.loseConnection()  # type: ignore[union-attr]

    def connectionLost(self, reason: Failure = protocol.connectionDone) -> None:
        if not self.described.called:
            self.described.errback(NotFound("Stream not found: its worker is gone"))
        elif not self.stream.closed:
            self.stream.end(
                *(("Stopped: no viewer left", False) if self.leaving else (RELAY_LOST, True))
            )
        self.stream.idle = _nothing
        self.stream.ask_publisher = _nothing


def _nothing() -> None:
    """What a relayed stream does once its relay is closed."""
