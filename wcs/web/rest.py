"""The ``/rest-api/`` tree: JSON in, JSON out, CORS for pages on other origins.

Areas (such as ``vod``) are added as children by whoever owns them; any path
nobody owns answers 404 with a JSON body naming it.
"""

from __future__ import annotations

import json
from http import HTTPStatus
from typing import Any

from twisted.web import resource
from twisted.web.server import Request

CORS_HEADERS = {
    b"Access-Control-Allow-Origin": b"*",
    b"Access-Control-Allow-Methods": b"GET, POST, OPTIONS",
    b"Access-Control-Allow-Headers": b"Content-Type, Authorization",
    b"Access-Control-Max-Age": b"600",
}


def write_json(request: Request, status: int, body: Any) -> bytes:
    """Set the status and headers of a JSON answer and return its bytes."""
    request.setResponseCode(status)
    request.setHeader(b"Content-Type", b"application/json; charset=utf-8")
    for name, value in CORS_HEADERS.items():
        request.setHeader(name, value)
    return json.dumps(body).encode("utf-8")


def error(request: Request, status: int, message: str) -> bytes:
    """A JSON error: ``{"status": 404, "error": "Not Found", "message": ...}``."""
    return write_json(request, status, {
        "status": status,
        "error": HTTPStatus(status).phrase,
        "message": message,
    })


def preflight(request: Request) -> bytes:
    """Answer a CORS preflight: no body, just the allowances."""
    request.setResponseCode(204)
    for name, value in CORS_HEADERS.items():
        request.setHeader(name, value)
    return b""


class JsonNotFound(resource.Resource):
    """Any path under ``/rest-api/`` that no area owns."""

    isLeaf = True

    def render(self, request: Request) -> bytes:
        if request.method == b"OPTIONS":
            return preflight(request)
        path = request.path.decode("utf-8", "replace")
        return error(request, 404, f"no such REST endpoint: {path}")


class RestRoot(resource.Resource):
    """``/rest-api/``: children are the API areas."""

    def getChild(self, path: bytes, request: Request) -> resource.Resource:
        return JsonNotFound()

    def render(self, request: Request) -> bytes:
        return JsonNotFound().render(request)
