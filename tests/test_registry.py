"""The registry's lifecycles on a fake clock with fake sources: one broadcast
per live name, a stream per personal play, names, timeouts, published streams."""

from __future__ import annotations

import posixpath

import pytest
from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.task import Clock

from wcs.errors import InvalidName, NameTaken, NotFound, Unsupported, WrongFormat
from wcs.media.sample import MediaInfo, Sample, VideoInfo
from wcs.streams.registry import StreamRegistry

INFO = MediaInfo(duration=60.0, video=VideoInfo(640, 360, 30.0, "4d401e"), audio=None)


class FakeMedia:
    def __init__(self, duration: float = 60.0) -> None:
        self.info = MediaInfo(duration, INFO.video, None)
        self.closed = False

    seekable = True

    def pass_length(self) -> float:
        return self.info.duration

    def samples(self, loop: bool = False, *, period=None, position: float = 0.0):
        for n in range(int(position * 30), 100_000):
            yield Sample("video", b"v", n * 3000, 90000, n / 30, keyframe=n % 30 == 0)

    def ready(self) -> bool:
        return True

    def close(self) -> None:
        self.closed = True


class FakeSources:
    """Files that exist open at once; names under ``slow/`` wait to be released."""

    def __init__(self) -> None:
        self.opened: list[str] = []
        self.media: list[FakeMedia] = []
        self.slow: list[Deferred] = []

    def open(self, location: str, label: str) -> Deferred:
        self.opened.append(location)
        if location == "bad.mp4":
            return fail(WrongFormat("not an MP4 file"))
        if location == "absent.mp4":
            return fail(NotFound())
        media = FakeMedia(duration=5.0 if location == "short.mp4" else 60.0)
        self.media.append(media)
        if location.startswith("slow/"):
            waiting: Deferred = Deferred()
            self.slow.append(waiting)
            return waiting.addCallback(lambda _: media)
        return succeed(media)

    def canonical(self, location: str) -> str:
        if location == "absent.mp4":
            raise NotFound()
        return posixpath.normpath(location)

    def check(self, location: str) -> Deferred:
        if location == "absent.mp4":
            return fail(NotFound())
        return succeed("Available")


class Viewer:
    pressed_join = True

    def __init__(self) -> None:
        self.got: list[Sample] = []
        self.ended: tuple | None = None

    def deliver(self, sample: Sample) -> None:
        self.got.append(sample)

    def keyframe_wanted(self) -> bool:
        return not self.got

    def closed(self, info, failed) -> None:
        self.ended = (info, failed)


@pytest.fixture
def world():
    sources, clock = FakeSources(), Clock()
    return StreamRegistry(sources, clock, loop=False, timeout=30.0), sources, clock


def result(deferred: Deferred):
    out: list = []
    deferred.addBoth(out.append)
    assert out, "the Deferred has not fired"
    return out[0]


def test_personal_streams_are_one_per_play_and_end_with_their_viewer(world):
    registry, sources, clock = world
    first, second = result(registry.open("vod://a.mp4")), result(registry.open("vod://a.mp4"))
    assert first is not second and sources.opened == ["a.mp4", "a.mp4"]
    viewer = Viewer()
    first.subscribe(viewer)
    clock.advance(0.5)
    assert viewer.got and viewer.got[0].keyframe
    first.unsubscribe(viewer)
    assert first.closed and sources.media[0].closed and first.id not in registry.streams


def test_a_live_name_is_one_broadcast_opened_once(world):
    registry, sources, _ = world
    streams = [result(registry.open("vod-live://a.mp4")) for _ in range(3)]
    assert streams[0] is streams[1] is streams[2] and sources.opened == ["a.mp4"]
    assert registry.find(name="vod-live://a.mp4") == [streams[0]]


def test_viewers_of_a_live_name_that_is_still_opening_share_it(world):
    registry, sources, _ = world
    waits = [registry.open("vod-live://slow/a.mp4") for _ in range(3)]
    assert not any(w.called for w in waits) and sources.opened == ["slow/a.mp4"]
    sources.slow[0].callback(None)
    streams = [result(w) for w in waits]
    assert streams[0] is streams[1] is streams[2]


def test_a_source_that_fails_fails_every_waiting_viewer(world):
    registry, sources, _ = world
    sources_open = sources.open

    def failing_later(location, label):
        return sources_open("slow/x.mp4", label).addCallback(
            lambda _: (_ for _ in ()).throw(WrongFormat("no moov box")))

    sources.open = failing_later
    waits = [registry.open("vod-live://x.mp4") for _ in range(2)]
    sources.slow[0].callback(None)
    failures = [result(w) for w in waits]
    assert all(f.check(WrongFormat) for f in failures)
    assert registry.live == {} and registry._opening == {}


@pytest.mark.parametrize("name, error, info", [
    ("vod://absent.mp4", NotFound, "File not found"),
    ("vod://bad.mp4", WrongFormat, "File has wrong format: not an MP4 file"),
    ("rtsp://x", Unsupported, "Unsupported stream scheme 'rtsp'"),
    ("nothing", NotFound, "Stream not found"),
])
def test_what_cannot_be_opened_fails_with_a_typed_error(world, name, error, info):
    registry, _, _ = world
    failure = result(registry.open(name))
    assert failure.check(error) and failure.value.info == info


