"""AdaptiveView: a viewer moved between a stream and its renditions at keyframes,
its timestamps only going forward, fed in batches when not moving."""

from __future__ import annotations

from twisted.internet.task import Clock

from wcs.media.sample import Sample
from wcs.streams import adaptive
from wcs.streams.adaptive import AdaptiveView, Offer
from wcs.streams.fanout import Broadcast

FRAME = 3000  # 30 fps at 90 kHz


class Step:
    """A stream or a rendition: a real fan-out, and what it was asked."""

    def __init__(self, name: str) -> None:
        self.broadcast = Broadcast(name)
        self.keyframes_asked = 0
        self.started_after: int | None = None

    def subscribe(self, subscriber) -> None:
        self.broadcast.add(subscriber)

    def unsubscribe(self, subscriber) -> None:
        if subscriber is not None:
            self.broadcast.remove(subscriber)

    def request_keyframe(self) -> None:
        self.keyframes_asked += 1

    def start_after(self, pts: int) -> None:
        self.started_after = pts

    def video(self, n: int, keyframe: bool = False) -> None:
        """Frame ``n`` of the timeline."""
        self.broadcast.send(Sample("video", bytes([n % 256]), n * FRAME, 90000,
                                   n / 30, keyframe, "h264"))

    def audio(self, n: int) -> None:
        self.broadcast.send(Sample("audio", b"a", n * 1920, 48000, n * 0.04, True, "opus"))


class Viewer:
    """A player that takes batches, as a WebRTC viewer does."""

    pressed_join = True
    lead = 0.0
    audio_codecs = frozenset({"opus"})

    def __init__(self) -> None:
        self.got: list[tuple[str, int, bool]] = []
        self.batched = 0
        self.ended = None

    def deliver(self, sample: Sample) -> None:
        self.got.append((sample.kind, sample.pts, sample.keyframe))

    def keyframe_wanted(self) -> bool:
        return not self.got

    def closed(self, info, failed) -> None:
        self.ended = (info, failed)

    class Batch:
        def __init__(self) -> None:
            self.members: list[Viewer] = []

        def __iter__(self):
            return iter(list(self.members))

        def add(self, viewer) -> None:
            self.members.append(viewer)

        def remove(self, viewer) -> None:
            self.members.remove(viewer)

        def deliver(self, sample: Sample) -> None:
            for viewer in self.members:
                viewer.batched += 1
                viewer.deliver(sample)


def setup(frames: int = 1):
    """A view watching the source, which has sent frames 0 (a keyframe) to ``frames`` - 1."""
    clock = Clock()
    source, low = Step("source"), Step("180p")
    offers = [Offer("source", (640, 360), 1_300_000, lambda: source),
              Offer("180p", (320, 180), 240_000, lambda: low)]
    viewer = Viewer()
    moved = []
    view = AdaptiveView(viewer, clock, "test", offers, lambda a, b: moved.append((a, b)))
    view.start()
    for n in range(frames):
        source.video(n, keyframe=n == 0)
    return clock, source, low, viewer, view, moved


