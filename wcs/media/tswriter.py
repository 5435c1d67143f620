"""MPEG-TS of our own for VOD segments (ISO/IEC 13818-1): H.264 with its PTS
and DTS apart (B-frames as stored), AAC in ADTS, and continuity counters that
go on from any segment to the next whichever is made first.

A VOD playlist's segments are made on request, in any order, and each must be
the same bytes every time (ETag, Range). A player reads them as one TS, so
each PID's counter must continue across a boundary: here every segment's
packets of each elementary stream are a multiple of 16 (the last PES is spread
over a few more packets, stuffed), so every segment starts its counters at 0
and ends where the next begins; its one PAT and one PMT count by segment number.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from dataclasses import dataclass

PACKET = 188
PAYLOAD = 184
PAT_PID, PMT_PID, VIDEO_PID, AUDIO_PID = 0x0000, 0x1000, 0x0100, 0x0101
VIDEO_STREAM_ID, AUDIO_STREAM_ID = 0xE0, 0xC0
#: Added to every timestamp (90 kHz), so that B-frames' early decode times and
#: AAC's priming frame stay positive.
OFFSET = 90_000
#: PCR this far (90 kHz) before the DTS it goes with.
PCR_LEAD = 9_000
#: AAC frames put in one PES at most.
AAC_PER_PES = 8
#: An access unit delimiter, before each picture (what HLS packagers write).
AUD = b"\x00\x00\x00\x01\x09\xf0"


@dataclass(frozen=True)
class Frame:
    """One sample, its times in 90 kHz."""

    data: bytes
    pts: int
    dts: int
    keyframe: bool = False


def _crc(data: bytes) -> int:
    """MPEG-2's CRC-32 (not zlib's: no reflection, no final xor)."""
    crc = 0xFFFFFFFF
    for byte in data:
        crc ^= byte << 24
        for _ in range(8):
            crc = ((crc << 1) ^ 0x04C11DB7) if crc & 0x80000000 else crc << 1
            crc &= 0xFFFFFFFF
    return crc


def _section(table: bytes) -> bytes:
    return table + struct.pack(">I", _crc(table))


def _psi(pid: int, section: bytes, counter: int) -> bytes:
    """A PSI section in one packet, after a pointer field."""
    body = b"\x00" + section
    header = struct.pack(">BHB", 0x47, 0x4000 | pid, 0x10 | (counter & 0x0F))
    return header + body + b"\xff" * (PAYLOAD - len(body))


def pat(counter: int) -> bytes:
    table = struct.pack(">BHHBBBHH", 0x00, 0xB00D, 1, 0xC1, 0, 0, 1, 0xE000 | PMT_PID)
    return _psi(PAT_PID, _section(table), counter)


def pmt(counter: int, video: bool, audio: bool) -> bytes:
    streams = b""
    if video:
        streams += struct.pack(">BHH", 0x1B, 0xE000 | VIDEO_PID, 0xF000)
    if audio:
        streams += struct.pack(">BHH", 0x0F, 0xE000 | AUDIO_PID, 0xF000)
    pcr = VIDEO_PID if video else AUDIO_PID
    length = 9 + len(streams) + 4
    table = struct.pack(">BHHBBBHH", 0x02, 0xB000 | length, 1, 0xC1, 0, 0, 0xE000 | pcr, 0xF000)
    return _psi(PMT_PID, _section(table + streams), counter)


def _timestamp(marker: int, value: int) -> bytes:
    value &= (1 << 33) - 1
    return bytes(
        (
            (marker << 4) | ((value >> 29) & 0x0E) | 1,
            (value >> 22) & 0xFF,
            ((value >> 14) & 0xFE) | 1,
            (value >> 7) & 0xFF,
            ((value << 1) & 0xFE) | 1,
        )
    )


def pes(stream_id: int, payload: bytes, pts: int, dts: int | None) -> bytes:
    """A PES packet (video: length 0, unbounded, as TS allows)."""
    if dts is not None and dts != pts:
        fields = _timestamp(3, pts) + _timestamp(1, dts)
        flags = 0xC0
    else:
        fields = _timestamp(2, pts)
        flags = 0x80
    header = bytes((0x80, flags, len(fields))) + fields
    length = len(header) + len(payload)
    size = 0 if stream_id == VIDEO_STREAM_ID or length > 0xFFFF else length
    return b"\x00\x00\x01" + bytes((stream_id,)) + struct.pack(">H", size) + header + payload


def _adaptation(size: int, pcr: int | None, random_access: bool) -> bytes:
    """An adaptation field of exactly ``size`` bytes (its length byte included)."""
    if size == 0:
        return b""
    if size == 1:
        return b"\x00"
    flags = (0x10 if pcr is not None else 0) | (0x40 if random_access else 0)
    body = bytes((flags,))
    if pcr is not None:
        base = pcr & ((1 << 33) - 1)
        body += struct.pack(">IH", base >> 1, ((base & 1) << 15) | 0x7E00)
    return bytes((size - 1,)) + body + b"\xff" * (size - 1 - len(body))


#: The header of a packet that carries 184 bytes of a PES and nothing else, by PID
#: and counter: most of a segment's packets.
_FULL = {
    pid: [bytes((0x47, pid >> 8, pid & 0xFF, 0x10 | counter)) for counter in range(16)]
    for pid in (VIDEO_PID, AUDIO_PID)
}


def packetize(
    out: list[bytes | memoryview],
    pid: int,
    data: bytes,
    pcr: int | None,
    random_access: bool,
    chunks: Sequence[int],
    counter: int,
) -> int:
    """``data`` (one PES) as TS packets carrying ``chunks`` bytes each, their
    pieces appended to ``out`` (joined once, by the caller); the next counter."""
    view = memoryview(data)
    full = _FULL[pid]
    at = 0
    for index, chunk in enumerate(chunks):
        if index and chunk == PAYLOAD:
            out.append(full[counter & 0x0F])
        else:
            first = index == 0
            size = PAYLOAD - chunk
            if first and (pcr is not None or random_access):
                size = max(size, 8 if pcr is not None else 2)
            control = 0x30 if size else 0x10
            flag = 0x40 if first else 0
            out.append(bytes((0x47, flag | (pid >> 8), pid & 0xFF, control | (counter & 0x0F))))
            if size:
                out.append(_adaptation(size, pcr if first else None, random_access and first))
        out.append(view[at : at + chunk])
        at += chunk
        counter += 1
    return counter


def _chunks(length: int, pcr: bool, random_access: bool) -> list[int]:
    """How many bytes of a PES each packet carries, the first room for its PCR."""
    first = PAYLOAD - (8 if pcr else 2 if random_access else 0)
    sizes = [min(length, first)]
    left = length - sizes[0]
    while left > 0:
        sizes.append(min(left, PAYLOAD))
        left -= sizes[-1]
    return sizes


def _spread(sizes: list[int], extra: int) -> list[int]:
    """``sizes`` cut into ``extra`` more pieces, in order (each still at least a byte)."""
    sizes = list(sizes)
    index = len(sizes) - 1
    while extra > 0:
        while index >= 0 and sizes[index] < 2:
            index -= 1
        if index < 0:
            raise ValueError("a PES too short to spread")
        sizes[index : index + 1] = [sizes[index] - 1, 1]
        extra -= 1
    return sizes


def segment(
    number: int,
    video: Sequence[Frame],
    audio: Sequence[Frame],
    has_video: bool,
    has_audio: bool,
) -> bytes:
    """Segment ``number``'s TS: PAT, PMT, then video and audio PES in time order.
    ``video`` frames carry Annex B; ``audio`` frames are ADTS frames."""
    units: list[tuple[int, int, bytes, int | None, bool]] = []  # (dts, pid, pes, pcr, key)
    for frame in video:
        payload = AUD + frame.data
        data = pes(VIDEO_STREAM_ID, payload, frame.pts + OFFSET, frame.dts + OFFSET)
        units.append((frame.dts, VIDEO_PID, data, frame.dts + OFFSET - PCR_LEAD, frame.keyframe))
    for start in range(0, len(audio), AAC_PER_PES):
        group = audio[start : start + AAC_PER_PES]
        data = pes(AUDIO_STREAM_ID, b"".join(f.data for f in group), group[0].pts + OFFSET, None)
        pcr = group[0].pts + OFFSET - PCR_LEAD if not has_video else None
        units.append((group[0].dts, AUDIO_PID, data, pcr, not has_video))
    units.sort(key=lambda unit: (unit[0], unit[1]))
    out: list[bytes | memoryview] = [pat(number), pmt(number, has_video, has_audio)]
    last = {unit[1]: index for index, unit in enumerate(units)}  # each PID's last PES
    counted = {VIDEO_PID: 0, AUDIO_PID: 0}
    for index, (_dts, pid, data, pcr, key) in enumerate(units):
        chunks = _chunks(len(data), pcr is not None, key)
        if index == last[pid]:  # this PID's last PES here: end its counter at 0 again
            chunks = _spread(chunks, -(counted[pid] + len(chunks)) % 16)
        counted[pid] = packetize(out, pid, data, pcr, key, chunks, counted[pid])
    return b"".join(out)


def adts(frame: bytes, config: bytes) -> bytes:
    """An AAC frame (as MP4 stores it) with its ADTS header, from the AudioSpecificConfig."""
    profile = (config[0] >> 3) - 1 if config else 1
    rate = ((config[0] & 0x07) << 1) | (config[1] >> 7) if len(config) > 1 else 4
    channels = (config[1] >> 3) & 0x0F if len(config) > 1 else 2
    length = len(frame) + 7
    header = bytes(
        (
            0xFF,
            0xF1,
            ((profile & 0x03) << 6) | ((rate & 0x0F) << 2) | ((channels >> 2) & 0x01),
            ((channels & 0x03) << 6) | ((length >> 11) & 0x03),
            (length >> 3) & 0xFF,
            ((length & 0x07) << 5) | 0x1F,
            0xFC,
        )
    )
    return header + frame
