"""What strict third-party tools say of the server's bytes: ffmpeg reading live
HLS and LL-HLS (continuity counters, corrupt packets, timestamps), promtool
linting a real scrape of /metrics, openapi-spec-validator on docs/openapi.json.

Each tool is installed by ``scripts/install.sh --test`` (ffmpeg and promtool from
Debian, openapi-spec-validator in the virtualenv): a missing one fails the test,
it never skips it."""

from __future__ import annotations

import io
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from itertools import pairwise
from pathlib import Path

import av

from testkit.rest_client import call
from testkit.rtmp_receiver import FfmpegReceiver
from tests.test_e2e_hls import PART, get, parse, url
from tests.test_e2e_metrics import read as metrics
from tests.test_e2e_metrics import scrape, value
from tests.test_e2e_push import find_push, wait_push

ROOT = Path(__file__).resolve().parent.parent
#: What ffmpeg must never say of our streams.
BAD = re.compile(r"corrupt|continuity|discontinuity|non-monotonous", re.IGNORECASE)
#: Media ffmpeg reads of each stream (s): the loop file's two loop points.
SECONDS = 6


def tool(name: str) -> str:
    """The path of ``name``; fails (never skips) when it is missing."""
    found = shutil.which(name) or shutil.which(name, path=str(Path(sys.executable).parent))
    assert found, f"{name} is missing: scripts/install.sh --test installs it"
    return found


def ffmpeg_reads(source: str, feed=None, seconds: float = SECONDS) -> tuple[str, float]:
    """``ffmpeg -v warning`` reading ``source`` (a URL, or ``pipe:0`` that ``feed``
    writes to) for ``seconds`` of media to nowhere: its warnings, and how much it read."""
    args = [tool("ffmpeg"), "-hide_banner", "-v", "warning", "-progress", "pipe:1"]
    args += ["-nostdin", "-i", source] if feed is None else ["-f", "mpegts", "-i", source]
    args += ["-t", str(seconds), "-f", "null", "-"]
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        process = subprocess.Popen(args, stdin=subprocess.PIPE if feed else subprocess.DEVNULL,
                                   stdout=out, stderr=err)
        feeder = None
        if feed is not None:  # (communicate() would close its stdin at once)
            feeder = threading.Thread(target=feed, args=(process.stdin,), daemon=True)
            feeder.start()
        try:
            process.wait(timeout=60)
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
        if feeder is not None:
            feeder.join(10)
        out.seek(0)
        err.seek(0)
        said, progress = err.read().decode(), out.read().decode()
    assert process.returncode == 0, said
    read = [int(line.split("=")[1]) for line in progress.splitlines()
            if line.startswith("out_time_us=") and line.split("=")[1].isdigit()]
    return said, (max(read) if read else 0) / 1e6


def assert_clean(warnings: str, read: float) -> None:
    bad = [line for line in warnings.splitlines() if BAD.search(line)]
    assert not bad, warnings
    assert read >= SECONDS - 0.5, (read, warnings)


def steps(data: bytes) -> dict[str, list[int]]:
    """The PTS steps (90 kHz) of each track of a TS."""
    pts: dict[str, list[int]] = {"video": [], "audio": []}
    with av.open(io.BytesIO(data), format="mpegts") as container:
        for packet in container.demux():
            if packet.size and packet.pts is not None:
                pts[packet.stream.type].append(packet.pts)
    return {kind: [b - a for a, b in pairwise(found)] for kind, found in pts.items()}


def test_ffmpeg_reads_a_looping_broadcast_as_hls_without_a_warning(start_server, media):
    """A 3 s file looping: ffmpeg follows the live playlist across segments and
    loops; the segments, one after another, step one frame a sample, each track."""
    server = start_server(media_dir=str(media), vod_live_loop="true")
    name = "vod-live://loop.mp4"
    assert get(url(server, name))[0] == 200  # starts the segmenter
    warnings, read = ffmpeg_reads(url(server, name))
    print(f"ffmpeg read {read:.2f} s of live HLS; said: {warnings!r}")
    assert_clean(warnings, read)
    listed = parse(get(url(server, name))[1].decode())["segments"]
    assert sum(duration for _, duration in listed) > 6.5  # two loop points at least
    whole = b"".join(get(url(server, name, uri))[1] for uri, _ in listed)
    found = steps(whole)
    assert set(found["video"]) == {3000}  # a frame at 30 fps, at every loop point too
    aac = 1024 / 44100 * 90000  # one AAC frame: never less (overlap), never more (a gap)
    assert all(abs(step - aac) <= 1 for step in found["audio"]), sorted(set(found["audio"]))


