"""The recorder as a subscriber: H.264 and AAC written as given, from the first
keyframe; the file completed when the stream closes it, or removed on failure."""

from __future__ import annotations

from pathlib import Path

import av
import pytest
from twisted.internet.defer import maybeDeferred

from tools.makemedia import make_mp4
from wcs.errors import RecordingFailed
from wcs.media import h264
from wcs.media.audio import AacTranscoder
from wcs.media.mp4 import Mp4File
from wcs.media.sample import AudioInfo, MediaInfo
from wcs.recording.recorder import MIB, Recorder


@pytest.fixture(scope="module")
def source(tmp_path_factory) -> Path:
    return make_mp4(tmp_path_factory.mktemp("rec") / "in.mp4", seconds=3, width=320,
                    height=180, audio_rate=48000)


def recorder_for(folder: Path, source: Path, states: list) -> tuple[Recorder, Mp4File]:
    media = Mp4File(source, "in")
    info = MediaInfo(0.0, media.info.video, AudioInfo(48000, 2, media.info.audio.aac_config))
    return Recorder(folder, "out.mp4", info, "test", lambda *a: states.append(a),
                    in_thread=maybeDeferred), media


def outcome(recorder: Recorder):
    out: list = []
    recorder.completed.addBoth(out.append)
    return out[0]


def test_writes_what_it_is_given_from_the_first_keyframe(tmp_path, source):
    states: list = []
    recorder, media = recorder_for(tmp_path, source, states)
    samples = list(media.samples())
    video = [s for s in samples if s.kind == "video"]
    start = next(i for i, s in enumerate(samples) if s.kind == "video" and s.keyframe
                 and s.time > 0.5)  # join at the second keyframe
    assert recorder.keyframe_wanted()
    for sample in samples[start:]:
        recorder.deliver(sample)
    assert not recorder.keyframe_wanted()
    assert recorder.partial.exists() and not recorder.final.exists()
    recorder.closed("Stopped by publisher stop", False)
    assert outcome(recorder) == "out.mp4" and states == []
    assert not recorder.partial.exists()
    kept = [s for s in video if s.time >= samples[start].time]
    with av.open(str(recorder.final)) as written:
        stream = written.streams.video[0]
        config = h264.parse_avcc(stream.codec_context.extradata)
        units = [h264.split_avcc(bytes(p), config.length_size)
                 for p in written.demux(stream) if p.size]
    assert units == [h264.split_annexb(s.data) for s in kept]  # byte for byte
    with av.open(str(recorder.final)) as written:
        audio = written.streams.audio[0]
        assert audio.codec_context.name == "aac" and audio.sample_rate == 48000
        seconds = sum(f.samples for f in written.decode(audio)) / 48000
    assert abs(seconds - (3 - samples[start].time)) < 0.2
    media.close()


def test_nothing_recorded_is_removed_and_says_so(tmp_path, source):
    recorder, media = recorder_for(tmp_path, source, [])
    recorder.closed(None, False)
    failure = outcome(recorder)
    assert failure.check(RecordingFailed) and failure.value.info == "Nothing was recorded"
    assert list(tmp_path.iterdir()) == []
    media.close()


def test_a_write_error_fails_once_and_removes_the_partial_file(tmp_path, source):
    states: list = []
    recorder, media = recorder_for(tmp_path, source, states)
    samples = list(media.samples())
    for sample in samples[:5]:
        recorder.deliver(sample)
    assert recorder.started

    class Full:
        def mux(self, packet):
            raise OSError(28, "No space left on device")

        def close(self):
            pass

    recorder.container = Full()
    for sample in samples[5:15]:
        recorder.deliver(sample)
    assert states == [("failed", "Recording failed: No space left on device")]
    recorder.closed(None, False)
    assert outcome(recorder).value.info == "Recording failed: No space left on device"
    assert list(tmp_path.iterdir()) == []
    media.close()


def test_a_folder_it_cannot_write_to_is_refused_at_once(tmp_path, source):
    with pytest.raises(RecordingFailed, match="Cannot record to"):
        recorder_for(tmp_path / "missing", source, [])


