"""A stream cut into HLS segments: each a TS that decodes on its own, starting
on a keyframe, in a playlist that follows the spec; memory bounded."""

from __future__ import annotations

import datetime
import io
import itertools
from collections.abc import Iterator
from pathlib import Path

import av
import pytest

from tools.makemedia import make_mp4
from wcs.hls import segmenter as hls
from wcs.hls.segmenter import Segmenter
from wcs.media import mpegts
from wcs.media.mp4 import Mp4File
from wcs.media.sample import MediaInfo, Sample, VideoInfo


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("hls")
    make_mp4(folder / "gop1.mp4", seconds=6, width=320, height=180, gop=30)
    make_mp4(folder / "audio.mp4", seconds=4, video=False)
    return folder


def run(path: Path, loop: bool = False, until: float = 1e9) -> tuple[Segmenter, list[Sample]]:
    media = Mp4File(path, "test")
    cut = Segmenter(media.info, "test")
    fed = []
    for sample in media.samples(loop=loop):
        if sample.time > until:
            break
        cut.deliver(sample)
        fed.append(sample)
    return cut, fed


def segments_made(files: Path, count: int) -> tuple[Segmenter, Iterator[Sample]]:
    """A looping file fed until ``count`` segments are made; the samples to come."""
    media = Mp4File(files / "gop1.mp4", "test")
    cut = Segmenter(media.info, "test")
    samples = media.samples(loop=True)
    while cut.made < count:
        cut.deliver(next(samples))
    return cut, samples


def packets(data: bytes) -> dict[str, list[av.Packet]]:
    found: dict[str, list[av.Packet]] = {"video": [], "audio": []}
    with av.open(io.BytesIO(data), format="mpegts") as container:
        for packet in container.demux():
            if packet.size:
                found[packet.stream.type].append(packet)
    return found


def test_segments_start_on_keyframes_and_decode_on_their_own(files):
    cut, _ = run(files / "gop1.mp4")
    cut.closed(None, False)
    assert cut.made == 6  # a keyframe a second: a segment a second
    for segment in cut.segments:
        assert segment.keyframe
        found = packets(segment.data)
        assert found["video"][0].is_keyframe
        with av.open(io.BytesIO(segment.data), format="mpegts") as container:
            frames = list(container.decode(video=0))
        assert len(frames) == len(found["video"]) and frames[0].width == 320
        video = [float(p.pts * p.time_base) for p in found["video"]]
        audio = [float(p.pts * p.time_base) for p in found["audio"]]
        assert abs((video[-1] - video[0]) - (audio[-1] - audio[0])) < 0.1  # they agree
        assert abs(segment.duration - 1.0) < 0.05
    numbers = [segment.number for segment in cut.segments]
    assert numbers == list(range(6))


def listed(playlist: str) -> list[tuple[str, str]]:
    """(EXTINF, URI) of each segment of a playlist."""
    lines = playlist.splitlines()
    return [(line, lines[index + 1]) for index, line in enumerate(lines)
            if line.startswith("#EXTINF:")]


def test_the_playlist_lists_the_last_segments_and_ends_with_the_stream(files):
    cut, _ = run(files / "gop1.mp4", loop=True, until=12.5)
    playlist = cut.playlist()
    lines = playlist.splitlines()
    assert lines[:6] == ["#EXTM3U", "#EXT-X-VERSION:6", "#EXT-X-TARGETDURATION:2",
                         "#EXT-X-MEDIA-SEQUENCE:6",
                         "#EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES,PART-HOLD-BACK=1.500",
                         "#EXT-X-PART-INF:PART-TARGET=0.500"]
    assert listed(playlist) == [("#EXTINF:1.000,", f"{n}.ts") for n in range(6, 12)]
    assert "#EXT-X-ENDLIST" not in playlist
    assert len(cut.segments) == hls.KEPT and cut.segment(3) is None and cut.segment(4)
    cut.closed(None, False)
    ended = cut.playlist()
    assert ended.endswith("#EXT-X-ENDLIST\n")
    assert "PART" not in ended and "SERVER-CONTROL" not in ended  # nothing more to wait for
    assert cut.made == 13  # the last, partial, second too


