"""REST ``/rest-api/stream/*`` over real plays and publications: find, find_all,
terminate and snapshot, every answer checked against docs/openapi.json."""

from __future__ import annotations

import asyncio
import base64
import io
import time

import av

from testkit.pages import open_player, wait_status
from testkit.rest_client import call
from testkit.rtc_client import play, run
from testkit.rtc_publisher import publish
from tests.test_e2e_snapshot import number
from tests.test_e2e_workers import on_two_workers

FIND, FIND_ALL = "/rest-api/stream/find", "/rest-api/stream/find_all"
TERMINATE, SNAPSHOT = "/rest-api/stream/terminate", "/rest-api/stream/snapshot"


def decoded(answer: dict) -> av.VideoFrame:
    data = base64.b64decode(answer["data"])
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    with av.open(io.BytesIO(data)) as container:
        return next(container.decode(video=0))


async def rest(base: str, path: str, body=None, **options):
    return await asyncio.to_thread(call, base, path, body, **options)


async def listed_until(base: str, wanted, seconds: float = 10.0) -> list[dict]:
    """find_all, until ``wanted(items)`` (bounded)."""
    deadline = time.monotonic() + seconds
    while True:
        status, items, _ = await rest(base, FIND_ALL)
        items = items if status == 200 else []
        if wanted(items) or time.monotonic() > deadline:
            return items
        await asyncio.sleep(0.2)


def test_find_terminate_and_snapshot_every_play_and_publication(start_server, media):
    server = start_server(media_dir=str(media))
    base = server.http_url

    async def scenario():
        assert (await rest(base, FIND_ALL))[0] == 404
        live_viewer = asyncio.ensure_future(play(server.ws_url, "vod-live://live.mp4"))
        own_viewer = asyncio.ensure_future(play(server.ws_url, "vod://live.mp4"))
        publisher = asyncio.ensure_future(publish(server.ws_url, "cam", media / "main.mp4",
                                                  seconds=20, record=False))
        items = await listed_until(base, lambda items: sorted(
            item["status"] for item in items) == ["PLAYING", "PLAYING", "PUBLISHING"])
        await asyncio.sleep(2.0)
        found = {}
        for method in ("GET", "POST"):
            status, again, _ = await rest(base, FIND_ALL, method=method,
                                          raw=b"" if method == "POST" else None)
            assert status == 200 and len(again) == 3
        for item in items:
            found[item["name"]] = item
        by_id = await rest(base, FIND, {"mediaSessionId": found["cam"]["mediaSessionId"]})
        published = await rest(base, FIND, {"published": True})
        by_name = await rest(base, FIND, {"name": "vod-live://live.mp4", "published": False})
        refusals = [await rest(base, FIND, body) for body in (
            {}, {"published": "yes"}, {"name": 5}, {"name": "nothing"})]

        live = await rest(base, SNAPSHOT, {"streamName": "vod-live://live.mp4"})
        cam = await rest(base, SNAPSHOT, {"name": "cam"})
        own = await rest(base, SNAPSHOT,
                         {"mediaSessionId": found["vod://live.mp4"]["mediaSessionId"]})
        started = await rest(base, "/rest-api/vod/startup",
                             {"uri": "vod-live://loop.mp4", "localStreamName": "show"})
        assert started[0] == 200
        show = await rest(base, SNAPSHOT, {"streamName": "show"})  # a REST-started stream
        assert show[0] == 200 and decoded(show[1]).width == 640
        snapshot_refusals = [await rest(base, SNAPSHOT, body) for body in (
            {}, {"streamName": "nothing"}, {"streamName": "vod://absent.mp4"},
            {"streamName": "vod-live://audio-only.mp4"}, {"mediaSessionId": "nobody"},
            {"streamName": "vod://../etc/passwd"})]

        terminate_refusals = [await rest(base, TERMINATE, body) for body in (
            {}, {"mediaSessionId": "nobody"}, {"published": True})]
        stopped_play = await rest(base, TERMINATE,
                                  {"mediaSessionId": found["vod-live://live.mp4"]
                                   ["mediaSessionId"]})
        viewer = await asyncio.wait_for(live_viewer, 15)
        stopped_publication = await rest(base, TERMINATE,
                                         {"mediaSessionId": found["cam"]["mediaSessionId"]})
        publication = await asyncio.wait_for(publisher, 15)
        left = await listed_until(base, lambda items: len(items) == 1)
        own_viewer.cancel()
        return (items, by_id, published, by_name, refusals, live, cam, own, snapshot_refusals,
                terminate_refusals, stopped_play, viewer, stopped_publication, publication, left)

    (items, by_id, published, by_name, refusals, live, cam, own, snapshot_refusals,
     terminate_refusals, stopped_play, viewer, stopped_publication, publication,
     left) = run(scenario())

    names = {item["name"]: item for item in items}
    assert set(names) == {"vod-live://live.mp4", "vod://live.mp4", "cam"}
    cam_item = names["cam"]
    assert cam_item["published"] and cam_item["status"] == "PUBLISHING"
    assert cam_item["mediaProvider"] == "WebRTC" and cam_item["hasVideo"]
    assert names["vod-live://live.mp4"]["width"] == 640
    assert names["vod-live://live.mp4"]["videoCodec"] == "H264"
    assert len({item["sessionId"] for item in items}) == 3
    assert by_id[0] == 200 and [item["name"] for item in by_id[1]] == ["cam"]
    assert published[0] == 200 and [item["name"] for item in published[1]] == ["cam"]
    assert by_name[0] == 200 and [item["name"] for item in by_name[1]] == \
        ["vod-live://live.mp4"]
    assert [status for status, _, _ in refusals] == [400, 400, 400, 404]
    assert "give mediaSessionId, name or published" in refusals[0][1]["message"]
    assert "'published' must be true or false" in refusals[1][1]["message"]

    assert live[0] == 200 and live[1]["streamName"] == "vod-live://live.mp4"
    frame = decoded(live[1])
    assert (frame.width, frame.height) == (640, 360)
    assert 30 <= number(frame) <= 600  # the broadcast's picture now, seconds in
    assert cam[0] == 200 and decoded(cam[1]).width == 640
    own_frame = decoded(own[1])
    assert own[0] == 200 and own[1]["streamName"] == "vod://live.mp4"
    assert number(own_frame) > 30  # that viewer's own picture, not the file's first
    assert [status for status, _, _ in snapshot_refusals] == [400, 404, 404, 400, 404, 400]
    assert [answer["message"] for _, answer, _ in snapshot_refusals[1:4]] == [
        "Stream not found", "File not found", "No picture: the stream has no video"]

    assert [status for status, _, _ in terminate_refusals] == [400, 404, 400]
    assert stopped_play[0] == 200 and stopped_play[1][0]["name"] == "vod-live://live.mp4"
    assert viewer.statuses[-1] == "STOPPED" and viewer.infos[-1] == "Stopped by server"
    assert len(viewer.video) > 30
    assert stopped_publication[0] == 200
    assert publication.statuses[-1] == "UNPUBLISHED", publication.statuses
    assert [item["name"] for item in left] == ["vod://live.mp4"]
    assert "Traceback" not in server.log()


