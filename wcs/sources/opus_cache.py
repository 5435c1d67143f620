"""A file's audio transcoded to Opus once, kept on disk for every later viewer.

WebRTC viewers need Opus; files carry AAC. A live broadcast transcodes once for
all its viewers, but every personal (``vod://``) play would transcode again.
So the first open of a file starts one background job that transcodes its whole
audio (:meth:`Mp4File.opus_samples`, the very samples a play makes) into a cache
file; once that is complete, opens of the file replay it and transcode nothing.

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

from twisted.logger import Logger

from wcs.media.mp4 import Mp4File
from wcs.media.sample import OPUS_CLOCK, Sample

log = Logger()

MAGIC = b"WCSOPUS1"
_RECORD = struct.Struct(">qH")


class OpusCache:
    """Opus tracks of local files, under ``folder``, at most ``limit`` bytes."""

    def __init__(self, folder: Path, limit: int) -> None:
        self.folder = folder
        self.limit = limit
        self._jobs: queue.Queue[tuple[Path, str] | None] = queue.Queue()
        self._queued: set[str] = set()
        self._stopping = threading.Event()
        self._worker: threading.Thread | None = None

    def key(self, path: Path) -> str:
        """What an entry is called: the file's real path, size and change time."""
        status = path.stat()
        identity = f"{path.resolve()}\0{status.st_size}\0{status.st_mtime_ns}"
        return hashlib.sha256(identity.encode("utf-8", "surrogateescape")).hexdigest()[:32]

    def replay(self, path: Path) -> Callable[[], Iterator[Sample]] | None:
        """What replays the file's Opus from the start, if it is cached, else
        None; a missing entry is queued to be made."""
        if self.limit <= 0:
            return None
        key = self.key(path)
        entry = self.folder / f"{key}.opus"
        if entry.exists():
            os.utime(entry)  # recently used
            return lambda: read(entry)
        self._queue(path, key)
        return None

    def _queue(self, path: Path, key: str) -> None:
        if key in self._queued or self._stopping.is_set():
            return
        self._queued.add(key)
        self._jobs.put((path, key))
        if self._worker is None:
            self._worker = threading.Thread(target=self._work, name="opus-cache", daemon=True)
            self._worker.start()

    def _work(self) -> None:
        while not self._stopping.is_set():
            job = self._jobs.get()
            if job is None:
                return
            path, key = job
            try:
                self._make(path, key)
            except Exception as error:  # a file that went away or broke: no entry
                log.warn("audio cache: {path} not cached ({error})", path=str(path),
                         error=error)
            finally:
                self._queued.discard(key)

    def _make(self, path: Path, key: str) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        partial = self.folder / f".{key}.part"
        media = Mp4File(path, f"audio cache {path.name}")
        try:
            with partial.open("wb") as out:
                out.write(MAGIC)
                for sample in media.opus_samples():
                    if self._stopping.is_set():
                        raise InterruptedError("the server is stopping")
                    out.write(_RECORD.pack(sample.pts, len(sample.data)) + sample.data)
            partial.rename(self.folder / f"{key}.opus")
        except BaseException:
            partial.unlink(missing_ok=True)
            raise
        finally:
            media.close()
        log.info("audio cache: {path} transcoded once for every later viewer{bad}",
                 path=str(path), bad=f" ({media.opus_dropped} AAC frames left out: they "
                 "do not decode)" if media.opus_dropped else "")
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


def read(entry: Path) -> Iterator[Sample]:
    """The Opus samples of a cache entry, in order."""
    with entry.open("rb") as handle:
        if handle.read(len(MAGIC)) != MAGIC:
            return
        while True:
            head = handle.read(_RECORD.size)
            if len(head) < _RECORD.size:
                return
            pts, size = _RECORD.unpack(head)
            yield Sample("audio", handle.read(size), pts, OPUS_CLOCK, pts / OPUS_CLOCK,
                         codec="opus")
