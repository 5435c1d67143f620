"""What playing and publishing share: an answer to send, an ICE deadline, and
an end that happens once."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure

from wcs.media.errors import MediaError
from wcs.signalling import messages
from wcs.signalling.messages import StreamRequest
from wcs.signalling.session import Session

log = Logger()

#: A peer that has not connected by then is given up (WCS: "Failed by ICE timeout").
ICE_TIMEOUT = 20.0


class Negotiation:
    """One stream request of a session, from its offer to its terminal status."""

    def __init__(self, session: Session, request: StreamRequest, clock: IReactorTime,
                 on_done: Callable[[Any], None]) -> None:
        self.session = session
        self.request = request
        self.clock = clock
        self._on_done = on_done
        self.done = False
        self._timer: IDelayedCall | None = None

    def arm_ice_timeout(self) -> None:
        self._timer = self.clock.callLater(ICE_TIMEOUT, self.end, "FAILED",
                                           "Failed by ICE timeout")

    def disarm(self) -> None:
        if self._timer is not None and self._timer.active():
            self._timer.cancel()

    def send_answer(self, sdp: str) -> None:
        if not self.done:
            self.session.send(messages.set_remote_sdp(self.request.media_session_id, sdp))

    def refused(self, failure: Failure) -> None:
        """The source could not be opened, or the offer not answered."""
        if isinstance(failure.value, MediaError):
            info = failure.value.info
        else:
            log.failure("{name}: {kind} failed", failure, name=self.request.name,
                        kind="publish" if self.request.published else "play")
            info = "Internal error"
        self.end("FAILED", info)

    def end(self, status: str | None, info: str | None) -> None:
        """Finish once: release what is held, then tell the page (if ``status``)."""
        if self.done:
            return
        self.done = True
        self.disarm()
        self.release()
        if status is not None:
            self.session.report_stream(self.request, status, info)
        self._on_done(self)

    def release(self) -> None:
        """Give back the peer, the viewer, the stream: whatever this holds."""
