"""A session's plays and publications against fake transports: the front door
only speaks to the registry and to what the transport factory makes."""

from __future__ import annotations

import json

import pytest
from twisted.internet.defer import Deferred, succeed
from twisted.internet.task import Clock

from tests.test_registry import FakeSources, Viewer
from wcs.errors import ICE_FAILED, NegotiationError, RecordingFailed
from wcs.media.sample import MediaInfo, Sample, VideoInfo
from wcs.mse.viewer import MEDIA_TRANSPORT_WAIT, NO_MEDIA_TRANSPORT
from wcs.signalling.messages import StreamRequest
from wcs.signalling.negotiation import ICE_TIMEOUT
from wcs.signalling.requests import StreamRequests
from wcs.signalling.session import Session
from wcs.streams.registry import StreamRegistry

INFO = MediaInfo(0.0, VideoInfo(640, 360, 30.0, "42e01f"), None)


class FakePlayer(Viewer):
    def __init__(self, provider, info, on_state, fail_with=None):
        super().__init__()
        self.provider = provider
        self.on_state = on_state
        self.fail_with = fail_with
        self.was_answered = False
        self.is_closed = False
        self.connect_deadline = (MEDIA_TRANSPORT_WAIT, NO_MEDIA_TRANSPORT) \
            if provider == "MSE" else (ICE_TIMEOUT, ICE_FAILED)

    def answer(self, offer_sdp):
        if self.fail_with:
            raise self.fail_with
        if self.fail_with is False:  # answer later, as aiortc does
            self.pending = Deferred()
            return self.pending
        return succeed(f"answer to {offer_sdp}")

    def answered(self):
        self.was_answered = True

    def closed(self, info, failed):
        super().closed(info, failed)
        self.on_state("failed" if failed else "stopped", info)

    def close(self):
        self.is_closed = True


class FakePublisher:
    connect_deadline = (20.0, "Failed by ICE timeout")
    def __init__(self, on_sample, on_state):
        self.on_sample, self.on_state = on_sample, on_state
        self.info = None
        self.is_closed = False
        self.keyframes_asked = 0

    def answer(self, offer_sdp):
        self.info = INFO
        return succeed("publisher answer")

    def request_keyframe(self):
        self.keyframes_asked += 1

    def flush(self):
        self.on_sample(Sample("audio", b"tail", 960, 48000, 0.02, codec="aac"))

    def close(self):
        self.is_closed = True


class FakeRecorder(Viewer):
    def __init__(self, on_state):
        super().__init__()
        self.name = "cam-1.mp4"
        self.on_state = on_state
        self.completed: Deferred = Deferred()


class FakeTransports:
    play_providers = ("WebRTC", "MSE")
    publish_providers = ("WebRTC",)
    tcp_offered = True

    def __init__(self):
        self.players: list[FakePlayer] = []
        self.publishers: list[FakePublisher] = []
        self.recorders: list[FakeRecorder] = []
        self.fail_with = None
        self.events: list[tuple] = []

    def player(self, provider, session_id, info, label, on_state, tcp_only=False):
        self.players.append(FakePlayer(provider, info, on_state, self.fail_with))
        self.players[-1].tcp_only = tcp_only
        return self.players[-1]

    def publisher(self, label, on_sample, on_state, tcp_only=False):
        self.publishers.append(FakePublisher(on_sample, on_state))
        self.publishers[-1].tcp_only = tcp_only
        return self.publishers[-1]

    def recorder(self, stream_name, media_session_id, info, on_state):
        self.recorders.append(FakeRecorder(on_state))
        return self.recorders[-1]

    def media_channel(self, session_id, channel):
        self.events.append(("channel", session_id, channel))

    def media_channel_closed(self, session_id, channel):
        self.events.append(("channel closed", session_id, channel))

    def session_closed(self, session_id):
        self.events.append(("session closed", session_id))