def test_every_worker_s_plays_are_listed_and_stopped_from_any_worker(start_server, media):
    """With two workers each answers for the whole server: plays served by the
    other one are listed (as it last reported) and terminated there."""
    server = start_server(media_dir=str(media), workers="2", vod_live_loop="true")
    base = server.http_url

    def serving() -> dict[str, int]:
        status, items, _ = call(base, FIND_ALL)
        return {item["worker"]: 1 for item in items} if status == 200 else {}

    async def scenario():
        stop = asyncio.Event()
        viewers = await on_two_workers(server, "vod-live://live.mp4", stop, serving)
        items = await listed_until(base, lambda items: len(items) == len(viewers) and all(
            item["status"] == "PLAYING" for item in items), seconds=20)
        for item in items:
            answer = await rest(base, TERMINATE, {"mediaSessionId": item["mediaSessionId"]})
            assert answer[0] == 200, answer
        ended = await asyncio.wait_for(asyncio.gather(*viewers), 20)
        left = await listed_until(base, lambda items: not items)
        return items, ended, left

    items, ended, left = run(scenario())
    assert len({item["worker"] for item in items}) == 2, items  # both served some
    assert all(viewer.infos[-1:] == ["Stopped by server"] for viewer in ended), \
        [viewer.infos for viewer in ended]
    assert left == []


CONSOLE = "/client2/examples/demo/streaming/console/console.html"


def test_the_sdk_s_rest_module_finds_and_terminates_a_player_page(start_server, media,
                                                                 page, browser):
    """The SDK's own REST client (``FlashphonerRestApi``, loaded by its console
    demo) lists the player page's play and stops it: the page shows STOPPED."""
    server = start_server(media_dir=str(media))
    open_player(page, server, "vod-live://live.mp4")
    wait_status(page, "PLAYING")
    video_id = page.evaluate("() => document.querySelector('#remoteVideo video').id")
    console = browser.new_context().new_page()
    try:
        console.goto(server.http_url + CONSOLE)
        found = console.evaluate("""async () => {
            const api = FlashphonerRestApi.instance(location.origin);
            const all = await api.stream.findAll();
            const one = await api.stream.find(all[0].mediaSessionId, undefined, false);
            let missing = null;
            try { await api.stream.find('nobody'); } catch (e) { missing = String(e); }
            await api.stream.terminate(all[0].mediaSessionId);
            return {all, one, missing};
        }""")
    finally:
        console.context.close()
    statuses = wait_status(page, "STOPPED")
    assert [item["mediaSessionId"] for item in found["all"]] == [video_id]
    assert found["one"] == found["all"]
    assert found["all"][0]["status"] == "PLAYING"
    assert found["missing"] is not None  # a 404 rejects the SDK's promise
    assert statuses[-2:] == ["PLAYING", "STOPPED"]
