"""S3 sources against a real S3-compatible server on loopback (moto's server mode)."""

from __future__ import annotations

import re
import time

import pytest

from testkit.harness import free_port, run
from testkit.rest_client import call
from testkit.rtc_client import play
from testkit.s3 import ACCESS_KEY, SECRET_KEY, Proxy, s3_settings
from tests.test_e2e_metrics import read as metrics
from tests.test_e2e_metrics import value
from tools.makemedia import frames_in


def test_faststart_object_plays_every_frame(start_server, media, s3):
    server = start_server(media_dir=str(media), **s3_settings(s3.url))
    got = run(play(server.ws_url, "vod://s3/media/main.mp4"))
    assert got.statuses == ["PENDING", "PLAYING", "STOPPED"], got.infos
    assert len(got.video) == frames_in(media / "main.mp4") - 1
    pts = [row[1] for row in got.video]
    assert all(b - a == 3000 for a, b in zip(pts, pts[1:]))
    assert len(got.audio) > 300
    nested = run(play(server.ws_url, "vod://s3/media/folder/high.mp4", stop_after=1))
    assert nested.statuses[-2:] == ["PLAYING", "STOPPED"]
    found = metrics(server)  # what was fetched and what failed, in /metrics
    assert value(found, "wcsvod_s3_fetched_bytes_total") >= (media / "main.mp4").stat().st_size
    assert value(found, "wcsvod_s3_errors_total") == 0
    assert run(play(server.ws_url, "vod://s3/media/absent.mp4")).infos == ["File not found"]
    assert value(metrics(server), "wcsvod_s3_errors_total") == 1


def test_large_object_plays_long_before_it_is_downloaded(start_server, media, s3):
    server = start_server(media_dir=str(media), **s3_settings(s3.url))
    got = run(play(server.ws_url, "vod://s3/media/large.mp4", stop_after=2))
    assert got.statuses == ["PENDING", "PLAYING", "STOPPED"]
    assert len(got.video) > 45
    size = s3.sizes["large.mp4"]
    log = server.log()
    at_start = int(re.search(r"playing after (\d+) bytes", log).group(1))
    assert at_start <= 3 * 1024 * 1024 < size, (at_start, size)
    deadline = time.monotonic() + 5
    while "closed after downloading" not in server.log() and time.monotonic() < deadline:
        time.sleep(0.1)
    total = int(re.search(r"closed after downloading (\d+) of", server.log()).group(1))
    assert total < 16 * 1024 * 1024 < size, "the download ran a bounded distance ahead"


def test_moov_at_the_end_is_fetched_first(start_server, media, s3):
    server = start_server(media_dir=str(media), **s3_settings(s3.url))
    got = run(play(server.ws_url, "vod://s3/media/moov-at-end.mp4"))
    assert got.statuses == ["PENDING", "PLAYING", "STOPPED"], got.infos
    assert len(got.video) == 6 * 30 - 1
    assert server.saw("moov is after the media data; fetching it first")


@pytest.mark.parametrize("name, info", [
    ("vod://s3/media/absent.mp4", "File not found"),
    ("vod://s3/nobucket/main.mp4", "File not found"),
    ("vod://s3/media/not-an-mp4.mp4", "File has wrong format: not an MP4 file"),
    ("vod://s3/Bad_Bucket/x.mp4", "Invalid stream name: 'Bad_Bucket' is not an S3 bucket name"),
    ("vod://s3/media/../x.mp4", "Invalid stream name: '..' is not allowed"),
])
def test_bad_objects(start_server, media, s3, name, info):
    server = start_server(media_dir=str(media), **s3_settings(s3.url))
    got = run(play(server.ws_url, name))
    assert got.statuses == ["FAILED"] and got.infos == [info]


def test_credentials_are_signed_checked_and_never_logged(start_server, media, s3):
    proxy = Proxy(s3.port)
    try:
        good = start_server(media_dir=str(media), **s3_settings(proxy.url))
        got = run(play(good.ws_url, "vod://s3/media/main.mp4", stop_after=1))
        assert got.statuses[-2:] == ["PLAYING", "STOPPED"]
        signed = proxy.requests[0]
        assert signed["authorization"].startswith(f"AWS4-HMAC-SHA256 Credential={ACCESS_KEY}/")
        assert "SignedHeaders=" in signed["authorization"] and signed["x-amz-date"]
        assert signed["x-amz-content-sha256"] and signed["range"].startswith("bytes=0-")
        bad = start_server(media_dir=str(media), **s3_settings(proxy.url, "AKIDWRONG"))
        refused = run(play(bad.ws_url, "vod://s3/media/main.mp4"))
        assert refused.statuses == ["FAILED"]
        assert refused.infos == ["Access to the S3 object was denied (check aws_s3_credentials)"]
        for server in (good, bad):
            assert SECRET_KEY not in server.log()
    finally:
        proxy.stop()


