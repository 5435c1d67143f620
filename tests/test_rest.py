"""The VOD REST API over http and https, checked against docs/openapi.json."""

from __future__ import annotations

import time

import pytest

from testkit.harness import run
from testkit.rest_client import SPEC, call
from testkit.rtc_client import play

STARTUP, FIND = "/rest-api/vod/startup", "/rest-api/vod/find"
FIND_ALL, TERMINATE = "/rest-api/vod/find_all", "/rest-api/vod/terminate"


def steady(items: list[dict]) -> list[dict]:
    """Listed streams without what moves by itself (their uptime)."""
    return [{key: value for key, value in item.items() if key != "uptime"} for item in items]


def bases(server) -> list[str]:
    return [server.http_url, f"https://127.0.0.1:{server.ports['https.port']}"]


def test_every_status_code_over_http_and_https(start_server, media):
    server = start_server(media_dir=str(media))
    for base in bases(server):
        assert call(base, FIND_ALL)[0] == 404
        status, started, _ = call(base, STARTUP, {"uri": "vod-live://main.mp4",
                                                  "localStreamName": "test"})
        assert status == 200
        assert started["localStreamName"] == "test" and started["uri"] == "vod-live://main.mp4"
        assert started["loop"] is False and started["hasVideo"] and started["hasAudio"]
        assert started["viewers"] == 0 and started["status"] == "PROCESSED_LOCAL"
        assert call(base, STARTUP, {"uri": "vod-live://high.mp4",
                                    "localStreamName": "test"})[0] == 409
        refusals = [
            ({"uri": "vod-live://absent.mp4", "localStreamName": "x"}, 404, "File not found"),
            ({"uri": "vod://main.mp4", "localStreamName": "x"}, 400, "only creates live VOD"),
            ({"localStreamName": "x"}, 400, "'uri' is required"),
            ({"uri": "vod-live://main.mp4"}, 400, "'localStreamName' is required"),
            ({"uri": "vod-live://main.mp4", "localStreamName": "a://b"}, 400, "without '://'"),
            ({"uri": "vod-live://main.mp4", "localStreamName": 5}, 400, "non-empty string"),
            ({"uri": "vod-live://main.mp4", "localStreamName": "y", "loop": "yes"}, 400,
             "'loop' must be true or false"),
            ({"uri": "vod-live://../x.mp4", "localStreamName": "y"}, 400, "'..' is not allowed"),
            ({"uri": "vod-live://not-an-mp4.mp4", "localStreamName": "y"}, 400,
             "File has wrong format"),
        ]
        for body, status, message in refusals:
            got, answer, _ = call(base, STARTUP, body)
            assert (got, message in answer["message"]) == (status, True), (body, answer)
        for raw, message in [(b"{not json", "not valid JSON"), (b"[1]", "JSON object"),
                             (b"", "body is required")]:
            got, answer, _ = call(base, STARTUP, raw=raw, method="POST")
            assert got == 400 and message in answer["message"], (raw[:10], answer)
        got, answer, _ = call(base, STARTUP, raw=b"x" * 70000, method="POST")
        assert got == 413 and "limited to 65536 bytes" in answer["message"]
        got, answer, _ = call(base, STARTUP, raw=b"uri=x", method="POST",
                              headers={"Content-Type": "application/x-www-form-urlencoded"})
        assert got == 415 and "application/json" in answer["message"]

        status, found, _ = call(base, FIND, {"localStreamName": "test"})
        assert status == 200 and steady(found) == steady([started])
        assert steady(call(base, FIND, {"uri": "vod-live://main.mp4"})[1]) == steady([started])
        assert steady(call(base, FIND, {"localMediaSessionId": started[
            "localMediaSessionId"]})[1]) == steady([started])
        assert call(base, FIND, {"localStreamName": "nothing"})[0] == 404
        assert call(base, FIND, {})[0] == 400
        for method in ("GET", "POST"):
            status, everything, _ = call(base, FIND_ALL, method=method,
                                         raw=b"" if method == "POST" else None)
            assert status == 200 and steady(everything) == steady([started])
        assert call(base, TERMINATE, {"localStreamName": "nothing"})[0] == 404
        assert call(base, TERMINATE, {"uri": "vod-live://main.mp4",
                                      "localStreamName": "test"})[0] == 200
        assert call(base, FIND, {"localStreamName": "test"})[0] == 404

        status, answer, _ = call(base, "/rest-api/vod/nothing", {}, check=False)
        assert status == 404 and "/rest-api/vod/nothing" in answer["message"]
        status, answer, headers = call(base, STARTUP, method="GET", check=False)
        assert status == 405 and headers["Allow"] == "POST, OPTIONS"
        status, _, headers = call(base, STARTUP, method="OPTIONS", check=False)
        assert status == 204 and "Access-Control-Allow-Origin" not in headers  # CORS is off
        status, _, headers = call(base, STARTUP, method="OPTIONS", check=False,
                                  headers={"Origin": "https://elsewhere.example"})
        assert status == 403 and "Access-Control-Allow-Origin" not in headers


