"""A stream at another picture size, shared by every viewer who asked for that size.

A :class:`Rendition` subscribes to its source stream like a viewer; its video
goes through a :class:`~wcs.media.resize.ResizeThread` (decoded, scaled and
encoded off the reactor) and its audio straight on, to a fan-out of its own.
Viewers subscribe to it as to any stream. It ends with its source, or when
its last viewer leaves (then the encoder and its thread go at once).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from twisted.logger import Logger

from wcs.errors import STREAM_NOT_FOUND
from wcs.media.resize import Resizer, ResizeThread
from wcs.media.sample import MediaInfo, Sample
from wcs.media.sizing import PROFILE_LEVEL_ID
from wcs.streams.fanout import Broadcast
from wcs.streams.subscriber import Subscriber

log = Logger()


class Rendition:
    """The source's pictures at ``size``: a stream for viewers (its :class:`Feed`
    is the source's subscriber)."""

    ending: tuple[str | None, bool] = (STREAM_NOT_FOUND, True)

    def __init__(
        self,
        source: Any,
        size: tuple[int, int],
        post: Callable[..., None],
        on_gone: Callable[[Rendition], None],
    ) -> None:
        self.source = source
        self.size = size
        self.id = str(uuid.uuid4())
        self.name = source.name
        self.key = (source.id, size)
        video = source.info.video
        self.info = MediaInfo(
            source.info.duration,
            replace(video, width=size[0], height=size[1], profile_level_id=PROFILE_LEVEL_ID),
            source.info.audio,
        )
        self.label = f"{source.name} at {size[0]}x{size[1]}"
        self.broadcast = Broadcast(self.label)
        self.closed = False
        self._on_gone = on_gone
        self._keyframe = True  # the first picture out is an IDR
        self._from = -1  # pictures up to this pts are decoded, not encoded
        self._started = False
        self.thread = ResizeThread(Resizer(size, video.fps), self._encoded, post, self.label)
        self.feed = Feed(self)

    # --- as a stream, for its viewers

    def subscribe(self, subscriber: Subscriber) -> None:
        if self.closed:
            subscriber.closed(*self.ending)
            return
        self.broadcast.add(subscriber)
        if not self._started:
            self._started = True
            self.feed.joiner = subscriber  # the source's GOP comes as it would want it
            self.source.subscribe(self.feed)
            self.feed.joiner = None
        elif not self.broadcast.has_gop() and subscriber.keyframe_wanted():
            self.request_keyframe()

    def unsubscribe(self, subscriber: Subscriber | None) -> None:
        if subscriber is not None:
            self.broadcast.remove(subscriber)
        if not self.broadcast and not self.closed:
            self.close()

    def request_keyframe(self) -> None:
        """A viewer lost its picture: the next one encoded is an IDR."""
        self._keyframe = True

    def start_after(self, pts: int) -> None:
        """Its first viewer (moving in from the source) has the pictures up to
        ``pts``: the source's GOP up to there is decoded, not encoded, and the
        first picture encoded, an IDR, is the next one."""
        if not self._started:
            self._from = pts

    def terminate(self, info: str) -> None:
        self._end(info, False)

    def terminate_as(self, info: str | None, failed: bool) -> None:
        """End as the source did."""
        self._end(info, failed)

    # --- what its source sends

    def take(self, sample: Sample) -> None:
        if self.closed:
            return
        if sample.kind != "video":
            self.broadcast.send(sample)
            return
        encode = sample.pts > self._from
        self.thread.push(sample, self._keyframe and encode, encode)
        if encode:
            self._keyframe = False

    def _encoded(self, sample: Sample) -> None:
        if not self.closed:
            self.broadcast.send(sample)

    def _end(self, info: str | None, failed: bool) -> None:
        if self.closed:
            return
        self.ending = (info, failed)
        broadcast = self.broadcast
        self.close()
        broadcast.finish(info, failed)

    def close(self) -> None:
        """Leave the source, stop the encoder's thread, and be forgotten."""
        if self.closed:
            return
        self.closed = True
        self.thread.stop()
        log.info(
            "rendition {label} stopped ({n} pictures encoded, {d} dropped)",
            label=self.label,
            n=self.thread.resizer.frames,
            d=self.thread.dropped,
        )
        # (never started: let go as a viewer that never joined, which ends a personal play)
        self.source.unsubscribe(self.feed if self._started else None)
        self._on_gone(self)
        self._on_gone = _nothing


class Feed:
    """Subscriber: the source's samples into a rendition, and the source's end.

    It joins the source as the rendition's first viewer would (``joiner``): a
    WebRTC viewer's GOP pressed before the live edge, an HLS segmenter's at its
    own times with its AAC, an MSE player's lead of history; a rendition made
    for one kind of viewer so starts as the source would for it.
    """

    def __init__(self, rendition: Rendition) -> None:
        self.rendition = rendition
        self.joiner: Subscriber | None = None

    @property
    def pressed_join(self) -> bool:
        return getattr(self.joiner, "pressed_join", True)

    @property
    def lead(self) -> float:
        return getattr(self.joiner, "lead", 0.0)

    @property
    def gop_audio(self) -> bool:
        return getattr(self.joiner, "gop_audio", False)

    def deliver(self, sample: Sample) -> None:
        self.rendition.take(sample)

    def keyframe_wanted(self) -> bool:
        return True  # decoding starts at one

    def closed(self, info: str | None, failed: bool) -> None:
        self.rendition.terminate_as(info, failed)


def _nothing(_rendition: Rendition) -> None:
    """Where a closed rendition reports to: nobody."""