def test_ffmpeg_reads_ll_hls_parts_as_a_player_follows_them(start_server, media):
    """An LL-HLS player's reading: the last whole segment, then the next
    segments part by part through blocking reloads, piped to ffmpeg as it comes;
    and the LL-HLS playlist read by ffmpeg itself."""
    server = start_server(media_dir=str(media), vod_live_loop="true")
    name = "vod-live://loop.mp4"
    playlist = get(url(server, name))[1].decode()
    assert "#EXT-X-PART-INF" in playlist
    fetched: list[str] = []

    def feed(pipe) -> None:
        try:
            tags = parse(get(url(server, name))[1].decode())
            uri, fed = tags["segments"][-1][0], tags["segments"][-1][1]
            pipe.write(get(url(server, name, uri))[1])
            fetched.append(uri)
            number, index = int(uri.split(".")[0]) + 1, 0
            while fed < SECONDS + 2:
                query = f"?_HLS_msn={number}&_HLS_part={index}"
                status, body, _ = get(url(server, name) + query)
                assert status == 200, body
                listed = {f"{n}.{i}.ts": float(d) for d, n, i, _ in PART.findall(body.decode())}
                part = f"{number}.{index}.ts"
                if part in listed:
                    status, data, _ = get(url(server, name, part))
                    assert status == 200, part
                    pipe.write(data)
                    fetched.append(part)
                    fed += listed[part]
                    index += 1
                elif f"\n{number}.ts\n" in body.decode():  # that segment is whole: the next
                    number, index = number + 1, 0
        except BrokenPipeError:
            pass  # ffmpeg read what it wanted
        finally:
            try:
                pipe.close()
            except BrokenPipeError:
                pass

    warnings, read = ffmpeg_reads("pipe:0", feed)
    print(f"ffmpeg read {read:.2f} s of LL-HLS parts ({fetched}); said: {warnings!r}")
    assert_clean(warnings, read)
    assert sum(1 for uri in fetched if uri.count(".") == 2) >= 8, fetched  # parts mostly
    warnings, read = ffmpeg_reads(url(server, name))  # the LL-HLS playlist, as ffmpeg reads it
    assert_clean(warnings, read)


def test_the_first_segment_s_sound_starts_with_its_picture(start_server, media):
    """A broadcast running for 3.3 s gets its first HLS player: the first segment
    starts on the keyframe at 2 s, its AAC with it (not from the join, 1.3 s on)."""
    server = start_server(media_dir=str(media), vod_live_loop="true")
    assert call(server.http_url, "/rest-api/vod/startup",
                {"uri": "vod-live://live.mp4", "localStreamName": "show"})[0] == 200
    time.sleep(3.3)
    tags = parse(get(url(server, "show"))[1].decode())
    first = get(url(server, "show", tags["segments"][0][0]))[1]
    starts = {}
    with av.open(io.BytesIO(first), format="mpegts") as container:
        for packet in container.demux():
            if packet.size and packet.pts is not None:
                starts.setdefault(packet.stream.type, float(packet.pts * packet.time_base))
    assert 0 <= starts["audio"] - starts["video"] < 1024 / 44100 + 0.002, starts


def test_promtool_finds_nothing_wrong_in_a_real_scrape(start_server, media):
    """/metrics with every family moving (plays over HLS, REST calls, a push that
    ended, a failure), as Prometheus's own linter reads it."""
    promtool = tool("promtool")
    server = start_server(media_dir=str(media), vod_live_loop="true")
    assert get(url(server, "vod-live://live.mp4"))[0] == 200
    assert get(url(server, "vod-live://absent.mp4"))[0] == 404
    call(server.http_url, "/rest-api/vod/find_all", {})
    call(server.http_url, "/rest-api/push/startup",
         {"streamName": "vod-live://live.mp4", "rtmpUrl": "rtmp://127.0.0.1:1/live"})
    time.sleep(1.5)
    status, text = scrape(server)
    assert status == 200 and "wcsvod_viewers" in text and "wcsvod_rest_requests" in text
    checked = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True,
                             text=True, timeout=60)
    print(f"promtool check metrics: exit {checked.returncode}, "
          f"{checked.stdout!r} {checked.stderr!r}")
    assert checked.returncode == 0 and not (checked.stdout + checked.stderr).strip(), \
        checked.stdout + checked.stderr


def test_a_stopped_push_is_no_viewer_at_once(start_server, media, tmp_path):
    """wcsvod_viewers{provider="RTMP"}: 1 while the push runs, 0 in the scrape
    right after its terminate, while /push/find still lists it STOPPED."""
    receiver = FfmpegReceiver(tmp_path / "got.flv").start()
    try:
        server = start_server(media_dir=str(media), vod_live_loop="true")
        assert call(server.http_url, "/rest-api/vod/startup",
                    {"uri": "vod-live://live.mp4", "localStreamName": "show"})[0] == 200
        status, push, _ = call(server.http_url, "/rest-api/push/startup",
                               {"streamName": "show", "rtmpUrl": receiver.url})
        assert status == 200, push
        wait_push(server, push["mediaSessionId"], "PUBLISHING")
        assert value(metrics(server), "wcsvod_viewers", provider="RTMP") == 1
        assert call(server.http_url, "/rest-api/push/terminate",
                    {"mediaSessionId": push["mediaSessionId"]})[0] == 200
        # (the terminate may reach the worker without the push, which tells the
        # other one through the supervisor: a scrape can come a few ms before it)
        deadline = time.monotonic() + 2.0
        while (value(metrics(server), "wcsvod_viewers", provider="RTMP") != 0
               and time.monotonic() < deadline):
            time.sleep(0.05)
        assert value(metrics(server), "wcsvod_viewers", provider="RTMP") == 0
        assert find_push(server, push["mediaSessionId"])["status"] == "STOPPED"  # still listed
    finally:
        receiver.kill()


def test_openapi_spec_validator_accepts_the_rest_description():
    checked = subprocess.run([tool("openapi-spec-validator"), str(ROOT / "docs/openapi.json")],
                             capture_output=True, text=True, timeout=120)
    print(f"openapi-spec-validator: exit {checked.returncode}, {checked.stdout.strip()!r}")
    assert checked.returncode == 0 and checked.stdout.strip().endswith("OK"), \
        checked.stdout + checked.stderr
