"""An MP4's sample tables, read from its ``moov`` alone: where every sample is,
how large, when it is decoded and shown, which are keyframes; and the HLS
segments a VOD playlist cuts them into.

No sample is read: a playlist of any file costs its ``moov`` (kilobytes to a
few megabytes), and each segment then reads only its own byte ranges.
PyAV's index has no presentation times (``ctts``), which B-frames need, so
the boxes are walked here: ``tkhd``, ``mdhd``, ``hdlr``, ``elst``, ``stsd``
(``avcC``, ``esds``), ``stts``, ``ctts``, ``stss``, ``stsc``, ``stsz``/``stz2``,
``stco``/``co64``.
"""

from __future__ import annotations

import struct
from array import array
from collections.abc import Iterator
from dataclasses import dataclass, field

from wcs.errors import WrongFormat

#: Containers walked into on the way to the sample tables.
CONTAINERS = frozenset({"moov", "trak", "mdia", "minf", "stbl", "edts", "dinf"})
#: More samples than this in one track is not a file we index (10 h at 60 fps: 2.2 M).
MAX_SAMPLES = 4_000_000
#: Seconds a segment holds at least (it ends at the first keyframe after).
TARGET = 6.0


def _boxes(
    data: bytes | memoryview, start: int = 0, end: int | None = None
) -> Iterator[tuple[str, int, int]]:
    """(kind, body start, body end) of each box in ``data[start:end]``."""
    end = len(data) if end is None else end
    at = start
    while at + 8 <= end:
        size, kind = struct.unpack_from(">I4s", data, at)
        header = 8
        if size == 1:
            if at + 16 > end:
                raise WrongFormat("moov: a box header is cut off")
            size = struct.unpack_from(">Q", data, at + 8)[0]
            header = 16
        elif size == 0:
            size = end - at
        if size < header or at + size > end:
            raise WrongFormat(f"moov: box {kind.decode('latin-1')!r} has a bad size")
        yield kind.decode("latin-1"), at + header, at + size
        at += size


@dataclass
class Track:
    """One track's samples, in decode order."""

    kind: str  # "video", "audio" or another handler
    codec: str  # the sample entry's four characters: "avc1", "mp4a"...
    timescale: int
    config: bytes = b""  # the avcC record, or the AAC AudioSpecificConfig
    width: int = 0
    height: int = 0
    shift: int = 0  # the edit list's media time: subtracted from presentation times
    sizes: array = field(default_factory=lambda: array("I"))
    offsets: array = field(default_factory=lambda: array("q"))
    dts: array = field(default_factory=lambda: array("q"))
    cts: array = field(default_factory=lambda: array("i"))  # composition offsets
    sync: array | None = None  # keyframe sample numbers (0-based); None: every sample

    def __len__(self) -> int:
        return len(self.sizes)

    def pts(self, index: int) -> int:
        """When sample ``index`` is shown, in the track's timescale."""
        return self.dts[index] + (self.cts[index] if self.cts else 0) - self.shift

    def keyframes(self) -> Iterator[int]:
        return iter(self.sync) if self.sync is not None else iter(range(len(self)))

    @property
    def duration(self) -> float:
        if not len(self):
            return 0.0
        last = len(self) - 1
        step = self.dts[last] - self.dts[last - 1] if last else 0
        return (self.dts[last] + step - self.dts[0]) / self.timescale


def _full(data: memoryview, start: int) -> tuple[int, int]:
    """A full box's version and where its fields begin."""
    return data[start], start + 4


def _table(data: memoryview, start: int, fmt: str) -> Iterator[tuple[int, ...]]:
    """The entries of a table box: a count, then ``fmt`` records."""
    _version, at = _full(data, start)
    (count,) = struct.unpack_from(">I", data, at)
    size = struct.calcsize(fmt)
    if count > MAX_SAMPLES or at + 4 + count * size > len(data):
        raise WrongFormat("moov: a sample table runs past its box")
    return struct.iter_unpack(fmt, data[at + 4 : at + 4 + count * size])


def _array(data: memoryview, start: int, end: int, code: str, fmt: str) -> array:
    """A table of plain numbers (``stco``, ``stss``...) as an array, in native order."""
    _version, at = _full(data, start)
    (count,) = struct.unpack_from(">I", data, at)
    width = struct.calcsize(fmt)
    if count > MAX_SAMPLES or at + 4 + count * width > end:
        raise WrongFormat("moov: a sample table runs past its box")
    values = array(code, bytes(data[at + 4 : at + 4 + count * width]))
    values.byteswap()  # big-endian in the file
    return values


def read_tracks(moov: bytes) -> list[Track]:
    """Every track of a ``moov`` box's body (or of the whole box); refuses damage."""
    data = memoryview(moov)
    if data[4:8] == b"moov":
        data = data[8:]
    tracks = []
    for kind, start, end in _boxes(data):
        if kind == "trak":
            track = _track(data, start, end)
            if track is not None:
                tracks.append(track)
    return tracks


