"""One worker process of ``twistd wcsvod`` with ``workers`` above 1.

Started by :class:`wcs.cluster.workers.Supervisor` as ``python -m wcs.worker``
with the supervisor's own options (so it reads the same settings) and where
its descriptors are: the listening sockets it accepts on, and its end of the
socket pair to the supervisor's store. It logs JSON events on its standard
output for the supervisor to put in the one log; it stops on SIGTERM (its
viewers hear STOPPED), and when the supervisor is gone.
"""

from __future__ import annotations

import os
import signal
import socket
import sys
from typing import TYPE_CHECKING

from twisted.application import service
from twisted.internet import protocol
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import (
    IAddress,
    IListeningPort,
    IProtocolFactory,
    IReactorSocket,
)
from twisted.logger import Logger, globalLogBeginner, jsonFileLogObserver
from twisted.python import usage

if TYPE_CHECKING:
    from twisted.internet.ssl import DefaultOpenSSLContextFactory

from wcs import aio, compose, tap
from wcs.cluster.hub import HubDirectory
from wcs.config import ConfigError, Settings

log = Logger()


class WorkerOptions(tap.Options):
    """The supervisor's options, plus this worker's descriptors."""

    optParameters = [
        *tap.Options.optParameters,
        ["worker", None, "1", "this worker's id"],
        ["hub-fd", None, None, "descriptor of the socket pair to the supervisor"],
    ]

    def __init__(self) -> None:
        super().__init__()
        self.listeners: dict[str, int] = {}

    def opt_listen(self, assignment: str) -> None:
        """A listening socket to accept on: --listen PORTKEY=FD (repeatable)."""
        key, _, number = assignment.partition("=")
        self.listeners[key] = int(number)


class AdoptedPort(service.Service):
    """Accepts on a socket the supervisor bound (Twisted adopts the descriptor)."""

    def __init__(self, descriptor: int, factory: IProtocolFactory) -> None:
        self.descriptor = descriptor
        self.factory = factory
        self.port: IListeningPort | None = None

    def startService(self) -> None:
        from twisted.internet import reactor

        super().startService()
        family = socket.socket(fileno=os.dup(self.descriptor))
        kind = family.family
        family.close()
        # Twisted's annotation asks a ServerFactory; any protocol factory is served (as
        # Twisted's own listenSSL does with its TLS wrapper of one)
        self.port = IReactorSocket(reactor).adoptStreamPort(
            self.descriptor,
            kind,
            self.factory,  # type: ignore[arg-type]
        )
        os.close(self.descriptor)

    def stopService(self) -> Deferred[None] | None:
        super().stopService()
        port, self.port = self.port, None
        return port.stopListening() if port is not None else None


def _listen(settings: Settings, listeners: dict[str, int]) -> compose.Listen:
    secure: dict[str, DefaultOpenSSLContextFactory] = {}

    def listen(key: str, factory: IProtocolFactory) -> service.IService:
        if key in tap.SECURE:
            from twisted.internet.ssl import DefaultOpenSSLContextFactory
            from twisted.protocols.tls import TLSMemoryBIOFactory

            from wcs.tls import certificate_files

            if "context" not in secure:
                cert, key_file = certificate_files(settings)
                secure["context"] = DefaultOpenSSLContextFactory(str(key_file), str(cert))
            factory = TLSMemoryBIOFactory(secure["context"], False, factory)
        return AdoptedPort(listeners[key], factory)

    return listen


class _Given(protocol.ServerFactory):
    """A factory of the one connection it was given."""

    def __init__(self, given: HubDirectory) -> None:
        self.given = given

    def buildProtocol(self, addr: IAddress | None) -> HubDirectory:
        return self.given


def _die_with_parent() -> None:
    """Ask Linux to end this process when the supervisor dies (elsewhere, the
    lost socket pair stops it)."""
    try:
        import ctypes

        libc = ctypes.CDLL(None)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def main(argv: list[str]) -> None:
    try:
        aio.install_reactor()  # before anything imports one: aiortc's loop
    except aio.ReactorError as error:
        raise SystemExit(f"wcsvod worker: {error}") from None
    from twisted.internet import reactor

    options = WorkerOptions()
    try:
        options.parseOptions(argv)
        settings = options.settings()
    except (usage.UsageError, ConfigError) as error:
        raise SystemExit(f"wcsvod worker: {error}") from None
    # each event goes out as it is logged: a pipe's stdout is otherwise block
    # buffered, and the supervisor's log showed a worker's lines late, in bursts
    sys.stdout.reconfigure(line_buffering=True)  # type: ignore[union-attr]
    globalLogBeginner.beginLoggingTo([jsonFileLogObserver(sys.stdout)], redirectStandardIO=False)
    _die_with_parent()
    worker = options["worker"]
    stopping: list[bool] = []
    reactor.addSystemEventTrigger("before", "shutdown", lambda: stopping.append(True))

    def lost() -> None:
        if reactor.running and not stopping:
            log.error("worker {worker}: lost its supervisor; stopping", worker=worker)
            reactor.stop()

    # Ctrl-C reaches the whole process group: the supervisor stops us (SIGTERM).
    reactor.callWhenRunning(signal.signal, signal.SIGINT, signal.SIG_IGN)

    hub = HubDirectory(worker, lost)
    hub_fd = int(options["hub-fd"])
    IReactorSocket(reactor).adoptStreamConnection(hub_fd, socket.AF_UNIX, _Given(hub))
    os.close(hub_fd)
    relay = compose.relay_service(settings, hub)
    top = compose.compose(
        settings,
        _listen(settings, options.listeners),
        directory=hub,
        relay=relay,
        worker=worker,
        peers=hub,
    )
    top.privilegedStartService()
    top.startService()
    reactor.addSystemEventTrigger("before", "shutdown", top.stopService)
    log.info("worker {worker} running (pid {pid})", worker=worker, pid=os.getpid())
    reactor.run()


if __name__ == "__main__":
    main(sys.argv[1:])
