"""The VOD segments' own MPEG-TS writer (wcs/media/tswriter.py): packets that
FFmpeg reads back as written, PTS and DTS apart, and continuity counters that
run on from any segment into the next."""

from __future__ import annotations

import io
from collections import Counter

import av

from wcs.media import tswriter
from wcs.media.tswriter import AUDIO_PID, PACKET, PAT_PID, PMT_PID, VIDEO_PID, Frame

SPS_PPS_IDR = (b"\x00\x00\x00\x01\x67\x42\xc0\x1e\xd9\x00\xa0\x47\xfe\xc8"
               b"\x00\x00\x00\x01\x68\xce\x3c\x80\x00\x00\x00\x01\x65" + b"\x88" * 700)
AAC_CONFIG = b"\x12\x10"  # LC, 44.1 kHz, stereo


def counters(data: bytes) -> dict[int, list[int]]:
    found: dict[int, list[int]] = {}
    for at in range(0, len(data), PACKET):
        assert data[at] == 0x47
        pid = ((data[at + 1] & 0x1F) << 8) | data[at + 2]
        if data[at + 3] & 0x10:  # with a payload
            found.setdefault(pid, []).append(data[at + 3] & 0x0F)
    return found


def segment(number: int, frames: int = 7) -> bytes:
    video = [Frame(SPS_PPS_IDR + bytes([i]) * (i * 90), pts=3003 * (i + 2), dts=3003 * i,
                   keyframe=i == 0) for i in range(frames)]
    audio = [Frame(tswriter.adts(bytes([i]) * (150 + i), AAC_CONFIG), 2090 * i, 2090 * i)
             for i in range(frames * 2)]
    return tswriter.segment(number, video, audio, True, True)


def test_each_segment_s_counters_run_from_zero_to_fifteen_and_its_psi_by_number():
    for number in range(3):
        found = counters(segment(number, frames=3 + number * 5))
        for pid in (VIDEO_PID, AUDIO_PID):
            assert len(found[pid]) % 16 == 0 and found[pid] == [i % 16 for i in
                                                                range(len(found[pid]))]
        assert found[PAT_PID] == found[PMT_PID] == [number]


def test_ffmpeg_reads_back_what_was_written_pts_and_dts_apart():
    data = b"".join(segment(n) for n in range(3))
    with av.open(io.BytesIO(data), format="mpegts") as container:
        kinds = Counter()
        video = []
        for packet in container.demux():
            if packet.size:
                kinds[packet.stream.type] += 1
                if packet.stream.type == "video":
                    video.append((packet.pts, packet.dts))
    assert kinds["video"] == 21 and kinds["audio"] >= 40
    offset = tswriter.OFFSET
    assert video[:3] == [(offset + 6006, offset), (offset + 9009, offset + 3003),
                         (offset + 12012, offset + 6006)]


def test_adts_headers_say_the_config_and_the_length():
    frame = tswriter.adts(b"\x01" * 100, AAC_CONFIG)
    assert frame[:2] == b"\xff\xf1" and len(frame) == 107
    assert ((frame[3] & 0x03) << 11) | (frame[4] << 3) | (frame[5] >> 5) == 107
    assert (frame[2] >> 2) & 0x0F == 4  # 44100 Hz
    assert ((frame[2] & 0x01) << 2) | (frame[3] >> 6) == 2  # stereo