def videos(viewer: Viewer) -> list[int]:
    return [pts // FRAME for kind, pts, _ in viewer.got if kind == "video"]


def test_down_holds_the_picture_until_the_renditions_idr_then_takes_it_alone():
    clock, source, low, viewer, view, moved = setup(frames=10)
    assert viewer.batched == 10  # with the others: one batch per sample
    view.go(1)
    assert low.started_after == 9 * FRAME  # a new rendition encodes from the next picture
    assert low.keyframes_asked == 0  # not before it sends pictures
    for n in range(10, 14):
        source.video(n)  # the first plays on; then held, waiting for the rendition's IDR
        source.audio(n)  # (its sound goes on meanwhile)
        low.video(n - 2)  # behind by two frames, no IDR yet
        assert low.keyframes_asked == 1
    low.video(12, keyframe=True)  # the IDR after what the viewer has
    for n in range(13, 16):
        low.video(n)
    clock.advance(0)
    source.video(16)
    low.video(16)
    assert videos(viewer) == list(range(11)) + [12, 13, 14, 15, 16]
    assert moved == [(0, 1)] and view.index == 1 and view.offer.name == "180p"
    assert viewer not in source.broadcast.subscribers and view not in source.broadcast.subscribers
    assert len(low.broadcast) == 1  # the view alone: its side is gone
    audio = [pts for kind, pts, _ in viewer.got if kind == "audio"]
    assert audio == [n * 1920 for n in range(10, 14)]


def test_up_plays_the_rendition_until_the_sources_next_keyframe():
    clock, source, low, viewer, view, moved = setup()
    view.go(1)
    low.video(1, keyframe=True)
    clock.advance(0)
    for n in range(2, 6):
        low.video(n)
    viewer.got.clear()
    view.go(0)
    assert source.keyframes_asked == 1  # a publisher would send one at once
    for n in range(6, 12):
        low.video(n)
        source.video(n + 1, keyframe=(n + 1 in (7, 10)))  # the source is ahead
    clock.advance(0)
    low.video(12)
    source.video(13)
    assert videos(viewer) == [6, 7, 8, 9, 10, 11, 12, 13]  # on at the source's keyframe
    assert moved == [(0, 1), (1, 0)]
    assert not low.broadcast.subscribers  # the rendition is left (and would close)


def test_the_new_steps_keyframe_must_be_later_than_what_was_shown():
    clock, source, low, viewer, view, moved = setup(frames=20)
    view.go(1)
    low.video(5, keyframe=True)  # an IDR of the past (a catch-up): not taken
    low.video(6)
    assert videos(viewer) == list(range(20))
    low.video(20, keyframe=True)
    assert videos(viewer)[-1] == 20


def test_a_move_that_finds_no_keyframe_gives_up_and_asks_the_old_step_for_one():
    clock, source, low, viewer, view, moved = setup()
    view.go(1)
    for n in range(1, 5):
        source.video(n)  # the first plays on, the rest are held
        low.video(n)  # never a keyframe
    clock.advance(adaptive.MOVE_TIMEOUT)
    assert view.moving() is None and view.index == 0 and moved == []
    assert source.keyframes_asked == 1
    assert not low.broadcast.subscribers
    source.video(5, keyframe=True)
    assert videos(viewer) == [0, 1, 5]
    assert viewer.batched == 2  # back in the batch


def test_a_down_overtakes_an_up_and_leave_lets_go_of_every_step():
    clock, source, low, viewer, view, moved = setup()
    view.go(1)
    assert view.moving() == 1
    view.leave()
    assert not source.broadcast.subscribers and not low.broadcast.subscribers
    assert view.step is None
    clock.advance(adaptive.MOVE_TIMEOUT)  # its timer is gone too
    assert moved == []


def test_the_end_of_its_step_ends_the_viewer_once():
    clock, source, low, viewer, view, moved = setup()
    view.go(1)
    source.broadcast.finish("Stream not found", True)
    low.broadcast.finish("Stream not found", True)
    assert viewer.ended == ("Stream not found", True)
    view.go(0)  # nothing more happens to an ended view
    assert moved == []


def test_a_rendition_that_sends_no_picture_leaves_the_viewer_playing_until_it_gives_up():
    """A rendition of a personal play (no GOP kept) decodes nothing before the
    source's next keyframe: the viewer's picture goes on meanwhile."""
    clock, source, low, viewer, view, moved = setup()
    view.go(1)
    for n in range(1, 60):
        source.video(n)
        low.audio(n)  # its sound comes through; no picture yet
    assert videos(viewer) == list(range(60)) and low.keyframes_asked == 0
    clock.advance(adaptive.MOVE_TIMEOUT)
    assert view.moving() is None and view.index == 0
    assert source.keyframes_asked == 0  # nothing was held: nothing to repair
    source.video(60)
    assert videos(viewer)[-1] == 60 and viewer.batched == 2  # back in the batch


def test_feedback_moves_it_by_the_chooser():
    clock, source, low, viewer, view, moved = setup()
    for step in range(32):  # past the receiver's settling
        clock.advance(0.25)
        view.feedback(1_900_000, 0.0 if step % 4 == 0 else None, 1_250_000)
    assert view.moving() is None
    clock.advance(0.25)
    view.feedback(400_000, None, None)
    assert view.moving() == 1
    view.request_keyframe()  # a PLI before the rendition sends pictures: the source
    assert (source.keyframes_asked, low.keyframes_asked) == (1, 0)
    low.video(1)
    view.request_keyframe()  # a PLI while held: the rendition is asked
    assert low.keyframes_asked == 2
