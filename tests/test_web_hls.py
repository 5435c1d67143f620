"""The HLS port's LL-HLS waits on a fake clock: a blocking reload answered once
its part is made or after three target durations, the hinted part, refusals,
and players that leave or crowd a stream."""

from __future__ import annotations

import json
from typing import Any

import pytest
from twisted.internet.defer import succeed
from twisted.internet.task import Clock
from twisted.python.failure import Failure
from twisted.web.test.requesthelper import DummyRequest

from wcs.hls import segmenter as hls
from wcs.hls.packagers import Packager
from wcs.hls.segmenter import Segmenter
from wcs.media.sample import MediaInfo, Sample, VideoInfo
from wcs.web.hls import FIRST_SEGMENT_WAIT, HlsFile

FPS = 30


class Packagers:
    def __init__(self, packager: Packager) -> None:
        self.packager = packager

    def get(self, name: str) -> Any:
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
