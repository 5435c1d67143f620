"""``twistd wcsvod``: command-line options and the composed service.

The asyncio reactor (aiortc needs it) is installed by the plugin's entry
(``twisted/plugins/wcsvod_plugin.py``) when twistd picks ``wcsvod``, before
twistd would install its default, so the user never types ``--reactor``;
:func:`makeService` installs it too for whoever composes the service directly.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from twisted.application import internet, service, strports
from twisted.internet import endpoints, threads
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IProtocolFactory, IReactorFromThreads, IReactorTime
from twisted.logger import Logger
from twisted.python import usage
from twisted.python.threadpool import ThreadPool

from wcs import aio, config, logs
from wcs.access.gate import Gate
from wcs.access.hooks import RestHooks
from wcs.access.turn import ice_servers
from wcs.cluster.admissions import Admissions, LocalAdmission
from wcs.cluster.directory import Directory, LocalDirectory
from wcs.cluster.hub import Hub, HubDirectory
from wcs.cluster.relay import RelayService
from wcs.cluster.store import Store
from wcs.config import ConfigError, Settings
from wcs.files.library import Library
from wcs.hls.packagers import Packagers
from wcs.metrics import (
    METERS,
    ReactorLag,
    families,
    to_wire,
)
from wcs.process import OPEN_THREADS, TRIM_INTERVAL, FilesService, FrozenStart, heap_trimmer
from wcs.push.pusher import RtmpConnector
from wcs.push.pushes import Pushes
from wcs.server_state import ServerState, server_metrics
from wcs.signalling.requests import StreamRequests
from wcs.signalling.websocket import SignallingFactory
from wcs.sources import Sources
from wcs.sources.opus_cache import OpusCache
from wcs.sources.s3 import S3Client
from wcs.sources.vod_hls import VodHls
from wcs.streams.registry import StreamRegistry
from wcs.streams.service import StreamsService
from wcs.transports.factory import TransportFactory
from wcs.web.cluster import ClusterApi
from wcs.web.hls import HlsRoot
from wcs.web.metrics import MetricsPage
from wcs.web.push import PushApi
from wcs.web.site import build_root, build_site
from wcs.web.streams import StreamApi
from wcs.web.vod import VodApi
from wcs.webrtc.icetcp import IceTcpServer
from wcs.webrtc.rtpstream import SendPath
from wcs.whep.resource import Door
from wcs.whep.sessions import DOORS, HttpSessions

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
        top = single(settings) if settings.worker_count == 1 else supervise(settings, options)
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
        for key, port in _ports(settings, PLAIN).items()
    }
    secure = _ports(settings, SECURE)
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


def _push_trust(settings: Settings) -> IOpenSSLTrustRoot | None:
    """``rtmp_push_ca_file``'s certificates, or None: rtmps:// pushes trust the system's CAs."""
    if settings.rtmp_push_ca_file is None:
        return None
    from wcs.tls import push_trust

    return push_trust(settings.rtmp_push_ca_file)


def _ports(settings: Settings, keys: tuple[str, ...]) -> dict[str, int]:
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


#: Makes the service that accepts a port key's connections with a factory.
Listen = Callable[[str, IProtocolFactory], service.IService]


def compose(
    settings: Settings,
    listen: Listen | None = None,
    directory: Directory | None = None,
    relay: RelayService | None = None,
    worker: str = "",
    peers: HubDirectory | None = None,
) -> service.MultiService:
    """The whole server in this process (``workers=1``), or one worker of
    several: then ``listen`` adopts the supervisor's sockets, ``directory`` is
    the supervisor's, ``relay`` serves and fetches published streams and
    ``peers`` (the supervisor's hub) counts sessions for every worker and
    passes media sockets between them."""
    from twisted.internet import reactor

    if listen is None:
        descriptions = listen_descriptions(settings)

        def listen(key: str, factory: IProtocolFactory) -> service.IService:
            return strports.service(descriptions[key], factory)

    top = service.MultiService()
    opus = OpusCache(settings.state_dir / "opus-cache", settings.vod_audio_cache_size * 2**20)
    limits = settings.limits
    pool = ThreadPool(minthreads=0, maxthreads=OPEN_THREADS, name="wcsvod-files")
    FilesService(pool).setServiceParent(top)

    def in_pool(work: Callable[..., Any], *args: Any) -> Deferred[Any]:
        return threads.deferToThreadPool(IReactorFromThreads(reactor), pool, work, *args)

    sources = Sources(
        settings.media_dir,
        _s3_client(settings, reactor),
        settings.state_dir / "s3-cache",
        settings.vod_mp4_container_new,
        opus,
        run=in_pool,
        max_pending=limits.max_pending_opens,
        max_playlist_items=limits.max_playlist_items,
    )
    if relay is not None:
        relay.setServiceParent(top)
    registry = StreamRegistry(
        sources,
        reactor,
        loop=settings.vod_live_loop,
        timeout=settings.vod_stream_timeout / 1000.0,
        limits=limits,
        directory=directory,
        relay=relay,
        transcoding=not settings.transcoding_disabled,
        ladder=settings.hls_abr_profiles,
        adaptive=settings.webrtc_abr,
    )
    if relay is not None:
        relay.find_published = registry.published_stream
    ice_tcp = (
        IceTcpServer(settings.ice_tcp_port, reactor, registry.directory.worker, peers)
        if settings.ice_tcp_port
        else None
    )
    transports = TransportFactory(
        reactor,
        settings.media_dir,
        settings.record_template,
        settings.announced_ips,
        fast_sender=settings.webrtc_sender == "fast",
        send_path=SendPath(gso=settings.webrtc_udp_gso, own_srtp=settings.webrtc_own_srtp),
        limits=limits,
        ice_tcp=ice_tcp,
    )
    gate = access_gate(settings, reactor)
    # the whole server's session and push caps: counted here, or by the supervisor
    counted = (
        peers
        if peers is not None
        else LocalAdmission(
            Admissions(limits.max_sessions, limits.max_sessions_per_address, limits.max_pushes)
        )
    )
    pushes = Pushes(
        registry,
        reactor,
        limits.max_pushes,
        settings.rtmp_transponder_stream_name_prefix,
        settings.rtmp_transponder_full_url,
        settings.rtmp_push_retries,
        RtmpConnector(_push_trust(settings)),
        slots=counted,
    )
    pushes.setServiceParent(top)
    requests = StreamRequests(registry, transports, reactor, limits, gate, pushes)
    signalling = SignallingFactory(
        settings,
        requests,
        reactor,
        admission=counted,
        worker=registry.directory.worker,
        handoff=peers,
    )
    if peers is not None:
        peers.adopter = adopter(signalling, ice_tcp)
    registry.on_transport_refused = signalling.transport_refused
    root, rest = build_root(settings, gate)
    rest.putChild(b"vod", VodApi(registry, rest.access, gate, Library(settings.media_dir, in_pool)))
    rest.putChild(b"push", PushApi(registry, pushes, rest.access))
    rest.putChild(b"cluster", ClusterApi(registry, rest.access))
    rest.putChild(b"stream", StreamApi(registry, rest.access))
    http_sessions = HttpSessions(requests, counted, registry.directory)

    def turn_servers() -> list[dict[str, Any]]:
        return ice_servers(
            settings.turn_url, settings.turn_secret, settings.turn_ttl, reactor.seconds()
        )

    for door in DOORS:
        root.putChild(door.lower().encode(), Door(door, http_sessions, turn_servers))
    state = ServerState(registry, signalling, reactor, lambda: len(http_sessions))
    root.putChild(
        b"metrics", MetricsPage(lambda: server_metrics(registry, state, worker), rest.access)
    )
    if worker:  # the others' /metrics ask for this worker's families as they are now
        registry.directory.answer("metrics", lambda _: [worker, to_wire(families(METERS, state))])
    ReactorLag(reactor).setServiceParent(top)
    site = build_site(root, settings.limits.http_idle_timeout, settings.access_log)
    packagers = Packagers(registry, reactor, settings.hls_idle_timeout / 1000.0)
    packagers.setServiceParent(top)
    hls = build_site(
        HlsRoot(packagers, reactor, VodHls(sources), gate),
        settings.limits.http_idle_timeout,
        settings.access_log,
    )
    factories: dict[str, IProtocolFactory] = {
        "ws.port": signalling,
        "wss.port": signalling,
        "http.port": site,
        "https.port": site,
        "hls.port": hls,
        "hls.ssl.port": hls,
    }
    if ice_tcp is not None:
        factories["ice_tcp_port"] = ice_tcp
    for key in (*_ports(settings, PLAIN), *_ports(settings, SECURE)):
        if key in FIRST_WORKER_ONLY and worker and not _first(worker):
            continue
        listen(key, factories[key]).setServiceParent(top)
    StreamsService(registry, sources, state if worker else None).setServiceParent(top)
    if not worker:
        Announcer(settings).setServiceParent(top)
    FrozenStart().setServiceParent(top)
    trim = heap_trimmer()
    if trim is not None:
        internet.TimerService(TRIM_INTERVAL, trim).setServiceParent(top)
    return top


def adopter(signalling: SignallingFactory, ice_tcp: IceTcpServer | None) -> Callable[..., None]:
    """Who serves a connection another worker handed over: a page's media
    socket, or an ICE-TCP connection."""

    def adopt(socket: int, kind: str = "media", **connection: Any) -> None:
        if kind == "ice-tcp":
            if ice_tcp is None:
                raise RuntimeError("this worker has no ICE-TCP port")
            ice_tcp.adopt(socket, **connection)
        else:
            signalling.adopt(socket, **connection)

    return adopt


def access_gate(settings: Settings, reactor: Any) -> Gate:
    """The access rules the settings ask for: hooks, play tokens, both or none."""
    hooks = (
        RestHooks(settings.rest_hook_url, settings.rest_hook_timeout / 1000.0, reactor)
        if settings.rest_hook_url
        else None
    )
    if hooks is not None:
        log.info(
            "access: plays, publishes and sessions are asked of {url}", url=settings.rest_hook_url
        )
    if settings.play_token_secret:
        log.info("access: plays and record downloads need a play token")
    return Gate(hooks, settings.play_token_secret, reactor, node=settings.node)


def _first(worker: str) -> bool:
    """Whether ``worker`` (``[node/]index.generation``) is its node's worker 1."""
    return worker.rpartition("/")[2].split(".")[0] == "1"


def relay_service(settings: Settings, directory: Directory) -> RelayService:
    """A worker's relay: on loopback for one machine, on the node's address in a cluster."""
    from twisted.internet import reactor

    interface = "127.0.0.1" if not settings.cluster_redis_url else settings.bind_address
    return RelayService(reactor, interface, settings.relay_address, directory.secret)


def cluster_store(settings: Settings) -> object:
    """The server's names (and its broadcast caps): in this process, or the
    cluster's Redis (caps then counted by each worker for itself)."""
    if not settings.cluster_redis_url:
        return Store(settings.limits)
    from wcs.cluster.redis_store import RedisStore

    log.info("cluster: node {node} shares its streams through Redis", node=settings.node)
    return RedisStore(settings.cluster_redis_url)


def single(settings: Settings) -> service.MultiService:
    """``workers=1``: the whole server in this process (a node of a cluster with Redis)."""
    if not settings.cluster_redis_url:
        return compose(settings)
    directory = LocalDirectory(cluster_store(settings), f"{settings.node}/1")
    return compose(
        settings, directory=directory, relay=relay_service(settings, directory), worker=""
    )


def supervise(settings: Settings, options: Options) -> service.MultiService:
    """``workers`` processes sharing the listeners, and the store they share."""
    from twisted.internet import reactor

    from wcs.cluster.workers import Listener, Supervisor, python_command

    if _ports(settings, SECURE):
        from wcs.tls import certificate_files

        certificate_files(settings)  # made once here, not by every worker at once
    _push_trust(settings)  # a bad file stops the start here, not in every worker
    top = service.MultiService()
    listeners = [
        Listener(key, settings.bind_address, port, BACKLOG, first_only=key in FIRST_WORKER_ONLY)
        for key, port in {**_ports(settings, PLAIN), **_ports(settings, SECURE)}.items()
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


def _s3_client(settings: Settings, clock: IReactorTime) -> S3Client:
    """Region, access key and secret are handed over as plain values."""
    credentials = settings.aws_s3_credentials
    return S3Client(
        clock,
        endpoint=settings.aws_s3_endpoint,
        timeout=settings.aws_s3_request_timeout / 1000.0,
        **(dataclasses.asdict(credentials) if credentials else {}),
    )