def _track(data: memoryview, start: int, end: int) -> Track | None:
    found: dict[str, tuple[int, int]] = {}

    def visit(start: int, end: int) -> None:
        for kind, body, stop in _boxes(data, start, end):
            if kind in CONTAINERS:
                visit(body, stop)
            else:
                found.setdefault(kind, (body, stop))

    visit(start, end)
    if not {"mdhd", "hdlr", "stsd", "stts", "stsc", "stco"} <= set(found) and not (
        {"mdhd", "hdlr", "stsd", "stts", "stsc", "co64"} <= set(found)
    ):
        return None
    version, at = _full(data, found["mdhd"][0])
    timescale = struct.unpack_from(">I", data, at + (16 if version == 1 else 8))[0]
    handler = bytes(data[found["hdlr"][0] + 8 : found["hdlr"][0] + 12]).decode("latin-1")
    kind = {"vide": "video", "soun": "audio"}.get(handler, handler)
    if not timescale:
        raise WrongFormat("moov: a track has no timescale")
    track = Track(kind, "", timescale)
    _sample_entry(data, *found["stsd"], track)
    if "elst" in found:
        track.shift = _edit_shift(data, found["elst"][0])
    _times(data, found, track)
    _places(data, found, track)
    if "stss" in found:
        track.sync = _array(data, found["stss"][0], found["stss"][1], "I", ">I")
        for index, number in enumerate(track.sync):  # 1-based in the file
            track.sync[index] = number - 1
    return track


def _sample_entry(data: memoryview, start: int, end: int, track: Track) -> None:
    """The codec, its configuration and the picture size, from ``stsd``."""
    _version, at = _full(data, start)
    entries = _boxes(data, at + 4, end)
    first = next(entries, None)
    if first is None:
        return
    codec, body, stop = first
    track.codec = codec
    if track.kind == "video" and stop - body >= 78:
        track.width, track.height = struct.unpack_from(">HH", data, body + 24)
        for kind, inner, inner_end in _boxes(data, body + 78, stop):
            if kind == "avcC":
                track.config = bytes(data[inner:inner_end])
    elif track.kind == "audio" and stop - body >= 28:
        version = struct.unpack_from(">H", data, body + 8)[0]
        skip = {0: 28, 1: 44, 2: 64}.get(version, 28)
        for kind, inner, inner_end in _boxes(data, body + skip, stop):
            if kind == "esds":
                track.config = _audio_config(bytes(data[inner + 4 : inner_end]))


def _audio_config(descriptors: bytes) -> bytes:
    """The DecoderSpecificInfo (tag 5) inside an ES_Descriptor: AAC's config."""
    at = 0
    while at < len(descriptors):
        tag = descriptors[at]
        at += 1
        length = 0
        for _ in range(4):
            if at >= len(descriptors):
                return b""
            byte = descriptors[at]
            at += 1
            length = (length << 7) | (byte & 0x7F)
            if not byte & 0x80:
                break
        if tag == 3:  # ES_Descriptor: id, flags and what they announce, then descriptors
            if at + 3 > len(descriptors):
                return b""
            flags = descriptors[at + 2]
            at += 3
            if flags & 0x80:  # streamDependenceFlag
                at += 2
            if flags & 0x40 and at < len(descriptors):  # URL_Flag
                at += 1 + descriptors[at]
            if flags & 0x20:  # OCRstreamFlag
                at += 2
        elif tag == 4:  # DecoderConfigDescriptor: 13 bytes, then its descriptors
            at += 13
        elif tag == 5:
            return descriptors[at : at + length]
        else:
            at += length
    return b""


def _edit_shift(data: memoryview, start: int) -> int:
    """The media time the edit list starts showing at (B-frames' usual delay)."""
    version, at = _full(data, start)
    (count,) = struct.unpack_from(">I", data, at)
    at += 4
    for _ in range(min(count, 16)):
        if version == 1:
            _duration, media_time = struct.unpack_from(">Qq", data, at)
            at += 16
        else:
            _duration, media_time = struct.unpack_from(">Ii", data, at)
            at += 8
        at += 4  # the rate
        if media_time >= 0:  # an empty edit (-1) only delays the track
            return int(media_time)
    return 0