def test_loop_flag_overrides_the_setting(start_server, media):
    server = start_server(media_dir=str(media), vod_live_loop="false")
    base = server.http_url
    looping = call(base, STARTUP, {"uri": "vod-live://loop.mp4", "localStreamName": "round",
                                   "loop": True})[1]
    once = call(base, STARTUP, {"uri": "vod-live://loop.mp4", "localStreamName": "once"})[1]
    assert (looping["loop"], once["loop"]) == (True, False)
    time.sleep(4.5)  # the file lasts 3 s
    assert call(base, FIND, {"localStreamName": "round"})[0] == 200
    assert call(base, FIND, {"localStreamName": "once"})[0] == 404


def test_personal_streams_are_listed_and_terminated(start_server, media):
    server = start_server(media_dir=str(media))
    import asyncio

    async def watch_and_terminate():
        viewer = asyncio.ensure_future(play(server.ws_url, "vod://main.mp4", timeout=20))
        for _ in range(100):
            await asyncio.sleep(0.1)
            status, streams, _ = await asyncio.to_thread(call, server.http_url, FIND_ALL)
            if status == 200 and streams[0]["viewers"] == 1:
                break
        assert streams[0]["localStreamName"] == "vod://main.mp4"
        stream_id = streams[0]["localMediaSessionId"]
        status, _, _ = await asyncio.to_thread(call, server.http_url, TERMINATE,
                                               {"localMediaSessionId": stream_id})
        assert status == 200
        return await viewer

    got = run(watch_and_terminate())
    assert got.statuses == ["PENDING", "PLAYING", "STOPPED"]
    assert got.infos == ["Stopped by server"]


def test_access_control(start_server, media):
    server = start_server(media_dir=str(media), rest_api_key="k3y-for-tests")
    import base64

    basic = "Basic " + base64.b64encode(b"admin:k3y-for-tests").decode()
    for headers, status in [({}, 401), ({"Authorization": "Bearer wrong-key"}, 401),
                            ({"Authorization": "Bearer k3y-for-tests"}, 404),
                            ({"Authorization": basic}, 404)]:
        for path in (FIND_ALL, "/rest-api/stream/find_all"):  # every area alike
            got, answer, answer_headers = call(server.http_url, path, headers=headers)
            assert got == status, (path, headers)
            if status == 401:
                assert "REST API key" in answer["message"]
                assert "Bearer" in answer_headers["WWW-Authenticate"]


def test_the_description_covers_exactly_what_is_served(start_server, media):
    server = start_server(media_dir=str(media))

    def served(path: str, method: str) -> bool:
        status, answer, _ = call(server.http_url, path, method=method.upper(),
                                 raw=b"{}" if method == "post" else None, check=False)
        unknown = status == 404 and "no such REST endpoint" in answer["message"]
        return status != 405 and not unknown

    candidates = {(f"/rest-api/{area}/{name}", method)
                  for area in ("vod", "cluster", "stream", "push")
                  for name in ("startup", "find", "find_all", "terminate", "stop", "list",
                               "workers", "nodes", "snapshot", "library", "seek", "pause",
                               "resume", "playlist", "playlist_append", "playlist_skip")
                  for method in ("get", "post", "put", "delete")}
    documented = {(path, method) for path, operations in SPEC["paths"].items()
                  for method in operations}
    assert documented <= candidates
    assert {c for c in candidates if served(*c)} == documented


@pytest.fixture
def started(start_server, media):
    server = start_server(media_dir=str(media))
    status, _, _ = call(server.http_url, STARTUP, {"uri": "vod-live://live.mp4",
                                                   "localStreamName": "test"})
    assert status == 200
    return server


def test_sdk_player_plays_a_rest_started_stream_and_stops_on_terminate(started, page):
    from testkit.pages import open_player, wait_status, wait_video

    open_player(page, started, "test")
    wait_status(page, "PLAYING")
    assert wait_video(page)["width"] == 640
    assert call(started.http_url, FIND, {"localStreamName": "test"})[1][0]["viewers"] == 1
    assert call(started.http_url, TERMINATE, {"localStreamName": "test"})[0] == 200
    statuses = wait_status(page, "STOPPED")
    assert statuses[-2:] == ["PLAYING", "STOPPED"]
