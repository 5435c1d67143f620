"""Three nodes sharing one Redis: one server, seen from any of them.

Each node is its own ``twistd wcsvod`` on its own loopback address (127.0.0.2, .3
and .4), with the media in one shared folder and ``cluster_redis_url`` pointing
at a real ``redis-server``; the middle one runs two workers.
"""

from __future__ import annotations

import asyncio
import json
import re
import statistics
import struct
import time

from testkit.rest_client import call
from testkit.rtc_client import Received, play, run
from testkit.rtc_publisher import Published, publish
from testkit.s3 import s3_settings
from tests.test_e2e_workers import arrivals


def cluster(start_server, media, redis_server, **settings: str) -> list:
    redis_server.flush()
    nodes = []
    for number, workers in ((2, "1"), (3, "2"), (4, "1")):
        address = f"127.0.0.{number}"
        nodes.append(start_server(media_dir=str(media), bind_address=address, ip=address,
                                  cluster_redis_url=redis_server.url, workers=workers,
                                  cluster_node=f"node{number}", vod_live_loop="true",
                                  **settings))
    return nodes


def in_step(first: Received, second: Received) -> float:
    """How far apart (median, s) the frames both viewers got arrived."""
    one, two = arrivals(first), arrivals(second)
    common = [number for number in one if number in two]
    assert len(common) > 60, len(common)
    return statistics.median(abs(one[n] - two[n]) for n in common)


def test_an_s3_broadcast_under_way_is_joined_at_its_moment_on_other_nodes(
        start_server, media, redis_server, s3):
    """The object is fetched by every node; the later ones fetch from where the
    broadcast is (the frame numbers say so), not from its start."""
    one, two, three = cluster(start_server, media, redis_server, **s3_settings(s3.url))
    status, started, _ = call(one.http_url, "/rest-api/vod/startup",
                              {"uri": "vod-live://s3/media/long-live.mp4",
                               "localStreamName": "cloud"})
    assert status == 200, started

    async def scenario() -> list[Received]:
        await asyncio.sleep(10)  # well into the 45-second object
        stop = asyncio.Event()
        plays = [asyncio.ensure_future(play(node.ws_url, "cloud", stop_event=stop, timeout=60))
                 for node in (two, three)]
        await asyncio.sleep(5)
        stop.set()
        return list(await asyncio.gather(*plays))

    on_two, on_three = run(scenario())
    for got in (on_two, on_three):
        assert got.statuses == ["PENDING", "PLAYING", "STOPPED"], got.statuses
        assert got.numbers[0] > 10 * 30 - 90, got.numbers[:3]  # ~10 s in, not the start
    assert in_step(on_two, on_three) < 0.1
    for node in (two, three):
        assert node.saw("s after it began")


def listed(node) -> list[dict]:
    status, found, _ = call(node.http_url, "/rest-api/vod/find_all", {})
    return found if status == 200 else []


def test_a_startup_on_one_node_plays_in_step_on_the_others_and_stops_everywhere(
        start_server, media, redis_server):
    one, two, three = cluster(start_server, media, redis_server)
    status, started, _ = call(one.http_url, "/rest-api/vod/startup",
                              {"uri": "vod-live://live.mp4", "localStreamName": "show"})
    assert status == 200, started
    status, refused, _ = call(three.http_url, "/rest-api/vod/startup",
                              {"uri": "vod-live://main.mp4", "localStreamName": "show"})
    assert status == 409, refused  # taken on another node
    deadline = time.monotonic() + 5
    while True:  # every node's workers, as each reports itself
        status, workers, _ = call(three.http_url, "/rest-api/cluster/workers")
        nodes = sorted(worker["node"] for worker in workers)
        if nodes == ["node2", "node3", "node3", "node4"] or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert status == 200 and nodes == ["node2", "node3", "node3", "node4"], workers

    async def scenario() -> tuple[list[Received], dict, tuple]:
        stop = asyncio.Event()
        plays = [asyncio.ensure_future(play(node.ws_url, "show", stop_event=stop, timeout=60))
                 for node in (two, three)]
        await asyncio.sleep(4)
        [entry] = await asyncio.to_thread(listed, one)
        stopped = await asyncio.to_thread(call, three.http_url, "/rest-api/vod/terminate",
                                          {"localStreamName": "show"})
        got = await asyncio.wait_for(asyncio.gather(*plays), 20)
        return list(got), entry, stopped[:2]

    (on_two, on_three), entry, (status, terminated) = run(scenario())
    assert entry["localMediaSessionId"] == started["localMediaSessionId"]
    assert entry["viewers"] == 2 and sorted(w.split("/")[0] for w, n in
                                            entry["workers"].items() if n) == ["node3", "node4"]
    assert status == 200 and terminated[0]["localStreamName"] == "show"
    for got in (on_two, on_three):
        assert got.statuses == ["PENDING", "PLAYING", "STOPPED"], got.statuses
        assert got.infos[-1] == "Stopped by server"
        assert len(got.numbers) > 60
    lag = in_step(on_two, on_three)
    assert lag < 0.1, f"frames {lag * 1000:.0f} ms apart on two nodes"
    deadline = time.monotonic() + 5
    while any(listed(node) for node in (one, two, three)):
        assert time.monotonic() < deadline, "the terminated stream is still listed"
        time.sleep(0.2)


