"""``/rest-api/vod/``: startup, find, find_all and terminate, as the WCS docs describe;
and a playlist channel's list (``playlist``, ``playlist_append``, ``playlist_skip``).

Every answer is JSON; every refusal says what was wrong. The area only
talks to the stream registry.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from typing import Any

from twisted.internet.defer import Deferred
from twisted.logger import Logger
from twisted.web.server import Request

from wcs.access.gate import OPEN, Gate
from wcs.cluster.store import Entry, Load
from wcs.errors import BadRequest
from wcs.files.library import Library
from wcs.streams.channels import list_of_names
from wcs.streams.registry import StreamRegistry
from wcs.streams.stream import PROCESSED, VodStream
from wcs.web.rest import Access, RestArea, read_body, some, text

log = Logger()

#: The longest a play token asked of ``startup`` may last: a year, in seconds.
MAX_TOKEN_LIFETIME = 365 * 24 * 3600


def item(entry: Entry, hls: dict[str, int] | None = None) -> dict[str, Any]:
    """One stream as WCS lists it, plus its viewers (on every worker; ``hls``:
    HLS players by stream name, which may be its name or its uri)."""
    return {
        "localMediaSessionId": entry.id,
        "localStreamName": entry.name,
        "uri": entry.uri,
        "status": PROCESSED,
        "hasAudio": entry.has_audio,
        "hasVideo": entry.has_video,
        "record": False,
        "loop": entry.loop,
        "viewers": entry.total_viewers,
        "workers": dict(entry.viewers),  # viewers by the worker serving them
        "bitrate": entry.bitrate,  # the source's average, bits/s
        "uptime": round(max(0.0, time.time() - entry.start), 1) if entry.start else 0.0,
        "hlsViewers": sum((hls or {}).get(name, 0) for name in {entry.name, entry.uri}),
    }


class VodApi(RestArea):
    """The ``vod`` area of the REST API."""

    def __init__(
        self,
        registry: StreamRegistry,
        access: Access,
        gate: Gate = OPEN,
        library: Library | None = None,
    ) -> None:
        super().__init__(access)
        self.registry = registry
        self.gate = gate
        self.library = library
        self.operation("startup", self.startup)
        self.operation("find", self.find)
        self.operation("find_all", self.find_all, get_allowed=True)
        self.operation("terminate", self.terminate)
        self.operation("playlist", self._channel("list"))
        self.operation("playlist_append", self._channel("append"))
        self.operation("playlist_skip", self._channel("skip"))
        if library is not None:
            self.operation("library", self.files, get_allowed=True)

    def startup(self, request: Request) -> Any:
        body = read_body(request)
        playlist = list_of_names(body["playlist"]) if "playlist" in body else None
        uri = text(body, "uri", required=playlist is None)
        if uri is not None and playlist is not None:
            raise BadRequest("give 'uri' (one file) or 'playlist' (a list of files), not both")
        name = text(body, "localStreamName", required=True)
        assert name is not None
        loop = body.get("loop")
        if loop is not None and not isinstance(loop, bool):
            raise BadRequest("'loop' must be true or false")
        lifetime = whole(
            body, "playTokenLifetime", None, 1, MAX_TOKEN_LIFETIME, "a number of seconds"
        )
        if lifetime is not None and not self.gate.token_secret:
            raise BadRequest(
                "'playTokenLifetime': no play_token_secret is set, so plays need no token"
            )

        def started(stream: VodStream) -> Deferred[tuple[int, Any]]:
            log.info(
                "REST startup: {uri} as {name!r} (stream {id})",
                uri=uri or f"a playlist of {len(playlist or ())} files",
                name=name,
                id=stream.id,
            )

            def answer(found: list[Entry]) -> tuple[int, Any]:
                result = item(found[0]) if found else {}
                if lifetime is not None:  # a token the viewers of this name can use
                    result["playToken"] = self.gate.sign(name, lifetime)
                return 200, result

            return self.registry.queries.entries(stream_id=stream.id).addCallback(answer)

        return self.registry.startup(uri, name, loop, playlist).addCallback(started)

    def _channel(self, action: str) -> Callable[[Request], Deferred[tuple[int, Any]]]:
        """``playlist`` {localStreamName}, ``playlist_append`` {localStreamName,
        playlist: [names]} and ``playlist_skip`` {localStreamName}: a playlist
        channel's list, the item playing and how far into it (s)."""

        def operation(request: Request) -> Deferred[tuple[int, Any]]:
            body = read_body(request)
            name = text(body, "localStreamName", required=True)
            assert name is not None
            names = list_of_names(body.get("playlist")) if action == "append" else None
            if names is not None:
                log.info("REST playlist_append: {n} files to {name!r}", n=len(names), name=name)
            elif action == "skip":
                log.info("REST playlist_skip: {name!r}", name=name)
            return self.registry.channels.control(name, action, names).addCallback(
                lambda answer: (200, answer)
            )

        return operation

    def _select(self, request: Request) -> Deferred[list[Entry]]:
        """The streams a find or terminate body names (400 if none named, 404 if none)."""
        body = read_body(request)
        criteria = {
            "name": text(body, "localStreamName"),
            "uri": text(body, "uri"),
            "stream_id": text(body, "localMediaSessionId"),
        }
        if not any(criteria.values()):
            raise BadRequest("give localStreamName, uri or localMediaSessionId")
        return self.registry.queries.entries(**criteria).addCallback(some, "no such stream")

    def find(self, request: Request) -> Deferred[tuple[int, Any]]:
        return self._select(request).addCallback(self._listed)

    def find_all(self, request: Request) -> Deferred[tuple[int, Any]]:
        if request.method == b"POST":
            read_body(request, required=False)
        return (
            self.registry.queries.entries()
            .addCallback(some, "no VOD streams")
            .addCallback(self._listed)
        )

    def terminate(self, request: Request) -> Deferred[tuple[int, Any]]:
        def stop(found: list[Entry]) -> Deferred[tuple[int, Any]]:
            for entry in found:
                log.info("REST terminate: stream {id} ({name!r})", id=entry.id, name=entry.name)
            return self.registry.queries.terminate(found, "Stopped by server").addCallback(
                lambda _: self._listed(found)
            )

        return self._select(request).addCallback(stop)

    def _listed(self, found: list[Entry]) -> Deferred[tuple[int, Any]]:
        """The streams as REST lists them, with every worker's HLS players."""

        def listed(loads: list[Load]) -> tuple[int, Any]:
            hls: Counter[str] = Counter()
            for load in loads:
                hls.update(load.hls)
            return 200, [item(entry, hls) for entry in found]

        return self.registry.queries.loads().addCallback(listed)

    def files(self, request: Request) -> Deferred[tuple[int, Any]]:
        """The media library: ``{"offset", "limit", "contains"}``, all optional."""
        body = read_body(request, required=False) if request.method == b"POST" else {}
        offset = whole(body, "offset", 0, 0, 10**9)
        limit = whole(body, "limit", 200, 0, MAX_PAGE)
        contains = body.get("contains", "")
        if not isinstance(contains, str) or len(contains) > 256:
            raise BadRequest("'contains' must be a string of at most 256 characters")
        assert self.library is not None
        return self.library.listing().addCallback(
            lambda library: (200, library.page(offset, limit, contains))
        )


#: Most files one library page lists.
MAX_PAGE = 1000


def whole(
    body: dict[str, Any],
    key: str,
    default: int | None,
    least: int,
    most: int,
    what: str = "a whole number",
) -> Any:
    """A whole-number field of a body, from ``least`` to ``most``; ``default``
    when it is absent (an optional field, whose default is None, may also be null)."""
    value = body.get(key)
    if key not in body or (value is None and default is None):
        return default
    if isinstance(value, bool) or not isinstance(value, int) or not least <= value <= most:
        raise BadRequest(f"'{key}' must be {what} from {least} to {most}")
    return value
