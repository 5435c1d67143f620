"""A real aiortc viewer that speaks the WCS protocol and decodes every frame.

It offers the way the SDK does (recvonly audio + video), records every
decoded frame with its arrival time, and stops by itself at a deadline.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import aioice.ice
from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamError
from aiortc.rtp import RtcpSrPacket

from testkit.harness import encode_frame, handshake, run, split_url  # noqa: F401 (run)
from tools.makemedia import frame_number
from wcs.webrtc.codecs import register_profiles

aioice.ice.get_host_addresses = lambda use_ipv4, use_ipv6: ["127.0.0.1"]
register_profiles()  # so the offer carries Main and High as browsers' do



def stream_request(name: str, published: bool = False, provider: str = "WebRTC",
                   **fields: Any) -> dict[str, Any]:
    """A ``playStream``/``publishStream`` body as the SDK sends it, with a fresh
    mediaSessionId (``fields`` add to it: ``sdp``, ``record``...)."""
    return {"mediaSessionId": str(uuid.uuid1()), "name": name, "published": published,
            "hasVideo": True, "hasAudio": True, "status": "PENDING",
            "mediaProvider": provider, **fields}

class AsyncWebSocket:
    """Just enough of a WebSocket client on asyncio streams."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def connect(cls, url: str) -> AsyncWebSocket:
        host, port, path = split_url(url)
        reader, writer = await asyncio.open_connection(host, int(port))
        writer.write(handshake(host, port, path))
        head = await reader.readuntil(b"\r\n\r\n")
        if b" 101 " not in head.split(b"\r\n", 1)[0]:
            raise ConnectionError(head[:80])
        return cls(reader, writer)

    async def send(self, message: str, *data: Any) -> None:
        self.writer.write(encode_frame(json.dumps({"message": message, "data": list(data)})
                                       .encode()))
        await self.writer.drain()

    async def receive(self) -> tuple[int, bytes]:
        first, second = await self.reader.readexactly(2)
        length = second & 0x7F
        if length == 126:
            length = int.from_bytes(await self.reader.readexactly(2), "big")
        elif length == 127:
            length = int.from_bytes(await self.reader.readexactly(8), "big")
        return first & 0x0F, await self.reader.readexactly(length)

    async def receive_json(self) -> dict[str, Any]:
        while True:
            opcode, payload = await self.receive()
            if opcode == 8:
                raise ConnectionError("closed by server")
            if opcode == 1:
                message = json.loads(payload)
                if message.get("message") == "ping":
                    await self.send("pong", None)
                    continue
                return message

    def close(self) -> None:
        self.writer.close()


