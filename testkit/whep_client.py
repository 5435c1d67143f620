"""WHEP and WHIP clients on aiortc, speaking plain HTTP (RFC 9725) to the server:
a viewer that decodes what it gets, and a publisher that sends a file's own
H.264 and Opus as they are."""

from __future__ import annotations

import asyncio
import re
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote, urljoin

from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamError

import testkit.rtc_client  # noqa: F401  (candidates on loopback, offers with Main and High)
from wcs.media.mp4 import Mp4File
from wcs.webrtc.viewer import EncodedTrack


@dataclass
class Answer:
    status: int
    body: bytes
    headers: dict[str, str]
    links: list[str] = field(default_factory=list)

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", "replace")


def http(method: str, url: str, body: bytes = b"", headers: dict[str, str] | None = None,
         timeout: float = 30.0) -> Answer:
    """One request, whatever its status."""
    request = urllib.request.Request(url, data=body or None, method=method)
    for name, value in (headers or {}).items():
        request.add_header(name, value)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            status, content, answer = response.status, response.read(), response.headers
    except urllib.error.HTTPError as failure:
        status, content, answer = failure.code, failure.read(), failure.headers
    return Answer(status, content, {k.lower(): v for k, v in answer.items()},
                  answer.get_all("Link") or [])


def endpoint(base: str, door: str, name: str) -> str:
    """``http://host:port/whep/<name>``, the name URL-encoded."""
    return f"{base}/{door}/{quote(name, safe='')}"


def fragment_of(sdp: str) -> str:
    """A trickle-ice-sdpfrag with an SDP's credentials and candidates, under its first mid."""
    ufrag = re.search(r"a=ice-ufrag:(\S+)", sdp).group(1)
    pwd = re.search(r"a=ice-pwd:(\S+)", sdp).group(1)
    mid = re.search(r"a=mid:(\S+)", sdp).group(1)
    candidates = re.findall(r"^(a=candidate:.*?)\r?$", sdp, re.MULTILINE)
    lines = [f"a=ice-ufrag:{ufrag}", f"a=ice-pwd:{pwd}", "m=audio 9 UDP/TLS/RTP/SAVPF 0",
             f"a=mid:{mid}", *candidates, "a=end-of-candidates"]
    return "\r\n".join(lines) + "\r\n"


def without_candidates(sdp: str) -> str:
    return re.sub(r"^a=(candidate:.*|end-of-candidates)\r?\n", "", sdp, flags=re.MULTILINE)


@dataclass
class Viewed:
    created: Answer | None = None
    location: str = ""
    state: list[str] = field(default_factory=list)
    frames: list[tuple[float, int, int]] = field(default_factory=list)  # arrival, w, h
    audio_frames: int = 0
    deleted: Answer | None = None


async def whep_play(base: str, name: str, seconds: float = 3.0, token: str = "",
                    trickle: bool = False, audio: bool = True, video: bool = True,
                    delete: bool = True, timeout: float = 25.0, query: str = "",
                    result: Viewed | None = None) -> Viewed:
    """Play ``name`` over WHEP for ``seconds`` after the first frame (or until
    ``timeout``), then DELETE. With ``trickle`` the offer goes without candidates
    and they follow in a PATCH, as browsers' WHEP clients do."""
    result = result if result is not None else Viewed()
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    pc.on("connectionstatechange", lambda: result.state.append(pc.connectionState))
    tasks: list[asyncio.Task] = []

    async def consume(track) -> None:
        try:
            while True:
                frame = await track.recv()
                if track.kind == "video":
                    result.frames.append((time.monotonic(), frame.width, frame.height))
                else:
                    result.audio_frames += 1
        except MediaStreamError:
            pass

    pc.on("track", lambda track: tasks.append(asyncio.ensure_future(consume(track))))
    if audio:
        pc.addTransceiver("audio", direction="recvonly")
    if video:
        pc.addTransceiver("video", direction="recvonly")
    headers = {"Content-Type": "application/sdp"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    try:
        await pc.setLocalDescription(await pc.createOffer())
        offer = pc.localDescription.sdp
        url = endpoint(base, "whep", name) + query
        result.created = created = await asyncio.to_thread(
            http, "POST", url, (without_candidates(offer) if trickle else offer).encode(), headers)
        if created.status != 201:
            return result
        result.location = urljoin(url, created.headers["location"])
        await pc.setRemoteDescription(RTCSessionDescription(created.text, "answer"))
        if trickle:
            patched = await asyncio.to_thread(
                http, "PATCH", result.location, fragment_of(offer).encode(),
                {**headers, "Content-Type": "application/trickle-ice-sdpfrag",
                 "If-Match": created.headers.get("etag", "")})
            assert patched.status == 204, (patched.status, patched.text)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if result.frames and result.frames[-1][0] - result.frames[0][0] >= seconds:
                break
            if pc.connectionState in ("failed", "closed"):
                break
            await asyncio.sleep(0.1)
        if delete:
            result.deleted = await asyncio.to_thread(http, "DELETE", result.location,
                                                     b"", {"Authorization": f"Bearer {token}"})
    finally:
        await pc.close()
        for task in tasks:
            task.cancel()
    return result


@dataclass
class Published:
    created: Answer | None = None
    location: str = ""
    state: list[str] = field(default_factory=list)
    deleted: Answer | None = None


async def whip_publish(base: str, name: str, path: Path, seconds: float, token: str = "",
                       connected: asyncio.Event | None = None,
                       munge: Callable[[str], str] = lambda sdp: sdp, query: str = "",
                       result: Published | None = None) -> Published:
    """Publish ``seconds`` of ``path`` (its own H.264 and, as a browser would, no
    AAC) over WHIP, then DELETE. ``munge`` rewrites the offer as it is sent (as
    other WHIP clients would write it)."""
    result = result if result is not None else Published()
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    pc.on("connectionstatechange", lambda: result.state.append(pc.connectionState))
    video = EncodedTrack("video")
    pc.addTrack(video)
    headers = {"Content-Type": "application/sdp"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    try:
        await pc.setLocalDescription(await pc.createOffer())
        url = endpoint(base, "whip", name) + query
        result.created = created = await asyncio.to_thread(
            http, "POST", url, munge(pc.localDescription.sdp).encode(), headers)
        if created.status != 201:
            return result
        result.location = urljoin(url, created.headers["location"])
        await pc.setRemoteDescription(RTCSessionDescription(created.text, "answer"))
        for _ in range(200):
            if pc.connectionState == "connected":
                break
            await asyncio.sleep(0.05)
        if connected is not None:
            connected.set()
        started = time.monotonic()
        for sample in Mp4File(path, "whip").samples():
            if sample.time > seconds:
                break
            if sample.kind != "video":
                continue
            if pc.connectionState in ("closed", "failed"):  # the server ended it
                break
            delay = started + sample.time - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            video.push(sample)
        result.deleted = await asyncio.to_thread(http, "DELETE", result.location, b"",
                                                 {"Authorization": f"Bearer {token}"})
    finally:
        await pc.close()
    return result
