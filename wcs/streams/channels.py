"""Playlist channels' lists: listed, appended to and skipped, by the channel's name.

A playlist channel is read by one worker, its owner (the others relay it), so
REST ``vod/playlist``, ``vod/playlist_append`` and ``vod/playlist_skip`` are done
there: a call that lands on another worker of this machine asks the owner
through the directory, and a refusal comes back as its kind and info.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from twisted.internet.defer import Deferred, fail, maybeDeferred
from twisted.internet.interfaces import IReactorTime

from wcs.cluster.directory import Directory, answered
from wcs.cluster.store import VOD, Entry, relayed
from wcs.errors import BadRequest, NotFound, Unsupported
from wcs.sources import Sources
from wcs.streams.stream import VodStream

#: What may be done to a channel's list.
ACTIONS = ("list", "append", "skip")
ASKED = "channel"


class Channels:
    """Playlist channels' lists, wherever they are read: ``live`` gives this
    worker's broadcast of a name, ``sources`` checks appended names."""

    def __init__(
        self,
        directory: Directory,
        live: Callable[[str], VodStream | None],
        sources: Sources,
        clock: IReactorTime,
    ) -> None:
        self.directory = directory
        self.live = live
        self.sources = sources
        self.clock = clock
        directory.answer(ASKED, self._asked)

    def control(
        self, name: str, action: str, names: list[str] | None = None
    ) -> Deferred[dict[str, Any]]:
        """Do ``action`` to the list of the channel ``name`` (``names``: what
        ``append`` adds); answers the list, the item playing and how far into it."""
        if action not in ACTIONS:
            return fail(BadRequest(f"no such action {action!r}: {', '.join(ACTIONS)}"))
        here = self.live(name)
        if here is not None and not here.closed:
            return maybeDeferred(self._apply, here, action, names)
        question = {"name": name, "action": action, "names": names}

        def found(entry: Entry | None) -> Deferred[dict[str, Any]]:
            if entry is None:
                raise NotFound(f"no stream named {name!r} runs")
            if not relayed(entry) or entry.kind != VOD:
                raise Unsupported(f"{name!r} is not a playlist channel")
            here = self.directory.worker.rpartition("/")[0]
            if entry.owner.rpartition("/")[0] != here:
                raise NotFound(
                    f"the channel {name!r} is read on worker {entry.owner}, "
                    "of another node: ask that node"
                )
            return self.directory.ask(entry.owner, ASKED, question)

        return answered(self.directory.lookup(name)).addCallback(found)

    def _asked(self, question: dict[str, Any]) -> Deferred[dict[str, Any]]:
        """Another worker asks about a channel we read."""
        name = str(question.get("name", ""))
        here = self.live(name)
        if here is None or here.closed:
            return fail(NotFound(f"no channel {name!r} is read here"))
        names = question.get("names")
        return maybeDeferred(
            self._apply, here, str(question.get("action")), names if names is not None else None
        )

    def _apply(self, stream: VodStream, action: str, names: Any) -> dict[str, Any]:
        playlist = stream.playlist
        if playlist is None:
            raise Unsupported(f"{stream.name!r} is not a playlist channel")
        now = self.clock.seconds() - stream.start
        if action == "append":
            playlist.append(
                self.sources.checked_names(list_of_names(names)), self.sources.max_playlist_items
            )
        elif action == "skip":
            playlist.skip(now)
        return {"localStreamName": stream.name, **playlist.listed(now)}


def list_of_names(value: Any) -> list[str]:
    """A REST body's list of media-folder names, checked for shape only."""
    if (
        not isinstance(value, list)
        or not value
        or not all(isinstance(name, str) and 0 < len(name) <= 1024 for name in value)
    ):
        raise BadRequest(
            "'playlist' must be a list of file names (strings of 1 to 1024 characters)"
        )
    return value
