"""``/rest-api/push/``: startup, find, find_all and terminate, with WCS's shapes:
a stream sent on to an RTMP server, its status and why it ended.

``startup {"streamName", "rtmpUrl"}`` answers once the stream is open (the
RTMP connection comes up after: ``find`` shows PENDING, then PUBLISHING, or
FAILED with the reason); 409 if that stream already goes to that URL.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import Deferred
from twisted.logger import Logger
from twisted.web.server import Request

from wcs.errors import BadRequest
from wcs.push.pushes import Pushes
from wcs.streams.media_sessions import MediaSession
from wcs.streams.registry import StreamRegistry
from wcs.web.rest import Access, RestArea, read_body, some, text

log = Logger()

#: What a push ended by ``terminate`` shows.
TERMINATED = "Stopped by rest /terminate"


def item(media: MediaSession) -> dict[str, Any]:
    """One push as WCS lists a transponder, plus its status and worker."""
    return {
        "mediaSessionId": media.id,
        "streamName": media.name,
        "rtmpUrl": media.rtmp_url,
        "width": media.width,
        "height": media.height,
        "muted": False,
        "soundEnabled": media.has_audio,
        "options": {},
        "status": media.status,
        "info": media.info,
        "createDate": media.created,
        "worker": media.worker,
    }


class PushApi(RestArea):
    """The ``push`` area of the REST API."""

    def __init__(self, registry: StreamRegistry, pushes: Pushes, access: Access) -> None:
        super().__init__(access)
        self.registry = registry
        self.pushes = pushes
        self.operation("startup", self.startup)
        self.operation("find", self.find)
        self.operation("find_all", self.find_all, get_allowed=True)
        self.operation("terminate", self.terminate)

    def startup(self, request: Request) -> Deferred[tuple[int, Any]]:
        body = read_body(request)
        name, url = text(body, "streamName", required=True), text(body, "rtmpUrl", required=True)
        assert name is not None and url is not None
        return self.pushes.start(name, url).addCallback(lambda media: (200, item(media)))

    def _all(self) -> Deferred[list[MediaSession]]:
        return self.registry.queries.media_sessions().addCallback(
            lambda found: [media for media in found if media.rtmp_url]
        )

    def _select(self, body: dict[str, Any], what: str) -> Deferred[list[MediaSession]]:
        criteria = {
            "id": text(body, "mediaSessionId"),
            "name": text(body, "streamName"),
            "rtmp_url": text(body, "rtmpUrl"),
        }
        if not any(criteria.values()):
            raise BadRequest(f"give mediaSessionId, streamName or rtmpUrl to {what}")
        return (
            self._all()
            .addCallback(
                lambda found: [
                    media
                    for media in found
                    if all(
                        value is None or getattr(media, key) == value
                        for key, value in criteria.items()
                    )
                ]
            )
            .addCallback(some, "no such push")
        )

    def find(self, request: Request) -> Deferred[tuple[int, Any]]:
        return self._select(read_body(request), "find").addCallback(_listed)

    def find_all(self, request: Request) -> Deferred[tuple[int, Any]]:
        if request.method == b"POST":
            read_body(request, required=False)
        return self._all().addCallback(some, "no pushes").addCallback(_listed)

    def terminate(self, request: Request) -> Deferred[tuple[int, Any]]:
        def stop(found: list[MediaSession]) -> tuple[int, Any]:
            for media in found:
                log.info(
                    "REST terminate: push {id} of {name!r} to {url}",
                    id=media.id,
                    name=media.name,
                    url=media.rtmp_url,
                )
            self.registry.queries.stop_media(found, TERMINATED)
            return _listed(found)

        return self._select(read_body(request), "terminate").addCallback(stop)


def _listed(found: list[MediaSession]) -> tuple[int, Any]:
    return 200, [item(media) for media in found]
