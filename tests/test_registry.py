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
    reencoded = False
    changes_size = False

    def __init__(self, duration: float = 60.0) -> None:
        self.info = MediaInfo(duration, INFO.video, None)
        self.closed = False
        self.positions: list[float] = []  # where each reader started

    def prepare_join(self, position: float, loop: bool):
        return succeed(None)

    def pass_length(self) -> float:
        return self.info.duration

    def keyframe_time(self, position: float) -> float:
        return float(int(position))  # a keyframe every second

    def samples(self, loop: bool = False, *, period=None, position: float = 0.0,
                wants_opus=lambda: True, wants_aac=lambda: True):
        self.positions.append(position)
        self.wants_opus = wants_opus
        self.wants_aac = wants_aac
        for n in range(int(position * 30) // 30 * 30, 100_000):  # from the keyframe before
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


def two_workers():
    """Two registries sharing one store: two workers of one server."""
    from wcs.cluster.directory import LocalDirectory
    from wcs.cluster.store import Store

    store, clock = Store(), Clock()
    clock.advance(1000.0)
    registries = [StreamRegistry(FakeSources(), clock, timeout=30.0,
                                 directory=LocalDirectory(store, worker))
                  for worker in ("a", "b")]
    return registries, store, clock


def test_a_second_worker_joins_the_broadcast_where_it_is_now():
    (a, b), store, clock = two_workers()
    first = result(a.open("vod-live://./a.mp4"))
    early = Viewer()
    first.subscribe(early)
    clock.advance(5.0)
    second = result(b.open("vod-live://a.mp4"))
    assert second is not first and second.id == first.id and second.start == first.start
    late = Viewer()
    second.subscribe(late)
    for _ in range(20):
        clock.advance(0.05)
    assert late.got[0].keyframe and late.got[0].time == 5.0  # its GOP, not the file's start
    assert late.got[-1].time == pytest.approx(early.got[-1].time, abs=0.04)  # same moment
    a.queries.report()
    b.queries.report()
    [entry] = result(b.queries.entries())
    assert entry.viewers == {"a": 1, "b": 1} and entry.total_viewers == 2


def test_names_and_terminations_are_the_whole_servers():
    (a, b), store, clock = two_workers()
    show = result(a.startup("vod-live://a.mp4", "show"))
    assert result(b.startup("vod-live://b.mp4", "show")).check(NameTaken)
    assert result(b.publish("show", INFO, lambda: None)).check(NameTaken)
    there = result(b.open("show"))  # b reads a's REST-started broadcast itself
    assert there.id == show.id and not there.persistent
    viewers = [Viewer(), Viewer()]
    show.subscribe(viewers[0])
    there.subscribe(viewers[1])
    assert result(b.available("show")) == (True, "Available")
    assert [e.name for e in result(b.queries.entries(name="show"))] == ["show"]
    result(b.queries.terminate(result(b.queries.entries(name="show")), "Stopped by server"))
    assert [v.ended for v in viewers] == [("Stopped by server", False)] * 2
    assert a.streams == {} and b.streams == {} and store.entries == {}
    assert result(b.open("show")).check(NotFound)


def test_a_broadcast_outlives_its_last_viewer_anywhere_by_the_timeout():
    (a, b), store, clock = two_workers()
    on_a, on_b = result(a.open("vod-live://a.mp4")), None
    viewer_a, viewer_b = Viewer(), Viewer()
    on_a.subscribe(viewer_a)
    clock.advance(2.0)
    on_b = result(b.open("vod-live://a.mp4"))
    on_b.subscribe(viewer_b)
    on_a.unsubscribe(viewer_a)
    clock.advance(31.0)  # a's copy is released; b's viewer keeps the broadcast
    assert on_a.closed and not on_b.closed and len(store.entries) == 1
    again = result(a.open("vod-live://a.mp4"))
    assert again.start == on_b.start  # back on the same timeline
    again.unsubscribe(None)
    on_b.unsubscribe(viewer_b)
    clock.advance(31.0)
    assert store.entries == {}


def test_names_that_do_not_answer_are_a_clear_refusal():
    """The supervisor or Redis gone: plays and startups are refused, saying so."""
    from twisted.internet.error import ConnectionLost

    from wcs.cluster.directory import LocalDirectory
    from wcs.errors import ClusterUnavailable

    class Gone(LocalDirectory):
        def live(self, entry):
            return fail(ConnectionLost("Connection to the other side was lost"))

        claim = lookup = live

    sources, clock = FakeSources(), Clock()
    registry = StreamRegistry(sources, clock, directory=Gone())
    for refused in (registry.open("vod-live://a.mp4"), registry.open("show"),
                    registry.open("vod://a.mp4"), registry.startup("vod-live://a.mp4", "s")):
        failure = result(refused)
        assert failure.check(ClusterUnavailable), failure
        assert failure.value.info.startswith("Cluster unavailable: the server's stream names")
    assert all(media.closed for media in sources.media)  # nothing opened is kept
    assert registry.streams == {} and registry._opening == {} and registry._starting == set()


@pytest.mark.parametrize("worker, carried", [("1.1", False), ("node-a/1.1", True)])
def test_media_sessions_ride_the_load_only_to_other_nodes(worker, carried):
    """On one machine the workers ask each other for their plays; a node of a
    cluster carries them in its load for the others (a second's list of every
    session was 5 % of a busy worker, for nobody)."""
    from wcs.cluster.directory import LocalDirectory
    from wcs.cluster.store import Store
    from wcs.streams.media_sessions import MediaSession

    store = Store()
    registry = StreamRegistry(FakeSources(), Clock(), directory=LocalDirectory(store, worker))
    registry.media.add(MediaSession("m1", "cam", False, "WebRTC", "s1"), lambda _: None,
                       lambda: None)
    registry.queries.report(cpu=0.25)
    [load] = store.loads()
    assert load.worker == worker and load.cpu == 0.25
    assert [media["id"] for media in load.media] == (["m1"] if carried else [])
