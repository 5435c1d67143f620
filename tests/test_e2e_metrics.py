"""``/metrics`` on the real server, read by prometheus_client's own parser:
counters move as streams play and fail, the REST key guards it, hostile
scrapes and junk routes cannot grow it, and with workers every worker shows."""

from __future__ import annotations

import asyncio
import time
import urllib.error
import urllib.request
import uuid

from prometheus_client.parser import text_string_to_metric_families

from testkit.mse_client import watch
from testkit.rest_client import call
from testkit.rtc_client import play, run

KEY = "metrics-test-key-0123456789"


def scrape(server, headers: dict[str, str] | None = None) -> tuple[int, str]:
    request = urllib.request.Request(server.http_url + "/metrics", headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:
            return answer.status, answer.read().decode()
    except urllib.error.HTTPError as failure:
        return failure.code, failure.read().decode()


def samples(text: str) -> dict[tuple[str, tuple], float]:
    return {(sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(text) for sample in family.samples}


def value(found: dict, name: str, **labels: str) -> float:
    """A sample's value (0 when absent), summed over labels not named (workers)."""
    wanted = set(labels.items())
    return sum(v for (n, ls), v in found.items() if n == name and wanted <= set(ls))


def read(server) -> dict[tuple[str, tuple], float]:
    status, text = scrape(server)
    assert status == 200, text
    return samples(text)


def test_counters_move_as_streams_play_and_fail(start_server, media):
    # no Opus cache: the WebRTC play transcodes all along (with it, only until the
    # cache it had made holds the file)
    server = start_server(media_dir=str(media), vod_audio_cache_size="0")
    before = read(server)
    assert value(before, "wcsvod_sessions") == 0

    async def scenario():
        stop = asyncio.Event()
        viewer = asyncio.ensure_future(play(server.ws_url, "vod://main.mp4", stop_event=stop,
                                            timeout=30))
        watcher = asyncio.ensure_future(watch(server.ws_url, "vod://main.mp4", seconds=3))
        await asyncio.sleep(2.5)
        during = await asyncio.to_thread(read, server)
        watched = await watcher
        stop.set()
        failed = await play(server.ws_url, "vod://absent.mp4", timeout=10)
        return during, await viewer, watched, failed

    during, viewer, watched, failed = run(scenario())
    assert viewer.video and watched.records.get(9) and failed.statuses[-1] == "FAILED"
    assert value(during, "wcsvod_viewers", provider="WebRTC") == 1
    assert value(during, "wcsvod_viewers", provider="MSE") == 1
    assert value(during, "wcsvod_sessions") == 2
    assert value(during, "wcsvod_streams", kind="vod") == 2
    assert value(during, "wcsvod_transcodes", kind="aac-to-opus") >= 1  # the WebRTC play's
    after = read(server)
    for provider in ("WebRTC", "MSE"):
        assert value(after, "wcsvod_sent_packets_total", provider=provider) > 100, provider
        assert value(after, "wcsvod_sent_bytes_total", provider=provider) > 50_000, provider
    assert value(after, "wcsvod_samples_read_total", kind="video") >= 2 * 60
    assert value(after, "wcsvod_samples_read_total", kind="audio") > 0
    assert value(after, "wcsvod_failures_total", reason="File not found") == 1
    assert value(after, "wcsvod_reactor_lag_seconds_count") > 0
    call(server.http_url, "/rest-api/vod/find_all", {})
    call(server.http_url, "/rest-api/vod/find", {"localStreamName": "nothing"})
    later = read(server)
    assert value(later, "wcsvod_rest_requests_total", route="/rest-api/vod/find",
                 status="404") == 1
    assert value(later, "wcsvod_rest_requests_total", route="/rest-api/vod/find_all") == 1
    assert value(later, "wcsvod_rest_requests_total", route="/metrics", status="200") >= 3
    # once every viewer left, the gauges are back at rest
    deadline = time.monotonic() + 10
    while True:
        found = read(server)
        busy = {name: value(found, name) for name in ("wcsvod_viewers", "wcsvod_transcodes",
                                                      "wcsvod_streams", "wcsvod_sessions")}
        if not any(busy.values()):
            break
        assert time.monotonic() < deadline, f"still counted: {busy}"
        time.sleep(0.2)


def test_the_rest_key_guards_it_and_junk_cannot_grow_it(start_server, media):
    server = start_server(media_dir=str(media), rest_api_key=KEY)
    status, text = scrape(server)
    assert status == 401 and "REST API key" in text
    assert scrape(server, {"Authorization": "Bearer wrong"})[0] == 401
    assert scrape(server, {"Origin": "http://evil.example"})[0] == 403
    bearer = {"Authorization": f"Bearer {KEY}"}
    for _ in range(300):  # paths nobody owns: one "unknown" route, not 300 routes
        call(server.http_url, f"/rest-api/{uuid.uuid4().hex}/x", {}, headers=bearer,
             check=False)
        call(server.http_url, f"/rest-api/vod/find_all/{uuid.uuid4().hex}", {},
             headers=bearer, check=False)
    status, text = scrape(server, bearer)
    assert status == 200
    routes = {dict(labels)["route"] for (name, labels) in samples(text)
              if name == "wcsvod_rest_requests_total"}
    assert routes == {"unknown", "/rest-api/vod/find_all", "/metrics"}, routes
    request = urllib.request.Request(server.http_url + "/metrics", data=b"x" * 100,
                                     headers=bearer, method="POST")
    try:
        urllib.request.urlopen(request, timeout=10)
        raise AssertionError("POST /metrics was answered")
    except urllib.error.HTTPError as failure:
        assert failure.code == 405
    # a scrape flood is answered, and the server plays on
    started = time.monotonic()
    for _ in range(200):
        assert scrape(server, bearer)[0] == 200
    print(f"200 scrapes: {(time.monotonic() - started) * 5:.2f} ms each")
    got = run(play(server.ws_url, "vod://main.mp4", stop_after=2, timeout=20))
    assert got.statuses[-1] == "STOPPED" and got.video


def test_every_worker_shows_under_its_label(start_server, media):
    server = start_server(media_dir=str(media), workers="2")
    deadline = time.monotonic() + 15
    while True:  # each worker's report (every second) carries its families
        workers = {dict(labels).get("worker") for (name, labels) in read(server)
                   if name == "wcsvod_reactor_lag_seconds_count"}
        if workers == {"1", "2"}:
            break
        assert time.monotonic() < deadline, workers
        time.sleep(0.5)
    got = run(play(server.ws_url, "vod://main.mp4", stop_after=2, timeout=20))
    assert got.video
    time.sleep(1.5)  # the next report
    found = read(server)
    assert value(found, "wcsvod_sent_packets_total", provider="WebRTC") > 50
    assert value(found, "wcsvod_failures_total") == 0
