"""A remote object as a seekable file, filled chunk by chunk while it is read.

Chunks are fetched on demand and a bounded distance ahead of the reader,
into a sparse local file (deleted on close), so a huge object is neither
held in memory nor fetched faster than it is played. The reader never
waits: ``ready()`` says whether the next bytes are here, and the pump asks
before it reads (a read of missing bytes is an error, not a wait).
"""

from __future__ import annotations

import io
import os
from collections.abc import Callable, Generator
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from twisted.internet.defer import (
    Deferred,
    FirstError,
    fail,
    gatherResults,
    inlineCallbacks,
    succeed,
)
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure

from wcs.errors import NotFound, SourceUnavailable, WcsError, WrongFormat
from wcs.media import boxes

if TYPE_CHECKING:
    from typing_extensions import Buffer

log = Logger()

CHUNK = 1024 * 1024
#: How far ahead of the reader the download runs.
AHEAD = 8 * CHUNK
#: Bytes that must be present past the read position before the reader may go on.
MARGIN = CHUNK
#: Most chunk requests under way at once.
PARALLEL = 2
#: Tries per chunk before the download is given up.
TRIES = 3
#: Wait before trying a chunk again (s).
RETRY_DELAY = 0.5
#: What a chunk that failed for no stated reason is given up as.
DOWNLOAD_FAILED = "S3 download failed"
#: Largest moov fetched when it sits after the media data.
MAX_MOOV = 64 * CHUNK


class NotYetDownloaded(OSError):
    """The reader went past what has arrived; the pump should have waited."""


