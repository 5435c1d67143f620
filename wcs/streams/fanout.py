"""Fan-out: one paced sample stream to many subscribers, with instant late join.

The current GOP (video since the last IDR) is kept, so a viewer who joins
mid-GOP starts at once on that IDR instead of waiting for the next one. The
cached frames go out with their timestamps pressed together just before the
live edge, so the viewer decodes them in a blink and shows the same moment
as everyone else; its audio starts at the live edge. A player that must hold
some media before it shows any (the SDK's MSE player: over 2 s of each track)
gets that much history instead, video from a keyframe and AAC, at their own
timestamps; one that says ``gop_audio`` (an HLS segmenter, whose first segment
must have the sound of its pictures) gets the current GOP with its AAC.

A subscriber that raises is dropped and told "Internal error" (logged with
its traceback); the others go on. A failure of the fan-out itself reaches
whoever sends (the pump, or a published stream), which ends the stream FAILED.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import replace
from typing import Any

from twisted.logger import Logger

from wcs.errors import INTERNAL_ERROR
from wcs.media.sample import Sample
from wcs.streams.subscriber import Subscriber

log = Logger()

#: Longest GOP kept for late joiners (frames); past it, joiners wait for an IDR.
GOP_LIMIT = 300
#: How far apart (in clock ticks) the pressed-together cached frames are.
BURST_STEP = 1
#: Media kept (s, from a keyframe on) for joiners that must hold some before
#: they show anything (a subscriber's ``lead``, at most this).
HISTORY = 3.0
#: Most samples that history holds (past it, it starts again at the next keyframe).
HISTORY_LIMIT = 3000
#: The audio a subscriber takes when it does not say (``audio_codecs``).
ANY_AUDIO = frozenset({"opus", "aac"})


def audio_codecs(subscriber: Subscriber) -> frozenset[str]:
    """The audio codecs ``subscriber`` uses (the others it drops)."""
    return getattr(subscriber, "audio_codecs", ANY_AUDIO)


class Broadcast:
    """The subscribers of one stream and the GOP a newcomer needs.

    A kind of subscriber that offers a ``Batch`` (see
    :class:`wcs.streams.subscriber.Subscriber`) takes live samples through one
    batch per broadcast, which sends to all of them at once; the others get a
    ``deliver`` call each.
    """

    def __init__(self, label: str, history: bool = True) -> None:
        self.label = label
        #: Whether media is kept for joiners with a lead (a broadcast's MSE and
        #: HLS late joiners). The GOP is always kept: a personal play's viewer
        #: moved down the ladder gets a rendition that decodes from its keyframe.
        self.history = history
        self.subscribers: list[Subscriber] = []
        self._singles: list[Subscriber] = []
        self._batches: dict[type, Any] = {}
        self._gop: list[Sample] = []
        self._gop_overflow = False
        self._recent: list[Sample] = []  # video and AAC from a keyframe, for leads
        self._keys: list[int] = []  # where in it each keyframe is
        self._finished = False
        self._wanted: Counter[str] = Counter()  # subscribers by audio codec taken

    def __len__(self) -> int:
        return len(self.subscribers)

    def add(self, subscriber: Subscriber) -> None:
        """Join now: the cached GOP first (pressed together), then live samples."""
        self.subscribers.append(subscriber)
        self._wanted.update(audio_codecs(subscriber))
        for cached in self._join_burst(subscriber):
            self._deliver(subscriber, cached)
        if subscriber not in self.subscribers:  # it failed on the burst
            return
        kind = type(subscriber)
        if getattr(kind, "Batch", None) is None:
            self._singles.append(subscriber)
        else:
            batch = self._batches.get(kind)
            if batch is None:
                batch = self._batches[kind] = kind.Batch()  # type: ignore[attr-defined]
            batch.add(subscriber)

    def _join_burst(self, subscriber: Subscriber) -> list[Sample]:
        """The cached GOP for a newcomer: as it was, or pressed before the live edge;
        or, for one with a lead, history from the keyframe at least that far back."""
        lead = getattr(subscriber, "lead", 0.0)
        if (lead or getattr(subscriber, "gop_audio", False)) and self._keys:
            now = self._recent[-1].time
            start = max(
                (key for key in self._keys if now - self._recent[key].time >= lead),
                default=self._keys[0],
            )
            return self._recent[start:]
        if not self._gop or not subscriber.pressed_join:
            return list(self._gop)
        last = self._gop[-1].pts
        count = len(self._gop)
        return [
            replace(cached, pts=last - (count - 1 - index) * BURST_STEP)
            for index, cached in enumerate(self._gop)
        ]

    def has_gop(self) -> bool:
        """Whether a newcomer can start at once (a keyframe is cached)."""
        return bool(self._gop)

    def wants(self, codec: str) -> bool:
        """Whether any subscriber takes audio in ``codec`` (else none need be made)."""
        return self._wanted[codec] > 0

    def forget(self) -> None:
        """Drop the cached GOP and history: the stream stopped being read, and
        what was cached is of a moment that has passed."""
        self._gop, self._gop_overflow = [], False
        self._recent, self._keys = [], []

    def remove(self, subscriber: Subscriber) -> None:
        if subscriber not in self.subscribers:
            return
        self.subscribers.remove(subscriber)
        self._wanted.subtract(audio_codecs(subscriber))
        if subscriber in self._singles:
            self._singles.remove(subscriber)
        batch = self._batches.get(type(subscriber))
        if batch is not None:
            batch.remove(subscriber)

    def send(self, sample: Sample) -> None:
        """One live sample to everyone (the pump calls this when it is due)."""
        if sample.kind == "video":
            self._remember(sample)
        if self.history and (sample.kind == "video" or sample.codec == "aac"):
            self._keep(sample)
        for subscriber in list(self._singles):
            if self._finished:  # a subscriber's failure ended the stream
                return
            self._deliver(subscriber, sample)
        for batch in list(self._batches.values()):
            if self._finished:
                return
            try:
                batch.deliver(sample)
            except Exception:
                log.failure("{label}: subscribers failed; dropped", label=self.label)
                for subscriber in list(batch):
                    self.remove(subscriber)
                    self._tell(subscriber, INTERNAL_ERROR, True)

    def _remember(self, sample: Sample) -> None:
        if sample.keyframe:
            self._gop = [sample]
            self._gop_overflow = False
        elif self._gop and not self._gop_overflow:
            if len(self._gop) >= GOP_LIMIT:
                self._gop = []
                self._gop_overflow = True
                log.info(
                    "{label}: GOP longer than {n} frames; late joiners wait for the next keyframe",
                    label=self.label,
                    n=GOP_LIMIT,
                )
            else:
                self._gop.append(sample)

    def _keep(self, sample: Sample) -> None:
        """History for leads: from the latest keyframe at least ``HISTORY`` back."""
        if sample.kind == "video" and sample.keyframe:
            self._keys.append(len(self._recent))
        if not self._keys:
            return
        self._recent.append(sample)
        keys = self._keys
        while len(keys) >= 2 and sample.time - self._recent[keys[1]].time >= HISTORY:
            cut = keys[1]
            del self._recent[:cut]
            self._keys = keys = [key - cut for key in keys[1:]]
        if len(self._recent) > HISTORY_LIMIT:
            self._recent, self._keys = [], []

    def _deliver(self, subscriber: Subscriber, sample: Sample) -> None:
        try:
            subscriber.deliver(sample)
        except Exception:
            log.failure("{label}: subscriber failed; dropped", label=self.label)
            self.remove(subscriber)
            self._tell(subscriber, INTERNAL_ERROR, True)

    def _tell(self, subscriber: Subscriber, info: str | None, failed: bool) -> None:
        """``closed`` for one subscriber; its failure is logged, never passed on
        to the others (each of them is still told)."""
        try:
            subscriber.closed(info, failed)
        except Exception:
            log.failure("{label}: a subscriber failed while closing", label=self.label)

    def finish(self, info: str | None, failed: bool) -> None:
        """The stream ended: tell everyone, forget everyone."""
        self._finished = True
        subscribers, self.subscribers = self.subscribers, []
        self._wanted = Counter()
        self._singles = []
        self._batches = {}
        self._gop = []
        self._recent, self._keys = [], []
        for subscriber in subscribers:
            self._tell(subscriber, info, failed)
