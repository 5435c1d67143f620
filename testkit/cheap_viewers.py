"""Viewers that cost the server nothing extra: real WebRTC peers (aiortc does the
signalling, ICE and DTLS), which then stop reading through aiortc and only count
the encrypted RTP packets they get.

One task drains every viewer's socket every ``POLL`` seconds (non-blocking reads
until the socket is empty), so a thousand viewers cost the client a few µs per
packet instead of a wake-up per packet. STUN keeps flowing through aioice, so
consent checks in both directions are answered and no viewer is dropped for
silence.

A viewer with ``transport="WHEP"`` starts its play with one WHEP POST instead of
the WebSocket (and ends it with a DELETE).
A viewer with ``transport="TCP"`` plays over ICE-TCP (``testkit/ice_tcp.py``):
its one TCP connection is drained the same way, frame by frame. A ``deaf``
viewer reads nothing at all once connected (a hostile client that never reads)."""

from __future__ import annotations

import asyncio
import os
import socket
import threading
import time
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from collections.abc import Awaitable, Callable
from typing import Any

import av
from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription
from aiortc.codecs.h264 import H264Encoder

from testkit.ice_tcp import add_active_tcp, nominated
from testkit.kernel_sink import KernelSink
from testkit.rtc_client import AsyncWebSocket, stream_request
from wcs.media.mp4 import Mp4File
from wcs.media.opus_packets import Joiner

#: How often the counter drains every socket (s).
POLL = 0.02
#: Where byte-counted sockets are read into (their bytes are not kept).
_SCRATCH = bytearray(1 << 18)
#: Linux's UDP_GRO socket option (netinet/udp.h), and room for its message.
UDP_GRO = 104
_GRO_SPACE = socket.CMSG_SPACE(4)


@dataclass
class CheapViewer:
    """One counting viewer, as the benchmark reads it."""

    statuses: list[str] = field(default_factory=list)
    infos: list[str] = field(default_factory=list)
    connected_at: float | None = None
    rtp: int = 0  # RTP packets received (SRTP, not decrypted)
    rtcp: int = 0
    rtp_bytes: int = 0
    ssrcs: dict[int, int] = field(default_factory=dict)  # packets by sender SSRC
    transport: str = "UDP"  # how it plays: "TCP" is ICE-TCP only, "WHEP" over WHEP
    deaf: bool = False  # once connected, reads nothing (its socket fills)
    bytes: int = 0  # what a byte-counted socket (an MSE media socket) brought
    requested_at: float | None = None  # when playStream (or the WHEP POST) went
    #: Receive with UDP GRO: the kernel hands over a sender's GSO datagram whole (on
    #: loopback the receivers' delivery runs on the sender's CPU; over a network it
    #: would not), counted as the packets it carries.
    gro: bool = False
    playing_at: float | None = None  # when PLAYING came
    #: Once connected, its RTP is counted and dropped by the kernel
    #: (``testkit/kernel_sink.py``) before its socket: only STUN reaches it.
    sunk: bool = False


