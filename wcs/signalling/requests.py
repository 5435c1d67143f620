"""Every session's stream requests: play, publish and stop turned into
registry calls and transports, and every status change sent (and logged) as
WCS does.

Every play and publish gets a running or terminal status, and stop always
completes, so the SDK's stop() never spins (wcs-protocol.md §2.3, §9.4).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from twisted.internet.defer import Deferred, fail, maybeDeferred
from twisted.internet.interfaces import IReactorTime

from wcs.access.gate import OPEN, Gate
from wcs.errors import TCP_OFF, LimitReached, MediaTransportRefused, NotFound
from wcs.limits import Limits
from wcs.push.pushes import Pushes
from wcs.signalling.messages import MessageError, StreamRequest
from wcs.signalling.playing import Playback
from wcs.signalling.publishing import Publication
from wcs.signalling.session import Session
from wcs.streams import controls
from wcs.streams.registry import StreamRegistry
from wcs.transports.interfaces import Transports


class StreamRequests:
    """The stream handler shared by every session."""

    def __init__(
        self,
        registry: StreamRegistry,
        transports: Transports,
        clock: IReactorTime,
        limits: Limits = Limits(),
        gate: Gate = OPEN,
        pushes: Pushes | None = None,
    ) -> None:
        self.registry = registry
        self.transports = transports
        self.clock = clock
        self.limits = limits
        self.gate = gate
        self.pushes = pushes
        self._active: dict[str, dict[str, Playback | Publication]] = {}

    def _admit(
        self, session: Session, request: StreamRequest
    ) -> dict[str, Playback | Publication] | None:
        """The session's active streams, if this request may join them."""
        active = self._active.setdefault(session.id, {})
        if request.media_session_id in active:
            session.report_stream(
                request, "FAILED", "Stream with this mediaSessionId already exists"
            )
            return None
        providers = (
            self.transports.publish_providers
            if request.published
            else self.transports.play_providers
        )
        if request.media_provider not in providers:
            session.report_stream(
                request,
                "FAILED",
                f"Media provider {request.media_provider} is not supported"
                + (" for publishing" if request.published else ""),
            )
            return None
        if (
            request.transport == "TCP"
            and request.media_provider == "WebRTC"
            and not self.transports.tcp_offered
        ):
            session.report_stream(request, "FAILED", TCP_OFF)
            return None
        kind = Publication if request.published else Playback
        cap, key, what = (
            (
                self.limits.max_publishes_per_session,
                "max_publishes_per_session",
                "publications in one session",
            )
            if request.published
            else (
                self.limits.max_plays_per_session,
                "max_plays_per_session",
                "plays in one session",
            )
        )
        if sum(isinstance(each, kind) for each in active.values()) >= cap:
            session.report_stream(request, "FAILED", LimitReached(what, key, cap).info)
            return None
        return active

    def connect(self, session: Session) -> Deferred[None]:
        """Whether the session may start: the ``connect`` hook, with what the
        page sent (its ``custom`` among it) but not its credentials."""
        body = {
            key: value
            for key, value in session.connection.items()
            if key not in ("authToken", "webRTCMetricsServerDescription")
        }
        body.update(nodeId=self.gate.node, sessionId=session.id, clientAddress=session.address)
        return self.gate.connect(body)

    def play(self, session: Session, request: StreamRequest) -> Playback | None:
        """Start a play (None: refused at once, the page told why)."""
        active = self._admit(session, request)
        if active is None:
            return None
        playback = Playback(session, request, self.transports, self.clock, self._forget)
        self._track(active, playback, "STOPPED")
        allowing = self.gate.play(request.name, request.custom, self._hook_body(session, request))
        allowing.addCallback(self._open, playback).addErrback(playback.refused)
        return playback

    def _open(self, name: str, playback: Playback) -> Deferred[None] | None:
        """The play was allowed (as ``name``): open its stream."""
        if playback.done:  # stopped while the backend was asked
            return None
        playback.allowed = True
        self._rename(playback, name)
        request = playback.request
        opening = maybeDeferred(self.registry.open, name)
        if request.width or request.height:  # at that size: a shared rendition
            opening.addCallback(self.registry.renditions.sized, request.width, request.height)
        else:  # a WebRTC play may be moved along the stream's ladder
            playback.renditions = self.registry.renditions
        return opening.addCallback(playback.opened)

    def publish(self, session: Session, request: StreamRequest) -> Publication | None:
        """Start a publication (None: refused at once, the page told why)."""
        active = self._admit(session, request)
        if active is None:
            return None
        publication = Publication(session, request, self.transports, self.clock, self._forget)
        publication.pushes = self.pushes
        self._track(active, publication, "UNPUBLISHED")
        allowing = self.gate.publish(request.name, self._hook_body(session, request))
        allowing.addCallback(self._start, publication).addErrback(publication.refused)
        return publication

    def _start(self, name: str, publication: Publication) -> None:
        if not publication.done:
            publication.allowed = True
            self._rename(publication, name)
            publication.start(self.registry)

    @staticmethod
    def _rename(negotiation: Playback | Publication, name: str) -> None:
        """The backend's name for the stream, from now on (WCS lets it rewrite)."""
        if name != negotiation.request.name:
            negotiation.request = replace(negotiation.request, name=name)
            negotiation.media.name = name

    def _hook_body(
        self, session: Session, request: StreamRequest, status: str = "NEW"
    ) -> dict[str, Any]:
        """A ``playStream``/``publishStream``/``stopStream`` body as WCS sends it."""
        return {
            "nodeId": self.gate.node,
            "appKey": session.connection.get("appKey"),
            "sessionId": session.id,
            "mediaSessionId": request.media_session_id,
            "name": request.name,
            "published": request.published,
            "hasVideo": request.has_video,
            "hasAudio": request.has_audio,
            "status": status,
            "record": request.record,
            "width": request.width,
            "height": request.height,
            "mediaProvider": request.media_provider,
            "custom": request.custom,
            "clientAddress": session.address,
            **({"rtmpUrl": request.rtmp_url} if request.rtmp_url else {}),
            **({"method": request.door.lower()} if request.door else {}),
        }

    def _track(
        self,
        active: dict[str, Playback | Publication],
        negotiation: Playback | Publication,
        stopped: str,
    ) -> None:
        """Keep the request among its session's, and listed for REST (which may
        end it: ``stopped`` is the status its page is then told)."""
        active[negotiation.request.media_session_id] = negotiation
        self.registry.media.add(
            negotiation.media,
            lambda info: negotiation.end(stopped, info),
            lambda: negotiation.stream,
            negotiation if isinstance(negotiation, Playback) else None,
        )

    def stop(self, session: Session, request: StreamRequest) -> None:
        active = self._active.get(session.id, {}).get(request.media_session_id)
        if isinstance(active, Publication):
            active.end("UNPUBLISHED", None)
        elif active is not None:
            active.end("STOPPED", "Stopped by user")
        else:
            status = "UNPUBLISHED" if request.published else "STOPPED"
            session.report_stream(request, status, "Stopped by user")

    def snapshot(self, session: Session, media_session_id: str, name: str) -> Deferred[bytes]:
        """A PNG of the picture of this session's play ``media_session_id`` (its
        own stream: a personal play's current frame), else of the stream ``name``."""
        active = self._active.get(session.id, {}).get(media_session_id)
        stream = active.stream if isinstance(active, Playback) else None
        return self.registry.snapshots.snapshot(name, stream)

    def control(
        self, session: Session, media_session_id: str, action: str, position: object
    ) -> Deferred[dict[str, Any]]:
        """Seek, pause or resume this session's play ``media_session_id``."""
        active = self._active.get(session.id, {}).get(media_session_id)
        if not isinstance(active, Playback):
            return fail(NotFound(f"no play {media_session_id} in this session"))
        return maybeDeferred(controls.apply, active, action, position)

    def available(self, name: str) -> Deferred[tuple[bool, str]]:
        return self.registry.available(name)

    def media_transport(self, owner: Session, media: Session) -> None:
        """A media socket arrived for ``owner``'s plays; a socket that already
        serves one is refused (the media session answers ``fail`` with why)."""
        try:
            self.transports.media_channel(owner.id, media.channel)
        except MediaTransportRefused as refused:
            raise MessageError(refused.info) from None

    def media_transport_misrouted(self, token: str, info: str) -> None:
        """A media socket came here for a session of another node: that node's
        plays waiting for it end FAILED with ``info``."""
        self.registry.queries.transport_refused(token, info)

    def media_transport_refused(self, owner: Session, info: str) -> None:
        """``owner``'s media socket went to another node: its MSE plays that
        wait for one end FAILED with ``info`` (none will come)."""
        for negotiation in list(self._active.get(owner.id, {}).values()):
            if (
                isinstance(negotiation, Playback)
                and negotiation.request.media_provider == "MSE"
                and negotiation.media.status not in ("PLAYING", "PAUSED")
            ):
                negotiation.end("FAILED", info)

    def release(self, session: Session) -> None:
        """The session's socket is gone: end what it played and published."""
        if session.media_owner is not None:
            self.transports.media_channel_closed(session.media_owner.id, session.channel)
        self.transports.session_closed(session.id)
        for negotiation in list(self._active.pop(session.id, {}).values()):
            negotiation.end(None, None)
        if session.established:
            self.gate.tell(
                "ConnectionStatusEvent",
                {
                    "nodeId": self.gate.node,
                    "appKey": session.connection.get("appKey"),
                    "sessionId": session.id,
                    "status": "DISCONNECTED",
                    "clientAddress": session.address,
                },
            )

    def _forget(self, negotiation: Playback | Publication) -> None:
        self.registry.media.remove(negotiation.media)
        if self.gate.hooks is not None and negotiation.allowed:  # the backend knows it
            request = negotiation.request
            self.gate.tell(
                "unPublishStream" if request.published else "stopStream",
                self._hook_body(
                    negotiation.session, request, negotiation.media.status or "STOPPED"
                ),
            )
        active = self._active.get(negotiation.session.id)
        if active is not None:
            active.pop(negotiation.request.media_session_id, None)