@dataclass
class Received:
    """What one play produced, as the viewer saw it."""

    statuses: list[str] = field(default_factory=list)
    status_times: list[float] = field(default_factory=list)  # monotonic, as each came
    infos: list[str] = field(default_factory=list)
    answer: str = ""
    video: list[tuple[float, int, int, int]] = field(default_factory=list)  # arrival, pts, w, h
    audio: list[tuple[float, int, int]] = field(default_factory=list)  # arrival, pts, samples
    play_sent: float = 0.0
    connected: float = 0.0  # monotonic, once a worker has answered the WebSocket upgrade
    first_picture: str = ""  # digest of the first decoded picture's luma plane
    numbers: list[int] = field(default_factory=list)  # barcode frame numbers, if any
    keyframes: list[float] = field(default_factory=list)  # arrivals of decoded keyframes
    rtp: list[tuple[str, float, int]] = field(default_factory=list)  # kind, arrival, RTP ts
    sender_reports: list[tuple[str, float, int, int]] = field(
        default_factory=list)  # kind, arrival, NTP, RTP
    dropped: int = 0  # video packets this viewer threw away on purpose
    consumer_errors: list[str] = field(default_factory=list)  # this client's own failures
    pli_sent: float | None = None

    def fps(self, span: int = 30) -> float:
        """Frames a second as they arrived: ``span`` frames over the median time
        that many took (about a second), so that a stall of this client's own
        loop (on a loaded machine) and the burst that follows it do not read as
        the server's pace, nor do single gaps (the server's shared timers send a
        frame up to 10 ms early, so 30 fps goes out in gaps of 27, 33 and 40 ms,
        whose median alone moves with the client's jitter)."""
        import statistics

        times = [v[0] for v in self.video]
        span = max(1, min(span, len(times) // 2))
        takes = [b - a for a, b in zip(times, times[span:])]
        return span / statistics.median(takes)

    def drift(self, window: float = 1.0) -> float:
        """How far video and audio moved apart (s), from the first to the last second.

        Each track's lateness is arrival time minus media time; its change
        between the start and the end is that track's drift against the
        wall clock, and the difference of the two is A/V drift.
        """
        def lateness(rows: list, clock: int) -> tuple[float, float]:
            base = rows[0][0] - rows[0][1] / clock
            first, last = rows[0][0], rows[-1][0]
            start = sorted(r[0] - r[1] / clock - base for r in rows if r[0] <= first + window)
            end = sorted(r[0] - r[1] / clock - base for r in rows if r[0] >= last - window)
            return start[len(start) // 2], end[len(end) // 2]

        video_start, video_end = lateness(self.video, 90000)
        audio_start, audio_end = lateness(self.audio, 48000)
        return (video_end - video_start) - (audio_end - audio_start)


async def play(ws_url: str, name: str, timeout: float = 30.0, stop_after: float | None = None,
               video: bool = True, audio: bool = True,
               drop_after: float | None = None, read: bool = True,
               stop_event: asyncio.Event | None = None, video_loss: float = 0.0,
               pli_after: float | None = None, vanish_after: float | None = None,
               close_peer_after: float | None = None,
               result: Received | None = None) -> Received:
    """Play ``name`` until the server ends it, ``stop_after`` seconds (then
    stopStream), ``drop_after`` seconds (then the socket just closes), or ``timeout``.
    With ``read=False`` the tracks are never read: a viewer that stalls.
    ``stop_event``, when set, also sends stopStream. ``video_loss`` throws away
    that share of the video packets as they arrive, so only NACKs can repair
    them (their retransmissions are kept: aiortc asks again for a packet only
    when it finds a new one missing, so a lost resend would be luck's to mend);
    ``pli_after`` sends a PLI that long after PLAYING.
    ``vanish_after`` seconds after PLAYING the peer goes silent at once (its UDP
    sockets closed: no DTLS close, no stopStream), ``close_peer_after`` it closes
    its peer connection (a DTLS close); either way the signalling stays open until
    the server ends the play (or ``timeout``). ``result``, when given, is filled
    as the play goes (what a caller that gives up can still look at)."""
    result = result if result is not None else Received()
    ws = await AsyncWebSocket.connect(ws_url)
    result.connected = time.monotonic()
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    consumers: list[asyncio.Task] = []

    def send_pli() -> None:
        """Ask the server for a keyframe, as a decoder that lost its picture does."""
        for transceiver in pc.getTransceivers():
            receiver = transceiver.receiver
            if transceiver.kind == "video":
                for ssrc in receiver._RTCRtpReceiver__remote_streams:
                    result.pli_sent = time.monotonic()
                    asyncio.ensure_future(receiver._send_rtcp_pli(ssrc))

    async def consume(track) -> None:
        rows = result.video if track.kind == "video" else result.audio
        try:
            while True:
                frame = await track.recv()
                now = time.monotonic()
                pts = frame.pts
                if rows:  # undo 32-bit RTP timestamp wrap-around
                    previous = rows[-1][1]
                    pts += (previous - previous % 2**32)
                    if pts < previous - 2**31:
                        pts += 2**32
                if track.kind == "video":
                    if not rows:
                        import hashlib
                        result.first_picture = hashlib.sha256(
                            bytes(frame.planes[0])).hexdigest()
                    rows.append((now, pts, frame.width, frame.height))
                    if frame.key_frame:
                        result.keyframes.append(now)
                    result.numbers.append(frame_number(frame))
                else:
                    rows.append((now, pts, frame.samples))
        except MediaStreamError:
            pass
        except Exception as error:  # a broken reader must not pass for a silent server
            result.consumer_errors.append(f"{track.kind}: {error!r}")
            raise

    def vanish() -> None:
        """Gone without a word: the ICE sockets closed under the peer."""
        for transceiver in pc.getTransceivers():
            connection = transceiver.receiver.transport.transport._connection
            for protocol in list(connection._protocols):
                protocol.transport.close()

    if read:
        pc.on("track", lambda track: consumers.append(asyncio.ensure_future(consume(track))))
    chance = random.Random(7)

    def watch_receiver(receiver: Any, kind: str) -> None:
        """Record what arrives (RTP timestamps, sender reports); lose video on purpose."""
        rtp_in, rtcp_in = receiver._handle_rtp_packet, receiver._handle_rtcp_packet

        async def rtp(packet: Any, arrival_time_ms: int) -> None:
            codec = receiver._RTCRtpReceiver__codecs.get(packet.payload_type)
            resent = codec is not None and codec.mimeType.lower().endswith("/rtx")
            if kind == "video" and video_loss and not resent and chance.random() < video_loss:
                result.dropped += 1
                return
            if codec is not None and not resent:
                result.rtp.append((kind, time.time(), packet.timestamp))
            await rtp_in(packet, arrival_time_ms)

        async def rtcp(packet: Any) -> None:
            if isinstance(packet, RtcpSrPacket):
                result.sender_reports.append((kind, time.time(),
                                              packet.sender_info.ntp_timestamp,
                                              packet.sender_info.rtp_timestamp))
            await rtcp_in(packet)

        receiver._handle_rtp_packet, receiver._handle_rtcp_packet = rtp, rtcp
    try:
        await ws.send("connection", {"appKey": "defaultApp", "clientVersion": "2.0"})
        assert (await ws.receive_json())["message"] == "getUserData"
        if audio:
            watch_receiver(pc.addTransceiver("audio", direction="recvonly").receiver, "audio")
        if video:
            watch_receiver(pc.addTransceiver("video", direction="recvonly").receiver, "video")
        await pc.setLocalDescription(await pc.createOffer())
        request = stream_request(name, sdp=pc.localDescription.sdp)
        result.play_sent = time.monotonic()
        await ws.send("playStream", request)
        deadline = time.monotonic() + timeout
        stop_at = None
        while time.monotonic() < deadline:
            wait = deadline - time.monotonic()
            if stop_at is not None:
                wait = min(wait, max(0.0, stop_at - time.monotonic()))
            if stop_event is not None:
                wait = min(wait, 0.2)
                if stop_event.is_set() and stop_at is None:
                    stop_at = time.monotonic()
                    stop_event = None
            try:
                message = await asyncio.wait_for(ws.receive_json(), max(wait, 0.01))
            except asyncio.TimeoutError:
                if stop_at is not None and time.monotonic() >= stop_at:
                    await ws.send("stopStream", dict(request, sdp=None))
                    stop_at = None
                continue
            if message["message"] == "setRemoteSDP":
                result.answer = message["data"][1]
                await pc.setRemoteDescription(RTCSessionDescription(result.answer, "answer"))
            elif message["message"] == "notifyStreamStatusEvent":
                event = message["data"][0]
                result.statuses.append(event["status"])
                result.status_times.append(time.monotonic())
                if event.get("info"):
                    result.infos.append(event["info"])
                if event["status"] == "PLAYING" and stop_after is not None:
                    stop_at = time.monotonic() + stop_after
                if event["status"] == "PLAYING" and pli_after is not None:
                    asyncio.get_running_loop().call_later(pli_after, send_pli)
                if event["status"] == "PLAYING" and vanish_after is not None:
                    asyncio.get_running_loop().call_later(vanish_after, vanish)
                if event["status"] == "PLAYING" and close_peer_after is not None:
                    asyncio.get_running_loop().call_later(
                        close_peer_after, lambda: asyncio.ensure_future(pc.close()))
                if event["status"] == "PLAYING" and drop_after is not None:
                    await asyncio.sleep(drop_after)
                    break
                if event["status"] in ("STOPPED", "FAILED"):
                    break
        # let the last frames out of the jitter buffers and decoders: until none came
        # for 0.3 s (a loaded machine's decoder thread may be 200 ms behind), 3 s at most
        settle = time.monotonic() + 3.0
        seen = -1
        while time.monotonic() < settle and seen != len(result.video) + len(result.audio):
            seen = len(result.video) + len(result.audio)
            await asyncio.sleep(0.3)
    finally:
        try:  # (a peer whose sockets were closed under it may never finish closing)
            await asyncio.wait_for(pc.close(), 5.0)
        except asyncio.TimeoutError:
            pass
        for task in consumers:
            task.cancel()
        ws.close()
    if result.consumer_errors:
        raise AssertionError(f"the test client failed reading frames: {result.consumer_errors}")
    return result

