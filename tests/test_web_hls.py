"""The HLS port on a fake clock: LL-HLS's waits (a blocking reload answered once
its part is made or after three target durations, the hinted part, refusals,
and players that leave or crowd a stream), and its paths as twisted.web routes
them (names, segments, what is never a file, refusals)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from twisted.internet.defer import fail, succeed
from twisted.internet.task import Clock
from twisted.python.failure import Failure
from twisted.web.test.requesthelper import DummyRequest

from tests.webcalls import call
from wcs.errors import InvalidName, LimitReached, NotFound
from wcs.hls import segmenter as hls
from wcs.hls.packagers import Packager
from wcs.hls.segmenter import Segmenter
from wcs.media.sample import MediaInfo, Sample, VideoInfo
from wcs.web.hls import FIRST_SEGMENT_WAIT, HlsFile, HlsRoot

FPS = 30


class Packagers:
    def __init__(self, packager: Packager) -> None:
        self.packager = packager

    def get(self, name: str, rung: str = "") -> Any:
        return succeed(self.packager)


class Stream:
    """A 30 fps video stream, a keyframe a second, fed by hand."""

    def __init__(self) -> None:
        self.segmenter = Segmenter(MediaInfo(0.0, VideoInfo(640, 360, FPS, "42e01f"), None),
                                   "test")
        self.frames = 0

    def feed(self, count: int) -> None:
        for _ in range(count):
            n = self.frames
            self.segmenter.deliver(Sample("video", b"\x00\x00\x00\x01\x65" + b"\x88" * 50,
                                          n * 3000, 90000, n / FPS, keyframe=n % FPS == 0,
                                          codec="h264"))
            self.frames += 1


@pytest.fixture
def stream() -> Stream:
    return Stream()


@pytest.fixture
def clock() -> Clock:
    return Clock()


def ask(stream: Stream, clock: Clock, file: str, **args: str) -> DummyRequest:
    packager = Packager("show", None, stream.segmenter, 0.0)  # type: ignore[arg-type]
    request = DummyRequest([file.encode()])
    request._disconnected = False
    for key, value in args.items():
        request.addArg(key.encode(), value.encode())
    resource = HlsFile(Packagers(packager), clock, b"show")  # type: ignore[arg-type]
    answered = resource.render(request)
    if isinstance(answered, bytes):  # (as twisted.web's Request does with it)
        request.write(answered)
        request.finish()
    request.packager = packager
    return request


def body(request: DummyRequest) -> str:
    return b"".join(request.written).decode()


def test_a_blocking_reload_answers_once_its_part_is_made(stream, clock):
    stream.feed(FPS * 2 + 1)  # two segments, and the third's first frame
    number, index = stream.segmenter.next_part()
    assert (number, index) == (2, 0)
    waiting = ask(stream, clock, "show.m3u8", _HLS_msn=str(number), _HLS_part=str(index))
    assert not waiting.finished
    stream.feed(FPS // 2 - 1)
    assert not waiting.finished  # not yet half a second
    stream.feed(1)
    assert waiting.finished and waiting.responseCode == 200
    assert f'URI="{number}.{index}.ts"' in body(waiting)
    # already there: answered at once
    now = ask(stream, clock, "show.m3u8", _HLS_msn="1")
    assert now.finished and "1.ts" in body(now)


def test_a_first_playlist_waits_for_the_first_segment_or_15_s(stream, clock):
    first = ask(stream, clock, "show.m3u8")
    stream.feed(FPS)  # a second: no segment cut yet
    assert not first.finished
    stream.feed(1)  # the next keyframe cuts it
    assert first.finished and first.responseCode == 200 and "0.ts" in body(first)
    late = Stream()
    waiting = ask(late, clock, "show.m3u8")
    clock.advance(FIRST_SEGMENT_WAIT)
    assert waiting.finished and waiting.responseCode == 503
    assert json.loads(body(waiting))["message"] == "no segment yet: ask again shortly"
    assert late.segmenter._watching == []


def test_a_wait_ends_503_after_three_target_durations(stream, clock):
    stream.feed(FPS * 2 + 1)
    waiting = ask(stream, clock, "show.m3u8", _HLS_msn="3")
    clock.advance(hls.PART_TARGET)
    assert not waiting.finished and waiting.packager.used == 0.0
    clock.advance(3 * stream.segmenter.target - hls.PART_TARGET - 0.01)
    assert not waiting.finished
    clock.advance(0.02)
    assert waiting.finished and waiting.responseCode == 503
    assert json.loads(body(waiting))["message"] == "nothing new in time: ask again"
    assert stream.segmenter._watching == []


def test_waiting_keeps_the_stream_s_hls_in_use(stream, clock):
    stream.feed(FPS * 2 + 1)
    waiting = ask(stream, clock, "show.m3u8", _HLS_msn="3")
    clock.advance(1.0)
    stream.feed(FPS // 2)  # a part: checked again
    assert not waiting.finished and waiting.packager.used == 1.0


def test_the_hinted_part_comes_when_made_and_others_are_404(stream, clock):
    stream.feed(FPS * 2 + 1)
    hinted = ask(stream, clock, "2.0.ts")
    assert not hinted.finished
    stream.feed(FPS // 2)
    assert hinted.finished and hinted.responseCode == 200
    assert b"".join(hinted.written) == stream.segmenter.part(2, 0).data
    for missing in ("2.5.ts", "9.0.ts", "0.99.ts"):
        refused = ask(stream, clock, missing)
        assert refused.finished and refused.responseCode == 404, missing
        assert "is not (or no longer) kept" in json.loads(body(refused))["message"]


@pytest.mark.parametrize("args, message", [
    ({"_HLS_part": "1"}, "_HLS_part needs _HLS_msn"),
    ({"_HLS_msn": "x"}, "_HLS_msn must be one whole number"),
    ({"_HLS_msn": "1", "_HLS_part": "-1"}, "_HLS_part must be one whole number"),
    ({"_HLS_msn": "1234567890"}, "_HLS_msn must be one whole number"),
    ({"_HLS_msn": "4"}, "more than two segments past the playlist's last (1)"),
])
def test_bad_blocking_requests_are_400(stream, clock, args, message):
    stream.feed(FPS * 2 + 1)
    refused = ask(stream, clock, "show.m3u8", **args)
    assert refused.finished and refused.responseCode == 400
    assert message in json.loads(body(refused))["message"]


def test_a_player_that_leaves_stops_waiting_at_once(stream, clock):
    stream.feed(FPS * 2 + 1)
    waiting = ask(stream, clock, "show.m3u8", _HLS_msn="3")
    assert len(stream.segmenter._watching) == 1
    waiting._disconnected = True
    waiting.processingFailed(Failure(ConnectionError("gone")))
    assert stream.segmenter._watching == []  # its place freed, nothing written
    assert waiting.written == []


def test_a_stream_s_waiting_players_are_bounded(stream, clock, monkeypatch):
    monkeypatch.setattr(hls, "MAX_WAITING", 3)
    stream.feed(FPS * 2 + 1)
    crowd = [ask(stream, clock, "show.m3u8", _HLS_msn="3") for _ in range(3)]
    over = ask(stream, clock, "show.m3u8", _HLS_msn="3")
    assert over.finished and over.responseCode == 503
    assert "3 players already wait" in json.loads(body(over))["message"]
    assert not any(request.finished for request in crowd)


class Named:
    """Packagers that keep the names asked for, and refuse with ``refusal``."""

    def __init__(self, stream: Stream, refusal: Exception | None = None) -> None:
        self.packager = Packager("show", None, stream.segmenter, 0.0)  # type: ignore[arg-type]
        self.refusal = refusal
        self.names: list[str] = []

    def get(self, name: str, rung: str = "") -> Any:
        self.names.append(name)
        return fail(self.refusal) if self.refusal is not None else succeed(self.packager)


def hls_get(packagers: Named, path: str, method: bytes = b"GET"):
    """``path`` through the HLS port's root, as twisted.web routes it."""
    return call(HlsRoot(packagers, Clock()), path, method=method)  # type: ignore[arg-type]