def test_unreachable_endpoint_fails_fast(start_server, media):
    server = start_server(media_dir=str(media), **s3_settings(f"http://127.0.0.1:{free_port()}"))
    started = time.monotonic()
    got = run(play(server.ws_url, "vod://s3/media/main.mp4"))
    assert got.statuses == ["FAILED"] and got.infos == ["S3 endpoint unreachable"]
    assert time.monotonic() - started < 5


def test_a_connection_cut_mid_file_ends_the_stream_cleanly(start_server, media, s3):
    proxy = Proxy(s3.port, cut_from=3 * 1024 * 1024)  # about 12 s into the file
    try:
        server = start_server(media_dir=str(media), **s3_settings(proxy.url))
        got = run(play(server.ws_url, "vod://s3/media/large.mp4", timeout=60))
        ended = time.monotonic()
        assert got.statuses[:2] == ["PENDING", "PLAYING"]
        assert got.statuses[-1] == "FAILED" and got.infos[-1].startswith("S3 download")
        assert len(got.video) > 30, "it played what had arrived"
        # the stream ends once what arrived is played, not after a wait of its own
        assert ended - got.video[-1][0] < 10, ended - got.video[-1][0]
        assert server.process.poll() is None
    finally:
        proxy.stop()


def test_rest_startup_and_live_broadcast_from_s3(start_server, media, s3):
    server = start_server(media_dir=str(media), **s3_settings(s3.url))
    status, started, _ = call(server.http_url, "/rest-api/vod/startup",
                              {"uri": "vod-live://s3/media/live.mp4", "localStreamName": "cloud"})
    assert status == 200 and started["uri"] == "vod-live://s3/media/live.mp4"
    assert call(server.http_url, "/rest-api/vod/startup",
                {"uri": "vod-live://s3/media/absent.mp4", "localStreamName": "x"})[0] == 404
    got = run(play(server.ws_url, "cloud", stop_after=2))
    assert got.statuses == ["PENDING", "PLAYING", "STOPPED"] and len(got.video) > 45
    live = run(play(server.ws_url, "vod-live://s3/media/live.mp4", stop_after=1))
    assert live.statuses[-2:] == ["PLAYING", "STOPPED"]
    # the MSE path takes the same names: a REST-started S3 broadcast and a vod://s3 file
    from testkit.mse_client import watch

    for name in ("cloud", "vod://s3/media/main.mp4"):
        mse = run(watch(server.ws_url, name, seconds=1.5))
        assert mse.statuses == ["PENDING", "PLAYING", "STOPPED"], (name, mse.statuses)
        assert mse.records.get(9, 0) > 20 and mse.records.get(8, 0) > 20, name


def test_sdk_player_plays_from_s3(start_server, page, media, s3):
    from testkit.pages import open_player, wait_status, wait_video

    server = start_server(media_dir=str(media), **s3_settings(s3.url))
    open_player(page, server, "vod://s3/media/main.mp4")
    wait_status(page, "PLAYING")
    assert wait_video(page)["width"] == 640


def test_container_new_false_downloads_everything_first(start_server, media, s3):
    server = start_server(media_dir=str(media), vod_mp4_container_new="false",
                          **s3_settings(s3.url))
    got = run(play(server.ws_url, "vod://s3/media/main.mp4", stop_after=1))
    assert got.statuses[-2:] == ["PLAYING", "STOPPED"]
    size = (media / "main.mp4").stat().st_size
    assert server.saw(f"{size} bytes in S3; playing after {size} bytes")


def test_a_stalled_transfer_ends_the_stream_in_bounded_time(start_server, media, s3):
    proxy = Proxy(s3.port, cut_from=3 * 1024 * 1024, stall=True)
    try:
        server = start_server(media_dir=str(media), aws_s3_request_timeout="1000",
                              **s3_settings(proxy.url))
        got = run(play(server.ws_url, "vod://s3/media/large.mp4", timeout=60))
        ended = time.monotonic()
        assert got.statuses[:2] == ["PENDING", "PLAYING"]
        assert got.statuses[-1] == "FAILED", got.statuses
        assert got.infos[-1] == "S3 download stalled"  # timed out, three times
        # given up on while what arrived played: the end follows the last picture
        assert ended - got.video[-1][0] < 10, ended - got.video[-1][0]
        assert server.saw("gave up on bytes from")
    finally:
        proxy.stop()