class Counter:
    """The one poller over every counting viewer's socket."""

    def __init__(self, sink: KernelSink | None = None) -> None:
        self.sink = sink  # where sunk viewers' ports go
        self._sinking: list[int] = []  # ports to add to it at the next drain
        self._sockets: list[tuple[socket.socket, Any, CheapViewer]] = []
        self._streams: list[tuple[socket.socket, Any, CheapViewer, tuple, bytearray]] = []
        self._counted: list[tuple[socket.socket, CheapViewer]] = []  # bytes only
        self._task: asyncio.Task | None = None

    def add_bytes(self, sock: socket.socket, viewer: CheapViewer) -> None:
        """Count what arrives on ``sock`` (a copy of it is drained; the caller
        stops reading its own)."""
        raw = socket.socket(fileno=os.dup(sock.fileno()))
        raw.setblocking(False)
        self._counted.append((raw, viewer))
        if self._task is None:
            self._task = asyncio.ensure_future(self._drain_forever())

    def add(self, pc: RTCPeerConnection, viewer: CheapViewer) -> None:
        """Take over the viewer's sockets from aiortc (reading only)."""
        if viewer.transport == "TCP":
            self._add_tcp(pc, viewer)
            return
        for protocol in _ice_protocols(pc):
            transport = protocol.transport
            transport.pause_reading()
            raw = socket.socket(fileno=os.dup(transport.get_extra_info("socket").fileno()))
            raw.setblocking(False)
            if viewer.sunk and self.sink is not None:
                self._sinking.append(raw.getsockname()[1])
            if viewer.gro:
                raw.setsockopt(socket.SOL_UDP, UDP_GRO, 1)
            self._sockets.append((raw, protocol, viewer))
        if self._task is None:
            self._task = asyncio.ensure_future(self._drain_forever())

    def _add_tcp(self, pc: RTCPeerConnection, viewer: CheapViewer) -> None:
        route = nominated(pc)
        if route is None:
            return
        protocol, addr = route
        protocol.stop_reading(addr)
        if viewer.deaf:
            return  # nobody reads: the server's side fills
        raw = socket.socket(fileno=os.dup(protocol.socket_to(addr).fileno()))
        raw.setblocking(False)
        self._streams.append((raw, protocol, viewer, addr, bytearray()))
        if self._task is None:
            self._task = asyncio.ensure_future(self._drain_forever())

    def remove(self, viewer: CheapViewer) -> None:
        keep = []
        for entry in self._sockets:
            if entry[2] is viewer:
                entry[0].close()
            else:
                keep.append(entry)
        self._sockets = keep
        streams = []
        for stream in self._streams:
            if stream[2] is viewer:
                stream[0].close()
            else:
                streams.append(stream)
        self._streams = streams
        counted = []
        for raw, counted_viewer in self._counted:
            if counted_viewer is viewer:
                raw.close()
            else:
                counted.append((raw, counted_viewer))
        self._counted = counted

    def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
        for raw, _, _ in self._sockets:
            raw.close()
        for stream in self._streams:
            stream[0].close()
        for raw, _ in self._counted:
            raw.close()
        self._sockets = []
        self._streams = []
        self._counted = []

    async def _drain_forever(self) -> None:
        while True:
            await asyncio.sleep(POLL)
            self.drain()

    def drain(self) -> None:
        if self._sinking and self.sink is not None:
            ports, self._sinking = self._sinking, []
            self.sink.add(ports)
        for raw, viewer in self._counted:
            while True:
                try:
                    got = raw.recv_into(_SCRATCH)
                except OSError:  # empty (BlockingIOError), or gone
                    break
                if not got:
                    break
                viewer.bytes += got
        for raw, protocol, viewer in self._sockets:
            while True:
                try:
                    if viewer.gro:
                        data, ancillary, _, addr = raw.recvmsg(1 << 16, _GRO_SPACE)
                    else:
                        data, addr = raw.recvfrom(2048)
                        ancillary = ()
                except (BlockingIOError, InterruptedError):
                    break
                except OSError:
                    break
                first = data[0]
                if 127 < first < 192:
                    if 199 < data[1] < 208:
                        viewer.rtcp += 1
                    else:
                        # a GRO datagram: packets of its segment size, the last shorter
                        segment = next((int.from_bytes(value[:2], "little")
                                        for level, kind, value in ancillary
                                        if level == socket.SOL_UDP and kind == UDP_GRO),
                                       len(data))
                        count = -(-len(data) // segment)
                        viewer.rtp += count
                        viewer.rtp_bytes += len(data)
                        ssrc = int.from_bytes(data[8:12], "big")
                        viewer.ssrcs[ssrc] = viewer.ssrcs.get(ssrc, 0) + count
                elif first < 4:
                    protocol.datagram_received(data, addr)  # consent checks, both ways
        for raw, protocol, viewer, addr, buffer in self._streams:
            while True:
                try:
                    data = raw.recv(1 << 18)
                except (BlockingIOError, InterruptedError):
                    break
                except OSError:
                    break
                if not data:
                    break
                buffer += data
            at, end = 0, len(buffer)
            while end - at >= 2:
                length = (buffer[at] << 8) | buffer[at + 1]
                if end - at < 2 + length:
                    break
                first = buffer[at + 2] if length else 0
                if 127 < first < 192:
                    if 199 < buffer[at + 3] < 208:
                        viewer.rtcp += 1
                    else:
                        viewer.rtp += 1
                        viewer.rtp_bytes += length
                        ssrc = int.from_bytes(buffer[at + 10 : at + 14], "big")
                        viewer.ssrcs[ssrc] = viewer.ssrcs.get(ssrc, 0) + 1
                elif first < 4:  # consent checks, both ways
                    protocol.datagram_received(bytes(buffer[at + 2 : at + 2 + length]), addr)
                at += 2 + length
            del buffer[:at]


def _ice_protocols(pc: RTCPeerConnection) -> list[Any]:
    seen: dict[int, Any] = {}
    for transceiver in pc.getTransceivers():
        dtls = transceiver.receiver.transport
        connection = dtls.transport._connection
        for protocol in connection._protocols:
            seen[id(protocol)] = protocol
    return list(seen.values())


def _counted(pc: RTCPeerConnection, counter: Counter, viewer: CheapViewer) -> None:
    """Once ``pc`` connects, its sockets go to ``counter``."""

    @pc.on("connectionstatechange")
    def changed() -> None:
        if pc.connectionState == "connected" and viewer.connected_at is None:
            viewer.connected_at = time.monotonic()
            counter.add(pc, viewer)


async def watch_whep(http_url: str, name: str, counter: Counter, stop: asyncio.Event,
                     timeout: float = 120.0, viewer: CheapViewer | None = None) -> CheapViewer:
    """:func:`watch`, its play made by a WHEP POST and ended by a DELETE."""
    from testkit.whep_client import endpoint, http

    viewer = viewer or CheapViewer(transport="WHEP")
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    _counted(pc, counter, viewer)
    location = ""
    try:
        pc.addTransceiver("audio", direction="recvonly")
        pc.addTransceiver("video", direction="recvonly")
        await pc.setLocalDescription(await pc.createOffer())
        url = endpoint(http_url, "whep", name)
        created = await asyncio.to_thread(http, "POST", url, pc.localDescription.sdp.encode(),
                                          {"Content-Type": "application/sdp"}, 120.0)
        if created.status != 201:
            viewer.statuses.append("FAILED")
            viewer.infos.append(created.text)
            return viewer
        location = http_url + created.headers["location"]
        await pc.setRemoteDescription(RTCSessionDescription(created.text, "answer"))
        viewer.statuses.append("PLAYING")
        deadline = time.monotonic() + timeout
        while not stop.is_set() and time.monotonic() < deadline:
            if pc.connectionState in ("failed", "closed"):
                viewer.statuses.append("FAILED")
                break
            await asyncio.sleep(0.25)
    finally:
        counter.remove(viewer)
        if location:
            await asyncio.to_thread(http, "DELETE", location)
        await pc.close()
    if viewer.statuses[-1:] == ["PLAYING"]:
        viewer.statuses.append("STOPPED")
    return viewer


async def _follow_play(ws: AsyncWebSocket, request: dict[str, Any], viewer: CheapViewer,
                       stop: asyncio.Event, timeout: float,
                       answered: Callable[[str], Awaitable[None]]) -> None:
    """Send ``request`` as playStream, then follow the session until the play is
    STOPPED or FAILED (or ``timeout``): ``answered`` gets the answer's SDP, the
    statuses go into ``viewer`` (when it played, too), and stopStream goes once
    ``stop`` is set."""
    viewer.requested_at = time.monotonic()
    await ws.send("playStream", request)
    deadline = time.monotonic() + timeout
    stopping = False
    while time.monotonic() < deadline:
        if stop.is_set() and not stopping:
            stopping = True
            await ws.send("stopStream", dict(request, sdp=None))
        try:
            message = await asyncio.wait_for(ws.receive_json(), 0.25)
        except asyncio.TimeoutError:
            continue
        if message["message"] == "setRemoteSDP":
            await answered(message["data"][1])
        elif message["message"] == "notifyStreamStatusEvent":
            event = message["data"][0]
            viewer.statuses.append(event["status"])
            if event.get("info"):
                viewer.infos.append(event["info"])
            if event["status"] == "PLAYING" and viewer.playing_at is None:
                viewer.playing_at = time.monotonic()
            if event["status"] in ("STOPPED", "FAILED"):
                break


async def watch(ws_url: str, name: str, counter: Counter, stop: asyncio.Event,
                timeout: float = 120.0, viewer: CheapViewer | None = None,
                go: asyncio.Event | None = None) -> CheapViewer:
    """Play ``name`` as the SDK offers; once connected, hand the sockets to
    ``counter``; send stopStream when ``stop`` is set (or at ``timeout``).
    ``viewer`` (made if not given) fills in as it goes. With ``go``, the session
    and the offer are made first, and playStream waits until ``go`` is set (a
    storm of plays whose peers were made beforehand)."""
    viewer = viewer or CheapViewer()
    ws = await AsyncWebSocket.connect(ws_url)
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    _counted(pc, counter, viewer)

    try:
        await ws.send("connection", {"appKey": "defaultApp", "clientVersion": "2.0"})
        await ws.receive_json()
        pc.addTransceiver("audio", direction="recvonly")
        pc.addTransceiver("video", direction="recvonly")
        await pc.setLocalDescription(await pc.createOffer())
        extra = {}
        if viewer.transport == "TCP":
            add_active_tcp(pc)
            extra["transport"] = "TCP"
        request = stream_request(name, sdp=pc.localDescription.sdp, **extra)
        while go is not None and not go.is_set():  # the session answers pings meanwhile
            try:
                await asyncio.wait_for(ws.receive_json(), 0.25)
            except asyncio.TimeoutError:
                pass

        async def answered(sdp: str) -> None:
            await pc.setRemoteDescription(RTCSessionDescription(sdp, "answer"))

        await _follow_play(ws, request, viewer, stop, timeout, answered)
    finally:
        counter.remove(viewer)
        await pc.close()
        ws.close()
    return viewer



async def watch_mse(ws_url: str, name: str, counter: Counter, stop: asyncio.Event,
                    timeout: float = 120.0, viewer: CheapViewer | None = None) -> CheapViewer:
    """An MSE play as the SDK makes it (the offer, then the media socket), whose
    media socket ``counter`` drains, counting bytes only (``playing_at`` says
    when it played: an MSE viewer has no connection of its own to wait for)."""
    from testkit.mse_client import MSE_OFFER

    viewer = viewer or CheapViewer(transport="MSE")
    ws = await AsyncWebSocket.connect(ws_url)
    media: AsyncWebSocket | None = None
    try:
        await ws.send("connection", {"appKey": "defaultApp", "clientVersion": "2.0"})
        user = (await ws.receive_json())["data"][0]
        request = stream_request(name, provider="MSE", sdp=MSE_OFFER)

        async def answered(_sdp: str) -> None:
            nonlocal media
            if media is None:  # the SDK's media socket, drained by ``counter``
                media = await AsyncWebSocket.connect(ws_url)
                await media.send("connectMediaTransport", {"authToken": user["authToken"]})
                media.writer.transport.pause_reading()  # type: ignore[attr-defined]
                counter.add_bytes(media.writer.get_extra_info("socket"), viewer)

        await _follow_play(ws, request, viewer, stop, timeout, answered)
    finally:
        counter.remove(viewer)
        ws.close()
        if media is not None:
            media.close()
    return viewer


class Crowd:
    """Counting viewers of one stream, run by a thread of their own, so that a
    test can drive a browser beside them."""

    def __init__(self, ws_url: str, name: str, count: int, per_second: int = 25) -> None:
        self.viewers = [CheapViewer() for _ in range(count)]
        self._args = (ws_url, name, per_second)
        self._loop = asyncio.new_event_loop()
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=self._loop.run_until_complete,
                                        args=(self._run(),), daemon=True)

    def __enter__(self) -> Crowd:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(60)

    async def _run(self) -> None:
        ws_url, name, per_second = self._args
        self._stop = asyncio.Event()
        counter = Counter()
        tasks = []
        for index, viewer in enumerate(self.viewers):
            tasks.append(asyncio.ensure_future(watch(ws_url, name, counter, self._stop,
                                                     timeout=300, viewer=viewer)))
            if index % per_second == per_second - 1:
                await asyncio.sleep(1.0)
        await asyncio.gather(*tasks, return_exceptions=True)
        counter.stop()

    def connected(self) -> int:
        return sum(v.connected_at is not None for v in self.viewers)

    def wait_connected(self, timeout: float) -> int:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and self.connected() < len(self.viewers):
            time.sleep(0.2)
        return self.connected()

    def packets(self) -> int:
        return sum(v.rtp for v in self.viewers)


def packet_rate(clip: Path, audio_frames: int = 1) -> float:
    """RTP packets per second the file makes, packetised as aiortc does (MTU 1300),
    with ``audio_frames`` Opus frames joined a packet as the server joins them."""
    media = Mp4File(clip, "rate")
    joiner = Joiner(audio_frames) if audio_frames > 1 else None
    packets = 0
    for sample in media.samples():
        if sample.codec == "h264":
            packet = av.Packet(sample.data)
            packet.pts, packet.time_base = sample.pts, Fraction(1, 90000)
            packets += len(H264Encoder().pack(packet)[0])
        elif sample.codec == "opus":
            packets += len(joiner.take(sample)) if joiner is not None else 1
    duration = media.info.duration
    media.close()
    return packets / duration
