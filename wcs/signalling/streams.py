"""A session's streams: turns play, publish and stop into answers.

No media source exists yet, so every play is refused with the status and
info WCS uses for a name it does not know; stop always completes, so the
SDK's stop() never spins (wcs-protocol.md §2.3).
"""

from __future__ import annotations

from twisted.logger import Logger

from wcs.signalling import messages
from wcs.signalling.messages import StreamRequest
from wcs.signalling.session import Session

log = Logger()


class SessionStreams:
    """The stream handler shared by every session."""

    def play(self, session: Session, request: StreamRequest) -> None:
        self._status(session, request, "FAILED", "Stream not found")

    def publish(self, session: Session, request: StreamRequest) -> None:
        self._status(session, request, "FAILED", "Publishing is not supported")

    def stop(self, session: Session, request: StreamRequest) -> None:
        status = "UNPUBLISHED" if request.published else "STOPPED"
        self._status(session, request, status, "Stopped by user")

    def available(self, name: str) -> tuple[bool, str]:
        return False, "Stream not found"

    def release(self, session: Session) -> None:
        pass

    def _status(self, session: Session, request: StreamRequest, status: str,
                info: str) -> None:
        log.info("session {session} stream {stream} ({name}): {status} {info}",
                 session=session.id, stream=request.media_session_id,
                 name=request.name, status=status, info=info)
        session.send(messages.stream_status(request, status, info))
