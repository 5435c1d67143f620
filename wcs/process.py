"""The process's own resources, tuned once it runs: file threads and descriptors,
the heap handed back to the system, start-up's objects kept from the collector.

Each measured where it was found (the numbers are in the docstrings); the
composition in :mod:`wcs.tap` starts them with the server.
"""

from __future__ import annotations

from collections.abc import Callable

from twisted.application import service
from twisted.logger import Logger
from twisted.python.threadpool import ThreadPool

log = Logger()


#: Threads that open and check files (the rest wait in the pool's queue, whose
#: length ``max_pending_opens`` bounds).
OPEN_THREADS = 4


class FilesService(service.Service):
    """The bounded thread pool files are opened in, started and stopped with the
    server; and, at start, the open-file limit raised as far as it may go (every
    socket, file and viewer holds a descriptor; 1024 would cap the server)."""

    def __init__(self, pool: ThreadPool) -> None:
        self.pool = pool

    def startService(self) -> None:
        super().startService()
        self.pool.start()
        raise_nofile()

    def stopService(self) -> None:
        super().stopService()
        self.pool.stop()


def raise_nofile() -> tuple[int, int]:
    """Raise the soft ``RLIMIT_NOFILE`` to the hard one; log and return (before, after)."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard if hard != resource.RLIM_INFINITY else max(soft, 1 << 20)
    if target > soft:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        except (ValueError, OSError) as error:
            log.warn(
                "could not raise the open-file limit from {soft}: {error}", soft=soft, error=error
            )
            return soft, soft
    log.info("open-file limit: {after} (was {before})", after=target, before=soft)
    return soft, target


#: How often freed heap is handed back to the system (s).
TRIM_INTERVAL = 60.0


def heap_trimmer() -> Callable[[], object] | None:
    """glibc's ``malloc_trim(0)``, or None where there is none (musl, macOS).

    glibc returns freed heap to the system only from the top of the heap; what
    is freed below a chunk still in use stays resident. Measured with the soak
    bench (6 min, ~1,000 plays): RSS 115 -> 177 MiB while the objects the
    collector tracks stayed at 85,000, and a ``malloc_trim`` gave 53 of the 62
    MiB back (``MALLOC_ARENA_MAX=2`` changed nothing: not the threads' arenas).
    Trimmed every minute, the same run ended idle at 128 MiB instead of 177; a
    trim of that heap took 1.7 ms.
    """
    import ctypes
    import ctypes.util

    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        trim = libc.malloc_trim
    except (OSError, AttributeError):
        return None
    trim.argtypes = [ctypes.c_size_t]
    return lambda: trim(0)


class FrozenStart(service.Service):
    """Once running, what start-up made (modules, codecs, tables: some 300,000
    objects that live as long as the process) is moved out of the collector's
    sight (``gc.freeze``), so that a full collection walks only what serving
    made. Measured with a thousand WebRTC viewers joining: full collections
    took 90-290 ms each, and every reactor event waited for them."""

    def startService(self) -> None:
        from twisted.internet import reactor

        super().startService()
        reactor.callWhenRunning(_freeze_start)


def _freeze_start() -> None:
    import gc

    gc.collect()
    gc.freeze()
    log.info("{n} objects made at start-up left out of garbage collection", n=gc.get_freeze_count())
