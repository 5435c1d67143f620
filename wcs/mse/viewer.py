"""One MSE viewer: a subscriber that writes packed records to its media socket.

The socket is a push-producer consumer: while Twisted says the socket's
buffer is full, samples are dropped and the viewer restarts at the next
keyframe; a viewer still stuck after ``STUCK_LIMIT`` seconds is ended.
Server memory never grows with a slow viewer.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Protocol

from twisted.logger import Logger

from wcs.media.sample import MediaInfo, Sample
from wcs.mse.packetizer import MsePacketizer

log = Logger()

STUCK_LIMIT = 5.0


class MediaChannel(Protocol):
    """The media-transport WebSocket, as the viewer needs it."""

    def send(self, data: bytes) -> None: ...

    def register_producer(self, producer: object) -> None: ...

    def unregister_producer(self) -> None: ...


class MseViewer:
    """Subscriber; ``on_state`` gets "stopped"/"failed" with an info, once."""

    pressed_join = False  # MSE plays the cached GOP at its own pace from its keyframe

    def __init__(self, channel: MediaChannel, info: MediaInfo, label: str,
                 on_state: Callable[[str, str | None], None]) -> None:
        self.channel = channel
        self.info = info
        self.label = label
        self._on_state = on_state
        self.packetizer = MsePacketizer(info.audio.aac_config if info.audio else b"")
        self.paused_since: float | None = None
        self.need_key = info.video is not None
        self.dropped = 0
        self.sent = 0
        self._done = False
        channel.register_producer(self)

    # IPushProducer, driven by the socket's buffer

    def pauseProducing(self) -> None:
        if self.paused_since is None:
            self.paused_since = time.monotonic()

    def resumeProducing(self) -> None:
        self.paused_since = None

    def stopProducing(self) -> None:
        self._end("stopped", "Media connection closed")

    # Subscriber

    def deliver(self, sample: Sample) -> None:
        if self._done:
            return
        if self.paused_since is not None:
            self.dropped += 1
            self.need_key = self.info.video is not None
            if time.monotonic() - self.paused_since > STUCK_LIMIT:
                log.warn("{label}: media socket stuck; {n} samples dropped",
                         label=self.label, n=self.dropped)
                self._end("failed", "Viewer too slow: the media connection could not keep up")
            return
        if self.need_key:
            if not (sample.kind == "video" and sample.keyframe):
                return
            self.need_key = False
        data = self.packetizer.pack(sample)
        if data:
            self.channel.send(data)
            self.sent += 1

    def finished(self, info: str | None, failed: bool) -> None:
        self._end("failed" if failed else "stopped", info)

    def _end(self, state: str, info: str | None) -> None:
        if not self._done:
            self._done = True
            self._on_state(state, info)

    def close(self) -> None:
        self._done = True
        self.channel.unregister_producer()
