"""The services of one serving process: the whole server (``workers=1``) or
one worker of several (:mod:`wcs.worker`); :mod:`wcs.tap` composes the
supervisor around them."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

from twisted.application import internet, service, strports
from twisted.internet import threads
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IProtocolFactory, IReactorFromThreads, IReactorTime
from twisted.logger import Logger
from twisted.python.threadpool import ThreadPool

from wcs.access.gate import Gate
from wcs.access.hooks import RestHooks
from wcs.access.turn import ice_servers
from wcs.cluster.admissions import Admissions, LocalAdmission
from wcs.cluster.directory import Directory, LocalDirectory
from wcs.cluster.hub import HubDirectory
from wcs.cluster.relay import RelayService
from wcs.config import Settings
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
from wcs.tap import (
    FIRST_WORKER_ONLY,
    PLAIN,
    SECURE,
    Announcer,
    cluster_store,
    listen_descriptions,
    listening_ports,
    push_trust_root,
)
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

log = Logger()

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
        send_path=SendPath(
            gso=settings.webrtc_udp_gso,
            own_srtp=settings.webrtc_own_srtp,
            audio_frames=settings.webrtc_audio_packet_ms // 20,
        ),
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
        RtmpConnector(push_trust_root(settings)),
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
    for key in listening_ports(settings, PLAIN + SECURE):
        if key in FIRST_WORKER_ONLY and worker and not _first(worker):
            continue
        listen(key, factories[key]).setServiceParent(top)
    StreamsService(registry, sources).setServiceParent(top)
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


def single(settings: Settings) -> service.MultiService:
    """``workers=1``: the whole server in this process (a node of a cluster with Redis)."""
    if not settings.cluster_redis_url:
        return compose(settings)
    directory = LocalDirectory(cluster_store(settings), f"{settings.node}/1")
    return compose(
        settings, directory=directory, relay=relay_service(settings, directory), worker=""
    )


def _s3_client(settings: Settings, clock: IReactorTime) -> S3Client:
    """Region, access key and secret are handed over as plain values."""
    credentials = settings.aws_s3_credentials
    return S3Client(
        clock,
        endpoint=settings.aws_s3_endpoint,
        timeout=settings.aws_s3_request_timeout / 1000.0,
        **(dataclasses.asdict(credentials) if credentials else {}),
    )
