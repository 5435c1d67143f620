"""One browser publishing over WebRTC: its encoded frames, as received.

aiortc decodes everything it receives; a publisher's frames are wanted as
they are (H.264 to record without re-encoding, Opus to forward), so the
receivers of publishing peers get a decoder that hands the depayloaded
frame through untouched.
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Callable
from typing import Any

from aiortc import RTCRtpReceiver, RTCSessionDescription
from aiortc.mediastreams import MediaStreamError
from twisted.internet.defer import Deferred
from twisted.logger import Logger

from wcs import aio
from wcs.errors import ICE_FAILED, ICE_TCP_FAILED, ICE_TIMEOUT, INTERNAL_ERROR, NegotiationError
from wcs.media import h264
from wcs.media.audio import AacTranscoder
from wcs.media.reencode import Vp8ToH264
from wcs.media.sample import (
    OPUS_CLOCK,
    VIDEO_CLOCK,
    AudioInfo,
    MediaInfo,
    Sample,
    VideoInfo,
)
from wcs.transports.interfaces import IceFragment
from wcs.webrtc import codecs, ice, internals
from wcs.webrtc.icetcp import IceTcpServer
from wcs.webrtc.peer import Peer, trickle_into

log = Logger()


class Encoded:
    """A received frame, still encoded: what the pass-through decoder returns."""

    def __init__(self, data: bytes, timestamp: int) -> None:
        self.data = data
        self.timestamp = timestamp


#: Decoder queues of publishers' receivers: their frames are passed through.
_passthrough_queues: weakref.WeakSet[Any] = weakref.WeakSet()


def _decoder_worker(
    loop: asyncio.AbstractEventLoop, input_q: Any, output_q: Any, decode_error: Any
) -> None:
    """aiortc's decoder thread body; for publishers, hands frames on as received."""
    if input_q not in _passthrough_queues:
        _stock_decoder_worker(loop, input_q, output_q, decode_error)
        return
    while True:
        task = input_q.get()
        if task is None:
            asyncio.run_coroutine_threadsafe(output_q.put(None), loop)
            return
        _codec, encoded_frame = task
        frame = Encoded(encoded_frame.data, encoded_frame.timestamp)
        asyncio.run_coroutine_threadsafe(output_q.put(frame), loop)


_stock_decoder_worker = internals.replace_decoder_worker(_decoder_worker)


def pass_through(receiver: RTCRtpReceiver) -> None:
    """Make ``receiver`` deliver encoded frames (call before media flows)."""
    _passthrough_queues.add(internals.decoder_queue(receiver))


