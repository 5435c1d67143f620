"""What the workers of one server share: which streams run, where, and since when.

The :class:`Store` holds it in memory, for the one process that keeps it: the
supervisor of the workers of one machine (reached over :mod:`wcs.cluster.hub`),
or a single-process server itself (:mod:`wcs.cluster.local`). Every method is
one atomic step, called for a worker by its id; nothing here waits.

An entry lives while some worker *holds* it (serves it from a reader of its
own, or publishes it): each worker lets go when its local stream ends, which
for a broadcast is ``vod_stream_timeout`` after its own last viewer, so the
entry outlives the last viewer of the whole server by that timeout. A worker
that dies lets go of everything at once.
"""

from __future__ import annotations

import secrets
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field, fields, replace
from typing import Any

from wcs.errors import LimitReached
from wcs.limits import Limits

#: Kinds of entry.
VOD = "vod"  # a file read on a timeline: vod-live broadcasts, REST startups, personal plays
PUBLISHED = "published"  # a page's stream, relayed from the worker it is published on
#: What marks a media session's id (a page's play or publication) among ended
#: entries' ids, for listeners: pages choose those ids, so they get a namespace.
MEDIA = "media:"
#: What marks, among stopped media sessions' ids, a media socket's token that
#: another node refused (the session's MSE plays then end FAILED).
TRANSPORT = "transport:"


@dataclass
class Entry:
    """One stream of the whole server."""

    name: str
    kind: str = VOD
    uri: str = ""  # the canonical uri of a file's stream; plays of it join this entry
    start: float = 0.0  # when its sample of time 0 was due (wall clock, s)
    loop: bool = False
    persistent: bool = False  # REST-started: runs without viewers
    shared: bool = True  # a name others may join (False: a personal vod:// play)
    has_audio: bool = False
    has_video: bool = False
    bitrate: int = 0  # the source's average, bits/s
    owner: str = ""  # the worker that made it
    relay: str = ""  # host:port its samples are fetched from (a page's stream, a playlist)
    id: str = field(default_factory=lambda: str(uuid.uuid4()))
    viewers: dict[str, int] = field(default_factory=dict)  # by worker

    @property
    def total_viewers(self) -> int:
        return sum(self.viewers.values())


def relayed(entry: Entry) -> bool:
    """Whether other workers fetch ``entry``'s samples from its owner (a page's
    stream, a playlist channel) rather than read it themselves: it ends with
    its owner's copy."""
    return entry.kind == PUBLISHED or bool(entry.relay)


@dataclass
class Load:
    """What one worker reports of itself."""

    worker: str
    node: str = ""
    pid: int = 0
    viewers: int = 0
    cpu: float = 0.0  # share of one core over the last report period
    streams: int = 0
    #: its plays and publications (:class:`~wcs.streams.media_sessions.MediaSession`)
    media: list[dict[str, Any]] = field(default_factory=list)
    #: HLS players (of the last 30 s) by stream name: HLS has no media sessions
    hls: dict[str, int] = field(default_factory=dict)


def shallow(record: Any) -> dict[str, Any]:
    """A dataclass's fields as a dict, without ``dataclasses.asdict``'s deep
    copy (a load carries hundreds of media sessions: JSON needs no copy)."""
    return {each.name: getattr(record, each.name) for each in fields(record)}


