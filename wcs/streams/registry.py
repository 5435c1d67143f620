"""The one stream registry: every VOD stream, its id, status and viewers.

A personal stream (``vod://``) belongs to the viewer that asked for it and
plays from the start for that viewer only; it ends with its viewer.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from pathlib import Path

from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from wcs.config import Settings
from wcs.media import local
from wcs.media.errors import MediaError
from wcs.media.mp4 import Mp4File
from wcs.media.pump import Pump
from wcs.media.sample import MediaInfo, Subscriber
from wcs.streams import uri as uris

log = Logger()

STREAM_NOT_FOUND = "Stream not found"


class VodStream:
    """One capture of one file: a source, a pump and its subscribers."""

    def __init__(self, uri: uris.StreamUri, name: str, media: Mp4File, clock: IReactorTime,
                 on_gone: Callable[[VodStream], None]) -> None:
        self.id = str(uuid.uuid4())
        self.uri = uri
        self.name = name
        self.media = media
        self.info: MediaInfo = media.info
        self.status = "PROCESSED_LOCAL"
        self._on_gone = on_gone
        self.pump = Pump(media.samples(), clock, f"{uri} [{self.id[:8]}]", self._ended)
        self.closed = False

    @property
    def viewers(self) -> int:
        return len(self.pump.subscribers)

    def subscribe(self, subscriber: Subscriber) -> None:
        """Start sending to ``subscriber`` (a personal stream starts playing now)."""
        if self.closed:
            subscriber.finished(STREAM_NOT_FOUND)
            return
        self.pump.add(subscriber)
        self.pump.start()

    def unsubscribe(self, subscriber: Subscriber) -> None:
        self.pump.remove(subscriber)
        if not self.pump.subscribers:
            self.close()

    def terminate(self, reason: str) -> None:
        """Stop for everyone: each subscriber is told ``reason``."""
        subscribers = list(self.pump.subscribers)
        self.close()
        for subscriber in subscribers:
            subscriber.finished(reason)

    def _ended(self, reason: str | None) -> None:
        log.info("stream {id} ({uri}) reached its end{reason}", id=self.id, uri=str(self.uri),
                 reason=f": {reason}" if reason else "")
        self.close()

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self.pump.stop()
        self.pump.subscribers.clear()
        self.media.close()
        self._on_gone(self)


class StreamRegistry:
    """Finds or creates streams for front doors; owns their lifecycles."""

    def __init__(self, settings: Settings, clock: IReactorTime) -> None:
        self.settings = settings
        self.clock = clock
        self.streams: dict[str, VodStream] = {}

    def open(self, name: str) -> VodStream:
        """The stream a viewer of ``name`` should subscribe to.

        Raises :class:`MediaError` with the info the viewer should see.
        """
        parsed = uris.parse(name)
        if parsed.scheme == uris.PERSONAL:
            return self._personal(parsed)
        if parsed.scheme == uris.LIVE:
            raise MediaError("Live VOD (vod-live://) is not supported yet")
        raise MediaError(STREAM_NOT_FOUND)

    def _personal(self, parsed: uris.StreamUri) -> VodStream:
        path = self._local_path(parsed.path)
        stream = VodStream(parsed, str(parsed), self._open_file(path, str(parsed)), self.clock,
                           self._gone)
        self.streams[stream.id] = stream
        log.info("stream {id} created for {uri}", id=stream.id, uri=str(parsed))
        return stream

    def _local_path(self, name: str) -> Path:
        if name.startswith("s3/"):
            raise MediaError("S3 sources are not supported yet")
        return local.resolve(self.settings.media_dir, name)

    def _open_file(self, path: Path, label: str) -> Mp4File:
        return Mp4File(path, label)

    def _gone(self, stream: VodStream) -> None:
        if self.streams.pop(stream.id, None) is not None:
            log.info("stream {id} ({uri}) released after sending {video} video and {audio} "
                     "audio samples", id=stream.id, uri=str(stream.uri),
                     video=stream.pump.sent["video"], audio=stream.pump.sent["audio"])

    def available(self, name: str) -> tuple[bool, str]:
        """For ``availableStream``: can ``name`` be played right now?"""
        try:
            parsed = uris.parse(name)
            if parsed.scheme == uris.PERSONAL:
                path = self._local_path(parsed.path)
                Mp4File(path, name).close()
                return True, "Available"
        except MediaError as error:
            return False, error.info
        return False, STREAM_NOT_FOUND
