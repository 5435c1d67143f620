"""The SDK's MSE media sockets, matched to the plays that wait for them.

After the answer of an MSE play, the SDK opens a second WebSocket and names
only its session (``connectMediaTransport {authToken}``), so a socket is
matched to its session's plays in order; one that comes first is kept for
the next play.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

Attach = Callable[[Any], None]


class MediaChannels:
    """Media sockets by session: parked ones, and plays waiting for one."""

    def __init__(self) -> None:
        self._parked: dict[str, Any] = {}
        self._waiting: dict[str, list[Attach]] = {}

    def arrived(self, session_id: str, channel: Any) -> None:
        """A media socket of ``session_id``: to the first play waiting, or kept."""
        waiting = self._waiting.get(session_id)
        if waiting:
            waiting.pop(0)(channel)
        else:
            self._parked[session_id] = channel

    def wait(self, session_id: str, attach: Attach) -> None:
        """Call ``attach`` with the session's media socket: now, or when it comes."""
        channel = self._parked.pop(session_id, None)
        if channel is not None:
            attach(channel)
        else:
            self._waiting.setdefault(session_id, []).append(attach)

    def cancel(self, session_id: str, attach: Attach) -> None:
        """The play gave up waiting."""
        waiting = self._waiting.get(session_id)
        if waiting and attach in waiting:
            waiting.remove(attach)

    def gone(self, session_id: str, channel: Any) -> None:
        """That media socket closed; it is no longer offered."""
        if self._parked.get(session_id) is channel:
            del self._parked[session_id]

    def forget(self, session_id: str) -> None:
        """The session is gone."""
        self._parked.pop(session_id, None)
        self._waiting.pop(session_id, None)
