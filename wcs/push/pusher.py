"""One stream sent on to one RTMP URL: a subscriber of the stream, like any
viewer, that turns its samples into FLV tags on an RTMP connection.

H.264 goes as the stream carries it and AAC as stored (or as the pipeline
made it from a page's Opus): nothing is re-encoded. The push starts at a
keyframe, with timestamps from 0. A server that reads slower than the
stream runs fills the socket's buffer: the push then drops what comes until
the buffer drains and a keyframe arrives, and if it stays full for
:data:`STALLED` seconds the push ends. A connection that drops (or never
comes up) is tried again ``retries`` times, after 1, 2, 4... seconds
(at most :data:`MAX_BACKOFF`); a server that refuses (a bad key, an
unknown application) is not.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from twisted.internet import endpoints, ssl
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IDelayedCall, IPushProducer, IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from wcs.media.flv import FlvTagger
from wcs.media.sample import MediaInfo, Sample
from wcs.push.rtmp import RtmpError, RtmpPublisher, RtmpTarget
from wcs.streams.media_sessions import MediaSession

if TYPE_CHECKING:  # Twisted names it only in a private module
    from twisted.internet._sslverify import IOpenSSLTrustRoot

log = Logger()

#: Seconds the server may leave our socket's buffer full before the push ends.
STALLED = 10.0
#: The longest wait between two tries.
MAX_BACKOFF = 30.0
#: Seconds to connect (TCP) before a try counts as failed.
CONNECT_TIMEOUT = 10.0
#: Seconds from a try's start to the server's Publish.Start (TLS and RTMP handshakes,
#: commands): a server that accepts the connection and then says nothing is left.
PUBLISH_WAIT = 15.0
#: WCS's info for a push that broke (the SDK's FAILED_BY_RTMP_WRITER_ERROR).
WRITER_ERROR = "Failed by RTMP writer error"

#: How a push connects: (reactor, target, protocol) -> Deferred of the protocol.
Connect = Callable[[Any, RtmpTarget, RtmpPublisher], Deferred]


class RtmpConnector:
    """Connects a push: TCP for ``rtmp://``, TLS over it for ``rtmps://``, the
    server's certificate checked against ``trust`` (the system's CAs when None)
    and the URL's host name."""

    def __init__(self, trust: IOpenSSLTrustRoot | None = None) -> None:
        self.trust = trust

    def __call__(self, reactor: Any, rtmp: RtmpTarget, protocol: RtmpPublisher) -> Deferred:
        endpoint: Any = endpoints.HostnameEndpoint(
            reactor, rtmp.host, rtmp.port, timeout=CONNECT_TIMEOUT
        )
        if rtmp.secure:
            options = ssl.optionsForClientTLS(rtmp.host, trustRoot=self.trust)
            endpoint = endpoints.wrapClientTLS(options, endpoint)
        return endpoints.connectProtocol(endpoint, protocol)


connect_rtmp: Connect = RtmpConnector()


