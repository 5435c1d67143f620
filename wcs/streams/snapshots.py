"""Pictures of what plays: a stream's current frame, or a play's own, as PNG.

A snapshot subscribes a :class:`~wcs.streams.snapshot.Grab` to the stream (the
registry opens it if it does not run here) and decodes off the reactor. A
play's snapshot (REST ``mediaSessionId``) is taken on whichever worker of this
machine serves the play: the others are asked through the directory.
"""

from __future__ import annotations

import base64
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from twisted.internet.defer import Deferred, fail
from twisted.internet.interfaces import IReactorTime

from wcs.cluster.directory import Directory
from wcs.errors import NotFound, Unsupported
from wcs.media import snapshot
from wcs.media.sample import Sample
from wcs.streams.media_sessions import MediaSession, MediaSessions, held_elsewhere
from wcs.streams.snapshot import Grab
from wcs.streams.stream import Stream

if TYPE_CHECKING:
    from wcs.streams.rendition import Rendition


class Snapshots:
    """Takes pictures of streams and plays: ``open_stream`` gives the stream a
    name means (the registry's), ``media_sessions`` finds a play on any worker,
    and ``work`` decodes off the reactor."""

    def __init__(
        self,
        directory: Directory,
        media: MediaSessions,
        open_stream: Callable[[str], Deferred[Stream]],
        media_sessions: Callable[[str], Deferred[list[MediaSession]]],
        work: Callable[..., Deferred[Any]],
        clock: IReactorTime,
    ) -> None:
        self.directory = directory
        self.media = media
        self.open_stream = open_stream
        self.media_sessions = media_sessions
        self.work = work
        self.clock = clock
        directory.answer("snapshot", self._asked)

    def snapshot(self, name: str, stream: Stream | Rendition | None = None) -> Deferred[bytes]:
        """A PNG of the current picture of ``stream``, or of the stream ``name``
        means (opened for it if it does not run here); decoded off the reactor."""

        def grab(stream: Stream | Rendition) -> Deferred[list[Sample]]:
            if stream.info is not None and stream.info.video is None:
                stream.unsubscribe(None)
                raise Unsupported("No picture: the stream has no video")
            taker = Grab(self.clock)
            stream.subscribe(taker)
            taker.joined()

            def left(result: object) -> object:
                stream.unsubscribe(taker)
                return result

            return taker.done.addBoth(left)

        grabbing = self.open_stream(name).addCallback(grab) if stream is None else grab(stream)
        return grabbing.addCallback(lambda samples: self.work(snapshot.png, samples))

    def media_snapshot(self, media_id: str, name: str | None = None) -> Deferred[tuple[str, bytes]]:
        """(stream name, PNG) of the picture the play or publication ``media_id``
        has now, on whichever worker of this machine it runs (a personal play's
        own frame); else of the stream ``name`` if given."""
        stream = self.media.stream(media_id)
        if stream is not None:
            named = name or stream.name
            return self.snapshot(named, stream).addCallback(lambda png: (named, png))
        here = self.directory.worker

        def found(sessions: list[MediaSession]) -> Deferred[tuple[str, bytes]]:
            try:
                worker = held_elsewhere(sessions, here, media_id)
            except NotFound:
                if name is None:
                    raise
                return self.snapshot(name).addCallback(lambda png: (name, png))
            asking = self.directory.ask(worker, "snapshot", {"media": media_id, "name": name})
            return asking.addCallback(
                lambda answer: (answer["name"], base64.b64decode(answer["png"]))
            )

        return self.media_sessions(media_id).addCallback(found)

    def _asked(self, question: dict[str, Any]) -> Deferred[dict[str, str]]:
        """Another worker asks for the picture of one of our plays."""
        media_id, name = str(question.get("media", "")), question.get("name")
        if self.media.stream(media_id) is None:
            return fail(NotFound(f"no play or publication {media_id} runs here"))
        return self.media_snapshot(media_id, name if isinstance(name, str) else None).addCallback(
            lambda taken: {"name": taken[0], "png": base64.b64encode(taken[1]).decode("ascii")}
        )