def test_parts_of_at_most_the_target_make_up_each_segment(files):
    cut, _ = run(files / "gop1.mp4", loop=True, until=12.5)
    made = cut.made
    # kept: the last PARTS_KEPT and the current; listed: the last PARTED and the current
    assert set(cut.parts) == set(range(made - hls.PARTS_KEPT, made + 1))
    for number in (made - 2, made - 1):
        parts = cut.parts[number]
        segment = cut.segment(number)
        assert [part.index for part in parts] == list(range(len(parts))) and len(parts) == 2
        assert all(part.duration <= hls.PART_TARGET + 1e-3 for part in parts)
        assert abs(sum(part.duration for part in parts) - segment.duration) < 0.002
        assert parts[0].independent and not any(part.independent for part in parts[1:])
        found = [packets(part.data) for part in parts]  # each a TS that stands alone
        assert found[0]["video"][0].is_keyframe
        whole = packets(segment.data)
        for kind in ("video", "audio"):  # the segment's samples, split in order
            assert [bytes(p) for f in found for p in f[kind]] == \
                [bytes(p) for p in whole[kind]]
            assert [p.pts for f in found for p in f[kind]] == [p.pts for p in whole[kind]]
    playlist = cut.playlist()
    uris = [line.split('URI="')[1].split('"')[0] for line in playlist.splitlines()
            if line.startswith("#EXT-X-PART:")]
    assert uris == [part.uri for number in range(made - hls.PARTED, made + 1)
                    for part in cut.parts[number]]
    assert cut.part(made - hls.PARTS_KEPT, 0)  # no longer listed, still fetchable
    coming = len(cut.parts[made])
    assert playlist.splitlines()[-1] == f'#EXT-X-PRELOAD-HINT:TYPE=PART,URI="{made}.{coming}.ts"'
    assert cut.next_part() == (made, coming)
    assert cut.part(made - 1, 1) is cut.parts[made - 1][1] and cut.part(made - 1, 2) is None


def test_a_player_may_wait_for_the_next_part(files):
    cut, samples = segments_made(files, 2)
    number, coming = cut.next_part()
    assert cut.has(number - 1) and not cut.has(number) and not cut.has(number, coming)
    assert cut.has(number, coming - 1) if coming else True
    fired = []
    cut.changed().addCallback(fired.append)
    while not fired:
        cut.deliver(next(samples))
    assert cut.has(number, coming) or cut.has(number)
    waiting = [cut.changed() for _ in range(hls.MAX_WAITING)]
    with pytest.raises(hls.TooManyWaiting):
        cut.changed()
    waiting[0].cancel()  # a player that gave up makes room
    waiting[0].addErrback(lambda _: None)
    cut.changed()
    cut.release()
    assert cut.parts == {} and all(done.called for done in waiting)
    assert cut.has(number + 5, 0)  # once ended nothing more comes: nobody waits


def test_timestamps_continue_across_segments_and_loops(files):
    cut, _ = run(files / "gop1.mp4", loop=True, until=14)
    ends = []
    for segment in cut.segments:
        found = packets(segment.data)
        video = [float(p.pts * p.time_base) for p in found["video"]]
        ends.append((video[0], video[-1]))
    for (_, last), (first, _) in zip(ends, ends[1:]):
        assert abs(first - last - 1 / 30) < 0.002  # the next frame, loop or not


def test_audio_only_streams_are_cut_every_second(files):
    cut, _ = run(files / "audio.mp4")
    cut.closed(None, False)
    assert cut.made == 4
    for segment in cut.segments:
        found = packets(segment.data)
        assert found["video"] == [] and found["audio"]
        assert 0.95 < segment.duration < 1.1
    last = cut.parts[cut.made - 1]  # audio's parts: any may begin playback
    assert len(last) >= 2 and all(part.independent and part.duration <= 0.501
                                  for part in last)


def frame(pts: int, keyframe: bool = False, size: int = 1000) -> Sample:
    return Sample("video", b"\x00\x00\x00\x01\x65" + b"\x88" * size, pts, 90000,
                  pts / 90000, keyframe=keyframe, codec="h264")


def test_a_publisher_is_asked_for_keyframes_and_a_keyframeless_stream_is_cut_anyway():
    asked = []
    info = MediaInfo(0.0, VideoInfo(0, 0, 0.0, "42e01f"), None)
    cut = Segmenter(info, "test", lambda: asked.append(True))
    assert cut.keyframe_wanted()
    cut.deliver(frame(0))  # before any keyframe: nothing to start with
    assert cut.made == 0 and cut.keyframe_wanted()
    cut.deliver(frame(3000, keyframe=True))
    assert not cut.keyframe_wanted()
    for n in range(2, 700):  # 23 s
        cut.deliver(frame(3000 * n))
        cut.deliver(frame(3000 * n))  # a repeated timestamp is dropped, never muxed
    assert asked == [True, True, True]  # at 2 s into each segment
    assert [segment.keyframe for segment in cut.segments] == [True, False]
    assert [round(segment.duration) for segment in cut.segments] == [10, 10]