def _times(data: memoryview, found: dict[str, tuple[int, int]], track: Track) -> None:
    """Decode times (``stts``) and composition offsets (``ctts``)."""
    dts = track.dts
    now = 0
    for count, delta in _table(data, found["stts"][0], ">II"):
        if len(dts) + count > MAX_SAMPLES:
            raise WrongFormat(f"a track has more than {MAX_SAMPLES} samples")
        dts.extend(range(now, now + count * delta, delta) if delta else [now] * count)
        now += count * delta
    if "ctts" in found:
        version = data[found["ctts"][0]]
        offsets = track.cts
        for count, offset in _table(data, found["ctts"][0], ">Ii" if version else ">II"):
            if len(offsets) + count > len(dts):
                raise WrongFormat("moov: ctts names more samples than stts")
            offset = offset - (1 << 32) if offset >= 1 << 31 else offset
            offsets.extend([offset] * count)
        if len(offsets) < len(dts):
            offsets.extend([0] * (len(dts) - len(offsets)))


def _places(data: memoryview, found: dict[str, tuple[int, int]], track: Track) -> None:
    """Sizes (``stsz``/``stz2``) and file offsets (``stsc`` over ``stco``/``co64``)."""
    if "stsz" in found:
        _version, at = _full(data, found["stsz"][0])
        uniform, count = struct.unpack_from(">II", data, at)
        if count > MAX_SAMPLES:
            raise WrongFormat(f"a track has more than {MAX_SAMPLES} samples")
        if uniform:
            track.sizes = array("I", [uniform]) * count
        else:
            box_start, box_end = found["stsz"]
            sizes = array("I", bytes(data[at + 8 : at + 8 + 4 * count]))
            if at + 8 + 4 * count > box_end or box_start > at:
                raise WrongFormat("moov: stsz runs past its box")
            sizes.byteswap()
            track.sizes = sizes
    else:
        raise WrongFormat("moov: a track has no sample sizes (stz2 is not read)")
    if len(track.sizes) != len(track.dts):
        raise WrongFormat("moov: stsz and stts count different samples")
    if "stco" in found:
        chunks = _array(data, found["stco"][0], found["stco"][1], "I", ">I")
    else:
        chunks = _array(data, found["co64"][0], found["co64"][1], "q", ">q")
    runs = list(_table(data, found["stsc"][0], ">III"))
    offsets, sizes = track.offsets, track.sizes
    sample = 0
    for number, (first, per_chunk, _entry) in enumerate(runs):
        last = runs[number + 1][0] - 1 if number + 1 < len(runs) else len(chunks)
        for chunk in range(first - 1, min(last, len(chunks))):
            at = chunks[chunk]
            for _ in range(per_chunk):
                if sample >= len(sizes):
                    break
                offsets.append(at)
                at += sizes[sample]
                sample += 1
    if len(offsets) != len(sizes):
        raise WrongFormat("moov: stsc and stco place fewer samples than stsz counts")


@dataclass(frozen=True)
class Segment:
    """One HLS segment: its samples (ranges of each track's decode order), when it
    starts (s, presentation) and how long it lasts."""

    start: float
    duration: float
    video: range
    audio: range


def plan(video: Track | None, audio: Track | None, target: float = TARGET) -> list[Segment]:
    """Segments cut at keyframes at least ``target`` seconds apart (audio alone:
    every ``target`` seconds); each audio sample goes with the segment its time
    falls in, so the tracks stay together. Audio before the edit list's start
    (AAC's priming frame) is kept: a decoder needs it to decode the next frame
    as a player of the file does (which decodes it, then drops its output)."""
    skip = 0
    if video is not None and len(video):
        scale = video.timescale
        cuts = [0]
        last = video.pts(0)
        for index in video.keyframes():
            if index and (video.pts(index) - last) / scale >= target:
                cuts.append(index)
                last = video.pts(index)
        times = [video.pts(index) / scale for index in cuts]
        ends = [*cuts[1:], len(video)]
        total = max(video.pts(i) for i in range(max(0, len(video) - 16), len(video)))
        end_time = total / scale + (video.duration / max(len(video), 1))
    elif audio is not None and len(audio):
        step = (
            max(1, int(target * audio.timescale / max(1, audio.dts[1] - audio.dts[0])))
            if (len(audio) > 1)
            else 1
        )
        cuts = list(range(skip, len(audio), step))
        times = [audio.pts(index) / audio.timescale for index in cuts]
        ends = [*cuts[1:], len(audio)]
        end_time = times[0] + audio.duration
    else:
        return []
    bounds = [*times[1:], end_time]
    segments = []
    where = skip  # the next audio sample
    for number, (first, stop) in enumerate(zip(cuts, ends, strict=True)):
        if video is not None and len(video):
            frames = range(first, stop)
            begin = where
            if audio is not None:
                last_segment = number == len(cuts) - 1
                while where < len(audio) and (
                    last_segment or audio.pts(where) / audio.timescale < bounds[number]
                ):
                    where += 1
            sounds = range(begin, where)
        else:
            frames, sounds = range(0), range(first, stop)
        segments.append(Segment(times[number], bounds[number] - times[number], frames, sounds))
    return segments
