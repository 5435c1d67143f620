"""A small MSE viewer: the SDK's fixed offer, then the media socket, counting
bytes and checking every record's framing."""

from __future__ import annotations

import asyncio
import struct
import time
import uuid
from dataclasses import dataclass, field

from testkit.rtc_client import AsyncWebSocket

MSE_OFFER = ("v=0\r\no=- 0 0 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\n"
             "m=video 0 RTP/AVP 112\r\na=rtpmap:112 H264/90000\r\n"
             "a=fmtp:112 packetization-mode=1; profile-level-id=420020\r\na=recvonly\r\n"
             "m=audio 0 RTP/AVP 108\r\na=rtpmap:108 mpeg4-generic/48000/2\r\na=recvonly\r\n")


@dataclass
class MseReceived:
    statuses: list[str] = field(default_factory=list)
    infos: list[str] = field(default_factory=list)
    answer: str = ""
    bytes: int = 0
    records: dict[int, int] = field(default_factory=dict)
    first_video: bytes = b""
    order: list[tuple[int, int, bytes]] = field(default_factory=list)  # type, ms, head


def parse_records(buffer: bytes) -> list[tuple[int, int, bytes]]:
    """Split one binary message into records; fails on any framing error."""
    records, position = [], 0
    while position < len(buffer):
        kind, stamp, size = struct.unpack_from(">BiI", buffer, position)
        assert kind in (8, 9), f"bad record type {kind}"
        payload = buffer[position + 9:position + 9 + size]
        assert len(payload) == size, "a record runs past its message"
        records.append((kind, stamp, payload))
        position += 9 + size
    return records


async def watch(ws_url: str, name: str, seconds: float, read: bool = True,
                token: str | None = None) -> MseReceived:
    result = MseReceived()
    signalling = await AsyncWebSocket.connect(ws_url)
    media = None
    try:
        await signalling.send("connection", {"appKey": "defaultApp"})
        user = (await signalling.receive_json())["data"][0]
        request = {"mediaSessionId": str(uuid.uuid1()), "name": name, "published": False,
                   "hasVideo": True, "hasAudio": True, "mediaProvider": "MSE",
                   "sdp": MSE_OFFER}
        await signalling.send("playStream", request)
        deadline = time.monotonic() + seconds + 10
        stop_at = None
        reader = None
        while time.monotonic() < deadline:
            if stop_at is not None and time.monotonic() >= stop_at:
                await signalling.send("stopStream", request)
                stop_at = None
            if reader is not None and reader.done() and stop_at is None \
                    and "PLAYING" not in result.statuses:
                break  # the server closed the media socket before playing: refused
            try:
                message = await asyncio.wait_for(signalling.receive_json(), 0.2)
            except asyncio.TimeoutError:
                continue
            if message["message"] == "setRemoteSDP":
                result.answer = message["data"][1]
                media = await AsyncWebSocket.connect(ws_url)
                await media.send("connectMediaTransport",
                                 {"authToken": token if token is not None else user["authToken"]})
                if read:
                    reader = asyncio.ensure_future(_read(media, result))
            elif message["message"] == "notifyStreamStatusEvent":
                event = message["data"][0]
                result.statuses.append(event["status"])
                if event.get("info"):
                    result.infos.append(event["info"])
                if event["status"] == "PLAYING":
                    stop_at = time.monotonic() + seconds
                if event["status"] in ("STOPPED", "FAILED"):
                    break
        if reader is not None:
            reader.cancel()
    finally:
        signalling.close()
        if media is not None:
            media.close()
    return result


async def _read(media: AsyncWebSocket, result: MseReceived) -> None:
    try:
        while True:
            opcode, payload = await media.receive()
            if opcode == 8:
                return
            if opcode == 1:
                continue  # pings
            result.bytes += len(payload)
            for kind, stamp, body in parse_records(payload):
                result.records[kind] = result.records.get(kind, 0) + 1
                result.order.append((kind, stamp, body[:5]))
    except (ConnectionError, asyncio.IncompleteReadError):
        return
