"""Seek, pause and resume a personal play by its ``mediaSessionId``, wherever it runs.

REST ``/stream/seek``, ``/stream/pause`` and ``/stream/resume`` reach a play
on whichever worker of this machine serves it: the others are asked through
the directory, and a refusal comes back as its kind and info. The play's own
front door does the work (:class:`~wcs.streams.media_sessions.Control`), so
its page hears the same status and events as when it asks itself.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from twisted.internet.defer import Deferred, fail, maybeDeferred

from wcs.cluster.directory import Directory
from wcs.errors import BadRequest, NotFound
from wcs.streams.media_sessions import Control, MediaSession, MediaSessions, held_elsewhere

#: What may be done to a play.
ACTIONS = ("seek", "pause", "resume")
ASKED = "control"


class Controls:
    """Plays' seek and pause: ``media_sessions`` lists the whole server's plays."""

    def __init__(
        self,
        directory: Directory,
        media: MediaSessions,
        media_sessions: Callable[[str], Deferred[list[MediaSession]]],
    ) -> None:
        self.directory = directory
        self.media = media
        self.media_sessions = media_sessions
        directory.answer(ASKED, self._asked)

    def control(
        self, media_id: str, action: str, position: object = None
    ) -> Deferred[dict[str, Any]]:
        """Do ``action`` (with ``position``, s, for a seek) to the play
        ``media_id``: what it answers (its status and position)."""
        if action not in ACTIONS:
            return fail(BadRequest(f"no such action {action!r}: {', '.join(ACTIONS)}"))
        here = self.media.control(media_id)
        if here is not None:
            return maybeDeferred(apply, here, action, position)
        question = {"media": media_id, "action": action, "position": position}

        def found(sessions: list[MediaSession]) -> Deferred[dict[str, Any]]:
            worker = held_elsewhere(sessions, self.directory.worker, media_id)
            return self.directory.ask(worker, ASKED, question)

        return self.media_sessions(media_id).addCallback(found)

    def _asked(self, question: dict[str, Any]) -> Deferred[dict[str, Any]]:
        """Another worker asks us to control one of our plays."""
        media_id = str(question.get("media", ""))
        here = self.media.control(media_id)
        if here is None:
            return fail(NotFound(f"no play {media_id} runs here"))
        return maybeDeferred(apply, here, str(question.get("action")), question.get("position"))


def apply(control: Control, action: str, position: object = None) -> Any:
    """``action`` done to one play: a seek's position must be a number of seconds."""
    if action == "seek":
        if isinstance(position, bool) or not isinstance(position, (int, float)):
            raise BadRequest("'position' must be a number of seconds")
        return control.seek(float(position))
    if action == "pause":
        return control.pause()
    if action == "resume":
        return control.resume()
    raise BadRequest(f"no such action {action!r}: {', '.join(ACTIONS)}")
