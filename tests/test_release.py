"""Deterministic release: whatever a play or a publication held is freed when it
ends, by reference counting alone (the garbage collector is off in these tests),
and the codec threads behind it end with it.

The plays go through the real front door (a session's frames, the stream
requests, the registry, real sources on a real MP4, the real transport factory
and MSE viewer); only the sockets are stand-ins.
"""

from __future__ import annotations

import gc
import os
import json
import weakref
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from twisted.internet.defer import maybeDeferred
from twisted.internet.task import Clock
from twisted.logger import capturedLogs

from tests.test_requests import front, play, publish  # noqa: F401 (fixture)
from tools.makemedia import make_mp4
from wcs.errors import RecordingFailed
from wcs.media.mp4 import Mp4File
from wcs.media.sample import Sample
from wcs.mse.channels import PARKED_LIMIT
from wcs.recording.recorder import Recorder
from wcs.signalling.requests import StreamRequests
from wcs.signalling.session import Session
from wcs.sources import Sources
from wcs.streams.registry import StreamRegistry
from wcs.transports.factory import TransportFactory

MSE_OFFER = "v=0\r\nm=video 0 RTP/AVP 112\r\nm=audio 0 RTP/AVP 108\r\n"


def threads() -> set[int]:
    """This process's threads by id, as the kernel lists them (FFmpeg's included).

    Compared as sets: a thread another test left behind may end meanwhile (a
    count then falls), but a thread this test started and left shows up."""
    return {int(task) for task in os.listdir("/proc/self/task")}


@pytest.fixture
def no_gc() -> Iterator[None]:
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


