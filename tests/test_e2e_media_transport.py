"""A page's two WebSockets on the README's defaults (two workers): the MSE media
socket reaches its session whichever worker the kernel gives it to.

Forced: every other worker is paused (``SIGSTOP``) while a connection is made,
so exactly one can accept it (:mod:`testkit.workers`); the SDK's page goes
through :class:`~testkit.workers.Steering`, a byte-for-byte relay that makes its
first socket land on worker 1 and its second on worker 2."""

from __future__ import annotations

import asyncio
import json
import os
import time
import uuid
from typing import Any

import pytest

from testkit.harness import RawWebSocket, run
from testkit.mse_client import MSE_OFFER, parse_records, watch
from testkit.pages import PLAYER, video_state, wait_status, wait_video
from testkit.rtc_client import AsyncWebSocket
from testkit.workers import Steering, only, token_worker, wait_for_workers


def handed_over(server) -> int:
    """Media sockets the server's log says were handed to another worker."""
    return server.log().count("handed over by another worker")


def play_on_page(page, url_server: str, server, name: str) -> dict:
    page.goto(f"{server.http_url}{PLAYER}?streamName={name}&mediaProvider=MSE")
    page.fill("#url", url_server)
    page.click("#playBtn")
    wait_status(page, "PLAYING")
    first = wait_video(page)
    time.sleep(1.2)
    later = video_state(page)
    assert later["time"] - first["time"] >= 0.8, (first, later)
    assert (first["width"], first["height"]) == (640, 360)
    return later


def test_ten_mse_plays_in_a_row_on_the_defaults_each_play(start_server, page, media):
    server = start_server(media_dir=str(media))
    assert len(wait_for_workers(server)) == 2  # the README's defaults on this machine
    for number in range(10):
        play_on_page(page, server.ws_url, server,
                     "vod-live://live.mp4" if number % 2 else "vod://main.mp4")
        page.click("#playBtn")
        wait_status(page, "STOPPED")
    print(f"{handed_over(server)} of 10 media sockets were accepted by the other worker")


@pytest.mark.parametrize("name", ["vod://main.mp4", "vod-live://live.mp4"])
def test_the_sdk_page_plays_with_its_media_socket_forced_onto_the_other_worker(
        start_server, page, media, name):
    server = start_server(media_dir=str(media))
    wait_for_workers(server)
    steering = Steering(server, plan=lambda n: 1 if n == 1 else 2)
    try:
        play_on_page(page, steering.url, server, name)
        assert steering.landed[:2] == [1, 2]  # signalling on worker 1, media on worker 2
        assert handed_over(server) == 1
        assert server.saw("closed (handed over to worker 1.")
        page.click("#playBtn")
        try:
            statuses = wait_status(page, "STOPPED")
        except AssertionError as error:
            raise AssertionError(f"{error}; the server's log:\n{server.log()[-8000:]}") from None
        assert statuses[-2:] == ["PLAYING", "STOPPED"]
        assert "Traceback" not in server.log()
    finally:
        steering.close()


async def mse_requested(signalling: AsyncWebSocket, media_session_id: str,
                        name: str = "vod://main.mp4") -> tuple[str, list[str]]:
    """``connection``, then an MSE ``playStream``: (the authToken, the statuses
    seen) once it is answered (the SDK opens its media socket then)."""
    await signalling.send("connection", {"appKey": "defaultApp"})
    token = (await signalling.receive_json())["data"][0]["authToken"]
    await signalling.send("playStream", {"mediaSessionId": media_session_id, "name": name,
                                         "mediaProvider": "MSE", "sdp": MSE_OFFER})
    statuses = []
    while (message := await signalling.receive_json())["message"] != "setRemoteSDP":
        if message["message"] == "notifyStreamStatusEvent":
            statuses.append(message["data"][0]["status"])
    return token, statuses


async def mse_play(server, signalling_on: int, media_on: int, name: str,
                   seconds: float = 2.0) -> dict:
    """A raw MSE play whose two sockets are made on the workers named."""
    with only(server, signalling_on):
        signalling = await AsyncWebSocket.connect(server.ws_url)
    try:
        token, statuses = await mse_requested(signalling, str(uuid.uuid1()), name)
        assert token_worker(token) == signalling_on
        records, octets = {8: 0, 9: 0}, 0
        with only(server, media_on):
            media = await AsyncWebSocket.connect(server.ws_url)
            await media.send("connectMediaTransport", {"authToken": token})
        deadline = time.monotonic() + seconds + 8
        while "PLAYING" not in statuses and time.monotonic() < deadline:
            message = await asyncio.wait_for(signalling.receive_json(), 8)
            if message["message"] == "notifyStreamStatusEvent":
                statuses.append(message["data"][0]["status"])
        until = time.monotonic() + seconds
        while time.monotonic() < until:
            opcode, payload = await asyncio.wait_for(media.receive(), 5)
            if opcode == 2:
                octets += len(payload)
                for kind, _, _ in parse_records(payload):
                    records[kind] += 1
        media.close()
        return {"statuses": statuses, "records": records, "octets": octets}
    finally:
        signalling.close()


