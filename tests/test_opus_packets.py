"""Opus frames joined into one packet: what a decoder makes of it, and the Joiner's timing."""

from __future__ import annotations

import av
import pytest

from wcs.media.mp4 import Mp4File
from wcs.media.opus_packets import MOST_FRAMES, Joiner, join
from wcs.media.sample import OPUS_CLOCK, OPUS_FRAME, Sample


@pytest.fixture(scope="module")
def frames(media) -> list[Sample]:
    """Real 20 ms Opus frames, as the server makes them from a file's AAC."""
    opus = list(Mp4File(media / "live.mp4", "frames").opus_samples())
    assert len(opus) > 100
    return opus


def decoded(packets: list[bytes]) -> bytes:
    """The PCM one libopus decoder makes of ``packets`` in turn."""
    decoder = av.CodecContext.create("libopus", "r")
    decoder.sample_rate = OPUS_CLOCK
    decoder.layout = "stereo"
    pcm = []
    for data in packets:
        for frame in decoder.decode(av.Packet(data)):
            pcm.extend(bytes(plane)[:frame.samples * 4] for plane in frame.planes)
    return b"".join(pcm)


@pytest.mark.parametrize("count", [2, 3, MOST_FRAMES])
def test_a_joined_packet_decodes_to_the_very_sound_of_its_frames(frames, count):
    steady = [sample for sample in frames if sample.data[0] == frames[-1].data[0]]
    datas = [sample.data for sample in steady[:60]]
    joined = [join(datas[i:i + count]) for i in range(0, len(datas) - count + 1, count)]
    assert all(packet is not None for packet in joined)
    alone = decoded(datas[:len(joined) * count])
    together = decoded(joined)
    assert len(together) == len(alone) > 0  # the durations the packets say
    assert together == alone
    # one datagram instead of ``count``, a few bytes of lengths dearer
    assert sum(map(len, joined)) <= sum(map(len, datas[:len(joined) * count])) + 2 * len(joined) * count


def test_long_frames_take_two_length_bytes():
    frame = bytes([0xFC]) + bytes(range(256)) * 2  # 512 bytes of body, one config
    packet = join([frame, frame])
    assert packet is not None
    assert packet[0] == 0xFF and packet[1] == 0x82  # code 3, VBR, two frames
    first = 252 + (512 & 3)
    assert packet[2:4] == bytes((first, (512 - first) >> 2))
    assert packet[4:] == frame[1:] * 2


@pytest.mark.parametrize("frames_in", [
    [],  # nothing
    [b"\xfc\x01"],  # one frame: nothing to join
    [b"\xfc\x01"] * (MOST_FRAMES + 1),  # over 120 ms
    [b"\xfc\x01", b"\xf4\x01"],  # two configurations
    [b"\xfd\x01\x02", b"\xfd\x01\x02"],  # already two frames each (code 1)
    [b"\xfc\x01", b""],  # an empty packet
])
def test_frames_that_cannot_be_joined_are_refused(frames_in):
    assert join(frames_in) is None


def opus(index: int, data: bytes = b"\xfc\x01\x02") -> Sample:
    return Sample("audio", data, index * OPUS_FRAME, OPUS_CLOCK, index * 0.02, codec="opus")


def test_the_joiner_sends_each_pair_as_its_second_frame_is_due_saying_how_long_it_held():
    joiner = Joiner(2)
    assert joiner.take(opus(0)) == []
    [(packet, held)] = joiner.take(opus(1))
    assert packet.pts == 0 and packet.time == 0 and held == pytest.approx(0.02)
    assert packet.data == join([opus(0).data, opus(1).data])
    assert joiner.take(opus(2)) == []


def test_a_gap_sends_the_held_frame_alone_and_starts_anew():
    joiner = Joiner(2)
    joiner.take(opus(0))
    sent = joiner.take(opus(5))  # frames 1-4 never came (a seek, a loop's seam)
    assert [(packet.pts, packet.data) for packet, _ in sent] == [(0, opus(0).data)]
    assert sent[0][1] == pytest.approx(0.1)
    [(packet, _)] = joiner.take(opus(6))
    assert packet.pts == 5 * OPUS_FRAME


def test_a_change_of_configuration_starts_the_next_packet(frames):
    """libopus moves between bandwidths (the test file's first frames are
    fullband, the rest super-wideband): each packet is of one configuration,
    and every frame goes out once, in order."""
    joiner = Joiner(2)
    sent = [packet for frame in frames[:40] for packet, _ in joiner.take(frame)]
    changes = [i for i in range(1, 40) if frames[i].data[0] != frames[i - 1].data[0]]
    assert changes  # the file does change
    alone = [packet for packet in sent if packet.data[0] & 0x03 == 0]
    assert alone and all(packet.data[0] & 0x03 in (0, 3) for packet in sent)
    assert decoded([packet.data for packet in sent]) == decoded(
        [frame.data for frame in frames[:len(frames[:40]) - len(joiner._held)]])
    pts = [packet.pts for packet in sent]
    assert pts == sorted(pts) and len(set(pts)) == len(pts)


