"""``/rest-api/vod/``: startup, find, find_all and terminate, as the WCS docs describe.

Every answer is JSON; every refusal says what was wrong. The area only
talks to the stream registry.
"""

from __future__ import annotations

from typing import Any

from twisted.logger import Logger
from twisted.web import resource
from twisted.web.server import Request

from wcs.errors import BadRequest, NotFound
from wcs.streams.registry import StreamRegistry
from wcs.streams.stream import VodStream
from wcs.web.rest import Access, JsonNotFound, Operation, read_body, text

log = Logger()


def item(stream: VodStream) -> dict[str, Any]:
    """One stream as WCS lists it, plus its number of viewers."""
    return {
        "localMediaSessionId": stream.id,
        "localStreamName": stream.name,
        "uri": str(stream.uri),
        "status": stream.status,
        "hasAudio": stream.info.audio is not None,
        "hasVideo": stream.info.video is not None,
        "record": False,
        "loop": stream.loop,
        "viewers": stream.viewers,
    }


class VodApi(resource.Resource):
    """The ``vod`` area of the REST API."""

    def __init__(self, registry: StreamRegistry, access: Access) -> None:
        super().__init__()
        self.registry = registry
        self.access = access
        self.putChild(b"startup", Operation(self.startup, access))
        self.putChild(b"find", Operation(self.find, access))
        self.putChild(b"find_all", Operation(self.find_all, access, get_allowed=True))
        self.putChild(b"terminate", Operation(self.terminate, access))

    def getChild(self, path: bytes, request: Request) -> resource.Resource:
        return JsonNotFound(self.access)

    def startup(self, request: Request) -> Any:
        body = read_body(request)
        uri = text(body, "uri", required=True)
        name = text(body, "localStreamName", required=True)
        assert uri is not None and name is not None
        loop = body.get("loop")
        if loop is not None and not isinstance(loop, bool):
            raise BadRequest("'loop' must be true or false")

        def started(stream: VodStream) -> tuple[int, Any]:
            log.info("REST startup: {uri} as {name!r} (stream {id})", uri=uri, name=name,
                     id=stream.id)
            return 200, item(stream)

        return self.registry.startup(uri, name, loop).addCallback(started)

    def _select(self, request: Request) -> list[VodStream]:
        """The streams a find or terminate body names (400 if none named, 404 if none)."""
        body = read_body(request)
        criteria = {"name": text(body, "localStreamName"), "uri": text(body, "uri"),
                    "stream_id": text(body, "localMediaSessionId")}
        if not any(criteria.values()):
            raise BadRequest("give localStreamName, uri or localMediaSessionId")
        found = self.registry.find(**criteria)
        if not found:
            raise NotFound("no such stream")
        return found

    def find(self, request: Request) -> tuple[int, Any]:
        return 200, [item(stream) for stream in self._select(request)]

    def find_all(self, request: Request) -> tuple[int, Any]:
        if request.method == b"POST":
            read_body(request, required=False)
        streams = self.registry.find()
        if not streams:
            raise NotFound("no VOD streams")
        return 200, [item(stream) for stream in streams]

    def terminate(self, request: Request) -> tuple[int, Any]:
        found = self._select(request)
        for stream in found:
            log.info("REST terminate: stream {id} ({name!r})", id=stream.id, name=stream.name)
            stream.terminate("Stopped by server")
        return 200, [item(stream) for stream in found]