@implementer(IPushProducer)
class Push:
    """``media`` (its listing, status kept) sending ``info``'s stream to ``rtmp``;
    ``ended(push)`` once it is over, for whatever reason."""

    pressed_join = False  # a push takes the cached GOP at its own times
    lead = 0.0
    audio_codecs = frozenset({"aac"})  # FLV carries AAC as stored

    def __init__(
        self,
        media: MediaSession,
        rtmp: RtmpTarget,
        info: MediaInfo,
        reactor: Any,
        ended: Callable[[Push], None],
        retries: int = 3,
        connect: Connect = connect_rtmp,
        keyframe: Callable[[], None] = lambda: None,
    ) -> None:
        self.media = media
        self.rtmp = rtmp
        self.info = info
        self.reactor: IReactorTime = reactor
        self._ended = ended
        self.retries = retries
        self._connect = connect
        self._ask_keyframe = keyframe
        self.failures = 0  # connections that ended since the last that published
        self.done = False
        self.protocol: RtmpPublisher | None = None
        self._live = False  # the server said Publish.Start on this connection
        self._tagger = FlvTagger(b"", every_keyframe=False)
        self._origin: int | None = None  # ms of the first keyframe sent
        self._want_keyframe = True
        self._paused_since: float | None = None
        self._retry: IDelayedCall | None = None
        self._answer: IDelayedCall | None = None  # this try's PUBLISH_WAIT
        self.sent_samples = 0
        self.dropped = 0
        media.status = "PENDING"

    # --- the connection

    def start(self) -> None:
        if self.done:
            return
        self._live = False
        self._origin = None
        self._want_keyframe = True
        self._tagger = FlvTagger(
            self.info.audio.aac_config if self.info.audio else b"", every_keyframe=False
        )
        protocol = RtmpPublisher(
            self.rtmp, self._metadata(), self._publishing, self._connection_ended
        )
        self.protocol = protocol
        self._answer = self.reactor.callLater(PUBLISH_WAIT, self._unanswered, protocol)
        connecting = self._connect(self.reactor, self.rtmp, protocol)
        connecting.addCallbacks(
            self._connected, self._not_connected, callbackArgs=(protocol,), errbackArgs=(protocol,)
        )

    def _connected(self, protocol: RtmpPublisher, wanted: RtmpPublisher) -> None:
        if self.done or protocol is not self.protocol:
            protocol.close()
            return
        protocol.attach(self)

    def _not_connected(self, failure: Failure, protocol: RtmpPublisher) -> None:
        if protocol is self.protocol:
            self._connection_ended(
                RtmpError(
                    f"cannot connect to {self.rtmp.host}:"
                    f"{self.rtmp.port}: {failure.getErrorMessage()}"
                )
            )

    def _unanswered(self, protocol: RtmpPublisher) -> None:
        self._answer = None
        if protocol is self.protocol and not self._live:
            protocol.fail(
                RtmpError(f"the RTMP server did not let us publish within {PUBLISH_WAIT:g} s")
            )

    def _stop_waiting(self) -> None:
        if self._answer is not None and self._answer.active():
            self._answer.cancel()
        self._answer = None

    def _publishing(self) -> None:
        self._stop_waiting()
        self._live = True
        self.failures = 0  # a connection that worked: a later drop gets every retry again
        self.media.status, self.media.info = "PUBLISHING", ""
        log.info(
            "push of {name!r} to {url}: publishing as {key!r}",
            name=self.media.name,
            url=self.rtmp.url,
            key=self.rtmp.key,
        )
        self._ask_keyframe()

    def _connection_ended(self, error: RtmpError) -> None:
        self._stop_waiting()
        self.protocol = None
        self._paused_since = None
        if self.done:
            return
        self.failures += 1
        if not error.final and self.failures <= self.retries:
            delay = min(2.0 ** (self.failures - 1), MAX_BACKOFF)
            log.warn(
                "push of {name!r} to {url}: {why}; trying again in {delay:g} s ({n} of {retries})",
                name=self.media.name,
                url=self.rtmp.url,
                why=error,
                delay=delay,
                n=self.failures,
                retries=self.retries,
            )
            self.media.status, self.media.info = "PENDING", f"{WRITER_ERROR}: {error}"
            self._retry = self.reactor.callLater(delay, self.start)
            return
        self.end("FAILED", f"{WRITER_ERROR}: {error}")

    def end(self, status: str, info: str) -> None:
        """Stop for good: close the connection, keep the status for listings."""
        if self.done:
            return
        self.done = True
        if self._retry is not None and self._retry.active():
            self._retry.cancel()
        self._retry = None
        self._stop_waiting()
        self.media.status, self.media.info = status, info
        log_line = log.warn if status == "FAILED" else log.info
        log_line(
            "push of {name!r} to {url} ended: {status} ({info}); {n} samples sent, "
            "{dropped} dropped",
            name=self.media.name,
            url=self.rtmp.url,
            status=status,
            info=info,
            n=self.sent_samples,
            dropped=self.dropped,
        )
        protocol, self.protocol = self.protocol, None
        if protocol is not None:  # a server that reads nothing gets no goodbye either
            protocol.close(abort=self._paused_since is not None)
        self._ended(self)

    # --- the stream's side (a subscriber)

    def deliver(self, sample: Sample) -> None:
        protocol = self.protocol
        if not self._live or protocol is None:
            return
        if self._paused_since is not None:
            if self.reactor.seconds() - self._paused_since >= STALLED:
                self.end(
                    "FAILED", f"{WRITER_ERROR}: the RTMP server has read nothing for {STALLED:g} s"
                )
                return
            self.dropped += 1
            self._want_keyframe = True
            return
        if self._want_keyframe:
            if sample.kind != "video" or not sample.keyframe:
                self.dropped += 1
                self._ask_keyframe()  # a page's encoder makes one when asked (rate-limited)
                return
            self._want_keyframe = False
        milliseconds = round(sample.pts * 1000 / sample.clock)
        if self._origin is None:
            self._origin = milliseconds
        stamp = milliseconds - self._origin
        if stamp < 0:  # audio from before the first keyframe
            return
        for kind, ms, body in self._tagger.tags(sample, stamp):
            protocol.send_media(kind, ms, body)
        self.sent_samples += 1

    def keyframe_wanted(self) -> bool:
        return self._want_keyframe

    def closed(self, info: str | None, failed: bool) -> None:
        """The stream is over: so is the push."""
        self.end("FAILED" if failed else "STOPPED", info or "Stream ended")

    # --- the socket's side (IPushProducer)

    def pauseProducing(self) -> None:
        if self._paused_since is None:
            self._paused_since = self.reactor.seconds()

    def resumeProducing(self) -> None:
        self._paused_since = None

    def stopProducing(self) -> None:
        self._paused_since = None

    def _metadata(self) -> dict[str, Any]:
        meta: dict[str, Any] = {"encoder": "wcsvod"}
        video, audio = self.info.video, self.info.audio
        if video is not None:
            meta.update(width=video.width, height=video.height, videocodecid=7, framerate=video.fps)
        if audio is not None:
            meta.update(
                audiocodecid=10, audiosamplerate=audio.sample_rate, stereo=audio.channels > 1
            )
        return meta