class Store:
    """The entries of one server, their holders, and each worker's load.

    With ``limits``, a new broadcast (a shared file's entry: vod-live or a REST
    startup) over ``max_broadcasts`` (a startup over ``max_rest_startups``) is
    refused here, where every worker's entries are counted once."""

    def __init__(self, limits: Limits | None = None) -> None:
        self.limits = limits
        self.entries: dict[str, Entry] = {}  # by id
        self.names: dict[str, str] = {}  # shared name -> id
        self.uris: dict[str, str] = {}  # canonical uri -> id of the broadcast plays join
        self.holders: dict[str, set[str]] = {}  # id -> workers
        self._loads: dict[str, Load] = {}
        self._secret = secrets.token_urlsafe(32)
        #: who tells each worker of terminated entries: ``(entry ids, info)``
        self.listeners: dict[str, Callable[[list[str], str], None]] = {}

    def secret(self) -> str:
        """What a worker's relay asks of those that connect: the server's own secret."""
        return self._secret

    def listen(self, worker: str, terminated: Callable[[list[str], str], None]) -> None:
        """Tell ``worker`` (through ``terminated``) whenever entries are terminated."""
        self.listeners[worker] = terminated

    def live(self, worker: str, entry: Entry) -> Entry:
        """The broadcast of ``entry.uri`` that runs (held now by ``worker`` too),
        or ``entry`` itself, which starts it."""
        running = self._by_uri(entry.uri)
        if running is not None:
            self._held(running, worker)
            return copy(running)
        self._check_broadcasts(entry)
        return self._add(worker, entry)

    def claim(self, worker: str, entry: Entry) -> Entry | None:
        """Add ``entry`` under its name, held by ``worker``; None if the name is taken."""
        if entry.shared and entry.name in self.names:
            return None
        self._check_broadcasts(entry)
        return self._add(worker, entry)

    def _check_broadcasts(self, entry: Entry) -> None:
        """Raise :class:`LimitReached` if ``entry`` is one broadcast too many."""
        if self.limits is None or entry.kind != VOD or not entry.shared:
            return
        running = [each for each in self.entries.values() if each.kind == VOD and each.shared]
        if len(running) >= self.limits.max_broadcasts:
            raise LimitReached(
                "vod-live broadcasts running", "max_broadcasts", self.limits.max_broadcasts
            )
        if (
            entry.persistent
            and sum(each.persistent for each in running) >= self.limits.max_rest_startups
        ):
            raise LimitReached(
                "REST-started broadcasts running",
                "max_rest_startups",
                self.limits.max_rest_startups,
            )

    def _add(self, worker: str, entry: Entry) -> Entry:
        entry = copy(entry)
        entry.owner = entry.owner or worker
        self.entries[entry.id] = entry
        self.holders[entry.id] = set()
        self._held(entry, worker)
        if entry.shared:
            self.names[entry.name] = entry.id
            if entry.uri:
                self.uris.setdefault(entry.uri, entry.id)
        return copy(entry)

    def _by_uri(self, uri: str) -> Entry | None:
        found = self.uris.get(uri)
        return self.entries[found] if found is not None else None

    def lookup(self, name: str) -> Entry | None:
        """The shared entry named ``name``, if any."""
        found = self.names.get(name)
        return copy(self.entries[found]) if found is not None else None

    def hold(self, worker: str, entry_id: str) -> Entry | None:
        """``worker`` serves the entry too; None if it has ended meanwhile."""
        entry = self.entries.get(entry_id)
        if entry is None:
            return None
        self._held(entry, worker)
        return copy(entry)

    def _held(self, entry: Entry, worker: str) -> None:
        self.holders[entry.id].add(worker)
        entry.viewers.setdefault(worker, 0)

    def release(self, worker: str, entry_id: str) -> None:
        """``worker`` no longer serves the entry; the last to let go ends it."""
        holders = self.holders.get(entry_id)
        if holders is None:
            return
        holders.discard(worker)
        entry = self.entries[entry_id]
        entry.viewers.pop(worker, None)
        if not holders or (relayed(entry) and worker == entry.owner):
            self._remove(entry_id)

    def _remove(self, entry_id: str) -> Entry | None:
        entry = self.entries.pop(entry_id, None)
        if entry is None:
            return None
        del self.holders[entry_id]
        if self.names.get(entry.name) == entry_id:
            del self.names[entry.name]
        if self.uris.get(entry.uri) == entry_id:
            del self.uris[entry.uri]
        return entry

    def report(self, worker: str, viewers: dict[str, int], load: Load | None = None) -> None:
        """``worker``'s viewers of each entry it holds (by id), and its load."""
        for entry_id, holders in self.holders.items():
            if worker in holders:
                self.entries[entry_id].viewers[worker] = viewers.get(entry_id, 0)
        if load is not None:
            self._loads[worker] = load

    def select(
        self,
        name: str | None = None,
        uri: str | None = None,
        entry_id: str | None = None,
        kind: str | None = VOD,
    ) -> list[Entry]:
        """Entries matching every criterion given (every one of ``kind`` without)."""
        return [
            copy(entry)
            for entry in self.entries.values()
            if (kind is None or entry.kind == kind)
            and (name is None or entry.name == name)
            and (uri is None or entry.uri == uri)
            and (entry_id is None or entry.id == entry_id)
        ]

    def terminate(self, entry_ids: list[str], info: str) -> list[Entry]:
        """End the entries for everyone; every worker listening is told ``info``."""
        ended = [entry for entry in map(self._remove, entry_ids) if entry is not None]
        if ended:
            for terminated in list(self.listeners.values()):
                terminated([entry.id for entry in ended], info)
        return ended

    def stop(self, media_ids: list[str], info: str) -> None:
        """Tell every worker to stop its media sessions of these ids with ``info``."""
        for terminated in list(self.listeners.values()):
            terminated([MEDIA + media_id for media_id in media_ids], info)

    def loads(self) -> list[Load]:
        """Every worker's last reported load."""
        return list(self._loads.values())

    def drop(self, worker: str) -> None:
        """A worker is gone: it holds nothing now (its viewers of a published
        stream it relayed hear of the end from the relay connection)."""
        self._loads.pop(worker, None)
        self.listeners.pop(worker, None)
        for entry_id in [
            entry_id for entry_id, holders in self.holders.items() if worker in holders
        ]:
            self.release(worker, entry_id)


def copy(entry: Entry) -> Entry:
    """An entry as handed out: later changes to the store's own do not show in it."""
    return replace(entry, viewers=dict(entry.viewers))
