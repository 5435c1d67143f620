"""One publication on its own, against a fake publisher, recorder, registry and
pushes, with a real published stream: the statuses a page sees (PUBLISHING
with its record name, UNPUBLISHED after the file), refusals and their infos,
a push started from ``rtmpUrl``, and what is let go of, once."""

from __future__ import annotations

import json

import pytest
from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.task import Clock

from tests.test_packetizer import encode_h264
from wcs.errors import (
    ICE_FAILED,
    INTERNAL_ERROR,
    BadRequest,
    NameTaken,
    NegotiationError,
    RecordingFailed,
)
from wcs.media.sample import MediaInfo, Sample, VideoInfo
from wcs.signalling.messages import StreamRequest
from wcs.signalling.negotiation import ICE_TIMEOUT
from wcs.signalling.publishing import Publication
from wcs.signalling.session import Session
from wcs.streams.stream import PublishedStream

INFO = MediaInfo(0.0, VideoInfo(0, 0, 0.0, "42e01f"), None)


class FakePublisher:
    connect_deadline = (20.0, "Failed by ICE timeout")
    def __init__(self, on_sample, on_state, answer: Deferred) -> None:
        self.on_sample, self.on_state = on_sample, on_state
        self.answer_with = answer
        self.info: MediaInfo | None = None
        self.calls: list[str] = []

    def answer(self, sdp: str) -> Deferred:
        self.info = INFO
        return self.answer_with

    def request_keyframe(self) -> None:
        self.calls.append("keyframe")

    def flush(self) -> None:
        self.calls.append("flush")
        self.on_sample(Sample("audio", b"tail", 960, 48000, 0.02, codec="aac"))

    def close(self) -> None:
        self.calls.append("close")


class FakeRecorder:
    pressed_join = True
    lead = 0.0

    def __init__(self, on_state) -> None:
        self.name = "cam-1.mp4"
        self.on_state = on_state
        self.completed: Deferred = Deferred()
        self.got: list[Sample] = []
        self.ended = None

    def deliver(self, sample: Sample) -> None:
        self.got.append(sample)

    def keyframe_wanted(self) -> bool:
        return not self.got

    def closed(self, info, failed) -> None:
        self.ended = (info, failed)


class FakeTransports:
    def __init__(self) -> None:
        self.publishers: list[FakePublisher] = []
        self.recorders: list[FakeRecorder] = []
        self.answer: Deferred = succeed("v=0 answer")

    def publisher(self, label, on_sample, on_state, tcp_only=False) -> FakePublisher:
        self.publishers.append(FakePublisher(on_sample, on_state, self.answer))
        return self.publishers[-1]

    def recorder(self, name, media_session_id, info, on_state) -> FakeRecorder:
        self.recorders.append(FakeRecorder(on_state))
        return self.recorders[-1]


class FakeRegistry:
    """Hands out real published streams; ``taken`` names are refused."""

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self.streams: list[PublishedStream] = []
        self.waiting: Deferred | None = None  # set: publish answers when it fires
        self.gone: list[PublishedStream] = []

    def check_publishable(self, name: str) -> None:
        if name == "taken":
            raise NameTaken("Stream 'taken' is already being published", name)

    def publish(self, name: str, info: MediaInfo, request_keyframe) -> Deferred:
        stream = PublishedStream(name, info, request_keyframe, self.gone.append, self.clock)
        self.streams.append(stream)
        if self.waiting is not None:
            return self.waiting.addCallback(lambda _: stream)
        return succeed(stream)


class FakePushes:
    def __init__(self, answer: Deferred | None = None) -> None:
        self.started: list[tuple] = []
        self.answer = answer

    def start(self, name: str, url: str, session_id: str) -> Deferred:
        self.started.append((name, url, session_id))
        return self.answer if self.answer is not None else succeed(object())


