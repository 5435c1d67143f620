"""One play on its own, against a fake player and a fake (or a real published)
stream: the statuses and frames a page sees, its resize events, its deadline,
and what it lets go of, once, however the end comes."""

from __future__ import annotations

import json

import pytest
from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.task import Clock

from tests.test_packetizer import encode_h264
from wcs.errors import ICE_FAILED, INTERNAL_ERROR, NegotiationError
from wcs.media.sample import MediaInfo, Sample, VideoInfo
from wcs.signalling.messages import StreamRequest
from wcs.errors import ICE_TIMEOUT
from wcs.signalling.playing import Playback
from wcs.signalling.session import Session
from wcs.streams.stream import PublishedStream

INFO = MediaInfo(60.0, VideoInfo(640, 360, 30.0, "42e01f"), None)


class FakePlayer:
    def __init__(self, on_state, answer: Deferred) -> None:
        self.on_state = on_state
        self.answer_with = answer
        self.offers: list[str] = []
        self.was_answered = 0
        self.closes = 0
        self.connect_deadline = (ICE_TIMEOUT, ICE_FAILED)
        self.on_keyframe_request = None
        self.got: list[Sample] = []

    def answer(self, sdp: str) -> Deferred:
        self.offers.append(sdp)
        return self.answer_with

    def answered(self) -> None:
        self.was_answered += 1

    def close(self) -> None:
        self.closes += 1

    # a subscriber
    pressed_join = True
    lead = 0.0

    def deliver(self, sample: Sample) -> None:
        self.got.append(sample)

    def keyframe_wanted(self) -> bool:
        return not self.got

    def closed(self, info, failed) -> None:
        self.on_state("failed" if failed else "stopped", info)


class FakeTransports:
    def __init__(self) -> None:
        self.players: list[FakePlayer] = []
        self.asked: list[tuple] = []
        self.answer: Deferred = succeed("v=0 answer")
        self.deadline = (ICE_TIMEOUT, ICE_FAILED)

    def player(self, provider, session_id, info, label, on_state, tcp_only=False) -> FakePlayer:
        self.asked.append((provider, session_id, info, label))
        player = FakePlayer(on_state, self.answer)
        player.connect_deadline = self.deadline
        self.players.append(player)
        return player


class FakeStream:
    def __init__(self, info: MediaInfo | None = INFO) -> None:
        self.info = info
        self.subscribed: list = []
        self.unsubscribed: list = []
        self.keyframes_asked = 0

    def subscribe(self, subscriber) -> None:
        self.subscribed.append(subscriber)

    def unsubscribe(self, subscriber) -> None:
        self.unsubscribed.append(subscriber)

    def request_keyframe(self) -> None:
        self.keyframes_asked += 1


class World:
    def __init__(self, provider: str = "WebRTC") -> None:
        self.frames: list[dict] = []
        self.session = Session(
            lambda text: self.frames.append(json.loads(text)), lambda reason: None, None
        )
        self.transports = FakeTransports()
        self.clock = Clock()
        self.done: list = []
        self.request = StreamRequest("m1", "vod://a.mp4", media_provider=provider, sdp="v=0 offer")
        self.play = Playback(
            self.session, self.request, self.transports, self.clock, self.done.append
        )

    def statuses(self) -> list[tuple]:
        return [
            (f["data"][0]["status"], f["data"][0].get("info"))
            for f in self.frames
            if f["message"] == "notifyStreamStatusEvent"
        ]

    def answers(self) -> list[list]:
        return [f["data"] for f in self.frames if f["message"] == "setRemoteSDP"]

    def resizes(self) -> list[dict]:
        return [
            f["data"][0]["payload"]
            for f in self.frames
            if f["message"] == "notifyStreamEvent" and f["data"][0]["type"] == "resize"
        ]


@pytest.fixture
def world() -> World:
    return World()


def test_an_opened_stream_gets_a_player_pending_and_the_answer(world):
    stream = FakeStream()
    world.play.opened(stream)
    [player] = world.transports.players
    assert world.transports.asked == [("WebRTC", world.session.id, INFO, "vod://a.mp4 [m1]")]
    assert player.offers == ["v=0 offer"] and player.was_answered == 1
    assert world.statuses() == [("PENDING", None)]
    assert world.answers() == [["m1", "v=0 answer"]]
    assert (world.play.media.status, world.play.media.width) == ("PENDING", 640)
    assert stream.subscribed == []  # not before the player connects