@pytest.mark.parametrize("count", [0, 1, MOST_FRAMES + 1])
def test_a_joiner_of_too_few_or_too_many_frames_is_refused(count):
    with pytest.raises(ValueError, match="frames in a packet"):
        Joiner(count)


def test_a_packet_stays_within_a_datagram():
    """Loud or high-rate frames join fewer a packet: the RTP payload must fit."""
    joiner = Joiner(6)
    big = b"\xfc" + bytes(700)
    out = [packet for i in range(4) for packet, _ in joiner.take(opus(i, big))]
    out += [packet for packet, _ in joiner.flush()]
    assert [packet.pts for packet in out] == [i * OPUS_FRAME for i in range(4)]  # one by one
    assert all(len(packet.data) <= 1200 for packet in out)
    assert join([b"\xfc" + bytes(1276)] * 2) is None  # over an Opus frame's 1275 bytes


def test_silk_frames_join_only_up_to_120_ms():
    silk_60 = b"\x18\x01"  # config 3: SILK narrowband 60 ms, one frame
    assert join([silk_60] * 2) is not None and join([silk_60] * 3) is None


def test_a_packet_that_is_not_one_frame_goes_at_once_and_is_not_held():
    joiner = Joiner(2)
    assert [p.data for p, _ in joiner.take(opus(0, b"\xfd\x01\x02"))] == [b"\xfd\x01\x02"]
    assert [p.pts for p, _ in joiner.take(opus(1, b""))] == [OPUS_FRAME]
    assert joiner.take(opus(2)) == [] and joiner.flush()[0][0].pts == 2 * OPUS_FRAME


def test_pending_leaves_the_frames_held_and_flush_lets_them_go():
    joiner = Joiner(3)
    joiner.take(opus(0))
    joiner.take(opus(1))
    [(packet, held)] = joiner.pending()
    assert packet.data == join([opus(0).data, opus(1).data]) and held == pytest.approx(0.02)
    assert joiner.pending() == [(packet, held)]  # still held
    assert joiner.flush() == [(packet, held)] and joiner.flush() == []


class _Stream:
    """What a batch sends a viewer's audio to (the pure-Python send path)."""

    def __init__(self) -> None:
        self.sent: list[tuple[int, bytes]] = []

    def _send(self, payloads, media_ts, keyframe, abs_send_time, now) -> None:
        self.sent.append((media_ts, payloads[0]))


def _viewer(stream: _Stream):
    from wcs.webrtc.rtpstream import SendPath
    from wcs.webrtc.sender import FastSender
    from wcs.webrtc.viewer import WebRTCViewer

    made = WebRTCViewer.__new__(WebRTCViewer)
    sender = FastSender.__new__(FastSender)
    sender.stream = stream
    made.tracks = {"audio": sender}
    made._path = SendPath(audio_frames=2)
    return made


def frames_of(sent: list[tuple[int, bytes]]) -> list[int]:
    """The frame indexes a viewer got, joined packets counted frame by frame."""
    return [pts // OPUS_FRAME + i for pts, data in sent
            for i in range(data[1] & 0x3F if data[0] & 0x03 == 3 else 1)]


def test_a_viewer_leaving_and_joining_a_batch_misses_no_frame_and_gets_none_twice():
    """An adaptive move takes a viewer out of its batch (fed alone, 20 ms a packet)
    and back: it leaves with the frames held for the others, and comes back on a
    packet's first frame (the others get the held ones at once)."""
    from wcs.webrtc.viewer import WebRTCViewer

    batch = WebRTCViewer.Batch()
    stays, moves = _Stream(), _Stream()
    staying, moving = _viewer(stays), _viewer(moves)
    batch.add(staying)
    batch.add(moving)
    batch.deliver(opus(0))
    batch.remove(moving)  # frame 0 is held: it gets it now
    moves.sent += [(i * OPUS_FRAME, opus(i).data) for i in (1, 2)]  # fed alone meanwhile
    batch.deliver(opus(1))
    batch.deliver(opus(2))
    batch.add(moving)  # frame 2 is held: the others get it now, it had it
    for i in (3, 4, 5, 6):
        batch.deliver(opus(i))
    assert frames_of(stays.sent) == list(range(7))
    assert frames_of(moves.sent) == list(range(7))
    pts = [ts for ts, _ in moves.sent]
    assert pts == sorted(pts) and len(set(pts)) == len(pts)


def test_the_last_viewer_leaving_leaves_no_frame_for_the_next():
    from wcs.webrtc.viewer import WebRTCViewer

    batch = WebRTCViewer.Batch()
    first, later = _Stream(), _Stream()
    batch.add(_viewer(first))
    batch.deliver(opus(0))
    batch.remove(next(iter(batch)))
    batch.add(_viewer(later))
    for i in (500, 501):  # minutes later
        batch.deliver(opus(i))
    assert frames_of(later.sent) == [500, 501]