@pytest.mark.parametrize("signalling_on, media_on", [(1, 2), (2, 1), (2, 2)])
def test_a_raw_mse_play_gets_its_media_whichever_worker_takes_its_socket(
        start_server, media, signalling_on, media_on):
    server = start_server(media_dir=str(media))
    wait_for_workers(server)
    got = run(mse_play(server, signalling_on, media_on, "vod://main.mp4"), timeout=60)
    assert got["statuses"] == ["PENDING", "PLAYING"], got
    assert got["records"][9] >= 40 and got["records"][8] >= 60, got  # video and audio
    assert handed_over(server) == (signalling_on != media_on)


def test_an_mse_play_whose_media_socket_never_comes_fails_saying_so_within_10_s(
        start_server, media):
    server = start_server(media_dir=str(media))
    ws = RawWebSocket(server.ws_url, timeout=15)
    try:
        ws.send_json("connection", {"appKey": "defaultApp"})
        ws.receive_json()
        ws.send_json("playStream", {"mediaSessionId": "m1", "name": "vod://main.mp4",
                                    "mediaProvider": "MSE", "sdp": MSE_OFFER})
        began, statuses = time.monotonic(), []
        while not statuses or statuses[-1][0] not in ("FAILED", "STOPPED"):
            message = ws.receive_json(skip=("ping", "setRemoteSDP"), timeout=15)
            if message["message"] == "notifyStreamStatusEvent":
                event = message["data"][0]
                statuses.append((event["status"], event.get("info", "")))
        took = time.monotonic() - began
    finally:
        ws.close()
    assert statuses[0][0] == "PENDING" and statuses[-1][0] == "FAILED", statuses
    assert statuses[-1][1].startswith("No media transport"), statuses
    assert 9.0 <= took <= 10.8, took


def fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


@pytest.mark.alone  # a load test: no other test beside it
def test_forged_tokens_cost_a_connection_each_and_nothing_more(start_server, media):
    """Tokens naming the other worker (no such session there), a worker that
    does not exist, or nothing: each socket is closed, no descriptor stays
    behind anywhere, and a real play meanwhile is not held up."""
    server = start_server(media_dir=str(media), max_sessions_per_address="1000",
                          ws_message_rate="1000")
    pids = wait_for_workers(server)
    everyone = [server.process.pid, *pids.values()]
    before = {pid: fds(pid) for pid in everyone}

    async def forge(token: str) -> bytes:
        ws = await AsyncWebSocket.connect(server.ws_url)
        try:
            await ws.send("connectMediaTransport", {"authToken": token})
            opcode, payload = await asyncio.wait_for(ws.receive(), 10)
            return payload if opcode == 8 else b"no close"
        finally:
            ws.close()

    async def flood() -> list:
        tokens = [f"{uuid.uuid4()}@{worker}.1" for worker in (1, 2)] * 100
        tokens += [f"{uuid.uuid4()}@9.9", "", "x" * 128, "@", "a@b@c"] * 20
        forging = asyncio.gather(*(forge(token) for token in tokens), return_exceptions=True)
        playing = mse_play(server, 1, 2, "vod://main.mp4", seconds=1.5)
        return list(await asyncio.gather(forging, playing))

    forged, played = run(flood(), timeout=120)
    closes = [each for each in forged if isinstance(each, bytes)]
    assert len(closes) == len(forged), [each for each in forged if not isinstance(each, bytes)]
    assert all(b"unknown media token" in close for close in closes), set(closes)
    assert played["statuses"] == ["PENDING", "PLAYING"] and played["records"][9] > 20
    time.sleep(1.0)
    after = {pid: fds(pid) for pid in everyone}
    assert all(after[pid] <= before[pid] + 3 for pid in everyone), (before, after)
    assert "Traceback" not in server.log()