class Page:
    """A session whose frames are kept as the statuses the page would see."""

    def __init__(self, requests: StreamRequests) -> None:
        self.frames: list[dict] = []
        self.session = Session(lambda text: self.frames.append(json.loads(text)),
                               lambda reason: None, requests)
        self.session.established = True

    def statuses(self, media_session_id: str) -> list[tuple]:
        return [(f["data"][0]["status"], f["data"][0].get("info"),
                 f["data"][0].get("recordName"))
                for f in self.frames if f["message"] == "notifyStreamStatusEvent"
                and f["data"][0]["mediaSessionId"] == media_session_id]

    def answers(self) -> list[list]:
        return [f["data"] for f in self.frames if f["message"] == "setRemoteSDP"]


@pytest.fixture
def front():
    clock = Clock()
    registry = StreamRegistry(FakeSources(), clock, timeout=0.0)
    transports = FakeTransports()
    requests = StreamRequests(registry, transports, clock)
    return requests, transports, registry, clock, Page(requests)


def play(page: Page, media_session_id: str, name: str, provider: str = "WebRTC") -> None:
    page.session.streams.play(page.session, StreamRequest(
        media_session_id, name, media_provider=provider, sdp="offer"))


def test_a_play_negotiates_then_subscribes_when_connected(front):
    _, transports, registry, clock, page = front
    play(page, "m1", "vod-live://a.mp4")
    player = transports.players[0]
    assert page.statuses("m1") == [("PENDING", None, None)]
    assert page.answers() == [["m1", "answer to offer"]] and player.was_answered
    player.on_state("connected", None)
    assert page.statuses("m1")[-1][0] == "PLAYING"
    clock.advance(0.2)
    assert player.got and player.got[0].keyframe
    page.session.streams.stop(page.session, StreamRequest("m1", "vod-live://a.mp4"))
    assert page.statuses("m1")[-1] == ("STOPPED", "Stopped by user", None)
    assert player.is_closed and registry.find() == []  # its last viewer left


def test_a_webrtc_player_that_never_connects_fails_by_ice_timeout(front):
    _, transports, _, clock, page = front
    play(page, "m1", "vod://a.mp4")
    clock.advance(ICE_TIMEOUT - 0.5)
    assert page.statuses("m1")[-1][0] == "PENDING"
    clock.advance(1)
    assert page.statuses("m1")[-1] == ("FAILED", ICE_FAILED, None)
    assert transports.players[0].is_closed


def test_an_mse_play_whose_media_socket_never_comes_fails_saying_so_within_10_s(front):
    _, transports, _, clock, page = front
    play(page, "m1", "vod://a.mp4", provider="MSE")
    assert transports.players[0].provider == "MSE"
    clock.advance(MEDIA_TRANSPORT_WAIT + 0.1)
    status, info, _ = page.statuses("m1")[-1]
    assert MEDIA_TRANSPORT_WAIT <= 10 and status == "FAILED"
    assert info.startswith("No media transport") and "connectMediaTransport" in info
    assert transports.players[0].is_closed


def test_a_negotiation_error_is_a_failed_status_with_its_info(front):
    _, transports, _, _, page = front
    transports.fail_with = NegotiationError("Browser offers no Opus audio")
    play(page, "m1", "vod://a.mp4")
    assert page.statuses("m1")[-1] == ("FAILED", "Browser offers no Opus audio", None)


def test_a_missing_source_fails_without_a_player(front):
    _, transports, _, _, page = front
    play(page, "m1", "vod://absent.mp4")
    assert page.statuses("m1") == [("FAILED", "File not found", None)]
    assert transports.players == []


def test_the_end_of_the_stream_stops_its_players(front):
    _, transports, registry, _, page = front
    play(page, "m1", "vod-live://a.mp4")
    transports.players[0].on_state("connected", None)
    registry.find()[0].terminate("Stopped by server")
    assert page.statuses("m1")[-1] == ("STOPPED", "Stopped by server", None)


def publish(page: Page, media_session_id: str, name: str, record: bool = False) -> None:
    page.session.streams.publish(page.session, StreamRequest(
        media_session_id, name, published=True, record=record, sdp="offer"))


