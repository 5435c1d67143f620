"""``/metrics``: the Prometheus text format, rendered by ``prometheus_client``.

Guarded as the REST API is (:class:`~wcs.web.rest.Access`): this machine only
until ``rest_api_key`` is set, then whoever sends it (a scraper's
``authorization: Bearer <key>``, or the key as a Basic password).
"""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client.core import Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest
from twisted.internet.defer import Deferred
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web import resource
from twisted.web.server import NOT_DONE_YET, Request

from wcs.web.rest import Access, counted, error

log = Logger()


class Families:
    """What ``generate_latest`` reads: an object whose ``collect`` yields families."""

    def __init__(self, metrics: list[Metric]) -> None:
        self.metrics = metrics

    def collect(self) -> list[Metric]:
        return self.metrics


class MetricsPage(resource.Resource):
    """The page; ``collect`` gives every family of the server (all its workers)."""

    isLeaf = True

    def __init__(self, collect: Callable[[], Deferred[list[Metric]]], access: Access) -> None:
        super().__init__()
        self.collect = collect
        self.access = access

    def render(self, request: Request) -> bytes | int:
        counted(request, "/metrics")
        refused = self.access.guard(request)
        if refused is not None:
            return refused
        if request.method not in (b"GET", b"HEAD"):
            request.setHeader(b"Allow", b"GET, HEAD, OPTIONS")
            return error(request, 405, "metrics are read with GET")
        self.collect().addCallbacks(
            self._send, self._failed, callbackArgs=(request,), errbackArgs=(request,)
        )
        return NOT_DONE_YET

    @staticmethod
    def _send(metrics: list[Metric], request: Request) -> None:
        if request.finished or request._disconnected:
            return
        body = generate_latest(Families(metrics))
        request.setHeader(b"Content-Type", CONTENT_TYPE_LATEST.encode("ascii"))
        request.setHeader(b"Content-Length", str(len(body)).encode("ascii"))
        if request.method != b"HEAD":
            request.write(body)
        request.finish()

    @staticmethod
    def _failed(failure: Failure, request: Request) -> None:
        log.failure("/metrics failed", failure)
        if not (request.finished or request._disconnected):
            request.write(error(request, 500, "internal error while collecting metrics"))
            request.finish()