def test_a_media_socket_that_reaches_another_node_is_refused_and_the_play_fails_saying_so(
        start_server, media, redis_server):
    redis_server.flush()
    a, b = (start_server(media_dir=str(media), bind_address=f"127.0.0.{n}", ip=f"127.0.0.{n}",
                         cluster_redis_url=redis_server.url, cluster_node=f"node-{node}")
            for n, node in ((2, "a"), (3, "b")))

    async def split() -> tuple[list, bytes]:
        signalling = await AsyncWebSocket.connect(a.ws_url)
        token, _ = await mse_requested(signalling, "m1")
        media_socket = await AsyncWebSocket.connect(b.ws_url)  # the balancer's choice
        await media_socket.send("connectMediaTransport", {"authToken": token})
        opcode, close = await asyncio.wait_for(media_socket.receive(), 10)
        statuses = []
        while not statuses or statuses[-1][0] not in ("FAILED", "STOPPED"):
            message = await asyncio.wait_for(signalling.receive_json(), 9)
            if message["message"] == "notifyStreamStatusEvent":
                event = message["data"][0]
                statuses.append((event["status"], event.get("info", "")))
        return statuses, close if opcode == 8 else b""

    began = time.monotonic()
    statuses, close = run(split(), timeout=60)
    assert int.from_bytes(close[:2], "big") == 4421 and b"node node-b" in close, close
    status, info = statuses[-1]
    assert status == "FAILED" and "reached node node-b, its session is on node node-a" in info
    assert time.monotonic() - began < 8  # told at once, not at the 10 s deadline


def test_session_caps_hold_across_workers(start_server, media):
    """150 sessions from one address, the first 60 made on worker 1 and the rest
    on worker 2: exactly ``max_sessions_per_address`` (100) open; closing some
    on one worker lets as many open on the other."""
    server = start_server(media_dir=str(media))
    wait_for_workers(server)
    opened: list[RawWebSocket] = []
    refused: list[str] = []

    def connect(count: int) -> None:
        for _ in range(count):
            try:
                opened.append(RawWebSocket(server.ws_url))
            except ConnectionError as error:
                refused.append(str(error))

    with only(server, 1):
        connect(60)
    with only(server, 2):
        connect(90)
    try:
        assert len(opened) == 100 and len(refused) == 50, (len(opened), refused[:1])
        assert all("503" in why for why in refused), refused[:1]
        for ws in opened[:10]:  # ten of worker 1's
            ws.close()
        time.sleep(0.5)
        with only(server, 2):
            connect(12)
        assert len(opened) == 110 and len(refused) == 52
    finally:
        for ws in opened:
            ws.close()


def test_the_server_wide_session_cap_counts_both_workers(start_server, media):
    server = start_server(media_dir=str(media), max_sessions="30")
    wait_for_workers(server)
    opened, refused = [], 0
    for number in (1, 2):
        with only(server, number):
            for _ in range(20):
                try:
                    opened.append(RawWebSocket(server.ws_url))
                except ConnectionError as error:
                    assert "max_sessions=30" in str(error) or "503" in str(error)
                    refused += 1
    for ws in opened:
        ws.close()
    assert (len(opened), refused) == (30, 10)


def rest_on_worker(server, number: int, path: str, body: dict) -> tuple[int, dict]:
    """A REST call answered by worker ``number``: its connection is accepted
    while the others are paused (an idle worker accepts in well under 0.5 s),
    the request sent once they run again (the answer may need them)."""
    import socket

    with only(server, number):
        sock = socket.create_connection(("127.0.0.1", server.ports["http.port"]), timeout=30)
        time.sleep(0.5)
    try:
        data = json.dumps(body).encode()
        sock.sendall(f"POST {path} HTTP/1.0\r\nHost: 127.0.0.1\r\nContent-Type: "
                     f"application/json\r\nContent-Length: {len(data)}\r\n"
                     f"Connection: close\r\n\r\n".encode() + data)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    finally:
        sock.close()
    head, _, content = answer.partition(b"\r\n\r\n")
    return int(head.split()[1]), json.loads(content)


