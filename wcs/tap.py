"""``twistd wcsvod``: command-line options and the composed service.

With ``workers`` above 1 this process only supervises: it imports none of the
media stack (:mod:`wcs.compose` is each worker's), and starts in a third of
the time and CPU a serving process takes.

The asyncio reactor (aiortc needs it) is installed by the plugin's entry
(``twisted/plugins/wcsvod_plugin.py``) when twistd picks ``wcsvod``, before
twistd would install its default, so the user never types ``--reactor``;
:func:`makeService` installs it too for whoever composes the service directly.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from twisted.application import service
from twisted.internet import endpoints
from twisted.logger import Logger
from twisted.python import usage

from wcs import aio, config, logs
from wcs.cluster.admissions import Admissions
from wcs.cluster.hub import Hub
from wcs.cluster.store import Store
from wcs.config import ConfigError, Settings

if TYPE_CHECKING:  # Twisted names it only in a private module
    from twisted.internet._sslverify import IOpenSSLTrustRoot

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
        ["config", "c", None, f"properties file to read (default: {config.DEFAULT_CONFIG})"],
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

    def worker_arguments(self) -> list[str]:
        """These options again, for a worker process to read the same settings."""
        arguments = []
        if self["config"]:
            arguments += ["--config", str(Path(self["config"]).resolve())]
        if self["media-dir"]:
            arguments += ["--media-dir", str(Path(self["media-dir"]).resolve())]
        for key, value in self.overrides.items():
            arguments += ["--set", f"{key}={value}"]
        return arguments


class Announcer(service.Service):
    """Logs, once running, what runs and where a person should point a browser."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def startService(self) -> None:
        from twisted.internet import reactor

        super().startService()
        s = self.settings
        log.info(
            "wcsvod running on {reactor}; media from {media}",
            reactor=type(reactor).__module__ + "." + type(reactor).__name__,
            media=str(s.media_dir),
        )
        host = "localhost" if s.bind_address in ("0.0.0.0", "::") else s.bind_address
        if s.http_port:
            log.info(
                "console at http://{host}:{port}/ (its player plays vod://sample.mp4)",
                host=host,
                port=s.http_port,
            )
        if s.ws_port:
            log.info("WebSocket sessions on ws://{host}:{port}/", host=host, port=s.ws_port)


def makeService(options: Options) -> service.MultiService:
    """Compose the listeners; a bad setting stops the start with one line.

    With ``log_format=json`` the composition goes under a service that makes
    twistd log JSON lines where it would have written its own
    (:mod:`wcs.logs` says how: twistd sets its log up after this returns).
    """
    try:
        aio.install_reactor()
        settings = options.settings()
        observer = logs.twistd_observer(settings.log_format, options.parent)
        if settings.worker_count == 1:
            from wcs.compose import single  # (the supervisor needs none of it)

            top = single(settings)
        else:
            top = supervise(settings, options)
    except (ConfigError, logs.LogSetupError, aio.ReactorError) as error:
        raise SystemExit(f"wcsvod: {error}") from None
    if observer is None:
        return top
    logged = logs.ApplicationLog(observer)
    top.setServiceParent(logged)
    return logged


#: Connections the kernel may hold for each listener until it accepts them
#: (Twisted's 50 drops the SYNs of a burst of page loads; the kernel caps it
#: at net.core.somaxconn).
BACKLOG = 1024
#: Port keys of the listeners, plain and TLS.
PLAIN = ("ws.port", "http.port", "hls.port", "ice_tcp_port")
SECURE = ("wss.port", "https.port", "hls.ssl.port")
#: Served by the first worker only: each HLS stream is cut into segments in one
#: place, so that a player's playlist and segments agree whichever it asks; and
#: wss, because a page's two sockets must meet on one worker and a TLS
#: connection cannot be handed to another process (its keys live in OpenSSL in
#: the one that accepted it), as a plain ws media socket is.
FIRST_WORKER_ONLY = ("hls.port", "hls.ssl.port", "wss.port")


def listen_descriptions(settings: Settings) -> dict[str, str]:
    """The ``strports`` description of each listener that is on, by its port key."""
    interface = endpoints.quoteStringArgument(settings.bind_address)
    descriptions = {
        key: f"tcp:{port}:interface={interface}:backlog={BACKLOG}"
        for key, port in listening_ports(settings, PLAIN).items()
    }
    secure = listening_ports(settings, SECURE)
    if secure:
        from wcs.tls import certificate_files

        cert, key = (
            endpoints.quoteStringArgument(str(path)) for path in certificate_files(settings)
        )
        descriptions.update(
            {
                key_name: f"ssl:{port}:interface={interface}:backlog={BACKLOG}:certKey={cert}"
                f":privateKey={key}"
                for key_name, port in secure.items()
            }
        )
    return descriptions


def push_trust_root(settings: Settings) -> IOpenSSLTrustRoot | None:
    """``rtmp_push_ca_file``'s certificates, or None: rtmps:// pushes trust the system's CAs."""
    if settings.rtmp_push_ca_file is None:
        return None
    from wcs.tls import push_trust

    return push_trust(settings.rtmp_push_ca_file)


def listening_ports(settings: Settings, keys: tuple[str, ...]) -> dict[str, int]:
    ports = {
        "ws.port": settings.ws_port,
        "wss.port": settings.wss_port,
        "http.port": settings.http_port,
        "https.port": settings.https_port,
        "hls.port": settings.hls_port,
        "hls.ssl.port": settings.hls_ssl_port,
        "ice_tcp_port": settings.ice_tcp_port,
    }
    return {key: ports[key] for key in keys if ports[key]}


def cluster_store(settings: Settings) -> object:
    """The server's names (and its broadcast caps): in this process, or the
    cluster's Redis (caps then counted by each worker for itself)."""
    if not settings.cluster_redis_url:
        return Store(settings.limits)
    from wcs.cluster.redis_store import RedisStore

    log.info("cluster: node {node} shares its streams through Redis", node=settings.node)
    return RedisStore(settings.cluster_redis_url)


def supervise(settings: Settings, options: Options) -> service.MultiService:
    """``workers`` processes sharing the listeners, and the store they share."""
    from twisted.internet import reactor

    from wcs.cluster.workers import Listener, Supervisor, python_command

    if listening_ports(settings, SECURE):
        from wcs.tls import certificate_files

        certificate_files(settings)  # made once here, not by every worker at once
    push_trust_root(settings)  # a bad file stops the start here, not in every worker
    top = service.MultiService()
    listeners = [
        Listener(key, settings.bind_address, port, BACKLOG, first_only=key in FIRST_WORKER_ONLY)
        for key, port in listening_ports(settings, PLAIN + SECURE).items()
    ]
    command = python_command() + options.worker_arguments()
    node = settings.node if settings.cluster_redis_url else ""
    limits = settings.limits
    hub = Hub(
        cluster_store(settings),
        Admissions(limits.max_sessions, limits.max_sessions_per_address, limits.max_pushes),
    )
    Supervisor(reactor, command, settings.worker_count, listeners, hub, node).setServiceParent(top)
    Announcer(settings).setServiceParent(top)
    return top
