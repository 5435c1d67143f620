"""One browser receiving one stream over WebRTC, without re-encoding.

The browser always offers (recvonly, no candidates, no trickle); we answer
with every candidate in the SDP, H.264 in the file's own profile and Opus,
then send the pipeline's encoded samples as they come.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from fractions import Fraction
from typing import Any

import av
from aiortc import MediaStreamTrack, RTCSessionDescription
from aiortc.mediastreams import MediaStreamError
from twisted.internet.defer import Deferred
from twisted.logger import Logger

from wcs import aio
from wcs.errors import ICE_FAILED, ICE_TCP_FAILED, ICE_TIMEOUT, INTERNAL_ERROR, NegotiationError
from wcs.media.opus_packets import Joiner
from wcs.media.sample import MediaInfo, Sample
from wcs.metrics import METERS
from wcs.transports.interfaces import IceFragment
from wcs.webrtc import codecs, ice, internals
from wcs.webrtc.icetcp import IceTcpServer
from wcs.webrtc.packetizer import payloads
from wcs.webrtc.peer import Peer, trickle_into
from wcs.webrtc.rtpstream import RtpStream, SendPath
from wcs.webrtc.sender import FastSender, Feedback, adopt, no_feedback, send_to_all

log = Logger()

#: Samples queued per track before a slow peer is cut back to the next keyframe.
QUEUE_LIMIT = 256
#: Why a play ends when the browser's connection goes after it played: it stopped
#: answering ICE consent checks (gone, or its network dropped), or closed its side.
LOST = "Failed by peer connection: the viewer's connection was lost"
#: Seconds a browser's close of its side waits before the play ends as lost: the
#: SDK's Stop sends stopStream on the WebSocket and closes the peer at once, and
#: the close's datagram may be read first; the stop then still ends it STOPPED.
CLOSE_GRACE = 1.0


class EncodedTrack(MediaStreamTrack):
    """A track whose frames are already encoded; ``recv`` hands them to aiortc."""

    def __init__(self, kind: str) -> None:
        super().__init__()
        self.kind = kind
        self._queue: asyncio.Queue[av.Packet | None] = asyncio.Queue()
        self.need_key = kind == "video"
        self.dropped = 0

    def push(self, sample: Sample) -> None:
        if self.readyState != "live":
            return
        if self.need_key:
            if not sample.keyframe:
                return
            self.need_key = False
        if self._queue.qsize() >= QUEUE_LIMIT:
            # the peer is not reading: drop what is queued, restart at a keyframe
            self.dropped += self._queue.qsize()
            while not self._queue.empty():
                self._queue.get_nowait()
            self.need_key = self.kind == "video"
            if self.need_key and not sample.keyframe:
                return
        packet = av.Packet(sample.data)
        packet.pts = sample.pts
        packet.time_base = Fraction(1, sample.clock)
        self._queue.put_nowait(packet)

    async def recv(self) -> av.Packet:
        if self.readyState != "live":
            raise MediaStreamError
        packet = await self._queue.get()
        if packet is None:
            raise MediaStreamError
        return packet

    def stop(self) -> None:
        if self.readyState == "live":
            self._queue.put_nowait(None)
        super().stop()


class WebRTCViewer:
    """A player that sends a stream to one browser.

    ``on_state`` is called once with "connected", then at most once with
    "failed" or "stopped" and an info. With ``fast`` (the default) each track
    is a :class:`~wcs.webrtc.sender.FastSender` that sends a sample's packets
    at once; without, an :class:`EncodedTrack` that aiortc's own sender reads.

    A connection that ends by itself ends the play, FAILED with why: ICE that
    never connects, or a browser that stops answering once playing (its ICE
    consent expires: aiortc fails, then closes the peer on its own), or closes
    its side. Nothing is left saying PLAYING to a viewer that gets nothing.
    """

    pressed_join = True  # a late joiner shows the live moment at once
    lead = 0.0
    audio_codecs = frozenset({"opus"})  # browsers have no AAC over WebRTC

    def __init__(
        self,
        info: MediaInfo,
        label: str,
        on_state: Callable[[str, str | None], None],
        fast: bool = True,
        ice_tcp: IceTcpServer | None = None,
        tcp_only: bool = False,
        path: SendPath = SendPath(),
    ) -> None:
        self.info = info
        self.label = label
        self._on_state = on_state
        self.fast = fast
        self._path = path
        self._ice_tcp = ice_tcp
        self._tcp_only = tcp_only
        self._never_connected = ICE_TCP_FAILED if tcp_only else ICE_FAILED
        self.connect_deadline = (ICE_TIMEOUT, self._never_connected)
        self.on_keyframe_request: Callable[[], None] = lambda: None
        #: Told what the browser says of its link: REMB (bits/s), and the loss in
        #: each receiver report with the rate sent meanwhile (fast senders only).
        self.on_feedback: Feedback | None = no_feedback if fast else None
        self.tracks: dict[str, EncodedTrack | FastSender] = {}
        self.pc: Peer | None = None
        self.connected = False
        self._done = False
        self._lost: asyncio.TimerHandle | None = None
        self._ready: asyncio.Future[None] | None = None  # waits for the senders' keys

    def answer(self, offer_sdp: str) -> Deferred[str]:
        """Negotiate; the answer carries all our candidates (no trickle)."""
        return aio.deferred(self._answer(offer_sdp))

    def trickle(self, fragment: IceFragment) -> Deferred[None]:
        """Candidates the client sent after its offer (a WHEP or WHIP PATCH)."""
        return trickle_into(self.pc, fragment)

    def answered(self) -> None:
        """ICE runs by itself from here; "connected" follows."""

    async def _answer(self, offer_sdp: str) -> str:
        offered = codecs.offered_media(offer_sdp)
        pc = self.pc = Peer(self.label, self._connect_failed, self._ice_tcp, self._tcp_only)
        pc.on("connectionstatechange", self._state_changed)
        if self.info.video is not None and "video" in offered:
            ids = [
                str(c.parameters.get("profile-level-id", "42e01f"))
                for c in offered["video"].rtp.codecs
                if c.mimeType.lower() == "video/h264"
            ]
            preferences = codecs.h264_preferences(self.info.video.profile_level_id, ids)
            if not preferences:
                raise NegotiationError(
                    f"Browser cannot play H.264 profile {self.info.video.profile_level_id}"
                )
            self._add("video", preferences)
        if self.info.audio is not None and "audio" in offered:
            names = {c.mimeType.lower() for c in offered["audio"].rtp.codecs}
            if "audio/opus" not in names:
                raise NegotiationError("Browser offers no Opus audio")
            self._add("audio", codecs.opus_preferences())
        if not self.tracks:
            raise NegotiationError("Nothing to play: the offer and the file share no media")
        await pc.setRemoteDescription(RTCSessionDescription(offer_sdp, "offer"))
        await pc.setLocalDescription(await pc.createAnswer())
        if not ice.has_candidates(pc.localDescription.sdp):
            raise NegotiationError(ice.NO_ADDRESS)  # rather than 20 s of ICE timeout
        return pc.localDescription.sdp

    def _add(self, kind: str, preferences: list) -> None:
        assert self.pc is not None
        track = None if self.fast else EncodedTrack(kind)
        with internals.without_bitrate_estimator():  # a viewer receives nothing
            transceiver = self.pc.addTransceiver(track or kind, direction="sendonly")
        if track is None:
            sender = self.tracks[kind] = adopt(
                transceiver.sender,
                f"{self.label} {kind}",
                self._keyframe_requested,
                path=self._path,
            )
            if kind == "video":
                sender.on_feedback = self._feedback
        else:
            self.tracks[kind] = track
            METERS.traffic("WebRTC").opened(transceiver.sender, internals.sender_counts)
        transceiver.setCodecPreferences(preferences)

    def _keyframe_requested(self) -> None:
        """The browser asked for a keyframe (PLI or FIR): the stream decides how."""
        log.debug("{label}: keyframe requested", label=self.label)
        self.on_keyframe_request()

    def _feedback(self, remb: int | None, loss: float | None, rate: float | None) -> None:
        if self.on_feedback is not None:
            self.on_feedback(remb, loss, rate)

    def _state_changed(self) -> None:
        """Called by aiortc at each change, as it happens (not in a task of its
        own, which would read a later state: a "failed" seen as "closed")."""
        pc = self.pc
        if pc is None:
            return
        state = pc.connectionState
        log.debug("{label}: peer connection {state}", label=self.label, state=state)
        if self._done:
            return
        if state == "connected" and not self.connected:
            self.connected = True
            self._ready = asyncio.ensure_future(self._senders_ready(), loop=aio.loop())
        elif state == "failed":
            self._end("failed", LOST if self.connected else self._never_connected)
        elif state == "closed" and self._lost is None:  # by aiortc: the browser's side went
            info = LOST if self.connected else self._never_connected
            self._lost = aio.loop().call_later(CLOSE_GRACE, self._end, "failed", info)

    async def _senders_ready(self) -> None:
        for track in list(self.tracks.values()):
            if isinstance(track, FastSender):
                await track.ready.wait()  # aiortc hands it the keys right after
        self._ready = None
        if not self._done:
            try:
                self._on_state("connected", None)
            except Exception:
                log.failure("{label}: starting to play failed", label=self.label)
                self._end("failed", INTERNAL_ERROR)

    def _connect_failed(self, error: Exception) -> None:
        """aiortc's connect task failed while the peer was open."""
        self._fail(error)

    def _fail(self, error: BaseException) -> None:
        self._end("failed", f"Failed by peer connection: {str(error) or type(error).__name__}")

    def _end(self, state: str, info: str | None) -> None:
        if not self._done:
            self._done = True
            self._on_state(state, info)

    # Subscriber

    def keyframe_wanted(self) -> bool:
        track = self.tracks.get("video")
        return track is not None and track.need_key

    def deliver(self, sample: Sample) -> None:
        if sample.codec == "aac":
            return  # browsers take Opus over WebRTC
        track = self.tracks.get(sample.kind)
        if isinstance(track, FastSender):
            # (one by one, Opus frames go 20 ms a packet: a viewer is fed so only
            # while an adaptive move is under way, between its batch's packets)
            track.send_sample(payloads(sample), sample.pts, sample.keyframe)
        elif track is not None:
            track.push(sample)

    class Batch:
        """A broadcast's WebRTC viewers: a live sample is cut once and sent to every
        fast track of its kind in one call (viewers on aiortc senders get it each)."""

        def __init__(self) -> None:
            self.streams: dict[str, list[RtpStream]] = {"video": [], "audio": []}
            self.tracks: dict[str, list[EncodedTrack]] = {"video": [], "audio": []}
            #: what each viewer was added with, so that exactly that is removed
            self.members: dict[WebRTCViewer, list[tuple[str, Any]]] = {}
            #: Opus frames joined for the fast tracks (one process, one setting)
            self.joiner: Joiner | None = None

        def __iter__(self) -> Iterator[WebRTCViewer]:
            return iter(list(self.members))

        def add(self, viewer: WebRTCViewer) -> None:
            if self.joiner is None and viewer._path.audio_frames > 1:
                self.joiner = Joiner(viewer._path.audio_frames)
            elif self.joiner is not None:  # the newcomer starts on a packet's first frame
                self._send_joined(self.streams["audio"], self.joiner.flush())
            added: list[tuple[str, Any]] = []
            for kind, track in viewer.tracks.items():
                if isinstance(track, FastSender) and track.stream is not None:
                    self.streams[kind].append(track.stream)
                    added.append((kind, track.stream))
                elif isinstance(track, EncodedTrack):
                    self.tracks[kind].append(track)
                    added.append((kind, track))
            self.members[viewer] = added

        def remove(self, viewer: WebRTCViewer) -> None:
            for kind, outlet in self.members.pop(viewer, []):
                if isinstance(outlet, EncodedTrack):
                    self.tracks[kind].remove(outlet)
                else:
                    self.streams[kind].remove(outlet)
                    if kind == "audio" and self.joiner is not None:
                        # the frames held for the others, to this one now (it goes
                        # on alone: an adaptive move), and none kept for no one
                        self._send_joined([outlet], self.joiner.pending())
                        if not self.streams["audio"]:
                            self.joiner.flush()

        @staticmethod
        def _send_joined(streams: list[RtpStream], packets: list[tuple[Sample, float]]) -> None:
            if streams:
                for packet, held in packets:
                    send_to_all(streams, (packet.data,), packet.pts, True, held)

        def deliver(self, sample: Sample) -> None:
            if sample.codec == "aac":
                return  # browsers take Opus over WebRTC
            streams = self.streams[sample.kind]
            if streams and sample.codec == "opus" and self.joiner is not None:
                self._send_joined(streams, self.joiner.take(sample))
            elif streams:
                send_to_all(streams, payloads(sample), sample.pts, sample.keyframe)
            for track in self.tracks[sample.kind]:
                track.push(sample)

    def closed(self, info: str | None, failed: bool) -> None:
        self._end("failed" if failed else "stopped", info)

    def close(self) -> None:
        """Close the peer, and let go of the owner's callbacks now (they point
        back at the play); the tracks and the peer are let go once closed."""
        self._done = True
        self._on_state = _ignore
        self.on_keyframe_request = _nothing
        if self.on_feedback is not None:
            self.on_feedback = no_feedback
        if self._lost is not None:
            self._lost.cancel()
            self._lost = None
        if self._ready is not None:
            self._ready.cancel()  # senders that never started: nothing to wait for
            self._ready = None
        aio.deferred(self._close()).addErrback(
            lambda failure: log.failure(
                "{label}: closing the peer failed", failure, label=self.label
            )
        )

    async def _close(self) -> None:
        # from the loop, as aiortc does: a sender already woken still sends its packet
        for track in self.tracks.values():
            if isinstance(track, EncodedTrack):
                track.stop()
        pc = self.pc
        if pc is not None:
            await pc.close()
            for transceiver in pc.getTransceivers():  # (fast senders count as they stop)
                METERS.traffic("WebRTC").closed(transceiver.sender)
        for track in self.tracks.values():
            if isinstance(track, FastSender):
                track.on_keyframe_request = _nothing
        self.tracks = {}
        self.pc = None


def _ignore(_state: str, _info: str | None) -> None:
    """What a closed viewer reports to: nobody."""


def _nothing() -> None:
    """What a closed viewer asks for: nothing."""
