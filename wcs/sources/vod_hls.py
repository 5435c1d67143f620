"""Any file as HLS VOD, made on request: a playlist from the MP4's index alone,
each segment remuxed to MPEG-TS from its own byte ranges, nothing transcoded
and nothing written.

The index (sample tables, segment plan) is built once per file version on the
file threads and kept (at most :data:`MAX_INDEXES` and :data:`MAX_INDEX_BYTES`,
least recently used out);
a segment is read and muxed on the file threads too, so the reactor only
routes. B-frame files play as stored (TS carries PTS and DTS).
"""

from __future__ import annotations

import hashlib
import math
import os
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from twisted.internet.defer import Deferred, fail, maybeDeferred, succeed
from twisted.python.failure import Failure

from wcs.errors import NotFound, Unsupported, WcsError, WrongFormat
from wcs.media import boxes, h264, tswriter
from wcs.media.mp4index import Segment, Track, plan, read_tracks
from wcs.sources import S3_PREFIX, Sources, local

#: Indexes kept, and the bytes their tables may hold together (a 2 h file's: ~10 MB).
MAX_INDEXES = 1000
MAX_INDEX_BYTES = 256 * 2**20
#: Bytes a sample costs in an index's tables (offset, size, decode time, offset to show).
SAMPLE_BYTES = 24
#: Largest ``moov`` read (a 10 h file's is tens of MB).
MAX_MOOV = 64 * 2**20
#: A segment's samples are read in one span when they lie within this many bytes
#: (four file threads: at most four such spans in memory at once).
ONE_READ = 8 * 2**20
CLOCK = 90_000


@dataclass
class VodIndex:
    """One file version's playlist plan."""

    location: str  # the canonical location (``sub/file.mp4``)
    path: Path
    video: Track | None
    audio: Track | None
    avc: h264.AvcConfig | None
    segments: list[Segment]
    etag: str
    modified: float  # the file's change time (Unix s)
    target: int  # #EXT-X-TARGETDURATION

    @property
    def weight(self) -> int:
        """Bytes its tables hold, about."""
        samples = sum(len(track) for track in (self.video, self.audio) if track is not None)
        return samples * SAMPLE_BYTES + len(self.segments) * 128

    def playlist(self, query: str = "") -> bytes:
        """The VOD playlist; ``query`` (``?token=...``) follows each segment's name."""
        lines = [
            "#EXTM3U",
            "#EXT-X-VERSION:3",
            "#EXT-X-PLAYLIST-TYPE:VOD",
            f"#EXT-X-TARGETDURATION:{self.target}",
            "#EXT-X-MEDIA-SEQUENCE:0",
            "#EXT-X-INDEPENDENT-SEGMENTS",
        ]
        for number, segment in enumerate(self.segments):
            lines.append(f"#EXTINF:{segment.duration:.3f},")
            lines.append(f"{number}.ts{query}")
        lines.append("#EXT-X-ENDLIST")
        return ("\n".join(lines) + "\n").encode("ascii")


class VodHls:
    """Playlists and segments of the media folder's files."""

    def __init__(self, sources: Sources) -> None:
        self.sources = sources
        self._indexes: OrderedDict[tuple[str, int, int], VodIndex] = OrderedDict()
        self._opening: dict[tuple[str, int, int], Deferred[VodIndex]] = {}
        self.weight = 0  # bytes the kept indexes hold

    def index(self, location: str) -> Deferred[VodIndex]:
        """The index of ``location`` (what follows ``vod://``), built once per version."""
        try:
            return self._index(location)
        except WcsError as error:
            return fail(error)

    def _index(self, location: str) -> Deferred[VodIndex]:
        if location.startswith(S3_PREFIX):
            raise Unsupported("S3 objects are not served as HLS VOD yet")
        path = local.resolve(self.sources.media_dir, location)
        try:
            status = path.stat()
        except OSError:
            raise NotFound() from None
        key = (str(path), status.st_size, status.st_mtime_ns)
        found = self._indexes.get(key)
        if found is not None:
            self._indexes.move_to_end(key)
            return succeed(found)
        opening = self._opening.get(key)
        if opening is None:
            canonical = self.sources.canonical(location)
            opening = self._opening[key] = self.sources.work(build_index, canonical, path)

            def built(index: VodIndex) -> VodIndex:
                self._indexes[key] = index
                self.weight += index.weight
                while len(self._indexes) > 1 and (
                    len(self._indexes) > MAX_INDEXES or self.weight > MAX_INDEX_BYTES
                ):
                    _key, old = self._indexes.popitem(last=False)
                    self.weight -= old.weight
                return index

            def done(result: object) -> object:
                self._opening.pop(key, None)
                return result

            opening.addCallback(built).addBoth(done)
        waiting: Deferred[VodIndex] = Deferred()
        opening.addBoth(_pass_on, waiting)
        return waiting

    def segment(self, index: VodIndex, number: int) -> Deferred[bytes]:
        """Segment ``number`` of ``index`` as TS."""
        if not 0 <= number < len(index.segments):
            return maybeDeferred(_no_segment, number, len(index.segments))
        return self.sources.work(make_segment, index, number)


