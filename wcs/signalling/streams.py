"""A session's streams: play, publish and stop turned into registry calls and
WebRTC peers, and every status change sent (and logged) as WCS does.

Every play and publish gets a running or terminal status, and stop always
completes, so the SDK's stop() never spins (wcs-protocol.md §2.3, §9.4).
"""

from __future__ import annotations

from collections.abc import Callable

from twisted.internet.defer import maybeDeferred
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from wcs import aio
from wcs.config import Settings
from wcs.signalling.messages import StreamRequest
from wcs.signalling.mse import MsePlayback
from wcs.signalling.negotiation import Negotiation
from wcs.signalling.publishing import Publication
from wcs.signalling.session import Session
from wcs.streams.registry import StreamRegistry, VodStream
from wcs.webrtc.viewer import WebRTCViewer

log = Logger()

class Playback(Negotiation):
    """One ``playStream`` over WebRTC, from the offer to its terminal status."""

    def __init__(self, session: Session, request: StreamRequest, clock: IReactorTime,
                 on_done: Callable[[Playback], None]) -> None:
        super().__init__(session, request, clock, on_done)
        self.stream: VodStream | None = None
        self.viewer: WebRTCViewer | None = None

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
        self.arm_ice_timeout()
        answering = aio.deferred(self.viewer.answer(self.request.sdp))
        answering.addCallback(self.send_answer).addErrback(self.refused)

    def _viewer_state(self, state: str, info: str | None) -> None:
        if self.done:
            return
        if state == "connected":
            self.disarm()
            self.session.report_stream(self.request, "PLAYING")
            assert self.stream is not None and self.viewer is not None
            self.stream.subscribe(self.viewer)
        else:
            self.end("STOPPED" if state == "stopped" else "FAILED", info)

    def release(self) -> None:
        if self.stream is not None:
            self.stream.unsubscribe(self.viewer)
        if self.viewer is not None:
            aio.deferred(self.viewer.close()).addErrback(
                lambda f: log.failure("closing a peer failed", f))


class SessionStreams:
    """The stream handler shared by every session."""

    def __init__(self, registry: StreamRegistry, settings: Settings,
                 clock: IReactorTime) -> None:
        self.registry = registry
        self.settings = settings
        self.clock = clock
        self._playbacks: dict[str, dict[str, Playback | MsePlayback | Publication]] = {}
        self._waiting: dict[str, list[MsePlayback]] = {}  # MSE plays without a socket yet
        self._channels: dict[str, Session] = {}  # media sockets without a play yet

    def _admit(self, session: Session, request: StreamRequest
               ) -> dict[str, Playback | MsePlayback | Publication] | None:
        """The session's active streams, if this request may join them."""
        active = self._playbacks.setdefault(session.id, {})
        if request.media_session_id in active:
            session.report_stream(request, "FAILED",
                                  "Stream with this mediaSessionId already exists")
            return None
        if request.media_provider not in self.providers(request):
            session.report_stream(request, "FAILED",
                                  f"Media provider {request.media_provider} is not supported"
                                  + (" for publishing" if request.published else ""))
            return None
        return active

    @staticmethod
    def providers(request: StreamRequest) -> tuple[str, ...]:
        return ("WebRTC",) if request.published else ("WebRTC", "MSE")

    def play(self, session: Session, request: StreamRequest) -> None:
        active = self._admit(session, request)
        if active is None:
            return
        playback: Playback | MsePlayback
        if request.media_provider == "MSE":
            playback = MsePlayback(session, request, self.clock, self._forget,
                                   self._wait_for_channel)
        else:
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

    def media_transport(self, owner: Session, media: Session) -> None:
        """A media socket arrived for ``owner``: give it to the MSE play waiting
        for one, or keep it for the next."""
        waiting = self._waiting.get(owner.id)
        if waiting:
            waiting.pop(0).attach(media.channel)
        else:
            self._channels[owner.id] = media

    def _wait_for_channel(self, playback: MsePlayback) -> None:
        media = self._channels.pop(playback.session.id, None)
        if media is not None and not media.closed:
            playback.attach(media.channel)
        else:
            self._waiting.setdefault(playback.session.id, []).append(playback)

    def release(self, session: Session) -> None:
        self._waiting.pop(session.id, None)
        self._channels.pop(session.id, None)
        if session.media_owner is not None and \
                self._channels.get(session.media_owner.id) is session:
            del self._channels[session.media_owner.id]
        for playback in list(self._playbacks.pop(session.id, {}).values()):
            playback.end(None, None)

    def _forget(self, playback: Playback | MsePlayback | Publication) -> None:
        waiting = self._waiting.get(playback.session.id)
        if waiting and playback in waiting:
            waiting.remove(playback)
        playing = self._playbacks.get(playback.session.id)
        if playing is not None:
            playing.pop(playback.request.media_session_id, None)
