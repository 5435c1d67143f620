"""The HLS port (``hls.port``, 8082; ``hls.ssl.port``, 8445): WCS's paths.

``/<streamName>/<streamName>.m3u8`` is a stream's playlist,
``/<streamName>/<number>.ts`` its segments and ``<number>.<part>.ts`` their
parts (Low-Latency HLS), the name URL-encoded as the SDK's HLS demos send it
(``vod-live%3A%2F%2Fsample.mp4``). Read-only GETs that any page may fetch
(CORS ``*``); every refusal is JSON saying why.

LL-HLS's blocking reload: ``?_HLS_msn=M[&_HLS_part=P]`` answers once the
playlist holds segment M (or its part P), at most three target durations
later (then 503); the part the playlist's preload hint names is answered the
same way once it is made.

A ``vod://FILE`` name is the file as HLS VOD (``wcs/sources/vod_hls.py``): its
whole playlist at once, its segments made on request, each with an ``ETag``,
``Last-Modified`` and a long ``Cache-Control`` (a file's version never changes
its bytes), ``Range`` honoured; under the same access rules as a play of it
(``?token=`` on the playlist is passed on to its segments; the hook is asked
for the playlist).
"""

from __future__ import annotations

import email.utils
import re
from collections.abc import Callable
from typing import Any, Protocol

from twisted.internet.defer import CancelledError, Deferred, succeed
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web import resource
from twisted.web.server import NOT_DONE_YET, Request

from wcs.access.gate import OPEN, Gate
from wcs.errors import BadRequest, NotFound, WcsError
from wcs.hls import variants
from wcs.hls.packagers import Packager, Packagers
from wcs.hls.segmenter import TooManyWaiting
from wcs.metrics import METERS
from wcs.web.rest import error, http_status

log = Logger()

#: Longest wait for a stream's first segment before its playlist is answered 503.
FIRST_SEGMENT_WAIT = 15.0
#: Target durations a blocking request may wait (RFC 8216bis 6.2.5.2: three).
BLOCKING_TARGETS = 3
PART_FILE = re.compile(r"(\d{1,9})\.(\d{1,4})\.ts")
PLAYLIST_TYPE = b"application/vnd.apple.mpegurl"
SEGMENT_TYPE = b"video/mp2t"
VOD = "vod://"
#: How long a cache may keep a VOD playlist, and a VOD segment (s).
VOD_PLAYLIST_AGE = 300
VOD_SEGMENT_AGE = 86400
RANGE = re.compile(r"bytes=(\d{0,15})-(\d{0,15})")


class VodIndex(Protocol):
    """A file's HLS VOD plan (``wcs.sources.vod_hls.VodIndex``)."""

    etag: str
    modified: float

    def playlist(self, query: str = "") -> bytes: ...


class VodFiles(Protocol):
    """Files as HLS VOD (``wcs.sources.vod_hls.VodHls``)."""

    def index(self, location: str) -> Deferred[Any]: ...

    def segment(self, index: Any, number: int) -> Deferred[bytes]: ...


class HlsRoot(resource.Resource):
    """``/``: a child per stream name."""

    def __init__(
        self,
        packagers: Packagers,
        clock: IReactorTime,
        vod: VodFiles | None = None,
        gate: Gate = OPEN,
    ) -> None:
        super().__init__()
        self.packagers = packagers
        self.clock = clock
        self.vod = vod
        self.gate = gate

    def getChild(self, path: bytes, request: Request) -> resource.Resource:
        return HlsFile(self.packagers, self.clock, path, self.vod, self.gate)

    def render(self, request: Request) -> bytes | int:
        return HlsFile(self.packagers, self.clock, b"", self.vod, self.gate).render(request)


