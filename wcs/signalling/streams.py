"""A session's streams: play, publish and stop turned into registry calls and
WebRTC peers, and every status change sent (and logged) as WCS does.

Every play and publish gets a running or terminal status, and stop always
completes, so the SDK's stop() never spins (wcs-protocol.md §2.3, §9.4).
"""

from __future__ import annotations

from collections.abc import Callable

from twisted.internet.defer import maybeDeferred
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure

from wcs import aio
from wcs.config import Settings
from wcs.media.errors import MediaError
from wcs.signalling import messages
from wcs.signalling.messages import StreamRequest
from wcs.signalling.publishing import Publication
from wcs.signalling.session import Session
from wcs.streams.registry import StreamRegistry, VodStream
from wcs.webrtc.viewer import WebRTCViewer

log = Logger()

#: A peer that has not connected by then is given up (WCS: "Failed by ICE timeout").
ICE_TIMEOUT = 20.0


class Playback:
    """One ``playStream`` over WebRTC, from the offer to its terminal status."""

    def __init__(self, session: Session, request: StreamRequest, clock: IReactorTime,
                 on_done: Callable[[Playback], None]) -> None:
        self.session = session
        self.request = request
        self.clock = clock
        self._on_done = on_done
        self.stream: VodStream | None = None
        self.viewer: WebRTCViewer | None = None
        self.done = False
        self._timer: IDelayedCall | None = None

    def opened(self, stream: VodStream) -> None:
        """The stream exists (at once for files, later for S3): negotiate."""
        self.stream = stream
        if self.done:  # stopped while the source was opening
            stream.unsubscribe(None)
            return
        self.viewer = WebRTCViewer(
            stream.info, f"{self.request.name} [{self.request.media_session_id[:8]}]",
            self._viewer_state)
        self.session.report_stream(self.request, "PENDING")
        self._timer = self.clock.callLater(ICE_TIMEOUT, self.end, "FAILED",
                                           "Failed by ICE timeout")
        answering = aio.deferred(self.viewer.answer(self.request.sdp))
        answering.addCallback(self._answered).addErrback(self.refused)

    def _answered(self, sdp: str) -> None:
        if not self.done:
            self.session.send(messages.set_remote_sdp(self.request.media_session_id, sdp))

    def refused(self, failure: Failure) -> None:
        """The source could not be opened, or the offer not answered."""
        if isinstance(failure.value, MediaError):
            info = failure.value.info
        else:
            log.failure("{name}: play failed", failure, name=self.request.name)
            info = "Internal error"
        self.end("FAILED", info)

    def _viewer_state(self, state: str, info: str | None) -> None:
        if self.done:
            return
        if state == "connected":
            if self._timer is not None and self._timer.active():
                self._timer.cancel()
            self.session.report_stream(self.request, "PLAYING")
            assert self.stream is not None and self.viewer is not None
            self.stream.subscribe(self.viewer)
        else:
            self.end("STOPPED" if state == "stopped" else "FAILED", info)

    def end(self, status: str | None, info: str | None) -> None:
        """Finish once: release the viewer and the stream, then tell the page."""
        if self.done:
            return
        self.done = True
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        if self.stream is not None:
            self.stream.unsubscribe(self.viewer)
        if self.viewer is not None:
            aio.deferred(self.viewer.close()).addErrback(
                lambda f: log.failure("closing a peer failed", f))
        if status is not None:
            self.session.report_stream(self.request, status, info)
        self._on_done(self)


class SessionStreams:
    """The stream handler shared by every session."""

    def __init__(self, registry: StreamRegistry, settings: Settings,
                 clock: IReactorTime) -> None:
        self.registry = registry
        self.settings = settings
        self.clock = clock
        self._playbacks: dict[str, dict[str, Playback | Publication]] = {}

    def _admit(self, session: Session,
               request: StreamRequest) -> dict[str, Playback | Publication] | None:
        """The session's active streams, if this request may join them."""
        active = self._playbacks.setdefault(session.id, {})
        if request.media_session_id in active:
            session.report_stream(request, "FAILED",
                                  "Stream with this mediaSessionId already exists")
            return None
        if request.media_provider != "WebRTC":
            session.report_stream(request, "FAILED",
                                  f"Media provider {request.media_provider} is not supported")
            return None
        return active

    def play(self, session: Session, request: StreamRequest) -> None:
        active = self._admit(session, request)
        if active is None:
            return
        playback = Playback(session, request, self.clock, self._forget)
        active[request.media_session_id] = playback
        opening = maybeDeferred(self.registry.open, request.name)
        opening.addCallback(playback.opened).addErrback(playback.refused)

    def publish(self, session: Session, request: StreamRequest) -> None:
        active = self._admit(session, request)
        if active is None:
            return
        publication = Publication(session, request, self.registry, self.settings, self.clock,
                                  self._forget)
        active[request.media_session_id] = publication
        publication.start()

    def stop(self, session: Session, request: StreamRequest) -> None:
        active = self._playbacks.get(session.id, {}).get(request.media_session_id)
        if isinstance(active, Publication):
            active.end("UNPUBLISHED", None)
            return
        if active is not None:
            active.end("STOPPED", "Stopped by user")
            return
        status = "UNPUBLISHED" if request.published else "STOPPED"
        session.report_stream(request, status, "Stopped by user")

    def available(self, name: str) -> tuple[bool, str]:
        return self.registry.available(name)

    def release(self, session: Session) -> None:
        for playback in list(self._playbacks.pop(session.id, {}).values()):
            playback.end(None, None)

    def _forget(self, playback: Playback | Publication) -> None:
        playing = self._playbacks.get(playback.session.id)
        if playing is not None:
            playing.pop(playback.request.media_session_id, None)
