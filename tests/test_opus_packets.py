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
