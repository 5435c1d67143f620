"""Any file as HLS VOD (``vod://FILE`` on the HLS port), made on request from its
index: ffmpeg reads a whole B-frame file with no warning and decodes the very
frames the file holds; hls.js (the SDK's demo page) plays a file with its
duration and seeks; validators, ranges and refusals; the access rules."""

from __future__ import annotations

import subprocess
import time
import urllib.parse
from pathlib import Path

import pytest

from testkit.harness import WEBSDK, ServerProcess, require_loopback_only
from testkit.pages import open_hls_js
from testkit.whep_client import http
from tests.conftest import SERVERS
from tools.makemedia import make_mp4
from wcs.access.tokens import sign

SECRET = "a-play-token-secret-of-some-length"


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    """A B-frame file of 30 s, long enough for several segments, and a plain one."""
    made = tmp_path_factory.mktemp("vod-hls")
    make_mp4(made / "long.mp4", seconds=30, profile="high", bframes=3)
    make_mp4(made / "short.mp4", seconds=8, profile="main")
    (made / "sub").mkdir()
    make_mp4(made / "sub" / "audio.mp4", seconds=8, video=False)
    return made


@pytest.fixture(scope="module")
def shared_server(folder, tmp_path_factory):
    require_loopback_only()
    server = ServerProcess(tmp_path_factory.mktemp("vod-hls-server"),
                           {"media_dir": str(folder), "websdk_dir": str(WEBSDK)}).start()
    yield server
    server.stop()


@pytest.fixture
def server(shared_server, request):
    request.node.stash[SERVERS] = [shared_server]
    return shared_server


def url(server, name: str, file: str | None = None) -> str:
    quoted = urllib.parse.quote(name, safe="")
    return f"{server.hls_url}/{quoted}/{file or quoted + '.m3u8'}"


def framemd5(source: str, *options: str) -> tuple[list[str], list[str], str]:
    """(video frames' md5, audio frames' md5, ffmpeg's warnings) of ``source``."""
    done = subprocess.run(["ffmpeg", "-v", "warning", *options, "-i", source, "-f", "framemd5",
                           "-"], capture_output=True, text=True, timeout=120)
    rows = [line.split(",") for line in done.stdout.splitlines() if not line.startswith("#")]
    return ([r[-1].strip() for r in rows if r[0] == "0"],
            [r[-1].strip() for r in rows if r[0] == "1"], done.stderr.strip())


def test_ffmpeg_reads_a_b_frame_file_whole_and_decodes_its_very_frames(server, folder):
    playlist = http("GET", url(server, "vod://long.mp4"))
    assert playlist.status == 200, playlist.text
    text = playlist.text
    assert playlist.headers["content-type"] == "application/vnd.apple.mpegurl"
    assert "#EXT-X-PLAYLIST-TYPE:VOD" in text and text.rstrip().endswith("#EXT-X-ENDLIST")
    durations = [float(line[8:].rstrip(",")) for line in text.splitlines()
                 if line.startswith("#EXTINF:")]
    assert len(durations) >= 4 and abs(sum(durations) - 30.0) < 0.1, durations
    assert max(durations) <= int(text.split("#EXT-X-TARGETDURATION:")[1].split()[0])
    began = time.monotonic()
    video, audio, warnings = framemd5(url(server, "vod://long.mp4"))
    took = time.monotonic() - began
    file_video, file_audio, _ = framemd5(str(folder / "long.mp4"))
    print(f"ffmpeg read 30 s of HLS VOD in {took:.1f} s")
    assert warnings == "", warnings  # no corrupt packet, no continuity error
    assert video == file_video and len(video) == 900  # B-frames as stored, every frame
    # the AAC frames as stored: the priming frame comes first (the file's edit list
    # has players drop what it decodes to), then the same sound
    assert audio[1:] == file_audio, (len(audio), len(file_audio))
    for name in ("vod://short.mp4", "vod://sub/audio.mp4"):
        video, audio, warnings = framemd5(url(server, name))
        assert warnings == "" and (video or audio), (name, warnings)


def test_segments_are_cacheable_ranged_and_the_same_every_time(server):
    segment = url(server, "vod://long.mp4", "2.ts")
    first = http("GET", segment)
    assert first.status == 200 and first.body[:1] == b"G" and len(first.body) % 188 == 0
    etag, modified = first.headers["etag"], first.headers["last-modified"]
    assert "max-age=86400" in first.headers["cache-control"]
    assert first.headers["accept-ranges"] == "bytes"
    again = http("GET", segment)
    assert again.body == first.body and again.headers["etag"] == etag
    assert http("GET", segment, headers={"If-None-Match": etag}).status == 304
    part = http("GET", segment, headers={"Range": "bytes=188-375"})
    assert part.status == 206 and part.body == first.body[188:376]
    assert part.headers["content-range"] == f"bytes 188-375/{len(first.body)}"
    tail = http("GET", segment, headers={"Range": "bytes=-188"})
    assert tail.status == 206 and tail.body == first.body[-188:]
    outside = http("GET", segment, headers={"Range": f"bytes={len(first.body)}-"})
    assert outside.status == 416 and outside.headers["content-range"] == \
        f"bytes */{len(first.body)}"
    assert modified.endswith("GMT")
    playlist = http("GET", url(server, "vod://long.mp4"))
    assert playlist.headers["etag"] != etag and "max-age=300" in \
        playlist.headers["cache-control"]


