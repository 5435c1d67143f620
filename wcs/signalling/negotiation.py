"""What playing and publishing share: an answer to send, an ICE deadline, and
one end that happens once: release what is held, then tell the page."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from twisted.internet.defer import Deferred, fail, maybeDeferred, succeed
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure

from wcs.errors import ICE_FAILED, ICE_TIMEOUT, INTERNAL_ERROR, Unprocessable, WcsError
from wcs.signalling.messages import StreamRequest
from wcs.signalling.session import Session
from wcs.streams.media_sessions import MediaSession
from wcs.transports.interfaces import IceFragment, Transports, Trickled

log = Logger()


class Negotiation:
    """One stream request of a session, from its offer to its terminal status."""

    def __init__(
        self,
        session: Session,
        request: StreamRequest,
        transports: Transports,
        clock: IReactorTime,
        on_done: Callable[[Any], None],
    ) -> None:
        self.session = session
        self.request = request
        self.transports = transports
        self.clock = clock
        self._on_done = on_done
        self.done = False
        self.allowed = False  # the access rules let it through
        #: the refusal that ended it, for an HTTP door's status code
        self.cause: WcsError | None = None
        self._timer: IDelayedCall | None = None
        #: what REST ``/stream/*`` lists of this request, its status kept here
        self.media = MediaSession(
            request.media_session_id,
            request.name,
            request.published,
            request.door or request.media_provider,
            session.id,
            record=request.record,
            width=request.width,
            height=request.height,
        )

    @property
    def label(self) -> str:
        """How logs name this stream request."""
        return f"{self.request.name} [{self.request.media_session_id[:8]}]"

    def report(self, status: str, info: str | None = None, **extra: Any) -> None:
        """Tell the page a status, and keep it for REST's listings."""
        self.media.status, self.media.info = status, info or ""
        cause = self.cause if status == "FAILED" else None
        self.session.report_stream(self.request, status, info, cause=cause, **extra)

    def arm_deadline(self, seconds: float = ICE_TIMEOUT, info: str = ICE_FAILED) -> None:
        """End FAILED with ``info`` unless the transport connects within ``seconds``
        (ICE for WebRTC, the media socket for MSE): no page waits in silence."""
        self._timer = self.clock.callLater(seconds, self.end, "FAILED", info)

    def disarm(self) -> None:
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None  # a call that fired still holds ``end``: a cycle

    def send_answer(self, sdp: str) -> None:
        if not self.done:
            self.session.answer_stream(self.request, sdp)

    def trickle(self, fragment: IceFragment) -> Deferred[None]:
        """Candidates the client sent after its offer (WHEP/WHIP)."""
        transport = self.transport
        if self.done or transport is None:
            return fail(Unprocessable("the ICE session is not under way"))
        return transport.trickle(fragment)

    @property
    def transport(self) -> Trickled | None:
        """The player or publisher, once made."""
        return None

    def refused(self, failure: Failure) -> None:
        """The source could not be opened, or the offer not answered."""
        if self.done:  # ended meanwhile (the page left): its player was closed under
            log.debug(
                "{name}: ended before it was answered ({why})",  # the answer
                name=self.request.name,
                why=failure.getErrorMessage(),
            )
            return
        if isinstance(failure.value, WcsError):
            info = failure.value.info
            self.cause = failure.value
        else:
            log.failure(
                "{name}: {kind} failed",
                failure,
                name=self.request.name,
                kind="publish" if self.request.published else "play",
            )
            info = INTERNAL_ERROR
        self.end("FAILED", info)

    def end(self, status: str | None, info: str | None) -> None:
        """Finish once: release what is held, then tell the page (if ``status``).

        ``release`` may return a Deferred (a recording being completed): the
        page hears the status when it fires, with the fields it fires with;
        if it fails, the page hears FAILED with the reason.
        """
        if self.done:
            return
        self.done = True
        self.disarm()
        releasing = maybeDeferred(self._released)

        def report(extra: dict[str, Any] | None) -> None:
            if status is not None:
                self.report(status, info, **(extra or {}))

        def failed(failure: Failure) -> None:
            if isinstance(failure.value, WcsError):
                reason = failure.value.info
                log.warn("{label}: {reason}", label=self.label, reason=reason)
            else:
                reason = INTERNAL_ERROR
                log.failure("{label}: releasing failed", failure, label=self.label)
            if status is not None:
                self.report("FAILED", info if status == "FAILED" else reason)

        releasing.addCallbacks(report, failed)
        releasing.addBoth(lambda _: self._on_done(self))

    def release(self) -> Deferred[dict[str, Any] | None] | None:
        """Give back the peer, the viewer, the stream: whatever this holds."""
        return None

    def _released(self) -> Deferred[dict[str, Any] | None]:
        released = self.release()
        return released if released is not None else succeed(None)
