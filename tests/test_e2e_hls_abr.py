"""HLS ABR the WCS way: ``<name>-HLS-ABR-STREAM`` is a multivariant playlist of the
source and the ladder's renditions, every variant an LL-HLS playlist whose segments
decode at the size it states; checked without a browser, attacked, and played by
the SDK's hls.js demo."""

from __future__ import annotations

import pytest

import io
import re
import time
import urllib.parse

import av

from testkit.pages import open_hls_js, video_state
from testkit.throttle import Throttle
from tests.test_e2e_hls import get, parse
from tools.makemedia import make_mp4

NAME = "vod-live://abr.mp4"
ABR = NAME + "-HLS-ABR-STREAM"


def abr_url(server, name: str = ABR, file: str | None = None) -> str:
    quoted = urllib.parse.quote(name, safe="")
    return f"{server.hls_url}/{quoted}/{file or quoted + '.m3u8'}"


def variants(text: str) -> list[dict]:
    """Each ``#EXT-X-STREAM-INF`` with its attributes and URI."""
    lines = [line for line in text.splitlines() if line]
    assert lines[0] == "#EXTM3U"
    found = []
    for index, line in enumerate(lines):
        if line.startswith("#EXT-X-STREAM-INF:"):
            attributes = dict(
                (key, value.strip('"'))
                for key, value in re.findall(r'([A-Z-]+)=("[^"]*"|[^,]*)', line[18:])
            )
            attributes["uri"] = lines[index + 1]
            found.append(attributes)
    return found


def decoded_size(data: bytes) -> tuple[int, int, int]:
    """(width, height, frames) of a TS segment, decoded by PyAV."""
    with av.open(io.BytesIO(data), format="mpegts") as container:
        frames = list(container.decode(video=0))
    assert frames, "no picture in the segment"
    return frames[0].width, frames[0].height, len(frames)


def test_the_default_ladder_as_a_multivariant_playlist(start_server, tmp_path):
    make_mp4(tmp_path / "abr.mp4", seconds=30, width=1280, height=720, bitrate="1200k")
    server = start_server(media_dir=str(tmp_path), vod_live_loop="true")
    status, body, headers = get(abr_url(server))
    assert status == 200, body
    assert headers["Content-Type"] == "application/vnd.apple.mpegurl"
    found = variants(body.decode())
    assert [v["RESOLUTION"] for v in found] == ["1280x720", "640x360", "320x180"]
    assert [v["uri"] for v in found] == ["source/source.m3u8", "360p/360p.m3u8", "180p/180p.m3u8"]
    bandwidths = [int(v["BANDWIDTH"]) for v in found]
    assert bandwidths == sorted(bandwidths, reverse=True)
    assert 1_000_000 < bandwidths[0] < 3_000_000  # the source's measured peak
    assert found[0]["CODECS"] == "avc1.4d401f,mp4a.40.2"
    assert found[1]["CODECS"] == found[2]["CODECS"] == "avc1.42e01f,mp4a.40.2"
    for variant in found:
        width, height = map(int, variant["RESOLUTION"].split("x"))
        status, text, _ = get(abr_url(server, file=variant["uri"]))
        assert status == 200, text
        playlist = parse(text.decode())
        assert "#EXT-X-PART-INF" in text.decode()  # LL-HLS, each of them
        folder = variant["uri"].split("/")[0]
        uri, duration = playlist["segments"][0]
        status, data, _ = get(abr_url(server, file=f"{folder}/{uri}"))
        assert status == 200, data
        assert decoded_size(data)[:2] == (width, height)
        rate = len(data) * 8 / duration
        print(f"{variant['RESOLUTION']}: {uri}, {duration} s at {rate:.0f} b/s, "
              f"BANDWIDTH {variant['BANDWIDTH']}")
        # (the frames it holds against its duration: what a failure must say)
        assert rate <= int(variant["BANDWIDTH"]), (variant, rate, uri, duration,
                                                   decoded_size(data))
    log = server.log()
    assert log.count(f"rendition {NAME} at 640x360 started") == 1
    assert log.count(f"rendition {NAME} at 320x180 started") == 1


