"""``/rest-api/stream/``: find, find_all, terminate and snapshot, as the WCS docs
describe them, over every play and publication of every page.

The SDK's REST module (``FlashphonerRestApi``) calls ``find`` with
``{mediaSessionId, name, published}``, ``find_all`` without a body and
``terminate`` with ``{mediaSessionId}``. ``seek``, ``pause`` and ``resume`` (not
WCS's) control a personal ``vod://`` play. The area only talks to the registry.
"""

from __future__ import annotations

import base64
from collections.abc import Callable
from typing import Any

from twisted.internet.defer import Deferred
from twisted.logger import Logger
from twisted.web.server import Request

from wcs.errors import BadRequest
from wcs.streams.controls import ACTIONS
from wcs.streams.media_sessions import MediaSession
from wcs.streams.registry import StreamRegistry
from wcs.web.rest import Access, RestArea, read_body, some, text

log = Logger()

#: What the page of a media session ended by ``terminate`` is told.
TERMINATED = "Stopped by server"


class StreamApi(RestArea):
    """The ``stream`` area of the REST API."""

    def __init__(self, registry: StreamRegistry, access: Access) -> None:
        super().__init__(access)
        self.registry = registry
        self.operation("find", self.find)
        self.operation("find_all", self.find_all, get_allowed=True)
        self.operation("terminate", self.terminate)
        self.operation("snapshot", self.snapshot)
        for action in ACTIONS:
            self.operation(action, self._controlled(action))

    def _select(self, body: dict[str, Any], what: str) -> Deferred[list[MediaSession]]:
        """The media sessions a body names (400 if it names none, 404 if none match)."""
        published = body.get("published")
        if published is not None and not isinstance(published, bool):
            raise BadRequest("'published' must be true or false")
        media_id, name = text(body, "mediaSessionId"), text(body, "name")
        if media_id is None and name is None and published is None:
            raise BadRequest(f"give mediaSessionId, name or published to {what}")
        return self.registry.queries.media_sessions(media_id, name, published).addCallback(
            some, "no such stream"
        )

    def find(self, request: Request) -> Deferred[tuple[int, Any]]:
        return self._select(read_body(request), "find").addCallback(_listed)

    def find_all(self, request: Request) -> Deferred[tuple[int, Any]]:
        if request.method == b"POST":
            read_body(request, required=False)
        return (
            self.registry.queries.media_sessions()
            .addCallback(some, "no streams")
            .addCallback(_listed)
        )

    def terminate(self, request: Request) -> Deferred[tuple[int, Any]]:
        body = read_body(request)
        if text(body, "mediaSessionId") is None and text(body, "name") is None:
            raise BadRequest("give the mediaSessionId (or name) of the stream to terminate")

        def stop(found: list[MediaSession]) -> tuple[int, Any]:
            for media in found:
                log.info(
                    "REST terminate: {kind} {id} ({name!r})",
                    id=media.id,
                    name=media.name,
                    kind="publication" if media.published else "play",
                )
            self.registry.queries.stop_media(found, TERMINATED)
            return _listed(found)

        return self._select(body, "terminate").addCallback(stop)

    def snapshot(self, request: Request) -> Deferred[tuple[int, Any]]:
        """A PNG of the stream's current picture: ``{"streamName"}`` (or ``name``),
        or the ``mediaSessionId`` of a play, for a personal play's own picture."""
        body = read_body(request)
        name = text(body, "streamName") or text(body, "name")
        media_id = text(body, "mediaSessionId")
        if media_id is not None:  # that play's own picture, on whichever worker it runs
            taking = self.registry.snapshots.media_snapshot(media_id, name)
        elif name is not None:
            taking = self.registry.snapshots.snapshot(name).addCallback(lambda png: (name, png))
        else:
            raise BadRequest("'streamName' is required")
        return taking.addCallback(
            lambda taken: (
                200,
                {"streamName": taken[0], "data": base64.b64encode(taken[1]).decode("ascii")},
            )
        )

    def _controlled(self, action: str) -> Callable[[Request], Deferred[tuple[int, Any]]]:
        """``seek`` {mediaSessionId, position (s)}, ``pause`` and ``resume``
        {mediaSessionId}: a personal play's, on whichever worker serves it;
        answers its status, position and duration (s)."""

        def operation(request: Request) -> Deferred[tuple[int, Any]]:
            body = read_body(request)
            media_id = text(body, "mediaSessionId")
            if media_id is None:
                raise BadRequest(f"give the mediaSessionId of the play to {action}")
            return self.registry.controls.control(
                media_id, action, body.get("position")
            ).addCallback(lambda answer: (200, answer))

        return operation


def _listed(found: list[MediaSession]) -> tuple[int, Any]:
    return 200, [media.listed() for media in found]
