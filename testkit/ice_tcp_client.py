"""A WebRTC viewer that plays over ICE-TCP as an *active* TCP candidate.

With ``transport: "TCP"`` in its ``playStream`` the server offers one candidate,
``tcp ... tcptype passive`` on its shared ``ice_tcp_port``, and aiortc/aioice
have no TCP candidate of their own. The candidate is
:class:`testkit.ice_tcp.ActiveTcp` (one of aioice's STUN protocols, attached to
the client's ICE connection once it has gathered; aioice's ``can_pair_with``
pairs it with the server's TCP candidate only): aioice's checks make it connect,
once per address, and every STUN message, DTLS record and SRTP packet then goes
as an RFC 4571 frame (a 16-bit length, then the bytes). This module is the
viewer around it, in three modes:

- ``"full"``: aiortc does everything (ICE, DTLS, SRTP, RTCP, jitter buffer) and
  every frame is decoded and recorded in ``decoded``, as
  :func:`testkit.rtc_client.play` does over UDP (a
  :class:`testkit.rtc_client.Received`: arrivals, RTP times, sizes, barcode
  numbers).
- ``"cheap"``: once DTLS is up (aiortc's ``connectionState`` "connected"),
  nothing more is read through aiortc: a :class:`testkit.cheap_viewers.Counter`
  (one poller over every viewer's socket, non-blocking reads every 20 ms) cuts
  the TCP stream into frames and only counts them: SRTP by the first byte
  (128-191; RTCP by the packet type 200-207), bytes and packets per SSRC. A frame
  whose first byte is 0-3 is STUN and goes to aioice, which answers the
  server's consent checks and takes the answers to its own, so a cheap viewer
  stays as long as it likes (one STUN message every ~5 s each way).
- ``"deaf"``: once DTLS is up, nobody reads the socket again (its receive
  buffer, then the server's send buffer, fill), and the client's own consent
  checks are stopped, so that it never gives up and closes the connection
  itself: a hostile viewer that holds its connection open and reads nothing.
  Only the server can end it (its consent checks go unanswered: ~30 s).

Private aioice/aiortc names are used here (test kit only, never the server):
``RTCDtlsTransport.transport._connection`` (the aioice ``Connection``) and its
``_nominated`` (in :func:`testkit.ice_tcp.nominated`), ``_protocols`` and
``_local_candidates`` (in :func:`testkit.ice_tcp.add_active_tcp`), and
``_query_consent_task`` (:func:`silence_consent`).
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any

from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamError

from testkit.cheap_viewers import CheapViewer, Counter
from testkit.ice_tcp import ActiveTcp, add_active_tcp, nominated
from testkit.rtc_client import AsyncWebSocket, Received, stream_request
from tools.makemedia import read_barcode

__all__ = ["MODES", "ActiveTcp", "TcpViewer", "play_tcp", "silence_consent"]

MODES = ("full", "cheap", "deaf")


@dataclass
class TcpViewer(CheapViewer):
    """What one play over ICE-TCP got: its statuses, a cheap viewer's counts (the
    :class:`CheapViewer` fields, which the shared :class:`Counter` fills), a full
    viewer's decoded frames (``decoded``), and the route its media took."""

    transport: str = "TCP"
    mode: str = "full"
    answer: str = ""
    play_sent: float = 0.0
    #: A full viewer's frames (arrivals, RTP times, sizes, barcode numbers, keyframes).
    decoded: Received = field(default_factory=Received)
    #: The server's address of the nominated pair (its ICE-TCP port), once connected.
    remote: tuple[str, int] | None = None
    #: Whether the nominated pair is the active TCP candidate (not a UDP one).
    over_tcp: bool = False


def silence_consent(pc: RTCPeerConnection) -> None:
    """Stop the client's own ICE consent checks (RFC 7675): aioice would close
    the connection after six unanswered ones (~30 s), and a client that never
    reads never gets the answers."""
    for transceiver in pc.getTransceivers():
        connection = transceiver.receiver.transport.transport._connection
        task = connection._query_consent_task
        if task is not None and not task.done():
            task.cancel()


