"""Fan-out and per-viewer buffering, without a network."""

from __future__ import annotations

from testkit.harness import run
from wcs.media.sample import Sample
from wcs.streams.fanout import GOP_LIMIT, Broadcast
from wcs.webrtc.viewer import QUEUE_LIMIT, EncodedTrack


def video(n: int, key: bool) -> Sample:
    return Sample("video", b"frame%d" % n, n * 3000, 90000, n / 30, keyframe=key)


def audio(n: int) -> Sample:
    return Sample("audio", b"a", n * 960, 48000, n / 50)


class Sink:
    pressed_join = True

    def __init__(self):
        self.got: list[Sample] = []
        self.ended = None

    def deliver(self, sample):
        self.got.append(sample)

    def closed(self, info, failed):
        self.ended = (info, failed)


def test_late_joiner_gets_the_gop_pressed_before_the_live_edge():
    broadcast = Broadcast("t")
    early = Sink()
    broadcast.add(early)
    for n in range(75):  # keyframes at 0 and 60
        broadcast.send(video(n, n % 60 == 0))
        broadcast.send(audio(n))
    late = Sink()
    broadcast.add(late)
    cached = late.got
    assert [s.data for s in cached] == [b"frame%d" % n for n in range(60, 75)]
    assert cached[0].keyframe and all(s.kind == "video" for s in cached)
    assert cached[-1].pts == 74 * 3000
    assert [b.pts - a.pts for a, b in zip(cached, cached[1:])] == [1] * 14
    broadcast.send(video(75, False))
    assert late.got[-1].pts == early.got[-1].pts == 75 * 3000


def test_gop_cache_is_bounded():
    broadcast = Broadcast("t")
    broadcast.send(video(0, True))
    for n in range(1, GOP_LIMIT + 10):
        broadcast.send(video(n, False))
    late = Sink()
    broadcast.add(late)
    assert late.got == []  # waits for the next keyframe instead
    broadcast.send(video(999, True))
    assert late.got[-1].keyframe


def test_a_failing_subscriber_is_dropped_and_told():
    class Broken(Sink):
        def deliver(self, sample):
            raise RuntimeError("boom")

    broadcast = Broadcast("t")
    broken, fine = Broken(), Sink()
    broadcast.add(broken)
    broadcast.add(fine)
    broadcast.send(video(0, True))
    assert broken.ended == ("Internal error", True)
    assert len(broadcast) == 1 and len(fine.got) == 1


def test_finish_tells_everyone():
    broadcast = Broadcast("t")
    sinks = [Sink(), Sink()]
    for sink in sinks:
        broadcast.add(sink)
    broadcast.finish("Stopped by server", failed=False)
    assert [s.ended for s in sinks] == [("Stopped by server", False)] * 2
    assert len(broadcast) == 0


def test_a_subscriber_that_fails_while_closing_is_logged_and_the_others_are_told():
    from twisted.logger import capturedLogs

    class Stubborn(Sink):
        def closed(self, info, failed):
            raise RuntimeError("cannot close")

    broadcast = Broadcast("t")
    sinks = [Sink(), Stubborn(), Sink()]
    for sink in sinks:
        broadcast.add(sink)
    with capturedLogs() as events:
        broadcast.finish("Stopped by server", failed=False)
    assert [sinks[0].ended, sinks[2].ended] == [("Stopped by server", False)] * 2
    assert [e["log_failure"].getErrorMessage() for e in events if "log_failure" in e] == [
        "cannot close"]


