"""The transport factory: which class serves which provider, and record names."""

from __future__ import annotations

import pytest
from twisted.internet.task import Clock

from wcs.errors import Unsupported
from wcs.media.sample import AudioInfo, MediaInfo, VideoInfo
from wcs.mse.viewer import MseViewer
from wcs.recording.recorder import Recorder
from wcs.transports.factory import TransportFactory
from wcs.webrtc.viewer import WebRTCViewer

INFO = MediaInfo(10.0, VideoInfo(640, 360, 30.0, "42e01f"), AudioInfo(48000, 2, b"\x11\x90"))


@pytest.fixture
def transports(tmp_path):
    return TransportFactory(Clock(), tmp_path, "{streamName}-{mediaSessionId}", ["127.0.0.1"])


def test_players_by_provider(transports):
    states = []
    webrtc = transports.player("WebRTC", "s1", INFO, "x", lambda *a: states.append(a))
    mse = transports.player("MSE", "s1", INFO, "x", lambda *a: states.append(a))
    assert isinstance(webrtc, WebRTCViewer) and isinstance(mse, MseViewer)
    assert webrtc.pressed_join and not mse.pressed_join
    with pytest.raises(Unsupported, match="Media provider WSPlayer is not supported"):
        transports.player("WSPlayer", "s1", INFO, "x", lambda *a: None)
    assert set(transports.play_providers) == {"WebRTC", "MSE"}
    assert transports.publish_providers == ("WebRTC",)


def test_an_mse_player_takes_its_sessions_media_socket(transports):
    states: list[tuple] = []

    class Socket:
        producer = None

        def register_producer(self, producer):
            self.producer = producer

        def unregister_producer(self):
            self.producer = None

    mse = transports.player("MSE", "s1", INFO, "x", lambda *a: states.append(a))
    mse.answered()
    transports.media_channel("s2", Socket())
    assert states == []
    socket = Socket()
    transports.media_channel("s1", socket)
    assert states == [("connected", None)] and socket.producer is mse
    mse.close()
    assert socket.producer is None


def test_recordings_are_named_by_the_template_in_the_record_folder(transports, tmp_path):
    recorder = transports.recorder("cam/1", "m1", INFO, lambda *a: None)
    assert isinstance(recorder, Recorder)
    assert recorder.name == "cam_1-m1.mp4" and recorder.final == tmp_path / "cam_1-m1.mp4"
    assert recorder.partial.exists()  # reserved, hidden, until complete
    other = transports.recorder("cam/1", "m1", INFO, lambda *a: None)
    assert other.name == "cam_1-m1-1.mp4"
