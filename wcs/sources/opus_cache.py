"""A file's audio transcoded to Opus once, kept on disk for every later viewer.

WebRTC viewers need Opus; files carry AAC. A live broadcast transcodes once for
all its viewers, but every personal (``vod://``) play would transcode again.
So the first play of a file that transcodes (a WebRTC viewer's) starts one
background job that transcodes its whole audio (:meth:`Mp4File.opus_samples`,
the very samples a play makes) into a cache file; once that is complete, opens
of the file replay it and transcode nothing, and readers opened before take it
up within a second of media (``Mp4File.find_opus``).

Entries are keyed by the file's real path, size and modification time, so a
changed file is transcoded afresh; the folder is kept under ``limit`` bytes by
removing the least recently used entries. The job runs on one thread of its own,
one file at a time, and stops when the cache is closed.
"""

from __future__ import annotations

import hashlib
import os
import queue
import struct
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import BinaryIO

from twisted.logger import Logger

from wcs.media.mp4 import Mp4File
from wcs.media.sample import OPUS_CLOCK, Sample

log = Logger()

MAGIC = b"WCSOPUS1"
_RECORD = struct.Struct(">qH")


class Unfit(ValueError):
    """A file whose Opus is larger than the whole cache."""


class OpusCache:
    """Opus tracks of local files, under ``folder``, at most ``limit`` bytes."""

    #: How long closing waits for the job under way to stop (s).
    STOP_WAIT = 5.0

    def __init__(self, folder: Path, limit: int) -> None:
        self.folder = folder
        self.limit = limit
        self._jobs: queue.Queue[tuple[Path, str] | None] = queue.Queue()
        self._queued: set[str] = set()
        self._unfit: set[str] = set()  # files whose Opus is larger than the whole cache
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._worker: threading.Thread | None = None

    def key(self, path: Path) -> str:
        """What an entry is called: the file's real path, size and change time."""
        status = path.stat()
        identity = f"{path.resolve()}\0{status.st_size}\0{status.st_mtime_ns}"
        return hashlib.sha256(identity.encode("utf-8", "surrogateescape")).hexdigest()[:32]

    def replay(self, path: Path, make: bool = True) -> Callable[[], Iterator[Sample]] | None:
        """What replays the file's Opus from the start, if it is cached, else
        None; a missing entry is queued to be made (unless ``make`` is false:
        :meth:`make` then, when it is wanted). The entry is opened here, so that
        it stays readable even if it is trimmed away while it plays."""
        if self.limit <= 0:
            return None
        try:
            key = self.key(path)
            handle = (self.folder / f"{key}.opus").open("rb")
        except FileNotFoundError:
            if make:
                self._queue(path, key)
            return None
        except OSError:
            return None
        try:
            os.utime(handle.fileno())  # recently used
        except OSError:
            pass
        return lambda: read(handle)

    def make(self, path: Path) -> None:
        """Queue the file's entry to be made, unless it is made or under way
        (called on the reactor: the key is a ``stat``)."""
        if self.limit <= 0:
            return
        try:
            key = self.key(path)
        except OSError:
            return
        if not (self.folder / f"{key}.opus").exists():
            self._queue(path, key)

    def _queue(self, path: Path, key: str) -> None:
        with self._lock:
            if key in self._queued or key in self._unfit or self._stopping.is_set():
                return
            self._queued.add(key)
            self._jobs.put((path, key))
            if self._worker is None:
                self._worker = threading.Thread(target=self._work, name="opus-cache", daemon=True)
                self._worker.start()

    def _work(self) -> None:
        self._sweep()
        while not self._stopping.is_set():
            job = self._jobs.get()
            if job is None:
                return
            path, key = job
            try:
                self._make(path, key)
            except InterruptedError:
                return
            except Unfit as error:  # its partial entry is gone by now: never again
                with self._lock:
                    self._unfit.add(key)
                log.warn("audio cache: {path} not cached ({error})", path=str(path), error=error)
            except Exception as error:  # a file that went away or broke: no entry
                log.warn("audio cache: {path} not cached ({error})", path=str(path), error=error)
            finally:
                with self._lock:
                    self._queued.discard(key)

    def _sweep(self) -> None:
        """Partial entries a stopped server left behind."""
        for partial in self.folder.glob(".*.part"):
            partial.unlink(missing_ok=True)

    def _make(self, path: Path, key: str) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        partial = self.folder / f".{key}.part"
        media = Mp4File(path, f"audio cache {path.name}", announce=False)
        try:
            with partial.open("wb") as out:
                out.write(MAGIC)
                size = len(MAGIC)
                for sample in media.opus_samples():
                    if self._stopping.is_set():
                        raise InterruptedError("the server is stopping")
                    size += _RECORD.size + len(sample.data)
                    if size > self.limit:
                        raise Unfit(
                            f"its Opus is larger than the cache ({self.limit} "
                            "bytes, vod_audio_cache_size)"
                        )
                    out.write(_RECORD.pack(sample.pts, len(sample.data)) + sample.data)
                out.flush()
                os.fsync(out.fileno())
            partial.rename(self.folder / f"{key}.opus")
        except BaseException:
            partial.unlink(missing_ok=True)
            raise
        finally:
            media.close()
        log.info(
            "audio cache: {path} transcoded once for every later viewer{bad}",
            path=str(path),
            bad=f" ({media.opus_dropped} AAC frames left out: they do not decode)"
            if media.opus_dropped
            else "",
        )
        self._trim()

    def _trim(self) -> None:
        """Remove the least recently used entries until the folder fits ``limit``."""
        entries = sorted(self.folder.glob("*.opus"), key=lambda p: p.stat().st_mtime)
        total = sum(p.stat().st_size for p in entries)
        for entry in entries:
            if total <= self.limit:
                break
            total -= entry.stat().st_size
            entry.unlink(missing_ok=True)

    def close(self) -> None:
        """Stop the job under way (its partial entry is removed) and the worker."""
        self._stopping.set()
        self._jobs.put(None)
        if self._worker is not None:
            self._worker.join(self.STOP_WAIT)


def read(handle: BinaryIO) -> Iterator[Sample]:
    """The Opus samples of an open cache entry, in order, from its start (small
    positioned reads, so several plays can read one handle); a truncated tail ends it."""
    fd = handle.fileno()
    if os.pread(fd, len(MAGIC), 0) != MAGIC:
        return
    offset = len(MAGIC)
    while True:
        head = os.pread(fd, _RECORD.size, offset)
        if len(head) < _RECORD.size:
            return
        pts, size = _RECORD.unpack(head)
        data = os.pread(fd, size, offset + _RECORD.size)
        if len(data) < size:
            return
        offset += _RECORD.size + size
        yield Sample("audio", data, pts, OPUS_CLOCK, pts / OPUS_CLOCK, codec="opus")
