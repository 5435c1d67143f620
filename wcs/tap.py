"""``twistd wcsvod``: command-line options and the composed service.

Importing this module installs the asyncio reactor (aiortc needs it), so the
user never has to type ``--reactor``; twistd imports it before the reactor.
"""

from __future__ import annotations

from pathlib import Path

from wcs import aio

try:
    aio.install_reactor()
except aio.ReactorError as _error:
    raise SystemExit(f"wcsvod: {_error}") from None

from twisted.application import service  # noqa: E402
from twisted.application.internet import StreamServerEndpointService  # noqa: E402
from twisted.internet import endpoints  # noqa: E402
from twisted.logger import Logger  # noqa: E402
from twisted.python import usage  # noqa: E402

from wcs import config  # noqa: E402
from wcs.config import ConfigError, Settings  # noqa: E402
from wcs.signalling.streams import SessionStreams  # noqa: E402
from wcs.signalling.websocket import SignallingFactory  # noqa: E402
from wcs.streams.registry import StreamRegistry  # noqa: E402
from wcs.web.site import build_root, build_site  # noqa: E402
from wcs.web.vod import VodApi  # noqa: E402
from wcs.webrtc import ice  # noqa: E402

log = Logger()


class Options(usage.Options):
    """``twistd wcsvod [options]``; the file is read first, options override it."""

    synopsis = "[options]"
    longdesc = (
        "Serves vod:// and vod-live:// MP4 streams to Flashphoner Web SDK pages "
        "over WebRTC. Settings come from a flashphoner.properties file; the "
        "options below override it."
    )
    optParameters = [
        ["config", "c", None,
         f"properties file to read (default: {config.DEFAULT_CONFIG})"],
        ["media-dir", "m", None, "folder of the MP4 files (media_dir)"],
    ]

    def __init__(self) -> None:
        super().__init__()
        self.overrides: dict[str, str] = {}

    def opt_set(self, assignment: str) -> None:
        """Override any key of the properties file: --set key=value (repeatable)."""
        key, equals, value = assignment.partition("=")
        if not equals or not key.strip():
            raise usage.UsageError(f"--set {assignment!r}: expected key=value")
        self.overrides[key.strip()] = value.strip()

    def settings(self) -> Settings:
        """Parse the file and the overrides into checked settings."""
        overrides = dict(self.overrides)
        if self["media-dir"]:
            overrides["media_dir"] = self["media-dir"]
        path = Path(self["config"]) if self["config"] else None
        return config.load(path, overrides)


class Announcer(service.Service):
    """Logs, once running, what runs and where a person should point a browser."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def startService(self) -> None:
        from twisted.internet import reactor

        super().startService()
        s = self.settings
        log.info("wcsvod running on {reactor}; media from {media}",
                 reactor=type(reactor).__module__ + "." + type(reactor).__name__,
                 media=str(s.media_dir))
        host = "localhost" if s.bind_address in ("0.0.0.0", "::") else s.bind_address
        if s.http_port:
            log.info("open http://{host}:{port}/ and play vod://sample.mp4",
                     host=host, port=s.http_port)
        if s.ws_port:
            log.info("WebSocket sessions on ws://{host}:{port}/", host=host, port=s.ws_port)


class StreamsService(service.Service):
    """Ends every stream cleanly when the server stops (viewers get STOPPED)."""

    def __init__(self, registry: StreamRegistry) -> None:
        self.registry = registry

    def stopService(self) -> None:
        super().stopService()
        self.registry.close_all()


def makeService(options: Options) -> service.MultiService:
    """Compose the listeners; a bad setting stops the start with one line."""
    try:
        return _compose(options.settings())
    except ConfigError as error:
        raise SystemExit(f"wcsvod: {error}") from None


def _compose(settings: Settings) -> service.MultiService:
    from twisted.internet import reactor

    top = service.MultiService()
    ice.announce(settings.announced_ips)
    registry = StreamRegistry(settings, reactor)
    signalling = SignallingFactory(settings, SessionStreams(registry, settings, reactor))
    root, rest = build_root(settings)
    rest.putChild(b"vod", VodApi(registry, settings.rest_api_key))
    site = build_site(root)
    tls = None
    if settings.wss_port or settings.https_port:
        from wcs.tls import certificate_options

        tls = certificate_options(settings)
    listeners = [
        (settings.ws_port, signalling, None),
        (settings.wss_port, signalling, tls),
        (settings.http_port, site, None),
        (settings.https_port, site, tls),
    ]
    for port, factory, context in listeners:
        if not port:
            continue
        if context is None:
            endpoint = endpoints.TCP4ServerEndpoint(
                reactor, port, interface=settings.bind_address)
        else:
            endpoint = endpoints.SSL4ServerEndpoint(
                reactor, port, context, interface=settings.bind_address)
        listener = StreamServerEndpointService(endpoint, factory)
        listener._raiseSynchronously = True
        listener.setServiceParent(top)
    StreamsService(registry).setServiceParent(top)
    Announcer(settings).setServiceParent(top)
    return top

