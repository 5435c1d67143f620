"""What the whole server plays, for REST and the cluster: reports and queries.

The registry knows this worker's streams and plays; this module puts them
together with the other workers' and nodes' through the directory: the
viewers of each stream, the plays and publications, every worker's load, and
the orders that stop them wherever they run. It also tells the directory this
worker's load, as :class:`~wcs.streams.service.StreamsService` measures it.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from twisted.internet.defer import Deferred, FirstError, gatherResults, succeed
from twisted.python.failure import Failure

from wcs.cluster.directory import Directory, answered
from wcs.cluster.store import TRANSPORT, Entry, Load
from wcs.streams.media_sessions import MediaSession, MediaSessions


class StreamQueries:
    """This worker's streams and plays, with every other worker's.

    ``media`` is this worker's plays and publications, ``viewers()`` its viewers
    of each stream by id and ``running()`` how many streams it serves (the
    registry's own answers).
    """

    def __init__(
        self,
        directory: Directory,
        media: MediaSessions,
        viewers: Callable[[], dict[str, int]],
        running: Callable[[], int],
    ) -> None:
        self.directory = directory
        self.media = media
        self.viewers = viewers
        self.running = running
        self._cpu = 0.0  # this process's share of a core, last measured
        self._hls: dict[str, int] = {}  # HLS players by stream name, last counted
        directory.answer("media", lambda _: [m.as_dict() for m in media.all()])
        directory.answer("viewers", lambda _: [directory.worker, viewers()])

    def entries(
        self, *, name: str | None = None, uri: str | None = None, stream_id: str | None = None
    ) -> Deferred[list[Entry]]:
        """The whole server's VOD streams matching every criterion given, with
        their viewers: this machine's workers' counted now (the others are
        asked), other nodes' as last reported."""
        here = self.directory.worker

        def counted(results: list[Any]) -> list[Entry]:
            entries, neighbours = results
            for worker, viewers in [(here, self.viewers()), *neighbours]:
                for entry in entries:
                    if entry.id in viewers:
                        entry.viewers[worker] = viewers[entry.id]
            return entries

        asking = gatherResults(
            [self.directory.select(name, uri, stream_id), self.directory.ask_all("viewers", None)],
            consumeErrors=True,
        )
        asking.addErrback(_first_failure)
        return answered(asking).addCallback(counted)

    def terminate(self, entries: list[Entry], info: str) -> Deferred[list[Entry]]:
        """Stop ``entries`` everywhere: each worker's viewers get STOPPED with ``info``."""
        return answered(self.directory.terminate([entry.id for entry in entries], info))

    def media_sessions(
        self, media_id: str | None = None, name: str | None = None, published: bool | None = None
    ) -> Deferred[list[MediaSession]]:
        """The whole server's plays and publications matching every criterion
        given: this machine's as they are now (its other workers are asked),
        other nodes' as last reported."""
        here = self.directory.worker
        node = here.rpartition("/")[0]

        def gathered(results: list[Any]) -> list[MediaSession]:
            loads, neighbours = results
            found = [
                *self.media.all(),
                *(MediaSession(**media) for answer in neighbours for media in answer),
                *(
                    MediaSession(**media)
                    for load in loads
                    if load.worker.rpartition("/")[0] != node
                    for media in load.media
                ),
            ]
            return sorted(
                (
                    media
                    for media in found
                    if (media_id is None or media.id == media_id)
                    and (name is None or media.name == name)
                    and (published is None or media.published == published)
                ),
                key=lambda media: media.created,
            )

        loads = self.directory.loads() if node else succeed([])
        asking = gatherResults([loads, self.directory.ask_all("media", None)], consumeErrors=True)
        asking.addErrback(_first_failure)
        return answered(asking).addCallback(gathered)

    def stop_media(self, found: list[MediaSession], info: str) -> None:
        """End these plays and publications wherever they are; each page is told."""
        elsewhere = [media.id for media in found if media.worker != self.directory.worker]
        for media in found:
            if media.worker == self.directory.worker:
                self.media.stop(media.id, info)
        if elsewhere:
            self.directory.stop(elsewhere, info)

    def transport_refused(self, token: str, info: str) -> None:
        """A media socket came here for a session of another node: tell every
        node (the session's ends the plays that wait for it, with ``info``)."""
        self.directory.stop([TRANSPORT + token], info)

    def report(self, cpu: float | None = None, hls: dict[str, int] | None = None) -> None:
        """Tell the directory this worker's viewers of each stream, and its load
        (``cpu``, a share of one core, and ``hls`` players by stream name, when
        measured)."""
        if cpu is not None:
            self._cpu = cpu
        if hls is not None:
            self._hls = hls
        viewers = self.viewers()
        self.directory.report(viewers, self._load(viewers))

    def _load(self, viewers: dict[str, int]) -> Load:
        """This worker's load. Its media sessions ride it only in a cluster, for
        other nodes' listings (this machine's workers ask each other instead:
        a second's list of 1,000 sessions cost 3 ms, 5 % of a worker sending
        to them)."""
        worker = self.directory.worker
        node = worker.rpartition("/")[0]
        return Load(
            worker,
            node=node,
            pid=os.getpid(),
            viewers=sum(viewers.values()),
            cpu=self._cpu,
            streams=self.running(),
            media=[media.as_dict() for media in self.media.all()] if node else [],
            hls=self._hls,
        )

    def loads(self) -> Deferred[list[Load]]:
        """Every worker's load (this one's as it is now, the others' as last reported)."""
        here = self.directory.worker

        def ours_now(loads: list[Load]) -> list[Load]:
            own = self._load(self.viewers())
            return [own, *(load for load in loads if load.worker != here)]

        return answered(self.directory.loads()).addCallback(ours_now)


def _first_failure(failure: Failure) -> Failure:
    """The failure of the first question that failed (gatherResults wraps it)."""
    error = failure.value
    assert isinstance(error, FirstError)
    return error.subFailure
