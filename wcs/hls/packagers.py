"""The HLS packagers that run: one :class:`~wcs.hls.segmenter.Segmenter` per
stream name, started by its first request and stopped ``IDLE`` seconds after
its last, whatever the stream does meanwhile.

A packager is one more subscriber of the stream (a broadcast it starts runs
as for any viewer, and ends by the usual timeout once the packager leaves),
so every HLS player of a name costs the segments' bytes, never a remux.
Personal ``vod://`` plays are not offered as HLS, as WCS does not.

A rung of the quality ladder (HLS ABR's variants) has a packager of its own,
subscribed to the stream's rendition at that height: it is encoded while its
variant is asked for, and stops with it.
"""

from __future__ import annotations

from dataclasses import dataclass

from twisted.application import service
from twisted.internet import task
from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure

from wcs.errors import LimitReached, NotFound, WcsError
from wcs.hls.segmenter import Segmenter
from wcs.streams import uri as uris
from wcs.streams.registry import Stream, StreamRegistry
from wcs.streams.rendition import Rendition

log = Logger()

#: Seconds a packager outlives the last request for its playlist or segments.
IDLE = 20.0
#: Packagers at once (each one is a subscriber of a running stream).
MAX_PACKAGERS = 200


#: What a packager is found by: the stream's name, and a ladder rung's name ("": the source).
Key = tuple[str, str]


@dataclass
class Packager:
    name: str
    stream: Stream | Rendition
    segmenter: Segmenter
    used: float  # when it was last asked for something (clock s)


class Packagers(service.Service):
    """Segmenters by stream name, opened on demand, closed when unused."""

    def __init__(self, registry: StreamRegistry, clock: IReactorTime, idle: float = IDLE) -> None:
        self.registry = registry
        self.clock = clock
        self.idle = idle
        self.running_packagers: dict[Key, Packager] = {}
        self._opening: dict[Key, list[Deferred[Packager]]] = {}
        self._sweeper = task.LoopingCall(self.sweep)
        self._sweeper.clock = clock

    def startService(self) -> None:
        super().startService()
        self._sweeper.start(1.0, now=False)

    def stopService(self) -> None:
        super().stopService()
        if self._sweeper.running:
            self._sweeper.stop()
        for key in list(self.running_packagers):
            self._drop(key)

    def get(self, name: str, rung: str = "") -> Deferred[Packager]:
        """The packager of ``name`` (at the ladder's ``rung``), started if it was
        not: fails with a :class:`~wcs.errors.WcsError` saying why there is none."""
        key = (name, rung)
        running = self.running_packagers.get(key)
        if running is not None:
            running.used = self.clock.seconds()
            return succeed(running)
        waiting = self._opening.get(key)
        if waiting is not None:
            done: Deferred[Packager] = Deferred()
            waiting.append(done)
            return done
        try:
            if uris.parse(name).scheme == uris.PERSONAL:
                raise NotFound(
                    "vod:// plays are personal and not served as HLS; play vod-live:// instead"
                )
            found = self.registry.renditions.ladder.find(rung) if rung else None
            if rung and found is None:
                raise NotFound(
                    f"no rung {rung!r} in the quality ladder "
                    f"({self.registry.renditions.ladder or 'empty'})"
                )
        except WcsError as error:
            return _failed(error)
        if len(self.running_packagers) + len(self._opening) >= MAX_PACKAGERS:
            return _failed(
                LimitReached("HLS streams packaged at once", "max_hls_streams", MAX_PACKAGERS)
            )
        self._opening[key] = []
        opening = self.registry.open(name)
        if found is not None:
            opening.addCallback(self.registry.renditions.rung, found)
        return opening.addCallbacks(
            self._opened, self._refused, callbackArgs=(key,), errbackArgs=(key,)
        )

    def _opened(self, stream: Stream | Rendition, key: Key) -> Packager:
        assert stream.info is not None  # a stream is described before it is opened
        name, rung = key
        source = self.running_packagers.get((name, "")) if rung else None
        segmenter = Segmenter(
            stream.info,
            f"HLS {name!r}{_at(rung)}",
            stream.request_keyframe,
            leader=source.segmenter if source is not None else None,
        )
        packager = Packager(name, stream, segmenter, self.clock.seconds())
        self.running_packagers[key] = packager
        stream.subscribe(segmenter)
        log.info("HLS of {name!r}{at} started (stream {id})", name=name, at=_at(rung), id=stream.id)
        for waiting in self._opening.pop(key, []):
            waiting.callback(packager)
        return packager

    def _refused(self, failure: Failure, key: Key) -> Failure:
        for waiting in self._opening.pop(key, []):
            waiting.errback(failure)
        return failure

    def sweep(self) -> None:
        """Stop the packagers nobody asked anything of for ``idle`` seconds."""
        now = self.clock.seconds()
        for key, packager in list(self.running_packagers.items()):
            if now - packager.used >= self.idle:
                self._drop(key)

    def _drop(self, key: Key) -> None:
        packager = self.running_packagers.pop(key)
        packager.stream.unsubscribe(packager.segmenter)
        packager.segmenter.release()
        log.info(
            "HLS of {name!r}{at} stopped: {n} segments made",
            name=key[0],
            at=_at(key[1]),
            n=packager.segmenter.made,
        )


def _at(rung: str) -> str:
    return f" at {rung}" if rung else ""


def _failed(error: WcsError) -> Deferred[Packager]:
    done: Deferred[Packager] = Deferred()
    done.errback(Failure(error))
    return done
