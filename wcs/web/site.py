"""The web port's resource tree: pages at ``/``, REST at ``/rest-api/``,
the Web SDK (when configured) at ``/client2/`` as on a real WCS."""

from __future__ import annotations

import json
from pathlib import Path

from twisted.web import resource, server, static
from twisted.web.server import Request

from wcs.config import Settings
from wcs.web.rest import RestRoot

STATIC_DIR = Path(__file__).resolve().parent / "static"


class PageConfig(resource.Resource):
    """``/config.json``: what our own page needs to know to reach the WebSocket."""

    isLeaf = True

    def __init__(self, settings: Settings) -> None:
        super().__init__()
        self.body = json.dumps({"wsPort": settings.ws_port,
                                "wssPort": settings.wss_port}).encode()

    def render_GET(self, request: Request) -> bytes:
        request.setHeader(b"Content-Type", b"application/json")
        return self.body


class Folder(static.File):
    """The files of one folder, read-only: no listing, no hidden files, no NUL
    bytes, and nothing outside the folder, whatever a symlink says."""

    top: Path | None = None

    def directoryListing(self) -> resource.Resource:
        return resource.NoResource()

    def getChild(self, path: bytes, request: Request) -> resource.Resource:
        if b"\x00" in path or path.startswith(b"."):
            return resource.NoResource()
        child = super().getChild(path, request)
        if isinstance(child, static.File):
            top = self.top or Path(self.path).resolve()
            if not Path(child.path).resolve().is_relative_to(top):
                return resource.NoResource()  # a symlink that leads out of the folder
            if isinstance(child, Folder):
                child.top = top
        return child


class Records(Folder):
    """``/client/records/NAME.mp4``: finished recordings, where the SDK's
    recording page links them. Plain ``.mp4`` files of the media folder only:
    no sub-folders and no partial (hidden) files either."""

    def getChild(self, path: bytes, request: Request) -> resource.Resource:
        if not path.endswith(b".mp4") or b"/" in path:
            return resource.NoResource()
        child = super().getChild(path, request)
        if not isinstance(child, static.File) or not child.isfile():
            return resource.NoResource()
        return child


def build_root(settings: Settings) -> tuple[resource.Resource, RestRoot]:
    """The root resource, and the REST root that API areas attach to."""
    root = Folder(str(STATIC_DIR))
    root.indexNames = ["index.html"]
    root.putChild(b"config.json", PageConfig(settings))
    rest = RestRoot()
    root.putChild(b"rest-api", rest)
    client = resource.Resource()
    client.putChild(b"records", Records(str(settings.media_dir)))
    root.putChild(b"client", client)
    if settings.websdk_dir is not None:
        root.putChild(b"client2", Folder(str(settings.websdk_dir)))
    return root, rest


def build_site(root: resource.Resource) -> server.Site:
    site = server.Site(root)
    site.displayTracebacks = False
    return site
