"""Taking a stream's current picture: a subscriber that keeps one GOP and leaves.

A live stream hands a newcomer its cached GOP at once, so the picture is the
one its viewers see now; a stream without one (a personal play, a publication
that has sent no keyframe yet) is waited on until its next keyframe, for at
most ``WAIT`` seconds.
"""

from __future__ import annotations

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime

from wcs.errors import NotFound
from wcs.media.sample import Sample

#: Longest wait for a keyframe (s).
WAIT = 5.0


class Grab:
    """Subscriber: fires ``done`` with video from a keyframe to the current frame."""

    pressed_join = False  # the GOP at its own timestamps: decoded, not shown
    lead = 0.0
    audio_codecs: frozenset[str] = frozenset()  # pictures only

    def __init__(self, clock: IReactorTime) -> None:
        self.done: Deferred[list[Sample]] = Deferred()
        self.samples: list[Sample] = []
        self._joined = False
        self._timer = clock.callLater(WAIT, self._late)

    def deliver(self, sample: Sample) -> None:
        if self.done.called or sample.kind != "video":
            return
        if not self.samples and not sample.keyframe:
            return
        self.samples.append(sample)
        if self._joined:  # no GOP was cached: this keyframe is the picture
            self._finish()

    def keyframe_wanted(self) -> bool:
        return not self.samples

    def joined(self) -> None:
        """Subscribed: a cached GOP came with it, or the next keyframe will."""
        self._joined = True
        if self.samples:
            self._finish()

    def closed(self, info: str | None, failed: bool) -> None:
        if not self.done.called:
            self._timer.cancel()
            self.done.errback(NotFound(info or "The stream ended before a picture came"))

    def _late(self) -> None:
        if not self.done.called:
            if self.samples:
                self._finish()
            else:
                self.done.errback(NotFound("No picture: the stream sent no keyframe in time"))

    def _finish(self) -> None:
        if self._timer.active():
            self._timer.cancel()
        self.done.callback(self.samples)
