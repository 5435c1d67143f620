"""A stream at the picture size a play asks for: its renditions, one per size.

A play asking for another size than the stream's gets the stream's rendition
at the fitted size (:mod:`wcs.media.resize`), made by the first such play and
shared by every later one; it goes when its last viewer does. A WebRTC play
that pinned no size is offered the stream's ladder (:meth:`Renditions.offers`),
to be moved along by its bandwidth.
"""

from __future__ import annotations

from functools import partial

from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from wcs.errors import Unsupported
from wcs.media import sizing
from wcs.streams.adaptive import Offer
from wcs.streams.bandwidth import AUDIO_NEED
from wcs.streams.ladder import NO_LADDER, Ladder, Rung, Step
from wcs.streams.rendition import Rendition
from wcs.streams.stream import Stream

log = Logger()

#: A rung is offered to WebRTC viewers when it needs at most this share of the
#: source's bitrate (known from a file): less saving is not worth an encoder.
WORTH = 0.7


class Renditions:
    """This worker's renditions, by (source stream id, size).

    ``transcoding`` false (``transcoding_disabled``) refuses every other size,
    and offers no ``ladder``; ``adaptive`` false (``webrtc_abr``) offers it to
    HLS alone, not to WebRTC viewers.
    """

    def __init__(
        self,
        clock: IReactorTime,
        transcoding: bool = True,
        ladder: Ladder = NO_LADDER,
        adaptive: bool = True,
    ) -> None:
        self.clock = clock
        self.transcoding = transcoding
        self.ladder = ladder if transcoding else NO_LADDER
        self.adaptive = adaptive
        self._running: dict[tuple[str, tuple[int, int]], Rendition] = {}

    def __len__(self) -> int:
        """How many run (each is an encoder)."""
        return len(self._running)

    def sized(self, stream: Stream, width: int, height: int) -> Stream | Rendition:
        """``stream`` as a play asking for ``width`` x ``height`` (0: any) gets it: the
        stream itself, or its rendition at the fitted size (made once, shared);
        raises :class:`~wcs.errors.Unsupported` when transcoding is disabled."""
        video = stream.info.video if stream.info is not None else None
        size = sizing.fitted((video.width, video.height), (width, height)) if video else None
        if size is None:
            return stream
        if not self.transcoding:
            stream.unsubscribe(None)  # as a viewer that never joined
            raise Unsupported("Transcoding required, but disabled")
        key = (stream.id, size)
        existing = self._running.get(key)
        if existing is not None and not existing.closed:
            return existing
        post = getattr(self.clock, "callFromThread", None) or (lambda f, *a: f(*a))
        rendition = Rendition(stream, size, post, self._gone)
        self._running[key] = rendition
        log.info(
            "rendition {label} started (encoders running: {n})",
            label=rendition.label,
            n=len(self._running),
        )
        return rendition

    def steps(self, stream: Stream | Rendition) -> list[Step]:
        """The ladder's rungs ``stream`` offers now, highest first."""
        return self.ladder.steps(stream.info.video if stream.info is not None else None)

    def offers(self, stream: Stream) -> list[Offer]:
        """The steps a viewer of ``stream`` may be moved along: the stream itself,
        then its ladder's renditions (none: the stream alone, nothing to move to)."""
        if not self.adaptive:
            return []
        video = stream.info.video if stream.info is not None else None
        steps = self.steps(stream)
        if video is None or not steps:
            return []
        source = stream.info.bitrate if stream.info is not None else 0
        offers = [Offer("source", (video.width, video.height), source, lambda: stream)]
        for step in steps:
            if source and step.bitrate + AUDIO_NEED > source * WORTH:
                continue  # it would save too little to be worth an encoder
            offers.append(
                Offer(
                    step.rung.name,
                    step.size,
                    step.bitrate + AUDIO_NEED,
                    partial(self.sized, stream, *step.size),
                )
            )
        return offers if len(offers) > 1 else []

    def rung(self, stream: Stream, rung: Rung) -> Stream | Rendition:
        """``stream`` at ``rung``'s height (itself when it is not taller)."""
        return self.sized(stream, 0, rung.height)

    def _gone(self, rendition: Rendition) -> None:
        if self._running.get(rendition.key) is rendition:
            del self._running[rendition.key]