def test_a_bug_in_the_fan_out_ends_a_file_stream_failed_and_its_viewers_are_told(tmp_path):
    """Not one subscriber's failure (that one is dropped) but the broadcast's own:
    the pump ends the stream FAILED, logs the traceback, and the stream is released."""
    from twisted.internet.task import Clock
    from twisted.logger import capturedLogs

    from tools.makemedia import make_mp4
    from wcs.media.mp4 import Mp4File
    from wcs.sources import OpenedMedia
    from wcs.streams import uri
    from wcs.streams.stream import VodStream

    path = make_mp4(tmp_path / "f.mp4", seconds=2, width=160, height=90)
    gone: list[VodStream] = []
    clock = Clock()
    stream = VodStream(uri.parse("vod-live://f.mp4"), "vod-live://f.mp4",
                       OpenedMedia(Mp4File(path, "f")), clock, gone.append, live=True)
    viewer = Sink()
    stream.subscribe(viewer)

    def broken(sample):
        raise KeyError("fan-out bug")

    with capturedLogs() as events:
        clock.advance(0.5)
        assert viewer.got and viewer.ended is None
        stream.broadcast._remember = broken  # a defect in the broadcast itself
        clock.advance(0.5)
    assert viewer.ended == ("Internal error", True)
    assert gone == [stream] and stream.closed
    assert any("log_failure" in e for e in events)
    assert clock.getDelayedCalls() == []


def test_track_starts_on_a_keyframe_and_stays_bounded_when_not_read():
    async def scenario():
        track = EncodedTrack("video")
        track.push(video(0, False))  # not a keyframe: dropped
        assert track._queue.qsize() == 0
        for n in range(1, 3 * QUEUE_LIMIT):
            track.push(video(n, n % 60 == 1))
            assert track._queue.qsize() <= QUEUE_LIMIT
        assert track.dropped > 0
        first = await track.recv()
        track.stop()
        return first

    first = run(scenario())
    assert bytes(first).startswith(b"frame")
    # after a cut the queue restarted at a keyframe: frame numbers 1 + 60k
    assert (int(bytes(first)[5:]) - 1) % 60 == 0


def test_a_viewer_is_taken_out_of_its_batch_whole_even_after_its_sender_stopped():
    from wcs.webrtc.rtpstream import SendPath
    from wcs.webrtc.sender import FastSender
    from wcs.webrtc.viewer import WebRTCViewer

    def viewer(stream: object) -> WebRTCViewer:
        made = WebRTCViewer.__new__(WebRTCViewer)
        sender = FastSender.__new__(FastSender)
        sender.stream = stream
        made.tracks = {"video": sender}
        made._path = SendPath()
        return made

    batch = WebRTCViewer.Batch()
    first, second = viewer("stream 1"), viewer("stream 2")
    batch.add(first)
    batch.add(second)
    first.tracks["video"].stream = None  # aiortc stopped it before the stream let go
    batch.remove(first)
    assert batch.streams["video"] == ["stream 2"] and list(batch) == [second]


class MseLike(Sink):
    """A subscriber that must hold 2.5 s of media before it shows any."""

    pressed_join = False
    lead = 2.5


def aac(n: int) -> Sample:
    return Sample("audio", b"aac%d" % n, n * 1024, 44100, n * 1024 / 44100, codec="aac")


def test_a_joiner_with_a_lead_gets_that_much_history_video_and_aac():
    broadcast = Broadcast("t")
    aac_count = 0
    for n in range(200):  # keyframes every 2 s (60 frames): 0, 60, 120, 180
        broadcast.send(video(n, n % 60 == 0))
        while aac(aac_count).time <= n / 30:
            broadcast.send(aac(aac_count))
            aac_count += 1
    late = MseLike()
    broadcast.add(late)
    got = late.got
    # from the keyframe at least 2.5 s back (frame 120, at 4.0 s; now is 6.63 s)
    assert got[0].keyframe and got[0].data == b"frame120"
    videos = [s for s in got if s.kind == "video"]
    assert [s.data for s in videos] == [b"frame%d" % n for n in range(120, 200)]
    assert [s.pts for s in videos] == [n * 3000 for n in range(120, 200)]  # own timestamps
    sounds = [s for s in got if s.codec == "aac"]
    assert sounds and 4.0 - 0.05 <= sounds[0].time and sounds[-1].time <= 199 / 30
    span = got[-1].time - got[0].time
    assert 2.5 <= span <= 2.5 + 2.0 + 0.1  # at least the lead, at most a GOP more
    plain = Sink()
    broadcast.add(plain)  # the others still get the GOP, pressed, video only
    assert plain.got[0].data == b"frame180" and all(s.kind == "video" for s in plain.got)