def test_connected_is_playing_its_size_and_the_subscription(world):
    stream = FakeStream()
    world.play.opened(stream)
    player = world.transports.players[0]
    player.on_state("connected", None)
    assert world.statuses() == [("PENDING", None), ("PLAYING", None)]
    assert world.resizes() == [{"streamerVideoWidth": 640, "streamerVideoHeight": 360}]
    assert stream.subscribed == [player]
    player.on_keyframe_request()  # a PLI from the browser reaches the stream
    assert stream.keyframes_asked == 1
    world.clock.advance(ICE_TIMEOUT * 2)
    assert world.statuses()[-1] == ("PLAYING", None)  # the deadline was disarmed


@pytest.mark.parametrize(
    "info", [MediaInfo(5.0, None, None), MediaInfo(0.0, VideoInfo(0, 0, 0.0, "42e01f"), None)]
)
def test_no_resize_event_for_audio_or_a_size_not_yet_known(world, info):
    world.play.opened(FakeStream(info))
    world.transports.players[0].on_state("connected", None)
    assert world.statuses()[-1] == ("PLAYING", None) and world.resizes() == []


def test_a_player_that_never_connects_fails_at_its_own_deadline(world):
    world.transports.deadline = (10.0, "No media transport")
    stream = FakeStream()
    world.play.opened(stream)
    world.clock.advance(9.9)
    assert world.statuses() == [("PENDING", None)]
    world.clock.advance(0.2)
    assert world.statuses()[-1] == ("FAILED", "No media transport")
    assert world.transports.players[0].closes == 1 and world.done == [world.play]
    assert world.play.media.status == "FAILED"


@pytest.mark.parametrize("state, status", [("failed", "FAILED"), ("stopped", "STOPPED")])
def test_a_player_that_ends_ends_the_play_once_with_its_info(world, state, status):
    stream = FakeStream()
    world.play.opened(stream)
    player = world.transports.players[0]
    player.on_state("connected", None)
    player.on_state(state, "Failed by peer connection")
    player.on_state(state, "again")
    player.on_state("connected", None)  # late news of an ended play changes nothing
    assert world.statuses()[2:] == [(status, "Failed by peer connection")]
    assert stream.unsubscribed == [player] and player.closes == 1
    assert world.done == [world.play] and world.play.player is None


def test_an_offer_that_cannot_be_answered_fails_with_its_info(world):
    world.transports.answer = fail(NegotiationError("Browser offers no H.264 video"))
    world.play.opened(FakeStream())
    assert world.statuses() == [("PENDING", None), ("FAILED", "Browser offers no H.264 video")]
    assert world.answers() == [] and world.transports.players[0].was_answered == 0


def test_a_bug_while_answering_is_an_internal_error_not_its_message(world):
    world.transports.answer = fail(KeyError("secret detail"))
    world.play.opened(FakeStream())
    assert world.statuses()[-1] == ("FAILED", INTERNAL_ERROR)
    assert "secret" not in json.dumps(world.frames)


def test_an_answer_that_comes_after_the_end_is_not_sent(world):
    waiting: Deferred = Deferred()
    world.transports.answer = waiting
    world.play.opened(FakeStream())
    world.play.end("STOPPED", "Stopped by user")
    waiting.callback("v=0 late")
    assert world.answers() == [] and world.transports.players[0].was_answered == 0
    assert world.statuses() == [("PENDING", None), ("STOPPED", "Stopped by user")]


def test_a_stream_that_opens_after_the_play_ended_is_let_go_at_once(world):
    world.play.end("STOPPED", "Stopped by user")
    stream = FakeStream()
    world.play.opened(stream)
    assert stream.unsubscribed == [None] and world.transports.players == []
    assert world.statuses() == [("STOPPED", "Stopped by user")]


