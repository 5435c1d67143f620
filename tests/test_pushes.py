"""The worker's pushes on a fake clock with a fake registry: each a media
session of provider RTMP, refused before anything opens for a bad URL, a cap
or a duplicate; the whole server's slot taken once and given back once; an
ended push listed with its status for a minute."""

from __future__ import annotations

import pytest
from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport

from wcs.errors import BadRequest, LimitReached, NameTaken, NotFound
from wcs.media.sample import AudioInfo, MediaInfo, VideoInfo
from wcs.push.pushes import KEEP_ENDED, REST_SESSION, Pushes
from wcs.streams.media_sessions import MediaSessions

INFO = MediaInfo(10.0, VideoInfo(640, 360, 30.0, "42e01f"), AudioInfo(44100, 2, b"\x12\x10"))
URL = "rtmp://127.0.0.1:1935/live"


class FakeStream:
    def __init__(self, name: str) -> None:
        self.name = name
        self.info = INFO
        self.subscribers: list = []
        self.keyframes_asked = 0

    def subscribe(self, subscriber) -> None:
        self.subscribers.append(subscriber)

    def unsubscribe(self, subscriber) -> None:
        self.subscribers.remove(subscriber)

    def request_keyframe(self) -> None:
        self.keyframes_asked += 1


class FakeRegistry:
    """Streams by name; ``slow`` names wait to be released; ``absent.mp4`` is not there."""

    def __init__(self) -> None:
        self.queries = self.snapshots = self  # the registry's parts, played by the fake
        self.media = MediaSessions()
        self.streams: dict[str, FakeStream] = {}
        self.opened: list[str] = []
        self.slow: list[Deferred] = []

    def media_sessions(self, name: str) -> Deferred:
        return succeed([m for m in self.media.all() if m.name == name])

    def open(self, name: str) -> Deferred:
        self.opened.append(name)
        if name == "absent.mp4":
            return fail(NotFound())
        stream = self.streams.setdefault(name, FakeStream(name))
        if name.startswith("slow"):
            waiting: Deferred = Deferred()
            self.slow.append(waiting)
            return waiting.addCallback(lambda _: stream)
        return succeed(stream)


class CountingSlots:
    """The supervisor's count of the whole server's pushes."""

    def __init__(self, free: int = 100) -> None:
        self.free = free
        self.taken = self.given = 0

    def take(self, kind: str) -> Deferred:
        assert kind == "push"
        if self.free <= 0:
            return succeed("Limit reached: streams pushed to RTMP (max_pushes=1)")
        self.free -= 1
        self.taken += 1
        return succeed("")

    def give(self, kind: str) -> None:
        assert kind == "push"
        self.free += 1
        self.given += 1


class World:
    def __init__(self, max_pushes: int = 100, slots: CountingSlots | None = None) -> None:
        self.clock = Clock()
        self.registry = FakeRegistry()
        self.slots = slots or CountingSlots()
        self.connects: list = []
        self.pushes = Pushes(
            self.registry, self.clock, max_pushes=max_pushes, connect=self.connect, slots=self.slots
        )

    def connect(self, reactor, rtmp, protocol) -> Deferred:
        self.connects.append(rtmp)
        protocol.makeConnection(StringTransport())
        return succeed(protocol)


def result(deferred: Deferred):
    out: list = []
    deferred.addBoth(out.append)
    assert out, "the Deferred has not fired"
    return out[0]


def refusal(deferred: Deferred, kind: type) -> str:
    failure = result(deferred)
    assert failure.check(kind), failure
    return failure.value.info


def test_a_push_is_a_listed_rtmp_media_session_subscribed_to_its_stream():
    world = World()
    media = result(world.pushes.start("show", URL))
    assert (media.name, media.provider, media.session_id, media.rtmp_url) == (
        "show",
        "RTMP",
        REST_SESSION,
        URL,
    )
    assert not media.published and media.status == "PENDING"
    assert (media.width, media.height, media.has_audio) == (640, 360, True)
    assert world.registry.media.all() == [media]
    stream = world.registry.streams["show"]
    push, held = world.pushes.active[media.id]
    assert held is stream and stream.subscribers == [push]
    [rtmp] = world.connects  # WCS's key: the prefix and the stream's name
    assert (rtmp.host, rtmp.port, rtmp.app, rtmp.key) == ("127.0.0.1", 1935, "live", "rtmp_show")
    assert world.slots.taken == 1


def test_a_publications_push_is_listed_under_its_session():
    world = World()
    media = result(world.pushes.start("cam", URL, session_id="session-1"))
    assert media.session_id == "session-1"


