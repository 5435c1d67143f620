"""The media library: every playable file under the media folder, with what
:func:`~wcs.files.inspect.inspect` says of it, for the console and REST.

Nothing here runs on the reactor but bookkeeping. A scan (``os.scandir`` and
one ``stat`` per file, in a pool thread) finds what is there; files that are
new or changed (size or modification time) are then inspected in batches of
:data:`BATCH`, one batch in the pool at a time, so plays opening files keep
the pool's other threads. A listing never waits for inspections: it answers
at once with what is known, files still being checked marked so (the console
asks again while any are). A listing more than :data:`RESCAN_AFTER` seconds
after the last scan starts another in the background and answers from the last
one (so a big folder's rescan never makes a listing wait); only the first
listing waits for a scan, and concurrent ones share it. Memory is bounded by
:data:`MAX_FILES` (more are left out, and the listing says so).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from twisted.internet.defer import Deferred, succeed
from twisted.logger import Logger

from wcs.files.inspect import Report, inspect

log = Logger()

#: Names the library lists (the MP4 family, whatever their case).
SUFFIXES = (".mp4", ".m4v", ".mov", ".m4a", ".3gp")
#: Most files listed; a folder holding more is listed in part (``truncated``).
MAX_FILES = 100_000
#: Deepest sub-folder looked into.
MAX_DEPTH = 16
#: Files inspected by one job in the pool.
BATCH = 32
#: Seconds a scan stays fresh: a listing after that scans again.
RESCAN_AFTER = 2.0
#: What a file not yet inspected shows as its verdict.
CHECKING = "checking"


@dataclass
class Item:
    """One file of the library."""

    name: str  # relative to the media folder, with "/"
    size: int
    mtime_ns: int
    report: Report | None = None  # None until inspected

    def as_dict(self) -> dict[str, Any]:
        shown: dict[str, Any] = {
            "name": self.name,
            "uri": f"vod://{self.name}",
            "size": self.size,
            "modified": self.mtime_ns // 1_000_000_000,
        }
        if self.report is None:
            shown["verdict"] = CHECKING
            return shown
        report = self.report.as_dict()
        del report["path"], report["size"]
        return {**shown, **report}


@dataclass
class Scan:
    """What one scan found: (name, size, mtime_ns) per file, sorted by name."""

    found: list[tuple[str, int, int]] = field(default_factory=list)
    truncated: bool = False


def scan(folder: Path, max_files: int = MAX_FILES) -> Scan:
    """The library's files under ``folder``: no hidden names, no symlink that
    leads out of it, no folder symlink followed, no deeper than
    :data:`MAX_DEPTH`. Runs in a pool thread."""
    result = Scan()
    top = folder.resolve()
    for name, size, mtime_ns in _walk(top, top, "", 0):
        if len(result.found) >= max_files:
            result.truncated = True
            break
        result.found.append((name, size, mtime_ns))
    result.found.sort()
    return result


def _walk(top: Path, here: Path, prefix: str, depth: int) -> Iterator[tuple[str, int, int]]:
    try:
        entries = sorted(os.scandir(here), key=lambda entry: entry.name)
    except OSError:
        return
    for entry in entries:
        if entry.name.startswith("."):
            continue  # hidden, such as a recording still being written
        try:
            if entry.is_symlink() and not Path(entry.path).resolve().is_relative_to(top):
                continue
            if entry.is_dir(follow_symlinks=False):
                if depth < MAX_DEPTH:  # (a folder symlink is not followed: no loops)
                    yield from _walk(top, Path(entry.path), f"{prefix}{entry.name}/", depth + 1)
            elif entry.is_file() and entry.name.lower().endswith(SUFFIXES):
                stat = entry.stat()
                yield f"{prefix}{entry.name}", stat.st_size, stat.st_mtime_ns
        except (OSError, RuntimeError):  # vanished meanwhile, or a symlink loop
            continue


def check(folder: Path, names: list[str]) -> list[Report]:
    """Reports of a batch of files (the cheap checks: not every audio frame)."""
    return [inspect(folder / name, audio_check=False) for name in names]


class Library:
    """The media folder's files, scanned and inspected off the reactor."""

    def __init__(
        self,
        folder: Path,
        run: Callable[..., Deferred[Any]],
        clock: Callable[[], float] = time.monotonic,
        max_files: int = MAX_FILES,
        rescan_after: float = RESCAN_AFTER,
    ) -> None:
        self.folder = folder
        self.run = run  # runs a function in the file pool: run(function, *args)
        self.clock = clock
        self.max_files = max_files
        self.rescan_after = rescan_after
        self.items: dict[str, Item] = {}
        self.truncated = False
        self.scanned_at: float | None = None
        self._scanning: list[Deferred[Library]] | None = None
        self._checking = False

    @property
    def unchecked(self) -> list[str]:
        return [name for name, item in self.items.items() if item.report is None]

    def listing(self) -> Deferred[Library]:
        """This library: at once once it was scanned (a scan older than
        :attr:`rescan_after` seconds starts another, whose news the next
        listing shows), after the first scan otherwise."""
        stale = self.scanned_at is None or self.clock() - self.scanned_at >= self.rescan_after
        if stale and self._scanning is None:
            self._scanning = []
            self.run(scan, self.folder, self.max_files).addBoth(self._scanned)
        if self.scanned_at is not None:
            return succeed(self)
        waiting: Deferred[Library] = Deferred()
        assert self._scanning is not None
        self._scanning.append(waiting)
        return waiting

    def _scanned(self, result: Scan | Any) -> None:
        waiting, self._scanning = self._scanning or [], None
        if isinstance(result, Scan):
            self._update(result)
        else:
            log.failure("library: scanning {folder} failed", result, folder=str(self.folder))
        for listener in waiting:
            listener.callback(self)

    def _update(self, result: Scan) -> None:
        self.scanned_at = self.clock()
        self.truncated = result.truncated
        items: dict[str, Item] = {}
        for name, size, mtime_ns in result.found:
            known = self.items.get(name)
            if known is not None and (known.size, known.mtime_ns) == (size, mtime_ns):
                items[name] = known
            else:
                items[name] = Item(name, size, mtime_ns)
        self.items = items
        self._check_next()

    def _check_next(self) -> None:
        """Inspect the next batch of unchecked files, one batch at a time."""
        if self._checking:
            return
        batch = self.unchecked[:BATCH]
        if not batch:
            return
        self._checking = True
        sizes = {name: (self.items[name].size, self.items[name].mtime_ns) for name in batch}

        def checked(reports: list[Report]) -> None:
            for name, report in zip(batch, reports, strict=True):
                item = self.items.get(name)
                if item is not None and (item.size, item.mtime_ns) == sizes[name]:
                    item.report = report  # (a file changed meanwhile is checked again)

        def failed(failure: Any) -> None:
            log.failure("library: checking {names} failed", failure, names=batch)
            for name in batch:  # shown as not playable rather than checked forever
                item = self.items.get(name)
                if item is not None and item.report is None:
                    item.report = Report(name, reason="could not be checked")

        def next_batch(_: object) -> None:
            self._checking = False
            self._check_next()

        self.run(check, self.folder, batch).addCallbacks(checked, failed).addBoth(next_batch)

    def page(self, offset: int = 0, limit: int = 200, contains: str = "") -> dict[str, Any]:
        """One page of the listing, as REST answers it."""
        needle = contains.lower()
        matching = [
            item for item in self.items.values() if not needle or needle in item.name.lower()
        ]
        return {
            "total": len(matching),
            "files": len(self.items),
            "offset": offset,
            "checking": sum(item.report is None for item in self.items.values()),
            "truncated": self.truncated,
            "items": [item.as_dict() for item in matching[offset : offset + limit]],
        }