class WebRTCPublisher:
    """Receives one published stream and turns its frames into samples.

    ``on_sample`` gets every frame (Annex B H.264 on a 90 kHz clock, Opus on
    48 kHz, times from the first frame); ``on_state`` gets "connected", then
    "failed" with an info. A frame that cannot be handed on (a bug in the
    transcoders, or whatever takes it) fails the publisher with its traceback
    logged, rather than ending one read task while aiortc's queue fills on.
    """

    def __init__(
        self,
        label: str,
        on_sample: Callable[[Sample], None],
        on_state: Callable[[str, str | None], None],
        ice_tcp: IceTcpServer | None = None,
        tcp_only: bool = False,
    ) -> None:
        self.label = label
        self._on_sample = on_sample
        self._on_state = on_state
        self._ice_tcp = ice_tcp
        self._tcp_only = tcp_only
        self._never_connected = ICE_TCP_FAILED if tcp_only else ICE_FAILED
        #: Seconds it may take to connect after the answer, and the FAILED info if not.
        self.connect_deadline = (ICE_TIMEOUT, self._never_connected)
        self.pc: Peer | None = None
        self.info: MediaInfo | None = None
        self.connected = False
        self._origins: dict[str, int] = {}
        self._last: dict[str, int] = {}
        self._tasks: list[asyncio.Task] = []
        self._plis: set[asyncio.Future] = set()
        self._video_receiver: RTCRtpReceiver | None = None
        self._vp8: Vp8ToH264 | None = None
        self._aac: AacTranscoder | None = None
        self._done = False

    def answer(self, offer_sdp: str) -> Deferred[str]:
        """Negotiate; ``info`` says what the page sends once this has fired."""
        return aio.deferred(self._answer(offer_sdp))

    def trickle(self, fragment: IceFragment) -> Deferred[None]:
        """Candidates the client sent after its offer (a WHEP or WHIP PATCH)."""
        return trickle_into(self.pc, fragment)

    async def _answer(self, offer_sdp: str) -> str:
        offered = codecs.offered_media(offer_sdp)
        if not offered:
            raise NegotiationError("The offer has no audio or video to publish")
        codecs.register_profiles()
        pc = self.pc = Peer(self.label, self._connect_failed, self._ice_tcp, self._tcp_only)
        pc.on("connectionstatechange", self._state_changed)
        pc.on("track", self._track)
        video_profile = None
        if "video" in offered:
            offered_codecs = offered["video"].rtp.codecs
            ids = [
                str(c.parameters.get("profile-level-id", "42e01f"))
                for c in offered_codecs
                if c.mimeType.lower() == "video/h264"
                and str(c.parameters.get("packetization-mode", "0")) == "1"
            ]
            transceiver = pc.addTransceiver("video", direction="recvonly")
            if ids:
                video_profile = "42e01f" if "42e01f" in ids else ids[0]
                transceiver.setCodecPreferences(codecs.h264_preferences(video_profile, ids))
            elif any(c.mimeType.lower() == "video/vp8" for c in offered_codecs):
                # viewers and recordings take H.264: re-encode once, here
                log.info(
                    "{label}: the browser offers VP8 only; it is re-encoded to H.264",
                    label=self.label,
                )
                self._vp8 = Vp8ToH264()
                video_profile = "42e01f"
                capabilities = RTCRtpReceiver.getCapabilities("video")
                assert capabilities is not None  # aiortc receives video
                transceiver.setCodecPreferences(
                    [c for c in capabilities.codecs if c.mimeType == "video/VP8"]
                )
            else:
                raise NegotiationError("Publishing needs H.264 or VP8 video; the offer has neither")
            pass_through(transceiver.receiver)
            self._video_receiver = transceiver.receiver
        if "audio" in offered:
            transceiver = pc.addTransceiver("audio", direction="recvonly")
            transceiver.setCodecPreferences(codecs.opus_preferences())
            pass_through(transceiver.receiver)
        if "audio" in offered:
            self._aac = AacTranscoder()  # MSE viewers take AAC: once, here
        self.info = MediaInfo(
            duration=0.0,
            video=VideoInfo(0, 0, 0.0, video_profile) if video_profile else None,
            audio=AudioInfo(OPUS_CLOCK, 2, self._aac.config) if self._aac else None,
        )
        await pc.setRemoteDescription(RTCSessionDescription(offer_sdp, "offer"))
        await pc.setLocalDescription(await pc.createAnswer())
        if not ice.has_candidates(pc.localDescription.sdp):
            raise NegotiationError(ice.NO_ADDRESS)
        return pc.localDescription.sdp

    def _track(self, track: Any) -> None:
        self._tasks.append(asyncio.ensure_future(self._read(track)))

    async def _read(self, track: Any) -> None:
        kind = track.kind
        clock = VIDEO_CLOCK if kind == "video" else OPUS_CLOCK
        try:
            while True:
                frame = await track.recv()
                if self._done:
                    return
                self._emit(kind, clock, frame)
        except MediaStreamError:
            pass
        except Exception:
            log.failure(
                "{label}: a received {kind} frame could not be handed on",
                label=self.label,
                kind=kind,
            )
            self._fail(INTERNAL_ERROR)

    def _emit(self, kind: str, clock: int, frame: Encoded) -> None:
        origin = self._origins.setdefault(kind, frame.timestamp)
        pts = (frame.timestamp - origin) % 2**32
        last = self._last.get(kind)
        if last is not None and pts < last - 2**31:  # wrapped past 2^32
            pts += ((last // 2**32) + 1) * 2**32
        self._last[kind] = pts
        keyframe = True
        if kind == "video" and self._vp8 is not None:
            keyframe = bool(frame.data) and frame.data[0] & 0x01 == 0  # VP8 frame tag
            for sample in self._vp8.feed(
                Sample(kind, frame.data, pts, clock, pts / clock, keyframe)
            ):
                self._on_sample(sample)
            return
        if kind == "video":
            types = {nal[0] & 0x1F for nal in h264.split_annexb(frame.data) if nal}
            keyframe = h264.NAL_IDR in types
        sample = Sample(
            kind,
            frame.data,
            pts,
            clock,
            pts / clock,
            keyframe,
            "h264" if kind == "video" else "opus",
        )
        self._on_sample(sample)
        if kind == "audio" and self._aac is not None:
            for aac in self._aac.feed(sample):
                self._on_sample(aac)

    def request_keyframe(self) -> None:
        """Ask the browser for an IDR (a viewer joined with no GOP to give it, or
        lost its picture): a PLI to each video source it has sent from."""
        receiver = self._video_receiver
        if receiver is None:
            return
        for ssrc in internals.remote_media_ssrcs(receiver):
            pli = asyncio.ensure_future(internals.send_pli(receiver, ssrc))
            self._plis.add(pli)  # held until done: the loop keeps only a weak reference
            pli.add_done_callback(self._plis.discard)

    def _state_changed(self) -> None:
        """Called by aiortc at each change, as it happens."""
        pc = self.pc
        if pc is None or self._done:
            return
        state = pc.connectionState
        if state == "connected" and not self.connected:
            self.connected = True
            self._on_state("connected", None)
        elif state == "closed" and self.connected:
            # the publisher closed its side (DTLS close_notify): how a WHIP client
            # ends, before its DELETE; a stop, not a loss
            self._done = True
            self._on_state("stopped", None)
        elif state in ("failed", "closed"):
            self._fail(
                "Failed by peer connection: the publisher's connection was lost"
                if self.connected
                else self._never_connected
            )

    def _connect_failed(self, error: Exception) -> None:
        self._fail(f"Failed by peer connection: {str(error) or type(error).__name__}")

    def _fail(self, info: str) -> None:
        if not self._done:
            self._done = True
            self._on_state("failed", info)

    def flush(self) -> None:
        """Hand on what the AAC transcoder still holds (the stream is ending)."""
        if self._aac is not None:
            for aac in self._aac.flush():
                self._on_sample(aac)

    def close(self) -> None:
        """Stop reading now, close the peer, and let go of the owner's callbacks
        (they point back at the publication)."""
        self._done = True
        self._on_sample = _drop
        self._on_state = _ignore
        for task in self._tasks:
            task.cancel()  # nothing is read any more: aiortc's queues go with the peer
        aio.deferred(self._close()).addErrback(
            lambda failure: log.failure(
                "{label}: closing the peer failed", failure, label=self.label
            )
        )

    async def _close(self) -> None:
        pc = self.pc
        if pc is not None:
            await pc.close()
        self._tasks = []
        self._video_receiver = None
        self.pc = None


def _drop(_sample: Sample) -> None:
    """Where a closed publisher's frames go."""


def _ignore(_state: str, _info: str | None) -> None:
    """What a closed publisher reports to: nobody."""
