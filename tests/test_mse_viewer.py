"""The MSE viewer's backpressure: a joiner's lead goes out whole, a socket that
stays full is cut back to keyframes, then ended."""

from __future__ import annotations

from twisted.internet.task import Clock

from wcs.media.sample import AudioInfo, MediaInfo, Sample, VideoInfo
from wcs.mse.viewer import PAUSED_ALLOWANCE, STUCK_LIMIT, MseViewer

INFO = MediaInfo(10.0, VideoInfo(640, 360, 30.0, "42e01f"), AudioInfo(48000, 2, b"\x12\x10"))


class Channel:
    def __init__(self) -> None:
        self.sent = 0

    def send(self, data: bytes) -> None:
        self.sent += len(data)

    def register_producer(self, producer: object) -> None:
        pass

    def unregister_producer(self) -> None:
        pass


def viewer() -> tuple[MseViewer, Channel, Clock, list]:
    clock, states = Clock(), []
    made = MseViewer(None, "s", INFO, "test", clock,  # type: ignore[arg-type]
                     lambda state, info: states.append((state, info)))
    channel = Channel()
    made._attach(channel)
    return made, channel, clock, states


SPS = bytes.fromhex("6742c00dd90141fa10000003001000000303c0f142a480")  # x264's, 320x240
PPS = bytes.fromhex("68cb8cb2")


def frame(n: int, size: int = 10_000) -> Sample:
    key = n % 60 == 0
    head = b"".join(b"\x00\x00\x00\x01" + unit for unit in (SPS, PPS)) if key else b""
    body = b"\x00\x00\x00\x01" + (b"\x65" if key else b"\x41") + b"\x88" * size
    return Sample("video", head + body, n * 3000, 90000, n / 30, keyframe=key, codec="h264")


def test_a_full_socket_still_takes_a_lead_then_is_cut_back_to_keyframes():
    made, channel, clock, states = viewer()
    made.pauseProducing()  # Twisted's 64 KiB are full at once
    for n in range(40):  # 400 KB: within the allowance
        made.deliver(frame(n))
    assert made.dropped == 0 and channel.sent > 390_000
    for n in range(40, 100):
        made.deliver(frame(n))
    assert made.held >= PAUSED_ALLOWANCE and made.dropped > 0
    made.resumeProducing()
    sent = channel.sent
    made.deliver(frame(100))  # not a keyframe: the picture restarts at one
    assert channel.sent == sent
    made.deliver(frame(120))
    assert channel.sent > sent and states == [("connected", None)]


def test_a_socket_full_for_too_long_ends_the_play():
    made, channel, clock, states = viewer()
    made.pauseProducing()
    made.deliver(frame(0))
    clock.advance(STUCK_LIMIT + 0.1)
    made.deliver(frame(1, size=10))
    assert states[-1] == ("failed", "Viewer too slow: the media connection could not keep up")