def test_a_live_stream_outlives_its_last_viewer_by_the_timeout(world):
    registry, sources, clock = world
    stream = result(registry.open("vod-live://a.mp4"))
    viewer = Viewer()
    stream.subscribe(viewer)
    stream.unsubscribe(viewer)
    clock.advance(29.0)
    assert not stream.closed
    again = Viewer()
    stream.subscribe(again)  # a viewer within the window keeps it
    stream.unsubscribe(again)
    clock.advance(29.0)
    assert not stream.closed
    clock.advance(1.5)
    assert stream.closed and sources.media[0].closed and registry.live == {}


def test_a_short_file_ends_with_its_last_viewer(world):
    registry, _, _ = world
    stream = result(registry.open("vod-live://short.mp4"))
    viewer = Viewer()
    stream.subscribe(viewer)
    stream.unsubscribe(viewer)
    assert stream.closed


def test_startup_is_for_live_vod_under_a_free_valid_name(world):
    registry, _, clock = world
    stream = result(registry.startup("vod-live://a.mp4", "show", loop=True))
    assert stream.loop and stream.persistent and result(registry.open("show")) is stream
    clock.advance(120)
    assert not stream.closed  # runs without viewers
    assert result(registry.startup("vod-live://b.mp4", "show")).check(NameTaken)
    assert result(registry.startup("vod://a.mp4", "x")).check(Unsupported)
    assert result(registry.startup("vod-live://a.mp4", "a://b")).check(InvalidName)
    assert result(registry.startup("vod-live://absent.mp4", "y")).check(NotFound)


def test_published_streams_by_name(world):
    registry, _, _ = world
    asked = []
    stream = result(registry.publish("cam", INFO, lambda: asked.append(True)))
    taken = result(registry.publish("cam", INFO, lambda: None))
    assert taken.check(NameTaken)
    assert taken.value.info == "Stream 'cam' is already being published"
    with pytest.raises(InvalidName):
        registry.check_publishable("bad://name")
    assert result(registry.open("cam")) is stream
    viewer = Viewer()
    stream.subscribe(viewer)
    assert asked == [True]  # no keyframe cached: the publisher is asked for one
    stream.send(Sample("video", b"k", 0, 90000, 0.0, keyframe=True))
    stream.subscribe(Viewer())
    assert asked == [True]  # a keyframe is cached now
    stream.terminate("Stopped by publisher stop")
    assert viewer.ended == ("Stopped by publisher stop", False)
    assert result(registry.open("cam")).check(NotFound)
    registry.check_publishable("cam")


def test_available(world):
    registry, _, _ = world
    result(registry.open("vod-live://a.mp4"))
    assert result(registry.available("vod-live://a.mp4")) == (True, "Available")
    assert result(registry.available("vod://b.mp4")) == (True, "Available")
    assert result(registry.available("vod://absent.mp4")) == (False, "File not found")
    assert result(registry.available("nothing")) == (False, "Stream not found")
    assert result(registry.available("rtsp://x")) == (False, "Unsupported stream scheme 'rtsp'")


def test_close_all_stops_every_viewer(world):
    registry, _, _ = world
    viewers = [Viewer(), Viewer()]
    result(registry.open("vod-live://a.mp4")).subscribe(viewers[0])
    result(registry.publish("cam", INFO, lambda: None)).subscribe(viewers[1])
    registry.close_all()
    assert [v.ended for v in viewers] == [("Server shutdown", False)] * 2
    assert registry.streams == {} and registry.published == {}


def test_every_alias_of_a_file_is_one_broadcast(world):
    registry, sources, _ = world
    streams = [result(registry.open(name)) for name in
               ("vod-live://a.mp4", "vod-live://./a.mp4", "vod-live://.//a.mp4")]
    assert streams[0] is streams[1] is streams[2] and sources.opened == ["a.mp4"]
    assert streams[0].name == "vod-live://a.mp4"


def test_rest_and_websocket_share_a_files_broadcast(world):
    registry, sources, _ = world
    show = result(registry.startup("vod-live://./a.mp4", "show"))
    assert str(show.uri) == "vod-live://a.mp4"
    assert result(registry.open("vod-live://a.mp4")) is show
    assert result(registry.open("vod-live://.//a.mp4")) is show
    assert sources.opened == ["a.mp4"]
    # an operator may still run another, named broadcast of the file (looping, say)
    other = result(registry.startup("vod-live://a.mp4", "other", loop=True))
    assert other is not show and result(registry.open("vod-live://a.mp4")) is show


def test_a_startup_still_opening_holds_its_name_and_leaves_waiting_plays_alone(world):
    registry, sources, _ = world
    play = registry.open("vod-live://slow/a.mp4")
    show = registry.startup("vod-live://slow/a.mp4", "show")
    assert isinstance(result(registry.startup("vod-live://b.mp4", "show")).value, NameTaken)
    for waiting in sources.slow:
        waiting.callback(None)
    assert result(play).name == "vod-live://slow/a.mp4" and result(show).name == "show"
    assert "show" not in registry._starting


def test_a_viewer_arriving_after_a_terminate_hears_how_it_ended(world):
    """One still connecting when REST terminates the stream gets STOPPED with the
    reason, as the others did, not 'Stream not found'."""
    registry, _, _ = world
    show = result(registry.startup("vod-live://a.mp4", "show"))
    show.terminate("Stopped by server")
    late = Viewer()
    show.subscribe(late)
    assert late.ended == ("Stopped by server", False)