def _pass_on(result: object, waiting: Deferred) -> object:
    """Every caller of one build gets its result (a failure handled by each)."""
    if isinstance(result, Failure):
        waiting.errback(result)
        return None
    waiting.callback(result)
    return result


def _no_segment(number: int, count: int) -> bytes:
    raise NotFound(f"no segment {number}: the file has segments 0 to {count - 1}")


def build_index(location: str, path: Path) -> VodIndex:
    """Read ``path``'s boxes and ``moov``, and plan its segments (a file thread)."""
    with path.open("rb") as handle:
        status = os.fstat(handle.fileno())
        found = boxes.check_layout(handle, status.st_size)
        moov = next(box for box in found if box.kind == "moov")
        if moov.size > MAX_MOOV:
            raise WrongFormat(f"its index (moov) is larger than {MAX_MOOV >> 20} MiB")
        handle.seek(moov.offset)
        tracks = read_tracks(handle.read(moov.size))
    video = next((t for t in tracks if t.kind == "video" and len(t)), None)
    audio = next((t for t in tracks if t.kind == "audio" and len(t)), None)
    if video is not None and video.codec not in ("avc1", "avc3"):
        raise WrongFormat(f"video is {video.codec}, not H.264")
    if audio is not None and audio.codec != "mp4a":
        raise WrongFormat(f"audio is {audio.codec}, not AAC")
    if video is None and audio is None:
        raise WrongFormat("no audio or video track")
    avc = h264.parse_avcc(video.config) if video is not None else None
    segments = plan(video, audio)
    identity = f"{location}\0{status.st_size}\0{status.st_mtime_ns}\0{status.st_ino}"
    etag = hashlib.sha256(identity.encode()).hexdigest()[:20]
    target = max(1, math.ceil(max((s.duration for s in segments), default=1.0)))
    return VodIndex(location, path, video, audio, avc, segments, etag, status.st_mtime, target)


def make_segment(index: VodIndex, number: int) -> bytes:
    """Read segment ``number``'s samples and mux them (a file thread)."""
    segment = index.segments[number]
    spans = []
    if index.video is not None:
        spans += [(index.video.offsets[i], index.video.sizes[i]) for i in segment.video]
    if index.audio is not None:
        spans += [(index.audio.offsets[i], index.audio.sizes[i]) for i in segment.audio]
    with index.path.open("rb") as handle:
        read = _reader(handle.fileno(), spans)
        video = _video_frames(index, segment, read)
        audio = _audio_frames(index, segment, read)
    return tswriter.segment(number, video, audio, index.video is not None, index.audio is not None)


Read = Callable[[int, int], bytes]


def _reader(fd: int, spans: list[tuple[int, int]]) -> Read:
    """A function giving a sample's bytes: one read of the whole span when the
    segment's samples lie close together, else one read each."""
    if not spans:
        return lambda offset, size: b""
    low = min(offset for offset, _ in spans)
    high = max(offset + size for offset, size in spans)
    if high - low <= ONE_READ:
        block = os.pread(fd, high - low, low)
        view = memoryview(block)

        def from_block(offset: int, size: int) -> bytes:
            data = bytes(view[offset - low : offset - low + size])
            if len(data) != size:
                raise WrongFormat("file is truncated (a sample lies past its end)")
            return data

        return from_block

    def each(offset: int, size: int) -> bytes:
        data = os.pread(fd, size, offset)
        if len(data) != size:
            raise WrongFormat("file is truncated (a sample lies past its end)")
        return data

    return each


def _ticks(value: int, scale: int) -> int:
    return (value * CLOCK + scale // 2) // scale


def _video_frames(index: VodIndex, segment: Segment, read: Read) -> list[tswriter.Frame]:
    track, avc = index.video, index.avc
    if track is None or avc is None:
        return []
    frames = []
    keys = set(track.sync) if track.sync is not None else None
    for position, i in enumerate(segment.video):
        data, is_idr = h264.to_annexb(read(track.offsets[i], track.sizes[i]), avc)
        if position == 0 and not is_idr:  # a segment's first picture decodes alone
            data = avc.parameter_sets + data
        frames.append(
            tswriter.Frame(
                data,
                _ticks(track.pts(i), track.timescale),
                _ticks(track.dts[i] - track.shift, track.timescale),
                keys is None or i in keys,
            )
        )
    return frames


def _audio_frames(index: VodIndex, segment: Segment, read: Read) -> list[tswriter.Frame]:
    track = index.audio
    if track is None:
        return []
    frames = []
    for i in segment.audio:
        pts = _ticks(track.pts(i), track.timescale)
        frames.append(
            tswriter.Frame(
                tswriter.adts(read(track.offsets[i], track.sizes[i]), track.config), pts, pts
            )
        )
    return frames