def test_a_published_streams_aac_keeps_its_priming_and_its_tail(tmp_path, source):
    """Opus in, as a page publishes it; the AAC made once for the stream goes in the
    file whole: the encoder's first frame marked as priming, the flushed tail kept."""
    media = Mp4File(source, "in")
    samples = list(media.samples())
    opus = [s for s in samples if s.codec == "opus"]
    video = [s for s in samples if s.kind == "video"]
    transcoder = AacTranscoder()
    info = MediaInfo(0.0, media.info.video, AudioInfo(48000, 2, transcoder.config))
    recorder = Recorder(tmp_path, "pub.mp4", info, "test", lambda *a: None,
                        in_thread=maybeDeferred)
    stream = sorted([*video, *opus], key=lambda s: s.time)
    for sample in stream:
        recorder.deliver(sample)
        if sample.codec == "opus":
            for aac in transcoder.feed(sample):
                recorder.deliver(aac)
    for aac in transcoder.flush():
        recorder.deliver(aac)
    recorder.closed(None, False)
    assert outcome(recorder) == "pub.mp4"
    with av.open(str(recorder.final)) as written:
        audio = written.streams.audio[0]
        first = next(p for p in written.demux(audio) if p.size)
        assert first.pts == -1024  # the priming frame, which players skip
    with av.open(str(recorder.final)) as written:
        played = sum(f.samples for f in written.decode(written.streams.audio[0])) / 48000
    sent = len(opus) * 960 / 48000
    assert abs(played - sent) < 0.011, (played, sent)
    media.close()


def test_a_bug_while_writing_fails_the_recording_saying_so_with_its_traceback(tmp_path,
                                                                             source):
    from twisted.logger import capturedLogs

    from wcs.recording.recorder import INTERNAL_FAILURE

    states: list = []
    recorder, media = recorder_for(tmp_path, source, states)
    samples = list(media.samples())
    for sample in samples[:5]:
        recorder.deliver(sample)

    class Buggy:
        def mux(self, packet):
            raise AttributeError("a bug, not the disk")

        def close(self):
            pass

    recorder.container = Buggy()
    with capturedLogs() as events:
        for sample in samples[5:15]:
            recorder.deliver(sample)
    assert states == [("failed", INTERNAL_FAILURE)]  # once
    assert [e["log_failure"].getErrorMessage() for e in events if "log_failure" in e] == [
        "a bug, not the disk"]
    recorder.closed(None, False)
    assert outcome(recorder).value.info == INTERNAL_FAILURE
    assert list(tmp_path.iterdir()) == []
    media.close()


def test_a_recording_at_its_size_limit_is_kept_and_ends_the_publication(tmp_path, source):
    states: list = []
    media = Mp4File(source, "in")
    info = MediaInfo(0.0, media.info.video, AudioInfo(48000, 2, media.info.audio.aac_config))
    recorder = Recorder(tmp_path, "out.mp4", info, "test", lambda *a: states.append(a),
                        in_thread=maybeDeferred, max_size=MIB // 64, min_free=0)
    samples = list(media.samples())
    for sample in samples:
        recorder.deliver(sample)
    assert states == [("failed", "Limit reached: recording size in MiB "
                                 "(record_max_size=0.015625)")]
    assert 0 < recorder.written <= MIB // 64
    assert recorder.written < sum(len(s.data) for s in samples) - 1000  # it stopped early
    recorder.closed("Stopped by publisher stop", False)
    assert outcome(recorder) == "out.mp4"  # kept, and it plays
    with av.open(str(recorder.final)) as written:
        assert sum(1 for p in written.demux(written.streams.video[0]) if p.size) > 0
    media.close()


def test_recordings_leave_the_free_disk_floor(tmp_path, source):
    media = Mp4File(source, "in")
    info = MediaInfo(0.0, media.info.video, AudioInfo(48000, 2, media.info.audio.aac_config))
    with pytest.raises(RecordingFailed, match=r"record_min_free_disk=512\)"):
        Recorder(tmp_path, "no.mp4", info, "test", lambda *a: None, min_free=512 * MIB,
                 free=lambda folder: 100 * MIB)
    assert not (tmp_path / ".no.mp4.part").exists() and not (tmp_path / "no.mp4").exists()
    free = [600 * MIB]
    states: list = []
    recorder = Recorder(tmp_path, "out.mp4", info, "test", lambda *a: states.append(a),
                        in_thread=maybeDeferred, min_free=512 * MIB,
                        free=lambda folder: free[0])
    samples = list(media.samples())
    half = len(samples) // 2
    for sample in samples[:half]:
        recorder.deliver(sample)
    assert states == []
    free[0] = 512 * MIB + 1000  # someone else filled the disk
    recorder._next_disk_check = 0  # (it looks every MiB written; the clip is smaller)
    for sample in samples[half:]:
        recorder.deliver(sample)
    assert states == [("failed", "Limit reached: free disk space in MiB "
                                 "(record_min_free_disk=512)")]
    recorder.closed(None, False)
    assert outcome(recorder) == "out.mp4"
    media.close()