async def play_tcp(
    ws_url: str,
    name: str,
    mode: str = "full",
    *,
    counter: Counter | None = None,
    timeout: float = 30.0,
    stop_after: float | None = None,
    stop_event: asyncio.Event | None = None,
    viewer: TcpViewer | None = None,
) -> TcpViewer:
    """Play ``name`` with ``transport: "TCP"`` in ``mode`` (see the module) until
    the server ends it, ``stop_after`` seconds after PLAYING or ``stop_event``
    (then stopStream, and the STOPPED it answers), or ``timeout``. ``counter``:
    the shared poller of cheap viewers (one of its own if not given). ``viewer``,
    when given, is filled as the play goes (what a caller can watch)."""
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}")
    viewer = viewer if viewer is not None else TcpViewer()
    viewer.mode, viewer.transport, viewer.deaf = mode, "TCP", mode == "deaf"
    own_counter = counter is None and mode != "full"
    if own_counter:
        counter = Counter()
    ws = await AsyncWebSocket.connect(ws_url)
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    consumers: list[asyncio.Task] = []
    ended = asyncio.Event()

    @pc.on("connectionstatechange")
    def changed() -> None:
        if pc.connectionState == "connected" and viewer.connected_at is None:
            viewer.connected_at = time.monotonic()
            route = nominated(pc)
            if route is not None:
                viewer.over_tcp = isinstance(route[0], ActiveTcp)
                viewer.remote = route[1]
            if mode != "full":
                assert counter is not None
                counter.add(pc, viewer)  # reads nothing more through aiortc
            if mode == "deaf":
                silence_consent(pc)

    async def consume(track: Any) -> None:
        got = viewer.decoded
        rows = got.video if track.kind == "video" else got.audio
        try:
            while True:
                frame = await track.recv()
                now = time.monotonic()
                if track.kind == "video":
                    rows.append((now, frame.pts, frame.width, frame.height))
                    if frame.key_frame:
                        got.keyframes.append(now)
                    plane = frame.planes[0]
                    row = bytes(memoryview(plane)[16 * plane.line_size : 17 * plane.line_size])
                    got.numbers.append(read_barcode(row))
                else:
                    rows.append((now, frame.pts, frame.samples))
        except MediaStreamError:
            pass

    if mode == "full":
        pc.on("track", lambda track: consumers.append(asyncio.ensure_future(consume(track))))
    try:
        await ws.send("connection", {"appKey": "defaultApp", "clientVersion": "2.0"})
        await ws.receive_json()  # getUserData
        pc.addTransceiver("audio", direction="recvonly")
        pc.addTransceiver("video", direction="recvonly")
        await pc.setLocalDescription(await pc.createOffer())
        add_active_tcp(pc)  # gathered: the active candidate joins before the answer
        request = stream_request(name, sdp=pc.localDescription.sdp, transport="TCP")
        viewer.play_sent = time.monotonic()
        await ws.send("playStream", request)
        deadline = time.monotonic() + timeout
        stop_at: float | None = None
        stopping = False
        while time.monotonic() < deadline and not ended.is_set():
            now = time.monotonic()
            if not stopping and (
                (stop_at is not None and now >= stop_at)
                or (stop_event is not None and stop_event.is_set())
            ):
                stopping = True
                await ws.send("stopStream", dict(request, sdp=None))
            try:
                message = await asyncio.wait_for(ws.receive_json(), 0.2)
            except TimeoutError:
                continue
            if message["message"] == "setRemoteSDP":
                viewer.answer = message["data"][1]
                await pc.setRemoteDescription(RTCSessionDescription(viewer.answer, "answer"))
            elif message["message"] == "notifyStreamStatusEvent":
                event = message["data"][0]
                viewer.statuses.append(event["status"])
                if event.get("info"):
                    viewer.infos.append(event["info"])
                if event["status"] == "PLAYING" and stop_after is not None:
                    stop_at = time.monotonic() + stop_after
                if event["status"] in ("STOPPED", "FAILED"):
                    ended.set()
        if mode == "full":
            await asyncio.sleep(0.3)  # the last frames out of the jitter buffers
    finally:
        if counter is not None:
            counter.remove(viewer)
            if own_counter:
                counter.stop()
        await pc.close()
        for task in consumers:
            task.cancel()
        ws.close()
    return viewer