def test_segments_say_when_they_were_live(files):
    """EXT-X-PROGRAM-DATE-TIME before each segment (and the one being filled): the
    wall clock of its first sample, from samples delivered when due, even when the
    first GOP came all at once, late, as a broadcast's cached GOP does."""
    media = Mp4File(files / "gop1.mp4", "test")
    samples = list(itertools.takewhile(lambda s: s.time < 4.7, media.samples()))
    began = 1_800_000_000.0  # the broadcast's moment 0, in Unix time
    now = [0.0]
    cut = Segmenter(media.info, "test", wall=lambda: now[0])
    for sample in samples:
        # the first second comes at once at 1.6 s; after that each sample when due (+2 ms)
        now[0] = began + (1.6 if sample.time < 1.0 else sample.time + 0.002)
        cut.deliver(sample)
    lines = cut.playlist().splitlines()
    stamped = [(lines[i], lines[i + 1]) for i, line in enumerate(lines)
               if line.startswith("#EXT-X-PROGRAM-DATE-TIME:")]
    walls = [datetime.datetime.fromisoformat(line.split(":", 1)[1].replace("Z", "+00:00"))
             .timestamp() for line, _ in stamped]
    numbers = [int(after.split('URI="')[1].split(".")[0]) if "URI=" in after else None
               for _, after in stamped]
    listed = [segment for segment in cut.segments][-hls.LISTED:]
    assert listed[0].number == 0  # the one that began with the late burst
    assert len(walls) == len(listed) + 1  # and the segment being filled
    for wall, segment in zip(walls, listed):
        assert abs(wall - (began + segment.number * 1.0)) < 0.005, (wall - began, segment)
    assert abs(walls[-1] - (began + cut.made * 1.0)) < 0.005
    assert numbers[-1] == cut.made  # its parts follow


@pytest.mark.parametrize("fps", [5, 15, 24, 60])
def test_parts_keep_under_the_target_whatever_the_frame_rate(fps):
    """The frame rate is measured, not taken from the description (a publishing
    page says none): a part ends before one more frame would make it too long."""
    info = MediaInfo(0.0, VideoInfo(0, 0, 0.0, "42e01f"), None)  # says no fps
    cut = Segmenter(info, "test")
    step = 90000 // fps
    for n in range(fps * 5):  # 5 s, a keyframe every 2 s
        cut.deliver(frame(step * n, keyframe=n % (2 * fps) == 0, size=10))
    parts = [part for number in sorted(cut.parts) for part in cut.parts[number]]
    assert len(parts) >= 6
    assert all(part.duration <= hls.PART_TARGET + 1e-3 for part in parts), \
        [part.duration for part in parts]
    assert max(part.duration for part in parts) > hls.PART_TARGET - 1.0 / fps - 1e-3


def test_a_player_waiting_at_a_segment_s_end_wakes_to_the_whole_segment(files):
    cut, samples = segments_made(files, 1)
    seen = []

    def woken(_):
        seen.append(cut.playlist())
        if len(seen) < 6:
            cut.changed().addCallback(woken)

    cut.changed().addCallback(woken)
    while len(seen) < 6:
        cut.deliver(next(samples))
    for playlist in seen:  # the hint always names a part that will be made
        number, index = cut.next_part() if playlist is seen[-1] else (None, None)
        hint = playlist.splitlines()[-1]
        assert hint.startswith("#EXT-X-PRELOAD-HINT:TYPE=PART,URI=")
        segment, part = map(int, hint.split('URI="')[1].rstrip('"').split(".")[:2])
        assert cut.part(segment, part) is not None or (segment, part) == (number, index)


def test_what_is_held_is_bounded():
    info = MediaInfo(0.0, VideoInfo(0, 0, 0.0, "42e01f"), None)
    cut = Segmenter(info, "test")
    cut.deliver(frame(0, keyframe=True, size=1 << 20))
    for n in range(1, 40):  # 40 MB in a third of a second
        cut.deliver(frame(300 * n, size=1 << 20))
    assert cut.made == 2 and cut._bytes < hls.MAX_BYTES
    cut.release()
    assert not cut.segments and cut._pending == [] and cut.ended


def test_an_audio_specific_config_says_rate_and_channels():
    assert mpegts.aac_rate(bytes([0x12, 0x10])) == 44100
    assert mpegts.aac_rate(bytes([0x11, 0x90])) == 48000
    assert mpegts.aac_channels(bytes([0x12, 0x10])) == 2
    assert mpegts.aac_rate(b"") == 44100 and mpegts.aac_rate(bytes([0x17, 0x90])) == 44100


