"""The pushes this worker runs: REST ``/push/startup`` and a publication's
``rtmpUrl`` each start one, a stream name to an RTMP URL.

A push is a media session (provider ``RTMP``), so it is listed, found and
terminated from any worker like a page's play, and it keeps its stream
running as a viewer does. An ended push stays listed, with its final status
and why, for :data:`KEEP_ENDED` seconds.
"""

from __future__ import annotations

import uuid
from typing import Any, Protocol

from twisted.application import service
from twisted.internet.defer import Deferred, fail, succeed
from twisted.logger import Logger

from wcs.errors import LimitReached, NameTaken
from wcs.push.pusher import Connect, Push, connect_rtmp
from wcs.push.rtmp import target
from wcs.streams.media_sessions import MediaSession
from wcs.streams.registry import Stream, StreamRegistry

log = Logger()

#: Seconds an ended push stays listed (with its status) before it is forgotten.
KEEP_ENDED = 60.0
#: The session id pushes started over REST are listed under.
REST_SESSION = "rest"
#: Statuses of a push that still runs (or will try again).
RUNNING = ("PENDING", "PUBLISHING")


class Slots(Protocol):
    """The whole server's count of running pushes (every worker's)."""

    def take(self, kind: str) -> Deferred[str]:
        """ "" if one more may run, else the refusal's info."""

    def give(self, kind: str) -> None:
        """One ended."""


class Unlimited:
    """No count beyond this worker's own (unit tests)."""

    def take(self, kind: str) -> Deferred[str]:
        return succeed("")

    def give(self, kind: str) -> None:
        pass


class Pushes(service.Service):
    """Every push of this worker, by media session id; ``slots`` counts the
    pushes of the whole server against ``max_pushes``."""

    def __init__(
        self,
        registry: StreamRegistry,
        reactor: Any,
        max_pushes: int = 100,
        prefix: str = "rtmp_",
        full_url: bool = False,
        retries: int = 3,
        connect: Connect = connect_rtmp,
        slots: Slots | None = None,
    ) -> None:
        self.registry = registry
        self.reactor = reactor
        self.max_pushes = max_pushes
        self.prefix = prefix
        self.full_url = full_url
        self.retries = retries
        self._connect = connect
        self.slots: Slots = slots if slots is not None else Unlimited()
        self.active: dict[str, tuple[Push, Stream]] = {}
        self._opening = 0

    def start(
        self, name: str, rtmp_url: str, session_id: str = REST_SESSION
    ) -> Deferred[MediaSession]:
        """Send stream ``name`` to ``rtmp_url``: the push's listing, once its
        stream is open (the RTMP connection comes up after)."""
        try:
            rtmp = target(rtmp_url, name, self.prefix, self.full_url)
        except Exception as error:
            return fail(error)
        if len(self.active) + self._opening >= self.max_pushes:
            return fail(LimitReached("streams pushed to RTMP", "max_pushes", self.max_pushes))
        self._opening += 1

        def slot(refusal: str) -> Deferred[list[MediaSession]]:
            if refusal:
                raise LimitReached("streams pushed to RTMP", "max_pushes", self.max_pushes)
            return (
                self.registry.queries.media_sessions(name=name)
                .addCallback(check)
                .addErrback(given_back)
            )

        def given_back(failure: Any) -> Any:
            self.slots.give("push")  # it never ran
            return failure

        def check(found: list[MediaSession]) -> Deferred[Stream]:
            if any(media.rtmp_url == rtmp_url and media.status in RUNNING for media in found):
                raise NameTaken(f"{name!r} is already pushed to {rtmp_url}", name)
            return self.registry.open(name)

        def opened(stream: Stream) -> MediaSession:
            media = MediaSession(
                str(uuid.uuid4()), name, False, "RTMP", session_id, rtmp_url=rtmp_url
            )
            assert stream.info is not None  # a stream is described before it is opened
            media.described(stream.info)
            push = Push(
                media,
                rtmp,
                stream.info,
                self.reactor,
                self._ended,
                self.retries,
                self._connect,
                stream.request_keyframe,
            )
            self.active[media.id] = (push, stream)
            self.registry.media.add(media, lambda info: push.end("STOPPED", info), lambda: stream)
            log.info(
                "push of {name!r} to {url} started ({id})", name=name, url=rtmp_url, id=media.id
            )
            stream.subscribe(push)
            push.start()
            return media

        def done(result: Any) -> Any:
            self._opening -= 1
            return result

        taking = self.slots.take("push").addCallback(slot)
        return taking.addBoth(done).addCallback(opened)

    def _ended(self, push: Push) -> None:
        entry = self.active.pop(push.media.id, None)
        if entry is not None:
            entry[1].unsubscribe(push)
            self.slots.give("push")
        self.reactor.callLater(KEEP_ENDED, self.registry.media.remove, push.media)

    def stopService(self) -> None:
        super().stopService()
        for push, _ in list(self.active.values()):
            push.end("STOPPED", "Server stopped")
