"""Viewers that cost the server nothing extra: real WebRTC peers (aiortc does the
signalling, ICE and DTLS), which then stop reading through aiortc and only count
the encrypted RTP packets they get.

One task drains every viewer's socket every ``POLL`` seconds (non-blocking reads
until the socket is empty), so a thousand viewers cost the client a few µs per
packet instead of a wake-up per packet. STUN keeps flowing through aioice, so
consent checks in both directions are answered and no viewer is dropped for
silence."""

from __future__ import annotations

import asyncio
import os
import socket
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription

from testkit.rtc_client import AsyncWebSocket

#: How often the counter drains every socket (s).
POLL = 0.02


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


class Counter:
    """The one poller over every counting viewer's socket."""

    def __init__(self) -> None:
        self._sockets: list[tuple[socket.socket, Any, CheapViewer]] = []
        self._task: asyncio.Task | None = None

    def add(self, pc: RTCPeerConnection, viewer: CheapViewer) -> None:
        """Take over the viewer's sockets from aiortc (reading only)."""
        for protocol in _ice_protocols(pc):
            transport = protocol.transport
            transport.pause_reading()
            raw = socket.socket(fileno=os.dup(transport.get_extra_info("socket").fileno()))
            raw.setblocking(False)
            self._sockets.append((raw, protocol, viewer))
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

    def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
        for raw, _, _ in self._sockets:
            raw.close()
        self._sockets = []

    async def _drain_forever(self) -> None:
        while True:
            await asyncio.sleep(POLL)
            self.drain()

    def drain(self) -> None:
        for raw, protocol, viewer in self._sockets:
            while True:
                try:
                    data, addr = raw.recvfrom(2048)
                except (BlockingIOError, InterruptedError):
                    break
                except OSError:
                    break
                first = data[0]
                if 127 < first < 192:
                    if 199 < data[1] < 208:
                        viewer.rtcp += 1
                    else:
                        viewer.rtp += 1
                        viewer.rtp_bytes += len(data)
                        ssrc = int.from_bytes(data[8:12], "big")
                        viewer.ssrcs[ssrc] = viewer.ssrcs.get(ssrc, 0) + 1
                elif first < 4:
                    protocol.datagram_received(data, addr)  # consent checks, both ways


def _ice_protocols(pc: RTCPeerConnection) -> list[Any]:
    seen: dict[int, Any] = {}
    for transceiver in pc.getTransceivers():
        dtls = transceiver.receiver.transport
        connection = dtls.transport._connection
        for protocol in connection._protocols:
            seen[id(protocol)] = protocol
    return list(seen.values())


async def watch(ws_url: str, name: str, counter: Counter, stop: asyncio.Event,
                timeout: float = 120.0, viewer: CheapViewer | None = None) -> CheapViewer:
    """Play ``name`` as the SDK offers; once connected, hand the sockets to
    ``counter``; send stopStream when ``stop`` is set (or at ``timeout``).
    ``viewer`` (made if not given) fills in as it goes."""
    viewer = viewer or CheapViewer()
    ws = await AsyncWebSocket.connect(ws_url)
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    connected = asyncio.Event()

    @pc.on("connectionstatechange")
    def changed() -> None:
        if pc.connectionState == "connected" and not connected.is_set():
            viewer.connected_at = time.monotonic()
            counter.add(pc, viewer)
            connected.set()

    try:
        await ws.send("connection", {"appKey": "defaultApp", "clientVersion": "2.0"})
        await ws.receive_json()
        pc.addTransceiver("audio", direction="recvonly")
        pc.addTransceiver("video", direction="recvonly")
        await pc.setLocalDescription(await pc.createOffer())
        request = {"mediaSessionId": str(uuid.uuid1()), "name": name, "published": False,
                   "hasVideo": True, "hasAudio": True, "status": "PENDING",
                   "mediaProvider": "WebRTC", "sdp": pc.localDescription.sdp}
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
                await pc.setRemoteDescription(RTCSessionDescription(message["data"][1],
                                                                    "answer"))
            elif message["message"] == "notifyStreamStatusEvent":
                event = message["data"][0]
                viewer.statuses.append(event["status"])
                if event.get("info"):
                    viewer.infos.append(event["info"])
                if event["status"] in ("STOPPED", "FAILED"):
                    break
    finally:
        counter.remove(viewer)
        await pc.close()
        ws.close()
    return viewer

