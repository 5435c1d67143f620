"""A playlist as one medium: its files back to back, on one timeline, looping.

A playlist is a list of media-folder names (``vod://`` names without the
scheme: ``a.mp4``, ``shows/b.mp4``, ``s3/BUCKET/KEY``): from a playlist file in
the media folder (``NAME.m3u``: one name a line, ``#`` lines and blank lines
left out) or from REST. Every name is checked before anything is read, and one
that would leave the media folder refuses the whole list.

:class:`PlaylistMedia` is an opened medium like a file's, for a looping
broadcast. Its timeline (a channel's seconds since it began) runs item after
item: an item begins where the one before ended (its last video frame's end),
so timestamps keep rising, each item starting on its keyframe. AAC and Opus
frames are kept on one grid across the joins (:class:`~wcs.media.mp4.AudioGrid`),
so sound neither overlaps nor leaves a gap (a file's sound may start up to a frame,
23 ms, early against its picture). The next item is
opened (on the file threads) as soon as one begins, so a join waits for
nothing; while it is still opening, :meth:`ready` says so and the pump waits.
An item that cannot be played (gone, not an MP4, or with other tracks,
another AAC configuration or another H.264 profile than the first: its viewers'
decoders were set up for those) is passed over with a warning; a whole pass of such items ends the
channel. Nobody watching, nothing is read: the schedule moves on from each
item's length, found by opening it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Protocol

from twisted.internet.defer import Deferred, fail, succeed
from twisted.logger import Logger
from twisted.python.failure import Failure

from wcs.errors import BadRequest, LimitReached, NotFound, WcsError
from wcs.media.mp4 import AudioGrid
from wcs.media.sample import AAC_FRAME, OPUS_FRAME, MediaInfo, Sample, shifted

log = Logger()

#: The largest playlist file read (bytes).
MAX_PLAYLIST_BYTES = 1 << 20
#: The suffix that makes a media-folder name a playlist.
SUFFIX = ".m3u"
#: How long before an item's end (s) its reader waits for the next to be open.
JOIN_MARGIN = 0.5


class Medium(Protocol):
    """An opened file, as :class:`~wcs.sources.OpenedMedia` is."""

    @property
    def info(self) -> MediaInfo: ...

    def samples(
        self,
        loop: bool = False,
        *,
        period: float | None = None,
        position: float = 0.0,
        wants_opus: Callable[[], bool] = ...,
        wants_aac: Callable[[], bool] = ...,
    ) -> Iterator[Sample]: ...

    def prepare_join(self, position: float, loop: bool) -> Deferred[None]: ...

    def pass_length(self) -> float: ...

    def ready(self) -> bool: ...

    def close(self) -> None: ...


#: Opens one item: a media-folder name in, an opened medium out.
Opener = Callable[[str], Deferred[Medium]]


def parse(text: str, limit: int) -> list[str]:
    """The names of an ``.m3u`` playlist's lines; raises :class:`BadRequest`
    for an empty list, :class:`LimitReached` past ``limit`` names."""
    names = [line.strip() for line in text.splitlines()]
    names = [name for name in names if name and not name.startswith("#")]
    if not names:
        raise BadRequest("the playlist names no file")
    if len(names) > limit:
        raise LimitReached("files in one playlist", "max_playlist_items", limit)
    return names


@dataclass
class Item:
    """One name of the list, and what playing it found."""

    name: str
    length: float | None = None  # s, once opened


class PlaylistMedia:
    """A looping list of files as one medium (see the module's words)."""

    #: Its picture size may change at a join: streams watch its keyframes.
    changes_size = True
    reencoded = False

    def __init__(self, names: list[str], first: Medium, open_item: Opener, label: str) -> None:
        self.items = [Item(name) for name in names]
        self.label = label
        self._open = open_item
        self.info = first.info
        self._index = 0
        self._medium: Medium | None = first
        self.items[0].length = first.pass_length()
        self._began = 0.0  # when the current item began, on the channel's timeline (s)
        self._next: tuple[int, Medium] | None = None  # the next item, open
        self._opening = False  # the next item is being opened
        self._waiters: list[Deferred[None]] = []  # for the next item to be open
        self._fatal: WcsError | None = None  # no item can be played
        self._failed_in_a_row = 0
        self._skip = False
        self._last = 0.0  # the latest sample time read (s)
        self.closed = False
        self._prefetch()

    # --- the list

    @property
    def current(self) -> int:
        """The index of the item playing now."""
        return self._index

    def listed(self, position: float) -> dict[str, object]:
        """The items, the one playing and how far into it (s) it is at ``position``."""
        if self._skip:  # what plays from the next sample on
            coming = self._next[0] if self._next else (self._index + 1) % len(self.items)
            return {"items": [item.name for item in self.items], "current": coming, "position": 0.0}
        return {
            "items": [item.name for item in self.items],
            "current": self._index,
            "position": round(max(0.0, position - self._began), 3),
        }

    def append(self, names: list[str], limit: int) -> None:
        """Add ``names`` (checked by the caller) to the end of the list."""
        if len(self.items) + len(names) > limit:
            raise LimitReached("files in one playlist", "max_playlist_items", limit)
        self.items += [Item(name) for name in names]
        self._prefetch()

    def skip(self, position: float) -> None:
        """End the current item at ``position`` (the channel's now): a reader goes
        on with the next item at its next sample, a schedule nobody reads from now."""
        self._skip = True
        item = self.items[self._index]
        item.length = max(0.0, position - self._began)

    # --- an opened medium

    def keyframe_time(self, position: float) -> float:
        """A channel is not sought (it is live): where it would start, as asked."""
        return position

    def pass_length(self) -> float:
        """A playlist has no fixed pass: its timeline is its own."""
        return 0.0

    def ready(self) -> bool:
        """False while the reader is near its item's end (or skipping) and the
        next item is still opening; raises once no item can be played."""
        if self._fatal is not None:
            raise self._fatal
        if self.closed:
            return True
        if self._medium is not None and not self._medium.ready():
            return False
        if self._next is not None or not self._opening:
            return True
        length = self.items[self._index].length
        near_end = length is not None and self._last >= self._began + length - JOIN_MARGIN
        return not (self._skip or near_end)

    def prepare_join(self, position: float, loop: bool) -> Deferred[None]:
        """Move the schedule to the item playing at ``position`` (opening the
        items on the way, to learn their lengths), then ready its reader there."""
        if self.closed:
            return succeed(None)
        length = self.items[self._index].length
        if length is None or position < self._began + max(length, 0.04):
            if self._medium is None:
                return succeed(None)
            return self._medium.prepare_join(position - self._began, False)
        waiting: Deferred[None] = Deferred()

        def moved(_: object) -> None:
            self.prepare_join(position, loop).chainDeferred(waiting)

        self._advance(self._began + length).addCallbacks(moved, waiting.errback)
        return waiting

    def samples(
        self,
        loop: bool = True,
        *,
        period: float | None = None,
        position: float = 0.0,
        wants_opus: Callable[[], bool] = lambda: True,
        wants_aac: Callable[[], bool] = lambda: True,
    ) -> Iterator[Sample]:
        """Every sample from ``position`` (s on the channel's timeline) on, item
        after item, for ever (a reader must check :meth:`ready` before each)."""
        grids: dict[tuple[str, int], AudioGrid] = {}
        offset_in_item = max(0.0, position - self._began)
        while not self.closed and self._medium is not None:
            medium, began = self._medium, self._began
            for grid in grids.values():
                grid.new_pass()
            end = began
            self._skip = False
            for sample in medium.samples(
                position=offset_in_item, wants_opus=wants_opus, wants_aac=wants_aac
            ):
                if self._skip or self.closed:
                    break
                sample = shifted(sample, began)
                if sample.kind == "audio" and not self._grid(grids, sample).place(sample):
                    continue  # it would overlap the sound before the join
                if sample.kind == "video" or self.info.video is None:
                    end = max(end, sample.time + self._frame(medium))
                self._last = max(self._last, sample.time)
                yield sample
            offset_in_item = 0.0
            if self.closed:
                return
            if end <= began:  # nothing read: go on at once
                end = self._last + self._frame(medium)
            self.items[self._index].length = end - began
            if self._next is None:  # ready() held the reader until it was open
                return
            self._switch(end)

    def close(self) -> None:
        self.closed = True
        self._settled()
        for medium in (self._medium, self._next[1] if self._next else None):
            if medium is not None:
                medium.close()
        self._medium = self._next = None

    # --- moving on

    @staticmethod
    def _grid(grids: dict[tuple[str, int], AudioGrid], sample: Sample) -> AudioGrid:
        """The grid of ``sample``'s codec and clock."""
        key = (sample.codec, sample.clock)
        if key not in grids:
            frame = OPUS_FRAME if sample.codec == "opus" else AAC_FRAME
            grids[key] = AudioGrid(frame, close_gaps=True)
        return grids[key]

    def _frame(self, medium: Medium) -> float:
        video = medium.info.video
        return 1 / video.fps if video is not None and video.fps else AAC_FRAME / 48000

    def _advance(self, began: float) -> Deferred[None]:
        """The next item begins at ``began``: once it is open."""

        def switch(_: object) -> None:
            if not self.closed and self._next is not None:
                self._switch(began)

        return self._when_next().addCallback(switch)

    def _when_next(self) -> Deferred[None]:
        """Fires once the next item is open (fails once none can be)."""
        if self._fatal is not None:
            return fail(self._fatal)
        if self._next is not None or self.closed:
            return succeed(None)
        waiting: Deferred[None] = Deferred()
        self._waiters.append(waiting)
        if not self._opening:
            self._prefetch()
        return waiting

    def _switch(self, began: float) -> None:
        """The next item (open) is the current one from ``began`` on."""
        assert self._next is not None
        if self._medium is not None:
            self._medium.close()
        (self._index, self._medium), self._next = self._next, None
        self._began = began
        self._skip = False
        log.info(
            "{label}: item {n} of {count}, {name}",
            label=self.label,
            n=self._index + 1,
            count=len(self.items),
            name=self.items[self._index].name,
        )
        self._prefetch()

    def _prefetch(self, after: int | None = None) -> None:
        """Open the item after the current one (after ``after``: one passed over)."""
        if self.closed or self._opening or self._next is not None or self._fatal is not None:
            return
        index = ((self._index if after is None else after) + 1) % len(self.items)
        name = self.items[index].name
        self._opening = True

        def opened(medium: Medium) -> None:
            self._opening = False
            if self.closed:
                medium.close()
                return
            problem = self._misfit(medium.info)
            if problem is not None:
                medium.close()
                self._passed_over(index, name, problem)
                return
            self._failed_in_a_row = 0
            self.items[index].length = medium.pass_length()
            self._next = (index, medium)
            self._settled()

        def failed(failure: Failure) -> None:
            self._opening = False
            if not self.closed:
                value = failure.value
                self._passed_over(index, name, value.info if isinstance(value, WcsError) else "")

        self._open(name).addCallbacks(opened, failed)

    def _passed_over(self, index: int, name: str, why: str) -> None:
        """Item ``index`` cannot play: say so, and open the one after it."""
        log.warn("{label}: {name} passed over: {why}", label=self.label, name=name, why=why)
        self._failed_in_a_row += 1
        if self._failed_in_a_row >= len(self.items):
            self._fatal = NotFound("no file of the playlist can be played")
            self._settled()
            return
        self._prefetch(after=index)

    def _settled(self) -> None:
        waiters, self._waiters = self._waiters, []
        for waiting in waiters:
            if self._fatal is not None:
                waiting.errback(self._fatal)
            else:
                waiting.callback(None)

    def _misfit(self, info: MediaInfo) -> str | None:
        """Why an item cannot join this channel's viewers, if it cannot."""
        mine = self.info
        if (info.video is None) != (mine.video is None) or (info.audio is None) != (
            mine.audio is None
        ):
            return "its tracks differ from the first file's (video and audio must match)"
        if (
            info.audio is not None
            and mine.audio is not None
            and info.audio.aac_config != mine.audio.aac_config
        ):
            return "its AAC differs from the first file's (rate and channels must match)"
        if (
            info.video is not None
            and mine.video is not None
            and info.video.profile_level_id[:2] != mine.video.profile_level_id[:2]
        ):
            # the SDK's MSE player sets its decoder up once per picture size: a file
            # of another profile at the same size, then another size, freezes it
            return "its H.264 profile differs from the first file's"
        return None