def continuity_breaks(pieces: list[bytes]) -> list[str]:
    """Where ``pieces``, read one after another as one TS, break a PID's continuity
    counter (ISO/IEC 13818-1 2.4.3.3: +1 a packet with payload, the same without)."""
    last: dict[int, int] = {}
    breaks = []
    for number, data in enumerate(pieces):
        assert len(data) % 188 == 0
        for at in range(0, len(data), 188):
            assert data[at] == 0x47
            pid = ((data[at + 1] & 0x1F) << 8) | data[at + 2]
            payload, counter = data[at + 3] & 0x10, data[at + 3] & 0x0F
            flagged = (data[at + 3] & 0x20 and data[at + 4] and data[at + 5] & 0x80)
            if pid in last and not flagged:  # (a discontinuity indicator may restart it)
                expected = (last[pid] + 1) & 0x0F if payload else last[pid]
                if counter != expected:
                    breaks.append(f"piece {number}, PID {pid:#x}: {counter}, not {expected}")
            last[pid] = counter
    return breaks


def ffmpeg_warnings(data: bytes, tmp_path: Path) -> str:
    import shutil
    import subprocess

    ffmpeg = shutil.which("ffmpeg")
    assert ffmpeg, "ffmpeg is missing: scripts/install.sh --test installs it"
    (tmp_path / "read.ts").write_bytes(data)
    return subprocess.run([ffmpeg, "-hide_banner", "-v", "warning", "-i",
                           str(tmp_path / "read.ts"), "-f", "null", "-"],
                          capture_output=True, text=True, timeout=60, check=True).stderr


