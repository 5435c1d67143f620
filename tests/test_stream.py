"""A stream's life: a broadcast reads only while someone watches, from its "now"."""

from __future__ import annotations

from twisted.internet.task import Clock

from tests.test_registry import FakeMedia, Viewer
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
