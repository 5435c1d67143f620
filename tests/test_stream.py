"""A stream's life: a broadcast reads only while someone watches, from its "now"."""

from __future__ import annotations

import pytest
from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.python.failure import Failure

from tests.test_registry import FakeMedia, Viewer
from wcs.errors import BadRequest, Conflict, NotFound, Unsupported
from wcs.sources.ranged import NotYetDownloaded
from wcs.streams import uri as uris
from wcs.streams.stream import VodStream


class Taking(Viewer):
    """A subscriber that says which audio it takes (and how much it must hold)."""

    def __init__(self, codecs: frozenset[str], lead: float = 0.0) -> None:
        super().__init__()
        self.audio_codecs = codecs
        self.lead = lead


def broadcast(clock: Clock, media: FakeMedia, **options) -> VodStream:
    gone: list[VodStream] = []
    stream = VodStream(uris.parse("vod-live://a.mp4"), "vod-live://a.mp4", media, clock,
                       gone.append, live=True, **options)
    stream.gone = gone  # type: ignore[attr-defined]
    return stream


def test_a_broadcast_nobody_watches_reads_nothing_and_its_first_viewer_starts_at_now():
    clock, media = Clock(), FakeMedia(duration=600.0)
    clock.advance(1000.0)
    stream = broadcast(clock, media, loop=True, persistent=True)
    clock.advance(100.0)
    assert media.positions == [] and stream.pump is None  # no reader, no timer reading
    viewer = Viewer()
    stream.subscribe(viewer)
    clock.advance(0.01)
    assert media.positions == [100.0]
    first = viewer.got[0]
    assert first.keyframe and 99.0 <= first.time <= 100.0  # the GOP under way at "now"
    clock.advance(1.0)
    assert viewer.got[-1].time > 100.9  # then paced on the broadcast's timeline
    stream.unsubscribe(viewer)
    assert stream.pump is None and not stream.broadcast.has_gop()  # stopped reading
    clock.advance(50.0)
    again = Viewer()
    stream.subscribe(again)
    clock.advance(0.01)
    assert media.positions[-1] == 151.01
    assert again.got[0].keyframe and again.got[0].time >= 150.0  # not the old GOP


def test_a_player_that_holds_media_first_is_read_that_much_earlier():
    clock, media = Clock(), FakeMedia(duration=600.0)
    stream = broadcast(clock, media, loop=True, persistent=True)
    clock.advance(30.0)
    stream.subscribe(Taking(frozenset({"aac"}), lead=2.5))
    clock.advance(0.001)
    assert media.positions == [27.5]


def test_an_unlooped_broadcast_nobody_watches_ends_when_its_pass_would():
    clock, media = Clock(), FakeMedia(duration=60.0)
    stream = broadcast(clock, media, persistent=True)
    clock.advance(59.0)
    assert not stream.closed and media.positions == []
    clock.advance(1.5)
    assert stream.closed and stream.gone == [stream] and media.closed
    late = Viewer()
    stream.subscribe(late)
    assert late.ended == (None, False)  # it reached its end: STOPPED


def test_a_broadcast_watched_then_left_ends_at_its_end_too():
    clock, media = Clock(), FakeMedia(duration=60.0)
    stream = broadcast(clock, media, persistent=True)
    viewer = Viewer()
    stream.subscribe(viewer)
    clock.advance(10.0)
    stream.unsubscribe(viewer)
    clock.advance(49.0)
    assert not stream.closed
    clock.advance(1.5)
    assert stream.closed


def test_opus_is_made_only_while_a_subscriber_takes_it():
    clock, media = Clock(), FakeMedia()
    stream = broadcast(clock, media, loop=True, persistent=True)
    mse = Taking(frozenset({"aac"}))
    stream.subscribe(mse)
    clock.advance(0.01)
    wants = media.wants_opus
    assert wants() is False
    webrtc = Taking(frozenset({"opus"}))
    stream.subscribe(webrtc)
    assert wants() is True
    stream.unsubscribe(webrtc)
    assert wants() is False
    stream.subscribe(Viewer())  # one that does not say takes both
    assert wants() is True


def test_a_personal_play_reads_aac_only_for_a_viewer_that_takes_it_and_a_broadcast_always():
    clock = Clock()
    for takes, wanted in ((frozenset({"opus"}), False), (frozenset({"aac"}), True)):
        media = FakeMedia()
        stream = VodStream(uris.parse("vod://a.mp4"), "vod://a.mp4", media, clock, lambda s: None)
        stream.subscribe(Taking(takes))
        clock.advance(0.01)
        assert media.wants_aac() is wanted
    media = FakeMedia()
    stream = broadcast(clock, media, loop=True, persistent=True)
    stream.subscribe(Taking(frozenset({"opus"})))
    clock.advance(0.01)
    assert media.wants_aac() is True  # a late MSE joiner takes AAC from its cached GOP