@pytest.mark.parametrize(
    "url, info",
    [
        ("http://example.com/live", "only rtmp:// and rtmps:// URLs are supported"),
        ("rtmp://example.com", "give rtmp://host[:port]/application"),
        ("rtmp://example.com:port/live", "the port is not a number"),
        ("rtmp://example.com/live\n", "must be an rtmp:// or rtmps:// URL"),
        ("rtmp://example.com/" + "a" * 3000, "must be an rtmp:// or rtmps:// URL"),
    ],
)
def test_a_bad_url_is_refused_before_anything_is_opened_or_counted(url, info):
    world = World()
    assert info in refusal(world.pushes.start("show", url), BadRequest)
    assert world.registry.opened == [] and world.slots.taken == 0 and world.connects == []


def test_this_workers_cap_counts_running_pushes_and_those_still_opening():
    world = World(max_pushes=2)
    result(world.pushes.start("a", URL))
    opening = world.pushes.start("slow", URL)
    assert refusal(world.pushes.start("c", URL), LimitReached) == (
        "Limit reached: streams pushed to RTMP (max_pushes=2)"
    )
    assert world.registry.opened == ["a", "slow"]
    world.registry.slow[0].callback(None)
    assert result(opening).name == "slow" and len(world.pushes.active) == 2


def test_the_whole_servers_cap_refuses_with_the_key_and_takes_nothing():
    world = World(slots=CountingSlots(free=0))
    info = refusal(world.pushes.start("show", URL), LimitReached)
    assert "max_pushes=100" in info  # this worker's value, the key the operator sets
    assert world.registry.opened == [] and world.slots.given == 0
    world.slots.free = 1  # one ended elsewhere: this worker's own count is back to 0
    assert result(world.pushes.start("show", URL)).status == "PENDING"


def test_the_same_name_to_the_same_url_twice_is_refused_and_its_slot_given_back():
    world = World()
    result(world.pushes.start("show", URL))
    info = refusal(world.pushes.start("show", URL), NameTaken)
    assert info == f"'show' is already pushed to {URL}"
    assert (world.slots.taken, world.slots.given) == (2, 1)
    other = result(world.pushes.start("show", "rtmp://127.0.0.1/other"))
    assert other.rtmp_url == "rtmp://127.0.0.1/other" and len(world.pushes.active) == 2


def test_a_stream_that_cannot_open_fails_the_push_and_gives_its_slot_back():
    world = World(max_pushes=1)
    assert refusal(world.pushes.start("absent.mp4", URL), NotFound) == "File not found"
    assert (world.slots.taken, world.slots.given) == (1, 1)
    assert world.pushes.active == {} and world.registry.media.all() == []
    assert result(world.pushes.start("show", URL)).status == "PENDING"  # not counted still


def test_an_ended_push_leaves_its_stream_and_stays_listed_for_a_while():
    world = World()
    media = result(world.pushes.start("show", URL))
    stream = world.registry.streams["show"]
    assert world.registry.media.stop(media.id, "Stopped by REST") == 1
    assert (media.status, media.info) == ("STOPPED", "Stopped by REST")
    assert world.pushes.active == {} and stream.subscribers == []
    assert world.slots.given == 1
    world.clock.advance(KEEP_ENDED - 1)
    assert world.registry.media.all() == [media]  # still there, with why it ended
    world.clock.advance(1)
    assert world.registry.media.all() == []


def test_a_stopped_push_may_start_again_to_the_same_url():
    world = World()
    media = result(world.pushes.start("show", URL))
    world.registry.media.stop(media.id, "Stopped by REST")
    again = result(world.pushes.start("show", URL))  # the ended one is listed, not running
    assert again.id != media.id and again.status == "PENDING"


def test_the_streams_end_ends_the_push_once():
    world = World()
    media = result(world.pushes.start("show", URL))
    push, _ = world.pushes.active[media.id]
    push.closed("Stream ended", failed=True)
    push.closed("Stream ended", failed=True)
    assert (media.status, media.info) == ("FAILED", "Stream ended")
    assert world.slots.given == 1


def test_stopping_the_service_stops_every_push():
    world = World()
    world.pushes.startService()
    made = [result(world.pushes.start(name, URL)) for name in ("a", "b")]
    world.pushes.stopService()
    assert [(m.status, m.info) for m in made] == [("STOPPED", "Server stopped")] * 2
    assert world.pushes.active == {} and world.slots.given == 2