def test_continuity_counters_run_on_across_segments_and_parts(files, tmp_path):
    """A player reads a playlist's segments (or parts, or segments then parts) as
    one TS: every PID's counter, PAT and PMT included, goes on from piece to piece."""
    cut, _ = run(files / "gop1.mp4", loop=True, until=7.5)
    made = cut.made
    numbers = range(made - hls.PARTS_KEPT, made)
    segments = [cut.segment(number).data for number in numbers]
    parts = [part.data for number in numbers for part in cut.parts[number]]
    assert continuity_breaks(segments) == []
    assert continuity_breaks(parts) == []
    # an LL-HLS player that reads segments, then the live edge's parts, then a segment
    middle = numbers[len(numbers) // 2]
    mixed = [cut.segment(number).data for number in numbers if number < middle]
    mixed += [part.data for part in cut.parts[middle]]
    mixed += [cut.segment(number).data for number in numbers if number > middle]
    assert continuity_breaks(mixed) == []
    for data in segments:  # each still stands alone: its own SDT, PAT and PMT first
        assert {((data[at + 1] & 0x1F) << 8) | data[at + 2] for at in (0, 188)} == {0x11, 0}
    warnings = ffmpeg_warnings(b"".join(segments), tmp_path)
    assert "corrupt" not in warnings.lower() and "continuity" not in warnings.lower(), warnings


def test_continuity_carries_the_counters_of_whole_ts_packets():
    def packet(pid: int, counter: int, payload: bool = True) -> bytes:
        flags = (0x10 if payload else 0x20) | counter
        return bytes([0x47, pid >> 8, pid & 0xFF, flags]) + bytes(184)

    carried = mpegts.Continuity()
    first = carried.carry(packet(0, 0) + packet(0x100, 0) + packet(0x100, 1))
    assert [first[at + 3] & 0x0F for at in (0, 188, 376)] == [0, 0, 1]
    # the next piece, muxed alone, restarts at 0: carried on instead
    second = carried.carry(packet(0, 0) + packet(0x100, 0) + packet(0x100, 0, payload=False)
                           + packet(0x1FFF, 7))
    assert [second[at + 3] & 0x0F for at in (0, 188, 376, 564)] == [1, 2, 2, 7]
    assert second[376 + 3] & 0xF0 == 0x20  # the rest of the byte as it was
    with pytest.raises(ValueError):
        carried.carry(b"\x47" * 100)


def test_a_segmenter_joining_a_broadcast_starts_its_sound_with_its_picture(files):
    """The first segment begins on the cached GOP's keyframe, a second or so back:
    its AAC comes with it (not only from the moment of joining on)."""
    from wcs.streams.fanout import Broadcast

    media = Mp4File(files / "gop1.mp4", "test")
    broadcast = Broadcast("test")
    cut = Segmenter(media.info, "test")
    for sample in media.samples(loop=True, wants_opus=lambda: False):
        if sample.time >= 1.7 and cut not in broadcast.subscribers:
            broadcast.add(cut)  # the GOP from 1.0 s: 0.7 s back
        broadcast.send(sample)
        if cut.made >= 2:
            break
    first = packets(cut.segments[0].data)
    video = float(first["video"][0].pts * first["video"][0].time_base)
    audio = float(first["audio"][0].pts * first["audio"][0].time_base)
    assert first["video"][0].is_keyframe and abs(video - hls.LEAD) < 0.002  # (its time, less base)
    assert cut._base == pytest.approx(1.0 - hls.LEAD)  # the keyframe at 1.0 s
    assert 0 <= audio - video < 1024 / 44100 + 1e-3, (video, audio)  # within one AAC frame


def test_a_new_picture_size_starts_a_segment_marked_discontinuity(files, tmp_path):
    """A playlist's next file (another SPS) cuts at its first keyframe and is marked
    EXT-X-DISCONTINUITY (with its parts); once it leaves the playlist, the count of
    marks gone is EXT-X-DISCONTINUITY-SEQUENCE."""
    from wcs.media.sample import shifted

    make_mp4(tmp_path / "big.mp4", seconds=2, width=640, height=360, gop=30)
    make_mp4(tmp_path / "small.mp4", seconds=2, width=320, height=180, gop=30)
    small, big = Mp4File(tmp_path / "small.mp4", "small"), Mp4File(tmp_path / "big.mp4", "big")
    cut = Segmenter(small.info, "test")
    at = 0.0
    for medium in (small, big, small, big):
        medium_samples = list(medium.samples())
        for sample in medium_samples:
            cut.deliver(shifted(sample, at))
        at += max(s.time for s in medium_samples if s.kind == "video") + 1 / 30
        medium._rewind()
    marked = [s for s in cut.segments if s.discontinuity]
    assert len(marked) == 3, [(s.number, s.discontinuity) for s in cut.segments]
    for segment in marked:  # each starts on the new file's keyframe, at its own size
        video = packets(segment.data)["video"]
        assert video[0].is_keyframe
    text = cut.playlist()
    assert text.count("#EXT-X-DISCONTINUITY\n") == sum(
        s.discontinuity for s in list(cut.segments)[-hls.LISTED:])
    lines = text.splitlines()
    for index, line in enumerate(lines):  # the mark comes before the segment's parts and URI
        if line == "#EXT-X-DISCONTINUITY":
            following = lines[index + 1:index + 3]
            assert following[0].startswith("#EXT-X-PROGRAM-DATE-TIME"), following
    # more segments push the marked ones out: the sequence counts them
    while cut.made < 40:
        for sample in small.samples():
            cut.deliver(shifted(sample, at))
        at += 2.0
        small._rewind()
    listed_numbers = [s.number for s in list(cut.segments)[-hls.LISTED:]]
    assert all(s.number < listed_numbers[0] for s in marked)
    assert "#EXT-X-DISCONTINUITY-SEQUENCE:4" in cut.playlist()  # and big → small again


def test_a_rung_follows_its_source_s_numbers_timestamps_and_dates():
    """HLS ABR: a rendition's segmenter started later takes the number, the TS
    timestamps and the date of the source's segment that starts where it does,
    and never asks its rendition for a keyframe of its own (that would cut
    somewhere the source does not)."""
    info = MediaInfo(0.0, VideoInfo(320, 180, 30.0, "42e01f"), None)
    clock = iter(itertools.count(1_000_000, 1 / 30))
    source = Segmenter(info, "source", wall=lambda: next(clock))
    asked = []
    rung = Segmenter(info, "rung", lambda: asked.append(True), wall=lambda: 5e6, leader=source)
    for n in range(0, 30 * 9):  # 9 s, a keyframe every 2 s
        source.deliver(frame(3000 * n, keyframe=n % 60 == 0))
        if n >= 30 * 4:  # the rung joins at 4 s, and takes the GOP from there
            rung.deliver(frame(3000 * n, keyframe=n % 60 == 0))
    assert [s.number for s in source.segments] == [0, 1, 2, 3]
    assert [s.number for s in rung.segments] == [2, 3]
    for mine, theirs in zip(rung.segments, list(source.segments)[2:], strict=True):
        assert (mine.start, mine.duration) == (theirs.start, theirs.duration)
        assert mine.wall == pytest.approx(theirs.wall, abs=1e-3)
        assert packets(mine.data)["video"][0].pts == packets(theirs.data)["video"][0].pts
    assert "#EXT-X-MEDIA-SEQUENCE:2" in rung.playlist()
    assert asked == []