class World:
    def __init__(self, record: bool = False, rtmp_url: str = "", name: str = "cam") -> None:
        self.frames: list[dict] = []
        self.session = Session(
            lambda text: self.frames.append(json.loads(text)), lambda reason: None, None
        )
        self.transports = FakeTransports()
        self.clock = Clock()
        self.registry = FakeRegistry(self.clock)
        self.done: list = []
        request = StreamRequest(
            "p1", name, published=True, record=record, sdp="v=0 offer", rtmp_url=rtmp_url
        )
        self.publication = Publication(
            self.session, request, self.transports, self.clock, self.done.append
        )

    def start(self) -> FakePublisher | None:
        self.publication.start(self.registry)
        return self.transports.publishers[-1] if self.transports.publishers else None

    def statuses(self) -> list[tuple]:
        return [
            (f["data"][0]["status"], f["data"][0].get("info"), f["data"][0].get("recordName"))
            for f in self.frames
            if f["message"] == "notifyStreamStatusEvent"
        ]

    def answers(self) -> list[list]:
        return [f["data"] for f in self.frames if f["message"] == "setRemoteSDP"]


def keyframe() -> Sample:
    return Sample("video", encode_h264(1)[0], 0, 90000, 0.0, True, "h264")  # 160x96


def test_a_publication_answers_then_publishes_when_connected():
    world = World()
    publisher = world.start()
    assert world.answers() == [["p1", "v=0 answer"]] and world.statuses() == []
    [stream] = world.registry.streams
    assert stream.name == "cam" and stream.info == INFO
    publisher.on_state("connected", None)
    assert world.statuses() == [("PUBLISHING", None, None)]
    assert world.publication.media.status == "PUBLISHING"
    world.clock.advance(ICE_TIMEOUT * 2)
    assert world.statuses()[-1][0] == "PUBLISHING"  # the deadline was disarmed


def test_a_name_that_cannot_be_published_fails_before_any_peer():
    world = World(name="taken")
    assert world.start() is None
    assert world.statuses() == [("FAILED", "Stream 'taken' is already being published", None)]
    assert world.done == [world.publication] and world.registry.streams == []


def test_a_page_that_never_connects_fails_by_ice_timeout_and_unregisters():
    world = World()
    publisher = world.start()
    world.clock.advance(ICE_TIMEOUT + 0.1)
    assert world.statuses() == [("FAILED", ICE_FAILED, None)]
    assert publisher.calls == ["flush", "close"]
    assert world.registry.gone == world.registry.streams  # the name is free again


@pytest.mark.parametrize(
    "error, info",
    [
        (
            NegotiationError("Publishing needs H.264 or VP8 video; the offer has neither"),
            "Publishing needs H.264 or VP8 video; the offer has neither",
        ),
        (ValueError("aiortc: bad m-line 3"), INTERNAL_ERROR),
    ],
)
def test_an_offer_that_cannot_be_answered_fails_with_its_info(error, info):
    world = World()
    world.transports.answer = fail(error)
    world.start()
    assert world.statuses() == [("FAILED", info, None)] and world.answers() == []
    assert world.registry.streams == []


def test_a_page_that_left_while_the_name_was_asked_for_ends_the_stream_it_got():
    world = World()
    world.registry.waiting = Deferred()
    world.start()
    world.publication.end(None, None)  # the session went
    world.registry.waiting.callback(None)
    [stream] = world.registry.streams
    assert stream.closed and stream.ending == ("Stopped by publisher stop", False)
    assert world.answers() == [] and world.statuses() == []


def test_samples_before_the_stream_exists_are_dropped_and_after_reach_its_viewers():
    world = World()
    world.registry.waiting = Deferred()
    publisher = world.start()
    publisher.on_sample(keyframe())  # no stream yet: nowhere to go, no error
    world.registry.waiting.callback(None)
    [stream] = world.registry.streams
    assert not stream.broadcast.has_gop()
    publisher.on_sample(keyframe())
    assert stream.broadcast.has_gop()
    # the keyframe's SPS tells the size, and the listing follows it
    assert (world.publication.media.width, world.publication.media.height) == (160, 96)


def test_a_stream_whose_fan_out_broke_fails_the_publication():
    world = World()
    publisher = world.start()
    publisher.on_state("connected", None)
    stream = world.registry.streams[0]

    def broken(sample):
        raise RuntimeError("fan-out bug")

    stream.broadcast.send = broken
    publisher.on_sample(keyframe())
    assert world.statuses()[-1] == ("FAILED", INTERNAL_ERROR, None)
    assert "close" in publisher.calls