@pytest.fixture(scope="module")
def media(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("release")
    make_mp4(folder / "clip.mp4", seconds=6, width=320, height=180)
    return folder


class Socket:
    """The media socket as the viewer sees it (Twisted's transport stands behind
    the real one): bytes out, and whoever drives it as its producer."""

    def __init__(self) -> None:
        self.sent = 0
        self.producer: object | None = None

    def send(self, data: bytes) -> None:
        self.sent += len(data)

    def prepare(self, payload: bytes) -> bytes:
        return payload

    def send_prepared(self, message: bytes) -> None:
        self.send(message)

    def register_producer(self, producer: object) -> None:
        self.producer = producer

    def unregister_producer(self) -> None:
        self.producer = None


class Browser:
    """A page's signalling session, and its MSE media sockets, as frames."""

    def __init__(self, requests: StreamRequests) -> None:
        self.requests = requests
        self.frames: list[dict[str, Any]] = []
        self.session = Session(lambda text: self.frames.append(json.loads(text)),
                               lambda reason: None, requests)
        self.sockets: list[tuple[Session, Socket, list[dict[str, Any]]]] = []
        self.send(self.session, "connection", {"appKey": "defaultApp"})

    @staticmethod
    def send(session: Session, message: str, body: dict[str, Any]) -> None:
        session.receive(json.dumps({"message": message, "data": [body]}).encode(), False)

    def media_socket(self) -> tuple[Session, Socket, list[dict[str, Any]]]:
        """A second socket saying connectMediaTransport with this session's token."""
        socket, frames = Socket(), []
        media = Session(lambda text: frames.append(json.loads(text)), lambda reason: None,
                        self.requests, channel=socket,
                        lookup=lambda token: self.session
                        if token == self.session.auth_token else None)
        self.connect_media(media)
        self.sockets.append((media, socket, frames))
        return media, socket, frames

    def connect_media(self, media: Session) -> None:
        self.send(media, "connectMediaTransport", {"authToken": self.session.auth_token})

    def play(self, media_session_id: str, name: str) -> None:
        self.send(self.session, "playStream", {
            "mediaSessionId": media_session_id, "name": name, "mediaProvider": "MSE",
            "sdp": MSE_OFFER})

    def stop(self, media_session_id: str, name: str) -> None:
        self.send(self.session, "stopStream", {"mediaSessionId": media_session_id,
                                                "name": name})

    def statuses(self, media_session_id: str) -> list[tuple[str, str | None]]:
        return [(f["data"][0]["status"], f["data"][0].get("info")) for f in self.frames
                if f["message"] == "notifyStreamStatusEvent"
                and f["data"][0]["mediaSessionId"] == media_session_id]


def server(media: Path, tmp_path: Path) -> tuple[StreamRequests, StreamRegistry, Clock]:
    clock = Clock()
    clock.advance(1000.0)
    registry = StreamRegistry(Sources(media, None, tmp_path / "cache"), clock)  # type: ignore[arg-type]
    transports = TransportFactory(clock, tmp_path, "{streamName}", ("127.0.0.1",))
    return StreamRequests(registry, transports, clock), registry, clock


def advance(clock: Clock, seconds: float) -> None:
    for _ in range(round(seconds / 0.01)):
        clock.advance(0.01)


@pytest.mark.parametrize("ending", ["stopStream", "end of file", "session closed"])
def test_an_mse_play_is_freed_with_its_codec_threads_when_it_ends(no_gc, media, tmp_path,
                                                                    ending):
    requests, registry, clock = server(media, tmp_path)
    browser = Browser(requests)
    before = threads()
    browser.play("m1", "vod://clip.mp4")
    _, socket, _ = browser.media_socket()
    assert browser.statuses("m1") == [("PENDING", None), ("PLAYING", None)]
    advance(clock, 1.0)
    assert socket.sent > 10_000
    assert threads() - before == set()  # MSE takes the AAC as stored: no codec thread
    stream = registry.find()[0]
    playback = requests._active[browser.session.id]["m1"]
    held = {name: weakref.ref(obj) for name, obj in [
        ("stream", stream), ("pump", stream.pump), ("broadcast", stream.broadcast),
        ("media", stream.media), ("reader", stream.media._reader),
        ("viewer", playback.player), ("playback", playback)]}
    del stream, playback
    if ending == "stopStream":
        browser.stop("m1", "vod://clip.mp4")
        assert browser.statuses("m1")[-1] == ("STOPPED", "Stopped by user")
    elif ending == "end of file":
        advance(clock, 6.0)
        assert browser.statuses("m1")[-1] == ("STOPPED", None)
    else:
        browser.session.released("gone")
    assert registry.find() == [] and socket.producer is None
    alive = [name for name, ref in held.items() if ref() is not None]
    assert alive == [], f"held only by reference cycles: {alive}"
    assert threads() - before == set(), "the codec threads outlived the stream"


def test_a_second_connect_media_transport_is_refused_and_both_plays_go_on(no_gc, media,
                                                                          tmp_path):
    requests, registry, clock = server(media, tmp_path)
    browser = Browser(requests)
    browser.play("m1", "vod://clip.mp4")
    media_session, first, first_frames = browser.media_socket()
    assert browser.statuses("m1")[-1] == ("PLAYING", None)
    with capturedLogs() as events:
        browser.connect_media(media_session)  # the same socket says it again
    refusal = ("connectMediaTransport refused: this media socket already serves a play "
               "(one connectMediaTransport per play)")
    assert [f["data"][0]["info"] for f in first_frames if f["message"] == "fail"] == [refusal]
    assert any(refusal in str(event.get("info", "")) for event in events)
    # the next play gets its own socket, not the one already in use
    browser.play("m2", "vod://clip.mp4")
    assert browser.statuses("m2") == [("PENDING", None)]
    _, second, _ = browser.media_socket()
    assert browser.statuses("m2")[-1] == ("PLAYING", None)
    assert first.producer is not None and first.producer is not second.producer
    sent = first.sent
    advance(clock, 0.5)
    assert first.sent > sent and second.sent > 0  # each play on its own socket
    assert browser.statuses("m1")[-1] == ("PLAYING", None)


def test_sockets_that_wait_for_plays_are_bounded(media, tmp_path):
    requests, _, _ = server(media, tmp_path)
    browser = Browser(requests)
    for _ in range(PARKED_LIMIT):
        browser.media_socket()
    _, _, frames = browser.media_socket()
    assert [f["data"][0]["info"] for f in frames if f["message"] == "fail"] == [
        f"connectMediaTransport refused: {PARKED_LIMIT} media sockets of this session "
        "already wait for plays"]
    browser.play("m1", "vod://clip.mp4")  # the first socket that came serves the play
    assert browser.statuses("m1")[-1] == ("PLAYING", None)
    assert browser.sockets[0][1].producer is not None


class Camera:
    """A publisher that sends a file's frames when told (the transport factory's
    WebRTC publisher needs a browser; what is tested here is what it feeds)."""
    connect_deadline = (20.0, "Failed by ICE timeout")

    def __init__(self, path: Path, on_sample, on_state) -> None:
        self.media = Mp4File(path, "camera")
        self.on_sample, self.on_state = on_sample, on_state
        self.info = self.media.info
        self.closed = False

    def answer(self, offer_sdp: str):
        return maybeDeferred(lambda: "publisher answer")

    def request_keyframe(self) -> None:
        pass

    def send(self, seconds: float) -> None:
        for sample in self.media.samples():
            if sample.time > seconds:
                break
            self.on_sample(sample)

    def flush(self) -> None:
        pass

    def close(self) -> None:
        self.closed = True
        self.media.close()


class Studio(TransportFactory):
    """The real factory with a camera for a publisher, and recordings completed
    at once (no thread pool runs here)."""

    cameras: list[Camera]

    def publisher(self, label, on_sample, on_state, tcp_only=False):
        camera = Camera(self.source, on_sample, on_state)
        self.cameras.append(camera)
        return camera

    def recorder(self, stream_name, media_session_id, info, on_state):
        return Recorder(self.record_dir, f"{stream_name}.mp4", info, stream_name, on_state,
                        in_thread=maybeDeferred)


def test_a_recorded_publication_and_its_viewers_are_freed_when_it_ends(no_gc, media,
                                                                       tmp_path):
    clock = Clock()
    registry = StreamRegistry(Sources(media, None, tmp_path / "cache"), clock)  # type: ignore[arg-type]
    studio = Studio(clock, tmp_path, "{streamName}", ("127.0.0.1",))
    studio.source, studio.cameras = media / "clip.mp4", []
    requests = StreamRequests(registry, studio, clock)
    page, viewer = Browser(requests), Browser(requests)
    Browser.send(page.session, "publishStream", {
        "mediaSessionId": "p1", "name": "cam", "published": True, "record": True,
        "sdp": "offer"})
    camera = studio.cameras.pop()
    camera.on_state("connected", None)
    viewer.play("m1", "cam")
    viewer.media_socket()
    camera.send(2.0)
    stream = registry.published["cam"]
    publication = requests._active[page.session.id]["p1"]
    held = {name: weakref.ref(obj) for name, obj in [
        ("stream", stream), ("broadcast", stream.broadcast), ("recorder", publication.recorder),
        ("publication", publication), ("camera", camera),
        ("viewer", requests._active[viewer.session.id]["m1"].player)]}
    del stream, publication, camera
    Browser.send(page.session, "unPublishStream", {"mediaSessionId": "p1", "name": "cam",
                                                   "published": True})
    assert page.statuses("p1")[-1][0] == "UNPUBLISHED"
    assert viewer.statuses("m1")[-1] == ("STOPPED", "Stopped by publisher stop")
    assert (tmp_path / "cam.mp4").stat().st_size > 10_000
    alive = [name for name, ref in held.items() if ref() is not None]
    assert alive == [], f"held only by reference cycles: {alive}"


def test_a_bug_in_a_published_streams_fan_out_fails_it_and_its_publication(front):  # noqa: F811
    _, transports, registry, _, page = front
    publish(page, "p1", "cam")
    publisher = transports.publishers[0]
    publisher.on_state("connected", None)
    play(page, "m1", "cam")
    transports.players[0].on_state("connected", None)
    stream = registry.published["cam"]

    def broken(sample: Sample) -> None:
        raise KeyError("fan-out bug")

    stream.broadcast._remember = broken  # a defect in the broadcast itself
    with capturedLogs() as events:
        publisher.on_sample(Sample("video", b"k", 0, 90000, 0.0, keyframe=True))
    assert [e["log_failure"].getErrorMessage() for e in events if "log_failure" in e] == [
        "'fan-out bug'"]
    assert page.statuses("m1")[-1] == ("FAILED", "Internal error", None)
    assert page.statuses("p1")[-1] == ("FAILED", "Internal error", None)
    assert publisher.is_closed and "cam" not in registry.published


def test_a_failed_recording_ends_the_publication_and_its_peer(front):  # noqa: F811
    """The publication ends FAILED (it does not go on unrecorded), and its peer is
    closed at once, so nothing is left receiving with no one reading."""
    _, transports, registry, _, page = front
    publish(page, "p1", "cam", record=True)
    publisher = transports.publishers[0]
    publisher.on_state("connected", None)
    transports.recorders[0].on_state("failed", "Recording failed: internal error")
    assert publisher.is_closed and "cam" not in registry.published
    transports.recorders[0].completed.errback(
        RecordingFailed("Recording failed: internal error"))
    assert page.statuses("p1")[-1] == ("FAILED", "Recording failed: internal error", None)


def test_a_publisher_whose_frames_cannot_be_handed_on_fails_and_stops_reading():
    """Before, the read task died with the exception and aiortc's receive queue
    went on filling with no reader; now the publisher fails (its publication ends
    and closes the peer), with the traceback logged."""
    import asyncio

    from aiortc.mediastreams import MediaStreamTrack

    from testkit.harness import run
    from wcs.webrtc.publisher import Encoded, WebRTCPublisher

    class Microphone(MediaStreamTrack):
        kind = "audio"

        def __init__(self) -> None:
            super().__init__()
            self.reads = 0

        async def recv(self) -> Encoded:
            self.reads += 1
            await asyncio.sleep(0)
            return Encoded(b"\xfc\xff\xfe", 960 * self.reads)

    def broken(sample: Sample) -> None:
        raise KeyError("downstream bug")

    states: list[tuple] = []
    publisher = WebRTCPublisher("publish 'cam'", broken, lambda *state: states.append(state))
    track = Microphone()
    with capturedLogs() as events:
        run(asyncio.wait_for(publisher._read(track), 5))
    assert states == [("failed", "Internal error")]
    assert track.reads == 1
    assert [e["log_failure"].getErrorMessage() for e in events if "log_failure" in e] == [
        "'downstream bug'"]