@pytest.mark.parametrize(("name", "file", "status", "says"), [
    ("vod://nothing.mp4", None, 404, "File not found"),
    ("vod://../etc/passwd", None, 400, "Invalid stream name"),
    ("vod://long.mp4", "999.ts", 404, "no segment 999"),
    ("vod://long.mp4", "long.m3u8", 404, "no such HLS file"),
])
def test_refusals_say_why(server, name, file, status, says):
    answer = http("GET", url(server, name, file))
    assert answer.status == status and says in answer.text, (answer.status, answer.text)


def test_the_sdk_hls_js_demo_plays_a_file_with_its_duration_and_seeks(server, page):
    open_hls_js(page, server, "vod://long.mp4")
    duration = page.evaluate("() => document.getElementById('remoteVideo').duration")
    assert abs(duration - 30.0) < 0.5, duration
    target = 0.6 * duration
    began = time.monotonic()
    page.evaluate(f"() => {{ document.getElementById('remoteVideo').currentTime = {target}; }}")
    page.wait_for_function(
        f"() => {{ const v = document.getElementById('remoteVideo'); "
        f"return !v.seeking && v.readyState >= 3 && v.currentTime > {target + 0.2}; }}",
        timeout=10000)
    took = time.monotonic() - began
    print(f"hls.js seek to 60 %: playing on after {took:.2f} s")
    assert took < 3.0, took  # (1 s measured alone; the suite runs three at once)


def test_the_play_token_guards_playlist_and_segments(folder, start_server):
    server = start_server(media_dir=str(folder), play_token_secret=SECRET)
    bare = http("GET", url(server, "vod://short.mp4"))
    assert bare.status == 401 and "no token" in bare.text
    token = sign(SECRET, "vod://short.mp4", int(time.time()) + 60)
    wrong = sign(SECRET, "vod://long.mp4", int(time.time()) + 60)
    refused = http("GET", url(server, "vod://short.mp4") + f"?token={wrong}")
    assert refused.status == 403, refused.text
    playlist = http("GET", url(server, "vod://short.mp4") + f"?token={token}")
    assert playlist.status == 200 and f"0.ts?token={token}" in playlist.text
    assert "private" in playlist.headers["cache-control"]
    assert http("GET", url(server, "vod://short.mp4", "0.ts")).status == 401
    segment = http("GET", url(server, "vod://short.mp4", "0.ts") + f"?token={token}")
    assert segment.status == 200 and segment.body[:1] == b"G"


@pytest.fixture
def bucket(folder, tmp_path):
    """moto's S3 with three objects: a file, one whose moov comes last, and a long
    one (the file six times over: 3 minutes, ~30 MB) made by copying, not encoding."""
    from testkit.s3 import S3Server

    subprocess.run(["ffmpeg", "-v", "error", "-i", str(folder / "long.mp4"), "-c", "copy",
                    str(tmp_path / "moov-at-end.mp4")], check=True, timeout=60)
    (tmp_path / "parts.txt").write_text(f"file '{folder / 'long.mp4'}'\n" * 6)
    subprocess.run(["ffmpeg", "-v", "error", "-f", "concat", "-safe", "0", "-i",
                    str(tmp_path / "parts.txt"), "-c", "copy", "-movflags", "+faststart",
                    str(tmp_path / "large.mp4")], check=True, timeout=60)
    server = S3Server()
    # keys of its own: moto's store is shared with the session's S3 in this process
    server.upload({"hls/main.mp4": folder / "short.mp4",
                   "hls/moov-at-end.mp4": tmp_path / "moov-at-end.mp4",
                   "hls/large.mp4": tmp_path / "large.mp4"})
    server.sizes = {"large.mp4": (tmp_path / "large.mp4").stat().st_size}
    yield server
    server.stop()


def test_an_s3_object_as_vod_reads_only_what_each_segment_needs(start_server, media, bucket):
    """moto's S3 (behind a proxy that notes every range asked): the playlist from
    the object's moov (at its end, for a file whose moov comes last), each segment
    from its own ranges; ffmpeg reads it whole."""
    import re

    from testkit.s3 import Proxy, s3_settings

    s3 = bucket
    proxy = Proxy(s3.port)
    try:
        server = start_server(media_dir=str(media), **s3_settings(proxy.url))
        for key in ("main.mp4", "moov-at-end.mp4"):
            name = f"vod://s3/media/hls/{key}"
            playlist = http("GET", url(server, name))
            assert playlist.status == 200 and "#EXT-X-ENDLIST" in playlist.text, playlist.text
            video, audio, warnings = framemd5(url(server, name))
            assert warnings == "" and len(video) > 100 and audio, (key, warnings)

        def asked() -> int:
            total = 0
            for headers in proxy.requests:
                asked_for = headers.get("range") or headers.get("Range", "")
                found = re.fullmatch(r"bytes=(\d+)-(\d+)", asked_for)
                assert found, headers  # never the whole object
                total += int(found[2]) - int(found[1]) + 1
            return total

        # a 4-minute object of ~60 MB: its playlist and a segment from the middle,
        # without the rest of it
        before = asked()
        playlist = http("GET", url(server, "vod://s3/media/hls/large.mp4"))
        count = playlist.text.count("#EXTINF")
        assert count >= 25, playlist.text[:300]
        middle = http("GET", url(server, "vod://s3/media/hls/large.mp4", f"{count // 2}.ts"))
        assert middle.status == 200 and middle.body[:1] == b"G"
        fetched = asked() - before
        print(f"S3 VOD: playlist and one segment of a {s3.sizes['large.mp4'] >> 20} MB "
              f"object fetched {fetched >> 10} KiB")
        assert fetched < 4 * 2**20, fetched
        missing = http("GET", url(server, "vod://s3/media/hls/nothing.mp4"))
        assert missing.status == 404 and "File not found" in missing.text
    finally:
        proxy.stop()