def test_a_snapshot_by_media_session_id_is_taken_on_the_worker_of_that_play(
        start_server, media):
    """A personal play on worker 1; REST asked on worker 2 for that play's own
    picture by its mediaSessionId."""
    from testkit.rest_client import call

    server = start_server(media_dir=str(media))
    wait_for_workers(server)

    async def play_and_snap() -> tuple[int, dict]:
        with only(server, 1):
            ws = await AsyncWebSocket.connect(server.ws_url)
        media_socket = None
        try:
            token, _ = await mse_requested(ws, "mine")
            media_socket = await AsyncWebSocket.connect(server.ws_url)
            await media_socket.send("connectMediaTransport", {"authToken": token})
            await asyncio.sleep(2.0)  # PLAYING, and listed in worker 1's next report
            return await asyncio.to_thread(rest_on_worker, server, 2,
                                           "/rest-api/stream/snapshot",
                                           {"mediaSessionId": "mine"})
        finally:
            ws.close()
            if media_socket is not None:
                media_socket.close()

    status, body = run(play_and_snap(), timeout=60)
    assert status == 200, body
    assert body["streamName"] == "vod://main.mp4"
    import base64

    png = base64.b64decode(body["data"])
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    assert (int.from_bytes(png[16:20], "big"), int.from_bytes(png[20:24], "big")) == (640, 360)
    status, body, _ = call(server.http_url, "/rest-api/stream/snapshot",
                           {"mediaSessionId": "nobody"})
    assert status == 404 and "nobody" in json.dumps(body)


def test_over_wss_a_pages_two_sockets_meet_on_the_one_worker_that_serves_wss(
        start_server, media):
    """A TLS connection cannot move to another process (its keys are in the
    OpenSSL of the one that accepted it), so with workers only worker 1 accepts
    wss: an MSE play's signalling and media sockets over wss always meet."""
    server = start_server(media_dir=str(media))
    wait_for_workers(server)
    for _ in range(3):
        signalling = RawWebSocket(server.wss_url, timeout=15)
        media_socket = None
        try:
            signalling.send_json("connection", {"appKey": "defaultApp"})
            token = signalling.receive_json()["data"][0]["authToken"]
            assert token_worker(token) == 1
            signalling.send_json("playStream", {"mediaSessionId": "w", "name": "vod://main.mp4",
                                                "mediaProvider": "MSE", "sdp": MSE_OFFER})
            statuses = []
            while "setRemoteSDP" not in statuses:
                message = signalling.receive_json(timeout=10)
                statuses.append(message["message"] if message["message"] != "notifyStreamStatusEvent"
                                else message["data"][0]["status"])
            media_socket = RawWebSocket(server.wss_url, timeout=15)
            media_socket.send_json("connectMediaTransport", {"authToken": token})
            while "PLAYING" not in statuses:
                message = signalling.receive_json(timeout=10)
                if message["message"] == "notifyStreamStatusEvent":
                    statuses.append(message["data"][0]["status"])
            records = 0
            while records < 20:
                opcode, payload = media_socket.receive()
                if opcode == 2:
                    records += len(parse_records(payload))
        finally:
            signalling.close()
            if media_socket is not None:
                media_socket.close()
    assert handed_over(server) == 0


def test_rest_stream_calls_on_one_worker_see_and_stop_a_play_on_the_other(start_server, media):
    """A play made on worker 1; REST ``stream/find`` and ``stream/terminate``
    answered by worker 2: listed at once, with its worker, and stopped."""
    server = start_server(media_dir=str(media))
    wait_for_workers(server)

    async def scene() -> tuple[tuple[int, Any], tuple[int, Any], list[tuple[str, str]]]:
        with only(server, 1):
            ws = await AsyncWebSocket.connect(server.ws_url)
        try:
            token, _ = await mse_requested(ws, "listed")
            assert token_worker(token) == 1
            found = await asyncio.to_thread(rest_on_worker, server, 2, "/rest-api/stream/find",
                                            {"mediaSessionId": "listed"})
            stopped = await asyncio.to_thread(rest_on_worker, server, 2,
                                              "/rest-api/stream/terminate",
                                              {"mediaSessionId": "listed"})
            statuses = []
            while not statuses or statuses[-1][0] not in ("STOPPED", "FAILED"):
                message = await asyncio.wait_for(ws.receive_json(), 10)
                if message["message"] == "notifyStreamStatusEvent":
                    event = message["data"][0]
                    statuses.append((event["status"], event.get("info", "")))
            return found, stopped, statuses
        finally:
            ws.close()

    (status, listed), (stopped, _), statuses = run(scene(), timeout=60)
    assert status == 200 and [item["mediaSessionId"] for item in listed] == ["listed"]
    assert listed[0]["worker"].startswith("1.") and listed[0]["mediaProvider"] == "MSE"
    assert stopped == 200 and statuses[-1] == ("STOPPED", "Stopped by server"), statuses