def test_a_lost_peer_fails_with_its_info_once():
    world = World()
    publisher = world.start()
    publisher.on_state("connected", None)
    publisher.on_state("failed", "Failed by peer connection: the publisher's connection was lost")
    publisher.on_state("failed", "again")
    assert world.statuses()[1:] == [
        ("FAILED", "Failed by peer connection: the publisher's connection was lost", None)
    ]
    assert world.done == [world.publication]


def test_a_publisher_that_closed_its_connection_is_unpublished():
    world = World()
    publisher = world.start()
    publisher.on_state("connected", None)
    publisher.on_state("stopped", None)
    assert world.statuses()[1:] == [("UNPUBLISHED", None, None)]
    assert world.done == [world.publication]


def test_a_recording_is_subscribed_before_the_answer_and_named_in_every_status():
    world = World(record=True)
    publisher = world.start()
    [recorder] = world.transports.recorders
    publisher.on_sample(keyframe())  # media may come before ICE says connected
    assert recorder.got and recorder.got[0].keyframe  # subscribed before the first frame
    publisher.on_state("connected", None)
    assert world.statuses() == [("PUBLISHING", None, "cam-1.mp4")]
    world.publication.end("UNPUBLISHED", None)
    # the publisher's tail went in first, then the stream ended; the page waits for the file
    # (the recorder, subscribed with no GOP cached, had the page asked for a keyframe)
    assert publisher.calls == ["keyframe", "flush", "close"]
    assert recorder.got[-1].data == b"tail"
    assert recorder.ended == ("Stopped by publisher stop", False)
    assert world.statuses()[-1][0] == "PUBLISHING"
    recorder.completed.callback("cam-1.mp4")
    assert world.statuses()[-1] == ("UNPUBLISHED", None, "cam-1.mp4")
    assert world.done == [world.publication]


def test_a_recorder_that_fails_fails_the_publication_with_its_reason():
    world = World(record=True)
    publisher = world.start()
    publisher.on_state("connected", None)
    recorder = world.transports.recorders[0]
    recorder.on_state("failed", "Recording failed: No space left on device")
    recorder.completed.errback(RecordingFailed("Recording failed: No space left on device"))
    assert world.statuses()[-1] == ("FAILED", "Recording failed: No space left on device", None)


def test_an_rtmp_url_starts_a_push_once_connected_under_the_pages_session():
    world = World(rtmp_url="rtmp://127.0.0.1/live")
    pushes = world.publication.pushes = FakePushes()
    publisher = world.start()
    assert pushes.started == []  # not before the page's media flows
    publisher.on_state("connected", None)
    assert pushes.started == [("cam", "rtmp://127.0.0.1/live", world.session.id)]
    assert world.statuses() == [("PUBLISHING", None, None)]


def test_with_an_rtmp_url_publishing_is_said_once_the_push_is_listed():
    """REST push/find, on any worker, finds the push from the moment the page
    hears PUBLISHING (CI once asked in between and got 404)."""
    world = World(rtmp_url="rtmp://127.0.0.1/live")
    listed: Deferred = Deferred()
    world.publication.pushes = FakePushes(listed)
    world.start().on_state("connected", None)
    assert world.statuses() == []
    listed.callback(object())
    assert world.statuses() == [("PUBLISHING", None, None)]


def test_without_an_rtmp_url_no_push():
    world = World()
    pushes = world.publication.pushes = FakePushes()
    world.start().on_state("connected", None)
    assert pushes.started == []


@pytest.mark.parametrize(
    "error, info",
    [
        (
            BadRequest("'rtmpUrl' 'rtmp://x': give rtmp://host[:port]/application"),
            "'rtmpUrl' 'rtmp://x': give rtmp://host[:port]/application",
        ),
        (RuntimeError("bug in pushes"), INTERNAL_ERROR),
    ],
)
def test_a_push_refused_at_once_fails_the_publication(error, info):
    world = World(rtmp_url="rtmp://x")
    world.publication.pushes = FakePushes(fail(error))
    publisher = world.start()
    publisher.on_state("connected", None)
    assert world.statuses() == [("FAILED", info, None)]  # it never got to publish as asked
    assert "close" in publisher.calls and world.registry.streams[0].closed
