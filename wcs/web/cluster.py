"""``/rest-api/cluster/workers``: every worker of the server (of every node), its load.

What an operator watches to know when to add a node: each worker's viewers,
streams and share of a core, as each reported it in the last second or two.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from twisted.internet.defer import Deferred
from twisted.web.server import Request

from wcs.cluster.store import Load
from wcs.streams.registry import StreamRegistry
from wcs.web.rest import Access, RestArea, read_body


class ClusterApi(RestArea):
    """The ``cluster`` area of the REST API."""

    def __init__(self, registry: StreamRegistry, access: Access) -> None:
        super().__init__(access)
        self.registry = registry
        self.operation("workers", self.workers, get_allowed=True)

    def workers(self, request: Request) -> Deferred[tuple[int, Any]]:
        if request.method == b"POST":
            read_body(request, required=False)
        return self.registry.queries.loads().addCallback(
            lambda loads: (
                200,
                [_listed(load) for load in sorted(loads, key=lambda load: load.worker)],
            )
        )


def _listed(load: Load) -> dict[str, Any]:
    """A worker's load, without the list of its media sessions (``/stream/find_all``)."""
    fields = dataclasses.asdict(load)
    del fields["media"], fields["hls"]
    return fields