def test_the_name_comes_url_encoded_as_the_sdk_sends_it(stream):
    stream.feed(FPS + 1)
    packagers = Named(stream)
    name = "vod-live%3A%2F%2Fsample.mp4"
    answer = hls_get(packagers, f"/{name}/{name}.m3u8")
    assert answer.code == 200 and packagers.names == ["vod-live://sample.mp4"]
    assert answer.header(b"content-type") == b"application/vnd.apple.mpegurl"
    assert answer.header(b"cache-control") == b"no-cache"
    assert answer.header(b"access-control-allow-origin") == b"*"
    assert answer.body.startswith(b"#EXTM3U") and b"0.ts" in answer.body


def test_a_kept_segment_is_served_and_cached_a_forgotten_one_is_404(stream):
    stream.feed(FPS * 2 + 1)
    segment = hls_get(Named(stream), "/show/1.ts")
    assert segment.code == 200 and segment.body == stream.segmenter.segment(1).data
    assert segment.header(b"content-type") == b"video/mp2t"
    assert segment.header(b"cache-control") == b"max-age=60"
    assert segment.header(b"content-length") == str(len(segment.body)).encode()
    missing = hls_get(Named(stream), "/show/9.ts")
    assert missing.code == 404 and missing.header(b"access-control-allow-origin") == b"*"
    assert missing.json()["message"] == "segment 9 is not (or no longer) kept"


