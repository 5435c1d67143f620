"""A real aiortc publisher speaking the WCS protocol: it sends a file's own
H.264 and Opus (no encoding) so that what the server records can be compared
byte for byte with what was sent."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from pathlib import Path

import av
from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription
from aiortc.rtp import RTCP_PSFB_PLI, RtcpPsfbPacket

from testkit.rtc_client import AsyncWebSocket, stream_request
from wcs.media.mp4 import Mp4File
from wcs.webrtc.viewer import EncodedTrack


class _SentTrack(EncodedTrack):
    """An :class:`EncodedTrack` that notes each picture aiortc takes to send.

    Counting at ``push`` would include what the track itself throws away when
    aiortc does not read (a client starved of CPU: CI once saw 256 pictures
    queued and dropped), and the server would be blamed for the difference."""

    def __init__(self, kind: str, sent: list[bytes]) -> None:
        super().__init__(kind)
        self.sent = sent

    async def recv(self) -> av.Packet:
        packet = await super().recv()
        if self.kind == "video":
            self.sent.append(bytes(packet))
        return packet


@dataclass
class Published:
    statuses: list[str] = field(default_factory=list)
    events: list[dict] = field(default_factory=list)
    sent_video: list[bytes] = field(default_factory=list)  # the pictures aiortc sent
    seconds: float = 0.0
    plis: int = 0  # keyframe requests (PLI) the server sent this publisher

    async def publishing(self, timeout: float = 20.0) -> None:
        """Until the server has said PUBLISHING (a viewer may come then)."""
        deadline = time.monotonic() + timeout
        while "PUBLISHING" not in self.statuses:
            if self.statuses or time.monotonic() > deadline:
                raise AssertionError(f"not publishing: {self.statuses}")
            await asyncio.sleep(0.05)


async def publish(ws_url: str, name: str, path: Path, seconds: float, record: bool = True,
                  timeout: float = 30.0, gap: tuple[float, float] | None = None,
                  drop_socket: bool = False, vp8: bool = False,
                  result: Published | None = None) -> Published:
    """Publish ``seconds`` of ``path`` as ``name``, then unPublishStream (or, with
    ``drop_socket``, just close the socket). Samples due inside ``gap`` are not
    sent: the sender pauses, its timestamps jump."""
    result = result if result is not None else Published()
    ws = await AsyncWebSocket.connect(ws_url)
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    media = Mp4File(path, "publisher")
    tracks = {kind: _SentTrack(kind, result.sent_video) for kind in ("video", "audio")}
    player = None
    if vp8:  # decoded pictures, which aiortc encodes as VP8 (the only codec offered)
        from aiortc import RTCRtpSender
        from aiortc.contrib.media import MediaPlayer

        player = MediaPlayer(str(path))
        pc.addTrack(player.audio)
        video = pc.addTransceiver(player.video, direction="sendonly")
        video.setCodecPreferences([c for c in RTCRtpSender.getCapabilities("video").codecs
                                   if c.mimeType == "video/VP8"])
    else:
        for track in tracks.values():
            pc.addTrack(track)
    for sender in pc.getSenders():
        rtcp_in = sender._handle_rtcp_packet

        async def counting(packet, rtcp_in=rtcp_in) -> None:
            if isinstance(packet, RtcpPsfbPacket) and packet.fmt == RTCP_PSFB_PLI:
                result.plis += 1
            await rtcp_in(packet)

        sender._handle_rtcp_packet = counting
    request = stream_request(name, published=True, record=record)

    async def pump() -> None:
        started = time.monotonic()
        for sample in media.samples():
            if sample.time > seconds:
                break
            if sample.codec == "aac":
                continue  # a browser sends Opus; the file's AAC is for MSE viewers
            # (a late client still yields, so that aiortc reads as it goes)
            await asyncio.sleep(max(0.0, started + sample.time - time.monotonic()))
            if gap is not None and gap[0] <= sample.time < gap[1]:
                continue
            tracks[sample.kind].push(sample)
        result.seconds = time.monotonic() - started

    try:
        await ws.send("connection", {"appKey": "defaultApp"})
        await ws.receive_json()
        await pc.setLocalDescription(await pc.createOffer())
        await ws.send("publishStream", dict(request, sdp=pc.localDescription.sdp))
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            message = await asyncio.wait_for(ws.receive_json(), deadline - time.monotonic())
            if message["message"] == "setRemoteSDP":
                await pc.setRemoteDescription(RTCSessionDescription(message["data"][1], "answer"))
            elif message["message"] == "notifyStreamStatusEvent":
                event = message["data"][0]
                result.statuses.append(event["status"])
                result.events.append(event)
                if event["status"] == "PUBLISHING":
                    started = time.monotonic()
                    if player is None:
                        await pump()
                    else:
                        await asyncio.sleep(seconds)
                        result.seconds = time.monotonic() - started
                    await asyncio.sleep(0.3)
                    if drop_socket:
                        break
                    await ws.send("unPublishStream", dict(request, record=False))
                if event["status"] in ("UNPUBLISHED", "FAILED"):
                    break
    finally:
        await pc.close()
        media.close()
        if player is not None:
            for track in (player.audio, player.video):
                track.stop()
        ws.close()
    return result