def test_release_forgets_the_stream_and_player_so_no_cycle_is_kept(world):
    stream = FakeStream()
    world.play.opened(stream)
    player = world.transports.players[0]
    world.play.end(None, None)  # the session went: nothing to tell
    assert world.statuses() == [("PENDING", None)]
    assert (world.play.stream, world.play.player) == (None, None)
    assert stream.unsubscribed == [player] and player.closes == 1


def keyframe_of_size() -> Sample:
    data = encode_h264(1)[0]  # 160x96
    return Sample("video", data, 0, 90000, 0.0, True, "h264")


def test_a_published_streams_new_size_reaches_its_viewers_until_they_leave(world):
    stream = PublishedStream("cam", INFO, lambda: None, lambda s: None, world.clock)
    world.play.opened(stream)
    player = world.transports.players[0]
    player.on_state("connected", None)
    stream.send(keyframe_of_size())
    assert world.resizes() == [
        {"streamerVideoWidth": 640, "streamerVideoHeight": 360},
        {"streamerVideoWidth": 160, "streamerVideoHeight": 96},
    ]
    assert player.got and player.got[0].keyframe
    world.play.end("STOPPED", "Stopped by user")
    stream.send(
        Sample("video", encode_h264(1, width=320, height=192)[0], 3000, 90000, 1 / 30, True, "h264")
    )
    assert len(world.resizes()) == 2 and stream.info.video.width == 320  # told no one
    assert not stream.broadcast  # the player left it


class FeedbackPlayer(FakePlayer):
    """A WebRTC player: it tells its link's bandwidth."""

    def __init__(self, on_state, answer) -> None:
        super().__init__(on_state, answer)
        self.on_feedback = lambda remb, loss, rate: None


class FakeRenditions:
    def __init__(self, low: FakeStream, adaptive: bool = True) -> None:
        self.low = low
        self.adaptive = adaptive

    def offers(self, stream):
        from wcs.streams.adaptive import Offer

        if not self.adaptive:
            return []
        return [Offer("source", (640, 360), 1_300_000, lambda: stream),
                Offer("180p", (320, 180), 240_000, lambda: self.low)]


def adapting(world: World, adaptive: bool = True):
    from wcs.metrics import METERS

    world.transports.player = lambda *a, **k: world.transports.players.append(
        FeedbackPlayer(a[4], world.transports.answer)) or world.transports.players[-1]
    stream, low = FakeStream(), FakeStream()
    world.play.renditions = FakeRenditions(low, adaptive)
    world.play.opened(stream)
    player = world.transports.players[0]
    player.on_state("connected", None)
    return stream, low, player, METERS


def test_a_webrtc_play_that_pinned_no_size_watches_through_an_adaptive_view(world):
    stream, low, player, meters = adapting(world)
    view = world.play.view
    assert stream.subscribed == [view] and view.viewer is player
    assert player.on_feedback == view.feedback and player.on_keyframe_request == view.request_keyframe
    assert world.play.media.listed()["rendition"] == "source"
    before = meters.abr_moves[("down", "180p")]
    view.go(1)
    assert len(low.subscribed) == 1  # its side: waiting for the rendition's IDR
    low.subscribed[0].deliver(Sample("video", b"\x65", 9000, 90000, 0.1, True, "h264"))
    world.clock.advance(0)
    assert low.subscribed[-1] is view and stream.unsubscribed == [view]
    assert world.play.media.listed()["rendition"] == "180p"
    assert meters.abr_moves[("down", "180p")] == before + 1
    assert world.resizes()[-1] == {"streamerVideoWidth": 320, "streamerVideoHeight": 180}
    world.play.release()
    assert low.unsubscribed[-1] is view and player.closes == 1
    assert world.play.view is None


def test_without_a_ladder_or_with_webrtc_abr_off_it_watches_the_stream_itself(world):
    stream, low, player, _ = adapting(world, adaptive=False)
    assert world.play.view is None and stream.subscribed == [player]
    assert "rendition" not in world.play.media.listed()
    other = World()
    other.play.renditions = None  # a pinned size: no ladder
    other.play.opened(FakeStream())
    plain = other.transports.players[0]
    plain.on_state("connected", None)
    assert other.play.view is None
