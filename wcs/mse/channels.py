"""The SDK's MSE media sockets, matched to the plays that wait for them.

After the answer of an MSE play, the SDK opens a second WebSocket and names
only its session (``connectMediaTransport {authToken}``), so a socket is
matched to its session's plays in order; one that comes first is kept for
the next play (the SDK's worker may connect before ``playStream``).

A socket serves one play: one that says ``connectMediaTransport`` again is
refused (:class:`~wcs.errors.MediaTransportRefused`), and its play goes on.
Were it taken again, the session's next play would send on the socket of the
previous one, while its own socket waited for nothing. At most
``PARKED_LIMIT`` sockets wait for plays per session.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from typing import Any

from wcs.errors import MediaTransportRefused

Attach = Callable[[Any], None]

#: Media sockets a session may have waiting for plays that have not come yet.
PARKED_LIMIT = 4


class MediaChannels:
    """Media sockets by session: parked ones, plays waiting for one, and every
    socket already matched (which may not be matched again)."""

    def __init__(self) -> None:
        self._parked: dict[str, deque[Any]] = {}
        self._waiting: dict[str, list[Attach]] = {}
        self._matched: dict[Any, str] = {}  # socket -> the session it came for

    def arrived(self, session_id: str, channel: Any) -> None:
        """A media socket of ``session_id``: to the first play waiting, or kept.

        Raises :class:`MediaTransportRefused` for a socket that already came
        (for any session), or one more than ``PARKED_LIMIT`` waiting."""
        if channel in self._matched:
            raise MediaTransportRefused(
                "connectMediaTransport refused: this media socket already serves a play "
                "(one connectMediaTransport per play)"
            )
        waiting = self._waiting.get(session_id)
        if waiting:
            self._matched[channel] = session_id
            attach = waiting.pop(0)
            if not waiting:
                del self._waiting[session_id]
            attach(channel)
            return
        parked = self._parked.setdefault(session_id, deque())
        if len(parked) >= PARKED_LIMIT:
            raise MediaTransportRefused(
                f"connectMediaTransport refused: {PARKED_LIMIT} media sockets of this "
                "session already wait for plays"
            )
        self._matched[channel] = session_id
        parked.append(channel)

    def wait(self, session_id: str, attach: Attach) -> None:
        """Call ``attach`` with the session's media socket: now, or when it comes."""
        parked = self._parked.get(session_id)
        if parked:
            channel = parked.popleft()
            if not parked:
                del self._parked[session_id]
            attach(channel)
        else:
            self._waiting.setdefault(session_id, []).append(attach)

    def cancel(self, session_id: str, attach: Attach) -> None:
        """The play gave up waiting."""
        waiting = self._waiting.get(session_id)
        if waiting and attach in waiting:
            waiting.remove(attach)
            if not waiting:
                del self._waiting[session_id]

    def gone(self, session_id: str, channel: Any) -> None:
        """That media socket closed; it is no longer offered (nor remembered)."""
        owner = self._matched.pop(channel, session_id)
        parked = self._parked.get(owner)
        if parked is not None and channel in parked:
            parked.remove(channel)
            if not parked:
                del self._parked[owner]

    def forget(self, session_id: str) -> None:
        """The session is gone."""
        for channel in self._parked.pop(session_id, ()):
            self._matched.pop(channel, None)
        self._waiting.pop(session_id, None)