class HlsFile(resource.Resource):
    """``/<name>/<file>``: the playlist or a segment of the stream ``name``."""

    isLeaf = True

    def __init__(
        self,
        packagers: Packagers,
        clock: IReactorTime,
        name: bytes,
        vod: VodFiles | None = None,
        gate: Gate = OPEN,
    ) -> None:
        super().__init__()
        self.packagers = packagers
        self.clock = clock
        self.name = name
        self.vod = vod
        self.gate = gate

    def render(self, request: Request) -> bytes | int:
        request.setHeader(b"Access-Control-Allow-Origin", b"*")
        if request.method == b"OPTIONS":
            request.setHeader(b"Access-Control-Allow-Methods", b"GET, HEAD, OPTIONS")
            request.setHeader(b"Access-Control-Max-Age", b"600")
            request.setResponseCode(204)
            return b""
        if request.method not in (b"GET", b"HEAD"):
            request.setHeader(b"Allow", b"GET, HEAD, OPTIONS")
            return error(request, 405, "HLS is read with GET")
        try:
            name = self.name.decode("utf-8")
            wanted = b"/".join(request.postpath or ()).decode("utf-8")
        except UnicodeDecodeError:
            return error(request, 404, "not a stream name (UTF-8 expected)")
        if not name or not wanted:
            return error(request, 404, "HLS is at /<streamName>/<streamName>.m3u8")
        base = variants.base_name(name)
        if base is not None and base.startswith(VOD):
            return error(
                request,
                404,
                "HLS ABR is for live streams: a vod:// file is HLS VOD at its own size "
                f"(/{VOD}NAME/{VOD}NAME.m3u8); play vod-live:// for its ladder",
            )
        if base is not None:
            return self._abr(request, name, base, wanted)
        if name.startswith(VOD) and self.vod is not None:
            return self._vod(request, name, wanted, self.vod)
        return self._live(request, name, "", wanted, name)

    def _live(
        self, request: Request, name: str, rung: str, wanted: str, playlist: str
    ) -> bytes | int:
        """A live stream's (at a ``rung`` of its ladder) media playlist
        ``<playlist>.m3u8``, a segment or a part."""
        part = PART_FILE.fullmatch(wanted)
        if wanted == f"{playlist}.m3u8":
            try:
                blocking = blocking_request(request.args)
            except BadRequest as refused:
                return error(request, 400, refused.info)
            address = getattr(request.getClientAddress(), "host", "")
            METERS.hls_viewers.seen((address, name), self.clock.seconds())
            answer = self.packagers.get(name, rung).addCallback(self._playlist, request, blocking)
        elif wanted.endswith(".ts") and wanted[:-3].isdigit() and len(wanted) < 16:
            answer = self.packagers.get(name, rung).addCallback(self._segment, int(wanted[:-3]))
        elif part is not None:
            answer = self.packagers.get(name, rung).addCallback(
                self._part, request, int(part[1]), int(part[2])
            )
        else:
            return error(
                request, 404, f"no such HLS file: {wanted!r} (the playlist is {playlist}.m3u8)"
            )
        answer.addErrback(self._refused, request).addCallback(self._send, request)
        return NOT_DONE_YET

    # --- HLS ABR: <name>-HLS-ABR-STREAM

    def _abr(self, request: Request, name: str, base: str, wanted: str) -> bytes | int:
        """The multivariant playlist, or a file of one of its variants."""
        if wanted == f"{name}.m3u8":
            address = getattr(request.getClientAddress(), "host", "")
            METERS.hls_viewers.seen((address, name), self.clock.seconds())
            answer = self.packagers.get(base).addCallback(self._variants, request)
            answer.addErrback(self._refused, request).addCallback(self._send, request)
            return NOT_DONE_YET
        variant, _, file = wanted.partition("/")
        if not file or "/" in file:
            return error(
                request,
                404,
                f"no such HLS file: {wanted!r} (the playlist is {name}.m3u8, "
                "its variants <variant>/<variant>.m3u8)",
            )
        rung = "" if variant == variants.SOURCE else variant
        return self._live(request, base, rung, file, variant)

    def _variants(self, packager: Packager, request: Request) -> Deferred:
        """The multivariant playlist once the source has a segment to measure."""
        segmenter = packager.segmenter
        steps = self.packagers.registry.renditions.steps(packager.stream)

        def answer() -> tuple[int, bytes, bytes]:
            if not segmenter.segments:  # (ended before any)
                raise NotFound(segmenter.failure or "The stream ended before its first segment")
            assert packager.stream.info is not None
            body = variants.multivariant(
                packager.stream.info,
                round(variants.peak_bandwidth(segmenter.segments) * variants.OVERHEAD),
                steps,
                variants.shortest(segmenter.segments),
            )
            return 200, PLAYLIST_TYPE, body.encode("ascii")

        return self._when(
            packager,
            request,
            lambda: bool(segmenter.segments) or segmenter.ended,
            answer,
            FIRST_SEGMENT_WAIT,
            b"",
        )

    # --- files as HLS VOD

    def _vod(self, request: Request, name: str, wanted: str, vod: VodFiles) -> bytes | int:
        """A file's VOD playlist or one of its segments."""
        token = (request.args or {}).get(b"token", [b""])[0].decode("utf-8", "replace")
        query = (
            f"?token={token}"
            if token and token.replace("-", "").replace(".", "").replace("_", "").isalnum()
            else ""
        )
        address = getattr(request.getClientAddress(), "host", "")
        if wanted == f"{name}.m3u8":
            METERS.hls_viewers.seen((address, name), self.clock.seconds())
            body = {
                "nodeId": self.gate.node,
                "name": name,
                "published": False,
                "status": "NEW",
                "mediaProvider": "HLS",
                "custom": {"token": token} if token else {},
                "clientAddress": address,
            }
            custom: dict[str, Any] = {"token": token} if token else {}
            body["custom"] = custom
            allowing = self.gate.play(name, custom, body)

            def playlist(index: VodIndex) -> tuple[bytes, bytes, str, float, int]:
                body = index.playlist(query)
                return PLAYLIST_TYPE, body, f"{index.etag}-p", index.modified, VOD_PLAYLIST_AGE

            # (a hook's other name is not followed: the segments, asked of no hook,
            # must come from the file the playlist lists)
            answer = allowing.addCallback(lambda _: vod.index(name[len(VOD) :]))
            answer.addCallback(playlist)
        elif wanted.endswith(".ts") and wanted[:-3].isdigit() and len(wanted) < 16:
            number = int(wanted[:-3])

            def segment(index: VodIndex) -> Deferred[tuple[bytes, bytes, str, float, int]]:
                made = vod.segment(index, number)
                return made.addCallback(
                    lambda data: (
                        SEGMENT_TYPE,
                        data,
                        f"{index.etag}-{number}",
                        index.modified,
                        VOD_SEGMENT_AGE,
                    )
                )

            answer = self.gate.token(name, token or None).addCallback(
                lambda _: vod.index(name[len(VOD) :])
            )
            answer.addCallback(segment)
        else:
            return error(
                request, 404, f"no such HLS file: {wanted!r} (the playlist is {name}.m3u8)"
            )
        answer.addCallbacks(
            self._send_vod, self._refused_vod, callbackArgs=(request,), errbackArgs=(request,)
        )
        return NOT_DONE_YET

    def _refused_vod(self, failure: Failure, request: Request) -> None:
        self._send(self._refused(failure, request), request)

    def _send_vod(self, answer: tuple[bytes, bytes, str, float, int], request: Request) -> None:
        """A VOD file with its validators; 304 when the client has it, a ``Range``
        served (206) or refused (416)."""
        if request.finished or request._disconnected:
            return
        kind, body, etag, modified, age = answer
        tag = f'"{etag}"'.encode()
        request.setHeader(b"ETag", tag)
        request.setHeader(b"Last-Modified", email.utils.formatdate(modified, usegmt=True).encode())
        private = b"private" if self.gate.guarded else b"public"
        request.setHeader(b"Cache-Control", private + f", max-age={age}".encode())
        request.setHeader(b"Accept-Ranges", b"bytes")
        request.setHeader(b"Content-Type", kind)
        if tag in (request.getHeader("if-none-match") or "").encode().replace(b" ", b"").split(
            b","
        ):
            request.setResponseCode(304)
            request.finish()
            return
        status, start, end = 200, 0, len(body)
        asked = request.getHeader("range")
        if asked:
            found = RANGE.fullmatch(asked.strip())
            first, last = (found[1], found[2]) if found else ("", "")
            if found and (first or last):
                if not first:  # the last N bytes
                    start, end = max(0, len(body) - int(last)), len(body)
                else:
                    start, end = int(first), min(len(body), int(last) + 1 if last else len(body))
            if not found or not (first or last) or start >= len(body) or start >= end:
                request.setHeader(b"Content-Range", f"bytes */{len(body)}".encode())
                self._send(
                    (
                        416,
                        b"",
                        error(
                            request,
                            416,
                            f"range {asked[:80]!r} is not within the {len(body)} bytes",
                        ),
                    ),
                    request,
                )
                return
            status = 206
            request.setHeader(b"Content-Range", f"bytes {start}-{end - 1}/{len(body)}".encode())
        request.setResponseCode(status)
        request.setHeader(b"Content-Length", str(end - start).encode("ascii"))
        if request.method != b"HEAD":
            request.write(body[start:end])
            if kind == SEGMENT_TYPE:
                METERS.traffic("HLS").add(1, end - start)
        request.finish()

    def _playlist(
        self, packager: Packager, request: Request, blocking: tuple[int, int | None] | None
    ) -> Deferred[tuple[int, bytes, bytes]]:
        """The playlist once it lists a segment; for a blocking reload (``blocking``:
        ``_HLS_msn`` and ``_HLS_part``), once it holds what was asked for."""
        segmenter = packager.segmenter

        def answer() -> tuple[int, bytes, bytes]:
            if not segmenter.segments:  # (ended before any)
                raise NotFound(segmenter.failure or "The stream ended before its first segment")
            return 200, PLAYLIST_TYPE, segmenter.playlist().encode("ascii")

        if blocking is None:
            return self._when(
                packager,
                request,
                lambda: bool(segmenter.segments) or segmenter.ended,
                answer,
                FIRST_SEGMENT_WAIT,
                b"",
            )  # (503: the player asks again)
        number, part = blocking
        if number > segmenter.made + 1:  # the last whole segment is made - 1
            raise BadRequest(
                f"_HLS_msn={number} is more than two segments past the "
                f"playlist's last ({segmenter.made - 1})"
            )
        return self._when(packager, request, lambda: segmenter.has(number, part), answer)

    def _part(
        self, packager: Packager, request: Request, number: int, index: int
    ) -> Deferred[tuple[int, bytes, bytes]]:
        segmenter = packager.segmenter

        def made() -> bool:  # there, or never will be (only the hinted part is waited for)
            return (
                segmenter.part(number, index) is not None
                or segmenter.ended
                or segmenter.next_part() != (number, index)
            )

        def answer() -> tuple[int, bytes, bytes]:
            found = segmenter.part(number, index)
            if found is None:
                raise NotFound(f"part {number}.{index} is not (or no longer) kept")
            return 200, SEGMENT_TYPE, found.data

        return self._when(packager, request, made, answer)

    def _when(
        self,
        packager: Packager,
        request: Request,
        ready: Callable[[], bool],
        answer: Callable[[], tuple[int, bytes, bytes]],
        wait: float | None = None,
        late: bytes = b"nothing new in time: ask again",
    ) -> Deferred:
        """``answer()`` once ``ready()``, checked at each change of the stream; 503
        (saying ``late``) after ``wait`` seconds, by default :data:`BLOCKING_TARGETS`
        target durations. A player waiting is a player: the stream's HLS is not idle
        meanwhile; one that leaves stops waiting at once (its place among the
        stream's waiting players freed)."""
        segmenter = packager.segmenter
        if wait is None:
            wait = BLOCKING_TARGETS * segmenter.target
        deadline = self.clock.seconds() + wait
        waiting: list[Deferred[None]] = []
        request.notifyFinish().addErrback(lambda _: waiting[-1].cancel() if waiting else None)

        def check(_: Any = None) -> Any:
            packager.used = self.clock.seconds()
            if ready():
                return answer()
            left = deadline - self.clock.seconds()
            if left <= 0:
                return 503, PLAYLIST_TYPE, late
            if request._disconnected:
                raise CancelledError()
            changed = segmenter.changed()
            changed.addTimeout(left, self.clock, onTimeoutCancel=lambda *_: None)
            waiting[:] = [changed]
            return changed.addCallback(check)

        return succeed(None).addCallback(check)

    def _segment(self, packager: Packager, number: int) -> tuple[int, bytes, bytes]:
        found = packager.segmenter.segment(number)
        if found is None:
            raise NotFound(f"segment {number} is not (or no longer) kept")
        return 200, SEGMENT_TYPE, found.data

    def _refused(self, failure: Failure, request: Request) -> tuple[int, bytes, bytes]:
        if failure.check(CancelledError):  # the player left: nobody to answer
            return 499, b"", b""
        if isinstance(failure.value, WcsError):
            status, message = http_status(failure.value), failure.value.detail
        elif isinstance(failure.value, TooManyWaiting):
            status, message = 503, str(failure.value)
        else:
            log.failure("HLS {path} failed", failure, path=request.path.decode("ascii", "replace"))
            status, message = 500, f"internal error: {type(failure.value).__name__}"
        return status, b"", error(request, status, message)

    @staticmethod
    def _send(answer: tuple[int, bytes, bytes], request: Request) -> None:
        if request.finished or request._disconnected:
            return
        status, kind, body = answer
        request.setResponseCode(status)
        if kind:
            request.setHeader(b"Content-Type", kind)
            request.setHeader(
                b"Cache-Control", b"no-cache" if kind == PLAYLIST_TYPE else b"max-age=60"
            )
        if status == 503:
            if kind:  # a wait that ended without news: say so (refusals come as JSON)
                body = error(request, 503, body.decode() or "no segment yet: ask again shortly")
            request.setHeader(b"Retry-After", b"1")
        request.setHeader(b"Content-Length", str(len(body)).encode("ascii"))
        if request.method != b"HEAD":
            request.write(body)
            if status == 200 and kind == SEGMENT_TYPE:
                METERS.traffic("HLS").add(1, len(body))
        request.finish()


def blocking_request(args: dict[bytes, list[bytes]]) -> tuple[int, int | None] | None:
    """LL-HLS's ``_HLS_msn`` and ``_HLS_part`` of a playlist request, checked."""
    msn, part = args.get(b"_HLS_msn"), args.get(b"_HLS_part")
    if msn is None:
        if part is not None:
            raise BadRequest("_HLS_part needs _HLS_msn")
        return None

    def number(values: list[bytes], key: str) -> int:
        if len(values) != 1 or not values[0].isdigit() or len(values[0]) > 9:
            raise BadRequest(f"{key} must be one whole number")
        return int(values[0])

    return number(msn, "_HLS_msn"), None if part is None else number(part, "_HLS_part")