def test_a_small_source_offers_only_what_is_below_it(start_server, tmp_path):
    make_mp4(tmp_path / "abr.mp4", seconds=20, width=640, height=360)
    server = start_server(
        media_dir=str(tmp_path), vod_live_loop="true", hls_abr_profiles="720p,360p,160p"
    )
    status, body, _ = get(abr_url(server))
    assert status == 200, body
    found = variants(body.decode())
    assert [(v["RESOLUTION"], v["uri"]) for v in found] == [
        ("640x360", "source/source.m3u8"),
        ("284x160", "160p/160p.m3u8"),
    ]
    assert "rendition" not in server.log()  # nothing encoded before a variant is asked for


def test_refusals_name_the_problem(start_server, tmp_path):
    make_mp4(tmp_path / "abr.mp4", seconds=20, width=640, height=360)
    server = start_server(media_dir=str(tmp_path), vod_live_loop="true")
    status, body, _ = get(abr_url(server, file="720p/720p.m3u8"))
    assert status == 404 and b"no rung '720p' in the quality ladder (360p,180p)" in body
    status, body, _ = get(abr_url(server, file="source.m3u8"))
    assert status == 404 and b"variants <variant>/<variant>.m3u8" in body
    status, body, _ = get(abr_url(server, file="source/a/b.ts"))
    assert status == 404
    status, body, _ = get(abr_url(server, "vod-live://absent.mp4-HLS-ABR-STREAM"))
    assert status == 404 and b"File not found" in body
    status, body, _ = get(abr_url(server, "vod://abr.mp4-HLS-ABR-STREAM"))
    assert status == 404 and b"HLS ABR is for live streams" in body
    status, body, _ = get(abr_url(server, "-HLS-ABR-STREAM"))
    assert status == 404
    status, body, _ = get(abr_url(server))  # and the server is fine
    assert status == 200
    assert "Traceback" not in server.log()


def test_no_ladder_offers_the_source_alone(start_server, tmp_path):
    make_mp4(tmp_path / "abr.mp4", seconds=20, width=640, height=360)
    server = start_server(
        media_dir=str(tmp_path), vod_live_loop="true", transcoding_disabled="true"
    )
    status, body, _ = get(abr_url(server))
    assert status == 200, body
    assert [v["uri"] for v in variants(body.decode())] == ["source/source.m3u8"]
    status, body, _ = get(abr_url(server, file="180p/180p.m3u8"))
    assert status == 404 and b"(empty)" in body


def wait_hls_width(page, width: int, seconds: float) -> float:
    start = time.monotonic()
    while time.monotonic() - start < seconds:
        if video_state(page, "#remoteVideo")["width"] == width:
            return time.monotonic() - start
        time.sleep(0.2)
    level = page.evaluate("() => hlsPlayer.currentLevel")
    raise AssertionError(f"not {width} wide after {seconds} s: "
                         f"{video_state(page, '#remoteVideo')}, level {level}")


@pytest.mark.heavy  # a throttled link: hls.js timed within seconds
def test_hls_js_picks_a_lower_variant_through_a_slow_link(start_server, page, tmp_path):
    """The SDK's hls.js page on the multivariant playlist: the source on an open
    link; held to 500 kb/s, hls.js takes the 180p variant and plays on without
    stalling."""
    make_mp4(tmp_path / "abr.mp4", seconds=60, bitrate="1200k")
    server = start_server(media_dir=str(tmp_path), vod_live_loop="true")
    open_hls_js(page, server, ABR)
    wait_hls_width(page, 640, 30)  # an open link: the source
    levels = page.evaluate("() => hlsPlayer.levels.map(l => [l.width, l.height, l.bitrate])")
    assert sorted(level[:2] for level in levels) == [[320, 180], [640, 360]], levels
    port = int(server.hls_url.rsplit(":", 1)[1])
    with Throttle(port):
        down = wait_hls_width(page, 320, 40)
        print(f"hls.js took the 180p variant {down:.1f} s after the limit")
        page.evaluate("""() => {
            const v = document.querySelector('#remoteVideo');
            window.__stalls = 0;
            v.addEventListener('waiting', () => { window.__stalls += 1; });
        }""")
        before = video_state(page, "#remoteVideo")
        time.sleep(12)
        after = video_state(page, "#remoteVideo")
        stalls = page.evaluate("window.__stalls")
        level = page.evaluate("() => hlsPlayer.currentLevel")
    print("through the limit:", before, after, "stalls", stalls)
    assert after["width"] == 320 and levels[level][0] == 320
    assert after["time"] - before["time"] >= 11.0  # it plays on
    # (hls.js may try the source again and wait a moment on a loaded machine: once
    # was seen, its time still within 1 s of the clock's)
    assert stalls <= 1, stalls
