"""The SDK's ``snapshot`` message, over a raw WebSocket: a PNG of the current picture."""

from __future__ import annotations

import asyncio
import base64
import io

import av

from testkit.rtc_client import AsyncWebSocket, Received, play, run
from tools.makemedia import frame_number


async def snapshot(url: str, name: str, media_session_id: str = "snap-1") -> dict:
    ws = await AsyncWebSocket.connect(url)
    try:
        await ws.send("connection", {"appKey": "defaultApp", "clientVersion": "2.0"})
        assert (await ws.receive_json())["message"] == "getUserData"
        await ws.send("snapshot", {"mediaSessionId": media_session_id, "name": name})
        while True:
            message = await asyncio.wait_for(ws.receive_json(), 15)
            if message["message"] == "notifyStreamEvent":
                return message["data"][0]
    finally:
        ws.close()


def picture(event: dict) -> av.VideoFrame:
    assert event["type"] == "snapshotCompleted", event
    data = base64.b64decode(event["payload"]["snapshot"])
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    with av.open(io.BytesIO(data)) as container:
        return next(container.decode(video=0))


def number(frame: av.VideoFrame) -> int:
    return frame_number(frame.reformat(format="yuv420p"))


def test_a_snapshot_is_the_picture_the_viewers_see_now(start_server, media):
    server = start_server(media_dir=str(media))

    async def scenario():
        stop = asyncio.Event()
        watching = Received()
        viewer = asyncio.ensure_future(play(server.ws_url, "vod-live://live.mp4",
                                            stop_event=stop, result=watching))
        await asyncio.sleep(3.0)
        event = await snapshot(server.ws_url, "vod-live://live.mp4")
        seen = watching.numbers[-1] if watching.numbers else None  # the viewer's picture now
        stop.set()
        return event, seen, await viewer

    event, seen, viewer = run(scenario())
    frame = picture(event)
    assert (frame.width, frame.height) == (640, 360)
    taken = number(frame)
    # the current picture: the viewer's when the snapshot came (about 3 s in: frame 90)
    assert seen is not None and seen >= 60 and abs(taken - seen) <= 12, (taken, seen)
    assert taken in viewer.numbers


def test_snapshots_of_a_file_and_of_nothing(start_server, media):
    server = start_server(media_dir=str(media))

    async def scenario():
        return (await snapshot(server.ws_url, "vod://live.mp4"),
                await snapshot(server.ws_url, "vod://absent.mp4"),
                await snapshot(server.ws_url, "vod-live://audio-only.mp4"),
                await snapshot(server.ws_url, "nothing-here"))

    first, absent, audio_only, nothing = run(scenario())
    assert number(picture(first)) == 0  # a file by name: its first picture
    assert absent == {"mediaSessionId": "snap-1", "type": "snapshotFailed",
                      "payload": {"info": "File not found"}}
    assert audio_only["payload"]["info"] == "No picture: the stream has no video"
    assert nothing["payload"]["info"] == "Stream not found"
    assert "snapshot" not in server.log().lower() or "Traceback" not in server.log()