def test_a_publication_with_a_recording_reports_after_the_file(front):
    _, transports, registry, _, page = front
    publish(page, "p1", "cam", record=True)
    publisher, recorder = transports.publishers[0], transports.recorders[0]
    publisher.on_state("connected", None)
    assert page.statuses("p1") == [("PUBLISHING", None, "cam-1.mp4")]
    play(page, "m1", "cam")
    transports.players[0].on_state("connected", None)
    publisher.on_sample(Sample("video", b"k", 0, 90000, 0.0, keyframe=True))
    assert recorder.got and transports.players[0].got  # both subscribers of the stream
    page.session.streams.stop(page.session, StreamRequest("p1", "cam", published=True))
    assert page.statuses("m1")[-1] == ("STOPPED", "Stopped by publisher stop", None)
    assert publisher.is_closed and recorder.ended == ("Stopped by publisher stop", False)
    assert page.statuses("p1")[-1][0] == "PUBLISHING"  # not before the file is complete
    recorder.completed.callback("cam-1.mp4")
    assert page.statuses("p1")[-1] == ("UNPUBLISHED", None, "cam-1.mp4")
    assert "cam" not in registry.published


def test_a_recording_that_fails_fails_the_publication(front):
    _, transports, _, _, page = front
    publish(page, "p1", "cam", record=True)
    transports.publishers[0].on_state("connected", None)
    recorder = transports.recorders[0]
    recorder.on_state("failed", "Recording failed: No space left on device")
    recorder.completed.errback(RecordingFailed("Recording failed: No space left on device"))
    assert page.statuses("p1")[-1] == ("FAILED", "Recording failed: No space left on device",
                                       None)


def test_a_kept_file_that_cannot_be_completed_turns_unpublished_into_failed(front):
    _, transports, _, _, page = front
    publish(page, "p1", "cam", record=True)
    page.session.streams.stop(page.session, StreamRequest("p1", "cam", published=True))
    transports.recorders[0].completed.errback(RecordingFailed("Nothing was recorded"))
    assert page.statuses("p1")[-1] == ("FAILED", "Nothing was recorded", None)


def test_a_name_already_published_is_refused_before_answering(front):
    _, transports, _, _, page = front
    publish(page, "p1", "cam")
    publish(page, "p2", "cam")
    assert page.statuses("p2") == [("FAILED", "Stream 'cam' is already being published",
                                    None)]
    assert len(transports.publishers) == 1


def test_providers_come_from_the_transports(front):
    _, transports, _, _, page = front
    play(page, "m1", "vod://a.mp4", provider="WSPlayer")
    publish_request = StreamRequest("p1", "cam", published=True, media_provider="MSE")
    page.session.streams.publish(page.session, publish_request)
    assert page.statuses("m1") == [("FAILED", "Media provider WSPlayer is not supported",
                                    None)]
    assert page.statuses("p1") == [("FAILED", "Media provider MSE is not supported for "
                                              "publishing", None)]


def test_a_closed_session_releases_everything_silently(front):
    requests, transports, registry, _, page = front
    play(page, "m1", "vod://a.mp4")
    publish(page, "p1", "cam")
    before = len(page.frames)
    page.session.released("gone")
    assert len(page.frames) == before
    assert transports.players[0].is_closed and transports.publishers[0].is_closed
    assert ("session closed", page.session.id) in transports.events
    assert registry.find() == [] and registry.published == {}


def test_a_play_whose_page_left_before_the_answer_ends_quietly(front):
    """The session is released (the peer closed) while the answer is made: the
    player's error then is no internal error."""
    from twisted.logger import globalLogPublisher

    requests, transports, _, _, page = front
    transports.fail_with = False
    play(page, "m1", "vod://a.mp4")
    seen: list[dict] = []
    globalLogPublisher.addObserver(seen.append)
    try:
        requests.release(page.session)
        transports.players[0].pending.errback(RuntimeError("RTCPeerConnection is closed"))
    finally:
        globalLogPublisher.removeObserver(seen.append)
    assert transports.players[0].is_closed
    assert not [e for e in seen if e.get("log_failure") is not None], seen
    assert page.answers() == []