class RangedFile(io.RawIOBase):
    """Reads from the chunks that have arrived; fetches the rest as needed."""

    def __init__(
        self,
        fetch: Callable[[int, int], Deferred],
        size: int,
        path: Path,
        label: str,
        clock: IReactorTime,
    ) -> None:
        super().__init__()
        self._fetch = fetch
        self._clock = clock
        self.size = size
        self.path = path
        self.label = label
        self._fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600)
        self._have: set[int] = set()
        self._pending: dict[int, Deferred] = {}
        self._waiters: dict[int, list[Deferred]] = {}
        self._failures: dict[int, int] = {}
        self._lost: dict[int, WcsError] = {}  # chunks given up, and why
        self._position = 0
        self.downloaded = 0

    # file protocol, for PyAV

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._position

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._position, io.SEEK_END: self.size}[whence]
        self._position = max(0, base + offset)
        return self._position

    def readinto(self, buffer: Buffer) -> int:
        view = memoryview(buffer).cast("B")
        count = min(len(view), max(0, self.size - self._position))
        if count == 0:
            return 0
        data = self.read_at(self._position, count)
        view[: len(data)] = data
        self._position += len(data)
        self.prefetch()
        return len(data)

    def read_at(self, offset: int, count: int) -> bytes:
        """Bytes that have arrived, without moving the read position."""
        if not self.has(offset, count):
            raise NotYetDownloaded(f"bytes {offset}+{count} have not arrived")
        return os.pread(self._fd, count, offset)

    def close(self) -> None:
        if not self.closed:
            log.info(
                "{label}: closed after downloading {got} of {size} bytes",
                label=self.label,
                got=self.downloaded,
                size=self.size,
            )
            for pending in list(self._pending.values()):
                pending.cancel()
            self._waiters.clear()
            os.close(self._fd)
            try:
                self.path.unlink()
            except OSError:
                pass
        super().close()

    # chunks

    def has(self, start: int, length: int) -> bool:
        end = min(self.size, start + length)
        return all(index in self._have for index in range(start // CHUNK, (end - 1) // CHUNK + 1))

    def ready(self) -> bool:
        """True when the reader can go on; raises once it needs a chunk that
        could not be downloaded (so everything before it still plays)."""
        end = min(self.size, self._position + MARGIN)
        for index in range(self._position // CHUNK, max(self._position, end - 1) // CHUNK + 1):
            if index in self._lost:
                raise self._lost[index]
        self.prefetch()
        return self.has(self._position, MARGIN)

    def prefetch(self) -> None:
        """Keep up to ``AHEAD`` bytes past the reader requested, ``PARALLEL`` at a time."""
        if self.closed:
            return
        last = min(self.size - 1, self._position + AHEAD) // CHUNK
        for index in range(self._position // CHUNK, last + 1):
            if len(self._pending) >= PARALLEL:
                break
            if index not in self._have and index not in self._pending and index not in self._lost:
                self._request(index)

    def ensure(self, start: int, length: int) -> Deferred:
        """Fires once bytes ``start``..``start+length`` have arrived (or errbacks)."""
        end = min(self.size, start + length)
        waits = []
        for index in range(start // CHUNK, (end - 1) // CHUNK + 1):
            if index in self._have:
                continue
            if index not in self._pending:
                self._request(index)
            waiter: Deferred = Deferred()
            self._waiters.setdefault(index, []).append(waiter)
            waits.append(waiter)
        lost = [
            self._lost[i] for i in range(start // CHUNK, (end - 1) // CHUNK + 1) if i in self._lost
        ]
        if lost:
            return fail(lost[0])
        if not waits:
            return succeed(None)

        def first(failure: Failure) -> Failure:
            return cast(FirstError, failure.value).subFailure  # consumeErrors: its FirstError

        return gatherResults(waits, consumeErrors=True).addErrback(first)

    def store(self, index: int, data: bytes) -> None:
        os.pwrite(self._fd, data, index * CHUNK)
        self._have.add(index)
        self.downloaded += len(data)
        for waiter in self._waiters.pop(index, []):
            waiter.callback(None)

    def _retry(self, index: int) -> None:
        if not self.closed and index not in self._have and index not in self._pending:
            self._request(index)

    def _request(self, index: int) -> None:
        start = index * CHUNK
        end = min(self.size, start + CHUNK) - 1
        fetching = self._fetch(start, end)
        self._pending[index] = fetching

        def arrived(data: bytes) -> None:
            self._pending.pop(index, None)
            if self.closed:
                return
            if len(data) != end - start + 1:
                raise SourceUnavailable("S3 download was cut short")
            self.store(index, data)

        def failed(failure: Failure) -> None:
            self._pending.pop(index, None)
            if self.closed:
                return None
            problem = (
                failure.value
                if isinstance(failure.value, WcsError)
                else SourceUnavailable(DOWNLOAD_FAILED)
            )
            tries = self._failures[index] = self._failures.get(index, 0) + 1
            if tries < TRIES and not isinstance(problem, NotFound):
                log.info(
                    "{label}: bytes from {start} failed ({info}); trying again",
                    label=self.label,
                    start=start,
                    info=problem.info,
                )
                self._clock.callLater(RETRY_DELAY, self._retry, index)
                return None
            self._lost[index] = problem
            log.warn(
                "{label}: gave up on bytes from {start}: {info}",
                label=self.label,
                start=start,
                info=problem.info,
            )
            for waiter in self._waiters.pop(index, []):
                waiter.errback(problem)
            return None

        fetching.addCallback(arrived).addErrback(failed)


@inlineCallbacks
def prepare(file: RangedFile) -> Generator[Deferred[Any], Any, list[boxes.Box]]:
    """Walk the box headers, fetch ``moov`` wherever it is and the start of the
    media, so that the MP4 reader can open the file; fires with the boxes."""
    walker = boxes.walk(file.size)
    try:
        offset = next(walker)
        while True:
            count = min(boxes.HEADER, file.size - offset)
            yield file.ensure(offset, count)
            offset = walker.send(file.read_at(offset, count))
    except StopIteration as done:
        found: list[boxes.Box] = done.value
    kinds = [box.kind for box in found]
    moov = found[kinds.index("moov")]
    if moov.size > MAX_MOOV:
        raise WrongFormat(f"moov box of {moov.size} bytes is too large")
    if "mdat" in kinds and kinds.index("mdat") < kinds.index("moov"):
        log.info("{label}: moov is after the media data; fetching it first", label=file.label)
    for box in found:
        wanted = box.size if box.kind != "mdat" else min(box.size, 2 * CHUNK)
        yield file.ensure(box.offset, wanted)
    return found