def test_head_says_a_segment_s_length_without_its_bytes(stream):
    stream.feed(FPS * 2 + 1)
    head = hls_get(Named(stream), "/show/0.ts", b"HEAD")
    assert head.code == 200 and head.finished
    assert head.header(b"content-length") == str(len(stream.segmenter.segment(0).data)).encode()
    assert head.wire.endswith(b"\r\n\r\n")


@pytest.mark.parametrize("path, message", [
    ("/", "HLS is at /<streamName>/<streamName>.m3u8"),
    ("/show", "HLS is at /<streamName>/<streamName>.m3u8"),
    ("/show/", "HLS is at /<streamName>/<streamName>.m3u8"),
    ("/%ff%fe/x.m3u8", "not a stream name (UTF-8 expected)"),
    ("/show/other.m3u8", "no such HLS file: 'other.m3u8' (the playlist is show.m3u8)"),
    ("/show/../show.m3u8", "no such HLS file: '../show.m3u8'"),
    ("/show/%2e%2e%2fetc%2fpasswd", "no such HLS file: '../etc/passwd'"),
    ("/show/-1.ts", "no such HLS file"),
    ("/show/1234567890123456.ts", "no such HLS file"),
    ("/show/1.ts.ts", "no such HLS file"),
    ("/show/1.2.3.ts", "no such HLS file"),
    ("/show/1.12345.ts", "no such HLS file"),
    ("/show/show.m3u8/x", "no such HLS file"),
])
def test_any_other_path_is_a_json_404_and_no_stream_is_started(stream, path, message):
    packagers = Named(stream)
    answer = hls_get(packagers, path)
    assert answer.code == 404 and message in answer.json()["message"]
    assert packagers.names == []


def test_hls_is_read_only():
    packagers = Named(Stream())
    for method in (b"POST", b"PUT", b"DELETE"):
        answer = hls_get(packagers, "/show/show.m3u8", method)
        assert answer.code == 405 and answer.json()["message"] == "HLS is read with GET"
        assert answer.header(b"allow") == b"GET, HEAD, OPTIONS"
    preflight = hls_get(packagers, "/show/show.m3u8", b"OPTIONS")
    assert preflight.code == 204 and preflight.body == b""
    assert preflight.header(b"access-control-allow-methods") == b"GET, HEAD, OPTIONS"
    assert packagers.names == []


@pytest.mark.parametrize("refusal, status, message", [
    (NotFound(), 404, "File not found"),
    (LimitReached("broadcasts", "max_broadcasts", 2), 429, "max_broadcasts=2"),
    (InvalidName.because("'..' is not allowed"), 400, "'..' is not allowed"),
    (RuntimeError("bug"), 500, "internal error: RuntimeError"),
])
def test_a_stream_that_cannot_be_packaged_says_why(refusal, status, message):
    answer = hls_get(Named(Stream(), refusal), "/show/show.m3u8")
    assert answer.finished and answer.code == status
    assert message in answer.json()["message"]


def test_a_stream_that_ended_before_its_first_segment_is_404_saying_why(stream, clock):
    stream.segmenter.closed("File has wrong format: no video", True)
    answer = ask(stream, clock, "show.m3u8")
    assert answer.finished and answer.responseCode == 404
    assert json.loads(body(answer))["message"] == "File has wrong format: no video"
