"""The baseline for bench/live_fanout.py: stock aiortc serving one broadcast.

``MediaPlayer`` reads the file once and ``MediaRelay`` fans it out, as the
aiortc examples do; video is passed through (with the one fix it needs:
AVCC → Annex B, or viewers decode nothing) and AAC is decoded once and
encoded to Opus by each viewer's sender, which is aiortc's default. It speaks
just enough of the WCS protocol for the benchmark's viewers.

Usage: python bench/stock_server.py FILE PORT
"""

from __future__ import annotations

import asyncio
import json
import sys
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import aioice.ice  # noqa: E402
from aiortc import (  # noqa: E402
    MediaStreamTrack,
    RTCConfiguration,
    RTCPeerConnection,
    RTCRtpSender,  # noqa: E402
    RTCSessionDescription,  # noqa: E402
)
from aiortc.contrib.media import MediaPlayer, MediaRelay  # noqa: E402
from autobahn.asyncio.websocket import (
    WebSocketServerFactory,  # noqa: E402
    WebSocketServerProtocol,  # noqa: E402
)

from wcs.media import h264  # noqa: E402

aioice.ice.get_host_addresses = lambda use_ipv4, use_ipv6: ["127.0.0.1"]


class AnnexB(MediaStreamTrack):
    """The fix: MP4's length-prefixed H.264 turned into start codes."""

    kind = "video"

    def __init__(self, source: MediaStreamTrack, config: h264.AvcConfig) -> None:
        super().__init__()
        self.source, self.config = source, config

    async def recv(self):
        import av

        packet = await self.source.recv()
        data, _ = h264.to_annexb(bytes(packet), self.config)
        fixed = av.Packet(data)
        fixed.pts, fixed.dts, fixed.time_base = packet.pts, packet.dts, packet.time_base
        return fixed


def main() -> None:
    path, port = sys.argv[1], int(sys.argv[2])
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    video_player = MediaPlayer(path, decode=False, loop=True)
    audio_player = MediaPlayer(path, loop=True)
    import av

    with av.open(path) as container:
        config = h264.parse_avcc(container.streams.video[0].codec_context.extradata)
    relay = MediaRelay()
    video = AnnexB(video_player.video, config)
    audio = audio_player.audio

    class Protocol(WebSocketServerProtocol):
        def onOpen(self):
            self.pcs = {}

        def send(self, name, *data):
            self.sendMessage(json.dumps({"message": name, "data": list(data)}).encode())

        async def play(self, request):
            pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
            self.pcs[request["mediaSessionId"]] = pc
            sender = pc.addTrack(relay.subscribe(video, buffered=False))
            pc.addTrack(relay.subscribe(audio, buffered=False))
            # passthrough needs H.264 chosen (aiortc follows the offer's order: VP8)
            transceiver = next(t for t in pc.getTransceivers() if t.sender is sender)
            transceiver.setCodecPreferences([
                c for c in RTCRtpSender.getCapabilities("video").codecs
                if c.mimeType == "video/H264"
                and c.parameters.get("profile-level-id") == "42e01f"])

            @pc.on("connectionstatechange")
            async def changed():
                if pc.connectionState == "connected":
                    self.send("notifyStreamStatusEvent", dict(
                        mediaSessionId=request["mediaSessionId"], status="PLAYING"))

            await pc.setRemoteDescription(RTCSessionDescription(request["sdp"], "offer"))
            await pc.setLocalDescription(await pc.createAnswer())
            self.send("setRemoteSDP", request["mediaSessionId"], pc.localDescription.sdp)

        async def stop(self, request):
            pc = self.pcs.pop(request["mediaSessionId"], None)
            if pc is not None:
                await pc.close()
            self.send("notifyStreamStatusEvent", dict(
                mediaSessionId=request["mediaSessionId"], status="STOPPED"))

        def onMessage(self, payload, isBinary):
            message = json.loads(payload)
            body = (message.get("data") or [{}])[0] or {}
            if message["message"] == "connection":
                self.send("getUserData", dict(body, authToken=str(uuid.uuid4())))
            elif message["message"] == "playStream":
                asyncio.ensure_future(self.play(body))
            elif message["message"] == "stopStream":
                asyncio.ensure_future(self.stop(body))

        def onClose(self, wasClean, code, reason):
            for pc in getattr(self, "pcs", {}).values():
                asyncio.ensure_future(pc.close())

    factory = WebSocketServerFactory()
    factory.protocol = Protocol
    loop.run_until_complete(loop.create_server(factory, "127.0.0.1", port))
    loop.run_forever()


if __name__ == "__main__":
    main()
