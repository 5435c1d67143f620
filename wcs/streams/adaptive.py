"""A viewer moved between a stream and its ladder's renditions, at keyframes.

An :class:`AdaptiveView` is the subscriber a WebRTC play of a stream gets when
it pinned no size: it holds the viewer and one of the stream's steps (the
source, or a rendition of :mod:`wcs.streams.ladder`), and :meth:`move`\\ s it to
another as an SFU switches simulcast layers. The viewer's track is the same
throughout (one SSRC, its sequence numbers going on): every step is on the
source's timeline, so its timestamps go on too, and a move only ever goes
forward in time:

- to a rendition (behind the source by its encoding), the viewer plays on
  until the rendition sends a picture (one just made decodes the source's GOP
  first; one whose source kept none, past its longest, waits for the source's
  next keyframe); then the rendition is asked for an IDR and the viewer's video
  is held until it comes, a frame or two later;
- to the source (ahead of its renditions), the viewer plays on until the
  source's next keyframe, and takes that;
- its audio (the same in every step) comes from the step it leaves until the
  new one's picture starts.

Which step, a :class:`~wcs.streams.bandwidth.Chooser` decides from the
browser's feedback (:meth:`AdaptiveView.feedback`). A view out of a move is
fed by its step's :class:`Batch` with every other view there (one send per
sample for all of them, as for plain viewers); during a move it is fed one by one.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger

from wcs.media.sample import Sample
from wcs.streams.bandwidth import Chooser
from wcs.streams.fanout import audio_codecs
from wcs.streams.stream import cancel_call
from wcs.streams.subscriber import Subscriber

log = Logger()

#: Longest a move may wait for its keyframe (a source's GOP may be 10 s long).
MOVE_TIMEOUT = 12.0


class Step(Protocol):
    """What a view can be subscribed to: a stream or a rendition."""

    def subscribe(self, subscriber: Subscriber) -> None: ...

    def unsubscribe(self, subscriber: Subscriber | None) -> None: ...

    def request_keyframe(self) -> None: ...


@dataclass(frozen=True)
class Offer:
    """A step a viewer may be on: its name ("source", or the rung's), its picture,
    the bits/s it needs (0: not known), and how to get it (the stream itself, or
    its rendition, made or shared, at the time of the move)."""

    name: str
    size: tuple[int, int]
    need: int
    open: Callable[[], Step]


class AdaptiveView:
    """Subscriber: ``viewer`` fed from one of ``offers`` at a time (the source
    first); :meth:`feedback` or :meth:`go` moves it."""

    def __init__(
        self,
        viewer: Subscriber,
        clock: IReactorTime,
        label: str,
        offers: Sequence[Offer],
        on_moved: Callable[[int, int], None] = lambda old, new: None,
    ) -> None:
        self.viewer = viewer
        self.clock = clock
        self.label = label
        self.offers = list(offers)
        self.chooser = Chooser([offer.need for offer in offers], clock.seconds())
        self.on_moved = on_moved
        self.pressed_join = viewer.pressed_join
        self.lead = viewer.lead
        self.audio_codecs = audio_codecs(viewer)
        self.step: Step | None = None
        self.index = 0  # which step of the ladder (0: the source)
        self.closed_as: tuple[str | None, bool] | None = None
        self._move: _Move | None = None
        self._batch: AdaptiveView.Batch | None = None
        self._quiet = False  # a join's burst is not for a view that moves in
        self._last_video = -1  # the pts of the last picture the viewer got

    # --- its life

    def start(self) -> None:
        """Watch the source as any viewer joins."""
        self.step, self.index = self.offers[0].open(), 0
        self.step.subscribe(self)

    @property
    def offer(self) -> Offer:
        """The step it is on."""
        return self.offers[self.index]

    def moving(self) -> int | None:
        """The step a move goes to (None: not moving)."""
        return self._move.index if self._move is not None else None

    def feedback(self, remb: int | None, loss: float | None, rate: float | None) -> None:
        """What the browser says of its link (a sender's ``on_feedback``): moves
        the view when its :class:`~wcs.streams.bandwidth.Chooser` says so."""
        if self.closed_as is not None or self.step is None:
            return
        index = self.chooser.feedback(self.clock.seconds(), remb, loss, rate)
        moving = self.moving()
        if index is not None and (moving is None or index > moving):  # down overtakes up
            self.go(index)

    def go(self, index: int) -> None:
        """Move to ``offers[index]`` at its next usable keyframe: a rendition (behind
        the source) at the IDR it is asked for once it sends pictures, the viewer's
        picture held from then until it comes; the source when its next keyframe does."""
        if self.closed_as is not None or self.step is None or index == self.index:
            return
        if self._move is not None:
            if self._move.index == index:
                return
            self._move.give_up()  # (its held picture comes again at a keyframe)
        elif self._batch is not None:  # (fed in its batch till now)
            self._last_video = max(self._last_video, self._batch.last_video)
        step = self.offers[index].open()
        if index > 0:
            start_after = getattr(step, "start_after", None)
            if start_after is not None:  # a rendition not yet running starts here
                start_after(self._last_video)
        self._move = _Move(self, step, index, lagging=index > 0)
        if self._batch is not None:
            self._batch.hold(self)
        self._move.begin()

    def request_keyframe(self) -> None:
        """The viewer lost its picture (a PLI): from the step it gets it from."""
        move = self._move
        if move is not None and move.holding:
            move.step.request_keyframe()
        elif self.step is not None:
            self.step.request_keyframe()

    def leave(self) -> None:
        """Stop watching (the play ends): every step it is subscribed to is left."""
        if self._move is not None:
            self._move.cancel()
        step, self.step = self.step, None
        if step is not None:
            step.unsubscribe(self)

    # --- what its step sends (one by one: a burst, or while it moves)

    def deliver(self, sample: Sample) -> None:
        if self._quiet:
            return
        move = self._move
        if move is not None and (move.arrived or (move.holding and sample.kind == "video")):
            return  # the step it leaves: its picture (and then its sound) is over
        self._give(sample)

    def _give(self, sample: Sample) -> None:
        if sample.kind == "video":
            self._last_video = sample.pts
        self.viewer.deliver(sample)

    def keyframe_wanted(self) -> bool:
        return self.viewer.keyframe_wanted()

    def closed(self, info: str | None, failed: bool) -> None:
        """Its step ended (as the source did: a rendition ends with it)."""
        if self.closed_as is not None:
            return
        self.closed_as = (info, failed)
        if self._move is not None:
            self._move.cancel()
        self.step = None
        self.viewer.closed(info, failed)

    # --- the move's end

    def _arrived(self, move: _Move) -> None:
        """The new step's keyframe went out: from now on it is the step."""
        old, old_index = self.step, self.index
        self._move = None
        self.step, self.index = move.step, move.index
        self.chooser.moved(move.index, self.clock.seconds())
        self._quiet = True  # its join burst is of the past: the viewer has the present
        try:
            move.step.subscribe(self)
        finally:
            self._quiet = False
        move.step.unsubscribe(move.side)
        if old is not None:
            old.unsubscribe(self)
        self.on_moved(old_index, self.index)

    def _stayed(self, move: _Move) -> None:
        """The move is off (given up, overtaken, or the play ends): back in the batch."""
        if self._move is move:
            self._move = None
            if self._batch is not None:
                self._batch.release(self)

    class Batch:
        """A step's views: those not moving sent to in one call per sample (through
        their viewers' own kind of batch), those moving one by one."""

        def __init__(self) -> None:
            self.members: dict[AdaptiveView, Any] = {}  # the inner batch, or None
            self.last_video = -1  # the pts of the last picture sent
            self._inner: dict[type, Any] = {}
            self._held: list[AdaptiveView] = []

        def __iter__(self) -> Iterator[AdaptiveView]:
            return iter(list(self.members))

        def add(self, view: AdaptiveView) -> None:
            kind = type(view.viewer)
            inner = self._inner.get(kind)
            if inner is None and getattr(kind, "Batch", None) is not None:
                inner = self._inner[kind] = kind.Batch()  # type: ignore[attr-defined]
            self.members[view] = inner
            view._batch = self
            if inner is None or view._move is not None:
                self._held.append(view)
            else:
                inner.add(view.viewer)

        def remove(self, view: AdaptiveView) -> None:
            inner = self.members.pop(view, None)
            if view in self._held:
                self._held.remove(view)
            elif inner is not None:
                inner.remove(view.viewer)
            if view._batch is self:
                view._batch = None

        def hold(self, view: AdaptiveView) -> None:
            """``view`` moves: fed one by one."""
            inner = self.members.get(view)
            if view in self.members and view not in self._held:
                if inner is not None:
                    inner.remove(view.viewer)
                    view._last_video = self.last_video
                self._held.append(view)

        def release(self, view: AdaptiveView) -> None:
            """``view`` stays: back with the others."""
            inner = self.members.get(view)
            if inner is not None and view in self._held:
                self._held.remove(view)
                inner.add(view.viewer)

        def deliver(self, sample: Sample) -> None:
            for inner in self._inner.values():
                inner.deliver(sample)
            if sample.kind == "video":
                self.last_video = sample.pts
            for view in list(self._held):
                view.deliver(sample)


class _Move:
    """One move under way: the new step watched from its next usable keyframe."""

    def __init__(self, view: AdaptiveView, step: Step, index: int, lagging: bool) -> None:
        self.view = view
        self.step = step
        self.index = index
        self.lagging = lagging  # a rendition: its IDR is asked for once it sends pictures
        self.holding = False  # the old step's picture has stopped
        self.side = _Side(self)
        self.arrived = False
        self._timer: IDelayedCall | None = None

    def begin(self) -> None:
        self._timer = self.view.clock.callLater(MOVE_TIMEOUT, self._late)
        self.step.subscribe(self.side)
        if not self.lagging:
            self.step.request_keyframe()  # a publisher sends one at once

    def take(self, sample: Sample) -> None:
        """A sample of the new step, live."""
        view = self.view
        if not self.arrived:
            if sample.kind != "video":
                return
            if not sample.keyframe or sample.pts <= view._last_video:
                if self.lagging and not self.holding:
                    # the rendition makes pictures: its next one an IDR, the
                    # viewer's own picture held till then
                    self.holding = True
                    self.step.request_keyframe()
                return  # not yet: the viewer has this moment, or needs a keyframe
            self.arrived = True
            self.holding = True  # nothing more from the old step
            cancel_call(self._timer)
            self._timer = None
            # (subscribed as itself after this turn: no sample is given twice)
            view.clock.callLater(0, self._settle)
        view._give(sample)

    def _settle(self) -> None:
        if self.view._move is self:
            self.view._arrived(self)

    def _late(self) -> None:
        self._timer = None
        log.info("{label}: no keyframe to move on in time; stays", label=self.view.label)
        self.give_up()

    def give_up(self) -> None:
        """Off, the viewer staying: its step's picture, if it was held, comes again
        at a keyframe, asked for."""
        self.cancel()
        old = self.view.step
        if self.holding and old is not None:
            old.request_keyframe()

    def cancel(self) -> None:
        """Off (the play ends, or the new step did): nothing more to wait for."""
        cancel_call(self._timer)
        self._timer = None
        self.step.unsubscribe(self.side)
        self.view._stayed(self)


class _Side:
    """Subscriber: the new step, for a move (its join burst is of the past)."""

    pressed_join = False
    lead = 0.0

    def __init__(self, move: _Move) -> None:
        self.move = move
        self.audio_codecs = move.view.audio_codecs

    def deliver(self, sample: Sample) -> None:
        self.move.take(sample)

    def keyframe_wanted(self) -> bool:
        return True

    def closed(self, info: str | None, failed: bool) -> None:
        """The new step ended (its source did: the old one says so too)."""
        if self.move.view._move is self.move:
            self.move.cancel()