async def attack_relay(host: str, port: int) -> list[bytes]:
    """What a stranger gets from a node's relay: silence held open, a wrong
    secret, a frame of 100 MiB announced. Each connection's last bytes before
    the node closed it (the wait is bounded: a relay that keeps one open fails)."""
    async def one(payload: bytes) -> bytes:
        reader, writer = await asyncio.open_connection(host, port)
        writer.write(payload)
        got = await asyncio.wait_for(reader.read(), 10)
        writer.close()
        return got

    hello = json.dumps({"name": "cam", "secret": "guess"}).encode()
    payloads = [b""] * 100 + [struct.pack(">I", len(hello) + 1) + b"H" + hello,
                              struct.pack(">I", 100 * 2**20) + b"H" * 4096]
    return list(await asyncio.gather(*(one(payload) for payload in payloads)))


def test_a_publication_on_one_node_plays_on_another(start_server, media, redis_server):
    one, _, three = cluster(start_server, media, redis_server)
    host, port = re.search(r"relay of published streams on ([\d.]+):(\d+)",
                           one.log()).groups()

    async def scenario() -> tuple[object, Received, list[bytes]]:
        publishing_started = Published()
        publishing = asyncio.ensure_future(
            publish(one.ws_url, "cam", media / "live.mp4", seconds=12, record=False,
                                            result=publishing_started))
        await publishing_started.publishing()
        attacked = asyncio.ensure_future(attack_relay(host, int(port)))
        viewer = await play(three.ws_url, "cam", timeout=30)
        return await publishing, viewer, await attacked

    published, viewer, attacks = run(scenario())
    assert all(got == b"" for got in attacks[:100])  # silent ones: closed after 5 s
    assert b"wrong secret" in attacks[100] and attacks[101] == b""
    assert published.statuses[:1] == ["PUBLISHING"]
    assert viewer.statuses == ["PENDING", "PLAYING", "STOPPED"], viewer.statuses
    assert len(viewer.numbers) > 60 and viewer.numbers == sorted(viewer.numbers)
    assert three.saw("relayed from 127.0.0.2:")


def test_a_node_that_dies_leaves_the_listing_within_the_expiry(start_server, media,
                                                               redis_server):
    from wcs.cluster.redis_store import EXPIRY

    one, two, three = cluster(start_server, media, redis_server)
    for node, name in ((one, "kept"), (two, "doomed")):
        status, started, _ = call(node.http_url, "/rest-api/vod/startup",
                                  {"uri": "vod-live://main.mp4", "localStreamName": name})
        assert status == 200, started
    assert sorted(e["localStreamName"] for e in listed(three)) == ["doomed", "kept"]
    two.process.kill()  # the supervisor; its workers follow it
    killed = time.monotonic()
    while "doomed" in [e["localStreamName"] for e in listed(three)]:
        assert time.monotonic() - killed < EXPIRY + 3, "a dead node's stream is still listed"
        time.sleep(0.25)
    print(f"gone from find_all {time.monotonic() - killed:.1f} s after the node died")
    assert [e["localStreamName"] for e in listed(one)] == ["kept"]
    status, again, _ = call(three.http_url, "/rest-api/vod/startup",
                            {"uri": "vod-live://main.mp4", "localStreamName": "doomed"})
    assert status == 200, again  # its names are free again


def test_sdk_pages_on_two_nodes_show_the_same_frame(start_server, media, redis_server, page,
                                                     browser):
    from testkit.browser import recorded_page
    from testkit.pages import frame_differences, frame_number, open_player, wait_status, wait_video

    one, two, three = cluster(start_server, media, redis_server)
    status, started, _ = call(one.http_url, "/rest-api/vod/startup",
                              {"uri": "vod-live://live.mp4", "localStreamName": "show"})
    assert status == 200, started
    time.sleep(3)  # under way before anyone watches
    other = recorded_page(browser)
    context = other.context
    try:
        for where, node in ((page, two), (other, three)):
            open_player(where, node, "show")
            wait_status(where, "PLAYING")
            wait_video(where)
        time.sleep(1.0)
        differences = frame_differences(page, other)
        print(f"frame differences across nodes: {differences}")
        assert statistics.median(differences) <= 6, differences
        assert frame_number(page) > 90  # 3 s in: the broadcast's moment, not its start
        call(one.http_url, "/rest-api/vod/terminate", {"localStreamName": "show"})
        for where in (page, other):  # stopped on node 1: both pages hear it
            wait_status(where, "STOPPED")
    finally:
        context.close()