def test_a_personal_stream_reads_from_its_start_when_its_viewer_comes():
    clock, media = Clock(), FakeMedia()
    gone: list[VodStream] = []
    stream = VodStream(uris.parse("vod://a.mp4"), "vod://a.mp4", media, clock, gone.append)
    clock.advance(20.0)
    assert media.positions == []
    viewer = Viewer()
    stream.subscribe(viewer)
    clock.advance(0.5)
    assert media.positions == [0.0] and viewer.got[0].time == 0.0
    stream.unsubscribe(viewer)
    assert stream.closed and gone == [stream]


def test_a_personal_stream_gives_a_later_subscriber_its_gop_as_it_was():
    """A rendition made for its viewer's move down the ladder decodes from the
    GOP's keyframe; nobody takes history (no lead) from a personal play."""
    clock, media = Clock(), FakeMedia()
    stream = VodStream(uris.parse("vod://a.mp4"), "vod://a.mp4", media, clock, lambda _: None)
    stream.subscribe(Viewer())
    clock.advance(0)
    for _ in range(45):
        clock.advance(1 / 30)
    feed = Viewer()
    feed.pressed_join = False
    stream.subscribe(feed)
    frames = [sample.pts // 3000 for sample in feed.got]
    assert frames[0] == 30 and feed.got[0].keyframe  # from the GOP's keyframe...
    assert frames == list(range(30, frames[-1] + 1)) and frames[-1] >= 45  # ...as it was
    assert stream.broadcast._recent == []


# --- a personal play's seek and pause


def personal(clock: Clock, media: FakeMedia, lead: float = 0.0) -> tuple[VodStream, Taking]:
    stream = VodStream(uris.parse("vod://a.mp4"), "vod://a.mp4", media, clock, lambda _: None)
    viewer = Taking(frozenset({"aac"}), lead)
    stream.subscribe(viewer)
    clock.advance(0)  # its first sample is read now: its timeline starts
    return stream, viewer


def test_a_seek_plays_from_the_keyframe_before_with_timestamps_going_on():
    clock, media = Clock(), FakeMedia()
    stream, viewer = personal(clock, media)
    clock.advance(2.0)
    last = viewer.got[-1]
    seeking = stream.seek(30.5)
    clock.advance(0)
    seeked = seeking.result
    assert seeked.position == 30.0 and media.positions == [0.0, 30.5]
    first = viewer.got[viewer.got.index(last) + 1]
    assert first.keyframe and first.time == pytest.approx(seeked.timestamp)
    assert abs(first.time - (last.time + 1 / 30)) < 1e-9  # right after the last one sent
    assert first.pts == round(first.time * 90000)
    clock.advance(1.0)
    times = [sample.time for sample in viewer.got]
    assert times == sorted(times) and stream.position() == pytest.approx(31.0, abs=0.05)


class Downloading(FakeMedia):
    """A file still downloading: its end (which ``pass_length`` reads) is there
    only once ``prepare_join``'s fetch has come."""

    def __init__(self) -> None:
        super().__init__()
        self.fetched: Deferred[None] | None = None

    def prepare_join(self, position: float, loop: bool) -> Deferred[None]:
        self.fetched = Deferred()
        return self.fetched

    def pass_length(self) -> float:
        if self.fetched is None or not self.fetched.called:
            raise NotYetDownloaded("the end of the file has not arrived")
        return super().pass_length()


def test_a_seek_into_a_download_reads_the_file_s_end_only_once_fetched():
    clock, media = Clock(), Downloading()
    stream, viewer = personal(clock, media)
    clock.advance(1.0)
    seeking = stream.seek(40.5)
    clock.advance(1.0)  # fetching: nothing read yet, and nothing raised
    assert media.positions == [0.0] and not seeking.called
    assert media.fetched is not None
    media.fetched.callback(None)
    clock.advance(0)
    assert seeking.result.position == 40.0 and media.positions == [0.0, 40.5]
    got = len(viewer.got)
    clock.advance(1.0)
    assert len(viewer.got) > got  # playing on from there


def test_seeks_outside_the_file_or_of_a_broadcast_are_refused_and_the_play_goes_on():
    clock, media = Clock(), FakeMedia(duration=60.0)
    stream, viewer = personal(clock, media)
    clock.advance(1.0)
    for position in (-1.0, 60.0, 1e300, float("nan"), float("inf")):
        with pytest.raises(BadRequest, match="outside the file: give 0 to 60.000 s"):
            stream.seek(position)
    got = len(viewer.got)
    clock.advance(1.0)
    assert len(viewer.got) > got and media.positions == [0.0]
    live = broadcast(clock, FakeMedia())
    live.subscribe(Viewer())
    with pytest.raises(Unsupported, match="personal vod://"):
        live.seek(1.0)
    with pytest.raises(Unsupported):
        live.pause()


def test_a_thousand_seeks_a_second_read_at_most_ten_times_and_the_last_one_wins():
    clock, media = Clock(), FakeMedia(duration=600.0)
    stream, viewer = personal(clock, media)
    answers: list[object] = []
    for n in range(1000):
        stream.seek(n * 0.5).addBoth(answers.append)
        clock.advance(0.001)
    clock.advance(1.0)
    assert len(media.positions) <= 1 + 11  # the first read, then one every SEEK_INTERVAL
    assert media.positions[-1] == 999 * 0.5
    done = [a for a in answers if not isinstance(a, Failure)]
    refused = [a for a in answers if isinstance(a, Failure)]
    assert len(done) + len(refused) == 1000 and len(done) == len(media.positions) - 1
    assert all(f.check(Conflict) and "was replaced" in f.value.info for f in refused)
    assert done[-1].position == 499.0


def test_pause_stops_sending_and_resume_goes_on_with_time_moved_for_a_live_player():
    clock, media = Clock(), FakeMedia()
    stream, viewer = personal(clock, media)  # no lead: WebRTC-like
    clock.advance(1.0)
    stream.pause()
    paused = len(viewer.got)
    clock.advance(5.0)
    assert len(viewer.got) == paused and stream.position() == pytest.approx(1.0, abs=0.05)
    stream.resume()
    clock.advance(0.5)
    after = viewer.got[paused]
    assert after.time == pytest.approx(viewer.got[paused - 1].time + 1 / 30 + 5.0, abs=0.01)
    assert media.positions == [0.0]  # the same reader went on


def test_a_buffering_player_keeps_unbroken_timestamps_across_a_pause():
    clock, media = Clock(), FakeMedia()
    stream, viewer = personal(clock, media, lead=2.5)
    clock.advance(1.0)
    stream.pause()
    paused = len(viewer.got)
    clock.advance(5.0)
    stream.resume()
    clock.advance(0.5)
    assert viewer.got[paused].time == pytest.approx(viewer.got[paused - 1].time + 1 / 30)
    assert stream.position() == pytest.approx(1.5, abs=0.05)


def test_a_seek_while_paused_shows_the_new_picture_and_stays_paused():
    clock, media = Clock(), FakeMedia()
    stream, viewer = personal(clock, media)
    clock.advance(1.0)
    stream.pause()
    before = len(viewer.got)
    stream.seek(10.2)
    clock.advance(3.0)
    assert len(viewer.got) == before + 1 and viewer.got[-1].keyframe
    stream.resume()
    clock.advance(0)
    clock.advance(1.0)
    assert len(viewer.got) >= before + 29
    times = [sample.time for sample in viewer.got]
    assert times == sorted(times)


def test_controls_before_the_play_starts_or_after_it_ends_say_so():
    clock, media = Clock(), FakeMedia()
    stream = VodStream(uris.parse("vod://a.mp4"), "vod://a.mp4", media, clock, lambda _: None)
    with pytest.raises(Conflict, match="not started"):
        stream.pause()
    viewer = Viewer()
    stream.subscribe(viewer)
    clock.advance(0.01)
    stream.seek(1.0)
    waiting = stream.seek(2.0)  # waits for the interval
    failures: list[Failure] = []
    waiting.addErrback(failures.append)
    stream.unsubscribe(viewer)  # the play ends
    assert failures and failures[0].check(NotFound)
    with pytest.raises(NotFound, match="ended"):
        stream.seek(3.0)


def test_a_seek_moves_sound_and_picture_by_the_same_time(tmp_path):
    """Read from a real file: after a seek every AAC frame keeps its place
    against the picture, as the file has it."""
    from tools.makemedia import make_mp4
    from wcs.media.mp4 import Mp4File
    from wcs.sources import OpenedMedia

    make_mp4(tmp_path / "f.mp4", seconds=8)
    in_file = Mp4File(tmp_path / "f.mp4", "f", announce=False)
    aac_times = {round(s.time, 4) for s in in_file.samples() if s.codec == "aac"}
    in_file.close()
    clock = Clock()
    media = OpenedMedia(Mp4File(tmp_path / "f.mp4", "f", announce=False))
    stream = VodStream(uris.parse("vod://f.mp4"), "vod://f.mp4", media, clock, lambda _: None)
    viewer = Taking(frozenset({"aac"}))
    stream.subscribe(viewer)
    clock.advance(0)
    clock.advance(1.0)
    before = len(viewer.got)
    seeked = stream.seek(5.3)
    clock.advance(0)
    clock.advance(1.5)
    moved = seeked.result.timestamp - seeked.result.position  # the picture's shift (s)
    after = viewer.got[before:]
    assert after[0].kind == "video" and after[0].keyframe
    assert after[0].time == pytest.approx(seeked.result.timestamp)
    audio = [s for s in after if s.codec == "aac"]
    assert len(audio) > 40
    assert all(round(s.time - moved, 4) in aac_times for s in audio), [
        round(s.time - moved, 4) for s in audio[:5]]
    stream.close()
