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


# a broadcast's batch: each live sample framed once, the same bytes as each alone


class Recorder(Channel):
    """A channel that keeps each message, and counts what it was asked to frame."""

    def __init__(self) -> None:
        super().__init__()
        self.messages: list[bytes] = []
        self.prepared = 0

    def send(self, data: bytes) -> None:
        super().send(data)
        self.messages.append(data)

    def prepare(self, payload: bytes) -> bytes:
        self.prepared += 1
        return payload

    def send_prepared(self, message: bytes) -> None:
        self.send(message)


def attached(channel: Channel) -> MseViewer:
    made = MseViewer(None, "s", INFO, "test", Clock(),  # type: ignore[arg-type]
                     lambda state, info: None)
    made._attach(channel)
    return made


def aac(n: int) -> Sample:
    return Sample("audio", bytes([0x21, n % 256]) * 40, n * 1024, 48000, n * 1024 / 48000,
                  codec="aac")


def live() -> list[Sample]:
    """Audio and video as a file plays them, from a delta frame (a joiner waits)."""
    samples: list[Sample] = []
    for n in range(50, 130):
        samples.append(frame(n, size=300))
        samples.append(aac(n))
    return samples


def test_a_batch_frames_each_sample_once_and_sends_what_each_viewer_would_alone():
    alone_channel = Recorder()
    alone = attached(alone_channel)
    channels = [Recorder() for _ in range(3)]
    batch = MseViewer.Batch()
    viewers = [attached(channel) for channel in channels]
    for viewer in viewers:
        batch.add(viewer)
    for sample in live():
        alone.deliver(sample)
        batch.deliver(sample)
    assert alone_channel.messages  # it started at the keyframe (frame 60)
    for channel in channels:
        assert channel.messages == alone_channel.messages
    # the first viewer framed each message; the others wrote it as it was
    assert channels[0].prepared > 100 and channels[1].prepared == channels[2].prepared == 0
    assert alone_channel.messages[1][:1] == b"\x08"  # the first audio: the config first
    assert alone_channel.messages[1][9:12] == b"\x00\x12\x10"
    assert sum(m.count(b"\x12\x10") for m in alone_channel.messages if m[:1] == b"\x08") == 1


def test_a_batch_viewer_that_joined_on_its_own_burst_gets_no_second_audio_config():
    batch = MseViewer.Batch()
    channel = Recorder()
    viewer = attached(channel)
    samples = live()
    for sample in samples[20:30]:  # the burst: its keyframe and its audio, framed alone
        viewer.deliver(sample)
    batch.add(viewer)
    for sample in samples[30:]:
        batch.deliver(sample)
    audio = [m for m in channel.messages if m[:1] == b"\x08"]
    assert audio and sum(m[9:10] == b"\x00" for m in audio) == 1  # one config, in the burst


def test_a_paused_batch_viewer_is_cut_back_to_keyframes_like_one_alone():
    batch = MseViewer.Batch()
    channels = [Recorder(), Recorder()]
    viewers = [attached(channel) for channel in channels]
    for viewer in viewers:
        batch.add(viewer)
    viewers[1].pauseProducing()
    for n in range(0, 200):
        batch.deliver(frame(n, size=10_000))
    assert viewers[1].held >= PAUSED_ALLOWANCE and viewers[1].dropped > 0
    assert viewers[0].dropped == 0 and len(channels[0].messages) == 200
    batch.remove(viewers[1])
    batch.remove(viewers[0])
    assert not batch.viewers and not batch._framers


def test_a_batch_made_mid_gop_frames_the_frames_after_a_joiners_burst():
    """The framer starts with the batch's first viewer, after that viewer's burst
    (from the last keyframe, whose SPS and PPS the framer never saw): the delta
    frames that follow must reach the viewer, not wait for the next keyframe."""
    alone_channel, channel = Recorder(), Recorder()
    alone, joiner = attached(alone_channel), attached(channel)
    samples = live()  # the keyframe (and its SPS/PPS) is frame 60
    for sample in samples[20:40]:
        alone.deliver(sample)
        joiner.deliver(sample)  # the burst, framed by the joiner alone
    batch = MseViewer.Batch()
    batch.add(joiner)
    for sample in samples[40:110]:  # delta frames, then the keyframe at 120 is not here
        alone.deliver(sample)
        batch.deliver(sample)
    assert channel.messages == alone_channel.messages
    assert sum(m[:1] == b"\x09" for m in channel.messages) == 45
