"""What a stream sends to: the one small interface every subscriber implements.

A WebRTC viewer, an MSE socket, a recorder, and next an HLS packager and an
RTMP push: each takes the stream's samples as they are due, says whether it
can only use a keyframe next, and is told when the stream is over.
"""

from __future__ import annotations

from typing import Protocol

from wcs.media.sample import Sample


class Subscriber(Protocol):
    """Takes a stream's samples; bounds its own buffering and never blocks."""

    #: How a late joiner takes the cached GOP: pressed together just before the
    #: live edge (True: shows the live moment at once), or at its own times
    #: (False: a player that buffers, such as MSE, plays from the keyframe).
    pressed_join: bool

    #: Seconds of media it must hold before it shows anything (the SDK's MSE
    #: player appends nothing until it has over 2 s of each track): a personal
    #: stream sends that much at once, a live one keeps that much history for it.
    lead: float

    #: The audio codecs it takes ("opus" for WebRTC, "aac" as files store it);
    #: a file's AAC is transcoded to Opus only while a subscriber takes Opus.
    #: One that does not say takes both.
    audio_codecs: frozenset[str]

    def deliver(self, sample: Sample) -> None:
        """One sample, when it is due."""

    def keyframe_wanted(self) -> bool:
        """Whether it can use nothing but a keyframe next (it just joined, or
        it was cut back); a stream that can make one (a publisher) is asked."""

    # A subscriber may also say ``gop_audio = True``: it joins on the cached GOP at
    # its own times with the AAC that came with it (video alone otherwise), as the
    # HLS segmenter does, whose first segment would otherwise start silent.

    # A kind of subscriber may also offer a ``Batch`` class: a broadcast makes one
    # for its subscribers of that kind, ``add``s and ``remove``s them, iterates it
    # for its members, and hands it each live sample with ``deliver(sample)``, to
    # send to all of them at once (the WebRTC viewer does: one call a sample).

    def closed(self, info: str | None, failed: bool) -> None:
        """No more samples: the end of the media (no info), a stop (with an
        info), or a failure (``failed``, with the reason)."""