def test_history_is_bounded():
    from wcs.streams.fanout import HISTORY_LIMIT

    broadcast = Broadcast("t")
    broadcast.send(video(0, True))
    for n in range(1, HISTORY_LIMIT + 10):  # one endless GOP
        broadcast.send(video(n, False))
    late = MseLike()
    broadcast.add(late)
    assert late.got == []
    assert len(broadcast._recent) == 0  # dropped, until the next keyframe


def test_a_personal_stream_sends_its_lead_at_once_unless_it_re_encodes(tmp_path):
    """A lead read at once from a B-frame file would be that much x264 work in one
    go on the reactor: such a file is paced from its first sample instead."""
    from twisted.internet.task import Clock

    from tools.makemedia import make_mp4
    from wcs.media.mp4 import Mp4File
    from wcs.sources import OpenedMedia
    from wcs.streams import uri
    from wcs.streams.stream import VodStream

    plain = make_mp4(tmp_path / "plain.mp4", seconds=4, width=160, height=90)
    bframes = make_mp4(tmp_path / "b.mp4", seconds=4, width=160, height=90, profile="high",
                       bframes=2)
    sent = {}
    for path in (plain, bframes):
        clock = Clock()
        media = OpenedMedia(Mp4File(path, "f"))
        stream = VodStream(uri.parse(f"vod://{path.name}"), path.name, media, clock,
                           lambda _: None)
        viewer = Sink()
        viewer.lead = 2.5
        stream.subscribe(viewer)
        for _ in range(30):
            clock.advance(0.01)
        sent[path.name] = [s.time for s in viewer.got if s.kind == "video"]
        stream.terminate("done")
    assert max(sent["plain.mp4"]) >= 2.4  # 2.5 s at once
    assert sent["b.mp4"] and max(sent["b.mp4"]) < 0.6  # paced from its start


def test_a_publication_learns_its_picture_size_from_its_keyframes():
    from twisted.internet.task import Clock

    from wcs.media.sample import MediaInfo, VideoInfo
    from wcs.streams.stream import PublishedStream

    sps = bytes.fromhex("6742c00dd90141fa10000003001000000303c0f142a480")  # x264's, 320x240
    stream = PublishedStream("cam", MediaInfo(0.0, VideoInfo(0, 0, 0.0, "42e01f"), None),
                             lambda: None, lambda _: None, Clock())
    told: list = []
    stream.watch_size(lambda width, height: told.append((width, height)))
    stream.send(Sample("video", b"\x00\x00\x00\x01\x41\x88", 0, 90000, 0.0, keyframe=False))
    assert stream.info.video.width == 0
    stream.send(Sample("video", b"\x00\x00\x00\x01" + sps + b"\x00\x00\x00\x01\x65\x88",
                       3000, 90000, 0.03, keyframe=True))
    assert (stream.info.video.width, stream.info.video.height) == (320, 240)
    stream.send(Sample("video", b"\x00\x00\x00\x01\x67\x42", 6000, 90000, 0.06,
                       keyframe=True))  # a broken SPS changes nothing
    assert stream.info.video.width == 320
    assert told == [(320, 240)]  # once: when it changed


def test_a_broadcast_knows_which_audio_its_subscribers_take():
    from tests.test_registry import Viewer

    class Taking(Viewer):
        def __init__(self, codecs):
            super().__init__()
            self.audio_codecs = frozenset(codecs)

    broadcast = Broadcast("t")
    webrtc, mse, snapshot = Taking({"opus"}), Taking({"aac"}), Taking(())
    for each in (mse, snapshot):
        broadcast.add(each)
    assert not broadcast.wants("opus") and broadcast.wants("aac")
    broadcast.add(webrtc)
    broadcast.remove(webrtc)
    broadcast.remove(webrtc)  # twice: counted once
    assert not broadcast.wants("opus")
    broadcast.add(Viewer())  # says nothing: takes both
    assert broadcast.wants("opus")
    broadcast.finish(None, False)
    assert not broadcast.wants("aac")
