"""The media library: scanning, caching, re-checking what changed, and the
bounds (hidden files, symlinks out, depth, file count), on real files."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from twisted.internet.defer import Deferred, fail, succeed

from tools.makemedia import make_mp4
from wcs.files import library as library_module
from wcs.files.inspect import PLAYS, REENCODED, WILL_NOT_PLAY
from wcs.files.library import CHECKING, Library, scan

pytestmark = pytest.mark.unit


class Pool:
    """Runs pool work when told to, counting what ran (as the file pool would)."""

    def __init__(self, at_once: bool = True) -> None:
        self.at_once = at_once
        self.waiting: list[tuple[Deferred, object, tuple]] = []
        self.ran: list[str] = []

    def __call__(self, work, *args) -> Deferred:
        self.ran.append(work.__name__)
        if self.at_once:
            try:
                return succeed(work(*args))
            except Exception:
                return fail()
        waiting: Deferred = Deferred()
        self.waiting.append((waiting, work, args))
        return waiting

    def finish_one(self) -> None:
        waiting, work, args = self.waiting.pop(0)
        waiting.callback(work(*args))


class Clock:
    now = 100.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    top = tmp_path_factory.mktemp("library")
    make_mp4(top / "good.mp4", seconds=2)
    make_mp4(top / "b.mp4", seconds=2, profile="high", bframes=3)
    (top / "sub").mkdir()
    make_mp4(top / "sub" / "nested.MP4", seconds=2, audio=False)
    (top / "text.mp4").write_text("not an mp4\n")
    (top / "notes.txt").write_text("ignored\n")
    (top / ".recording.mp4").write_bytes((top / "good.mp4").read_bytes())
    return top


def listed(library: Library) -> dict[str, dict]:
    result: list[Library] = []
    library.listing().addCallback(result.append)
    assert result, "the listing did not finish"
    return {item["name"]: item for item in result[0].page()["items"]}


def test_lists_each_playable_file_with_its_verdict(folder):
    items = listed(Library(folder, Pool()))
    assert sorted(items) == ["b.mp4", "good.mp4", "sub/nested.MP4", "text.mp4"]
    good = items["good.mp4"]
    assert (good["verdict"], good["uri"], good["width"], good["height"]) == \
        (PLAYS, "vod://good.mp4", 640, 360)
    assert good["video"].startswith("H.264") and good["audio"].startswith("AAC")
    assert good["faststart"] is True and good["duration"] == pytest.approx(2.0, abs=0.1)
    assert "path" not in good  # nothing says where the media folder is
    assert items["b.mp4"]["verdict"] == REENCODED and items["b.mp4"]["b_frames"]
    assert items["sub/nested.MP4"]["audio"] == "" and items["sub/nested.MP4"]["verdict"] == PLAYS
    assert items["text.mp4"]["verdict"] == WILL_NOT_PLAY and items["text.mp4"]["reason"]


def test_a_listing_answers_before_checks_end_and_they_go_one_batch_at_a_time(folder):
    pool = Pool(at_once=False)
    library = Library(folder, pool)
    answered: list[Library] = []
    library.listing().addCallback(answered.append)
    library.listing().addCallback(answered.append)  # shares the scan
    assert pool.ran == ["scan"]
    pool.finish_one()
    assert len(answered) == 2
    page = library.page()
    assert page["checking"] == 4 and {i["verdict"] for i in page["items"]} == {CHECKING}
    assert pool.ran == ["scan", "check"] and len(pool.waiting) == 1  # one batch at once
    pool.finish_one()
    assert library.page()["checking"] == 0


def test_cached_until_stale_then_only_changed_files_are_checked_again(folder, tmp_path):
    top = tmp_path / "media"
    shutil.copytree(folder, top)
    clock, pool = Clock(), Pool()
    library = Library(top, pool, clock=clock)
    listed(library)
    assert pool.ran == ["scan", "check"]
    clock.now += 1
    listed(library)
    assert pool.ran == ["scan", "check"]  # fresh: no scan at all
    clock.now += 5
    listed(library)
    assert pool.ran == ["scan", "check", "scan"]  # nothing changed: nothing checked
    (top / "text.mp4").unlink()
    shutil.copy(top / "good.mp4", top / "copy.mp4")
    os.utime(top / "b.mp4", ns=(1, 1))
    clock.now += 5
    seen: list[list[str]] = []
    checked = library_module.check
    library_module.check = lambda where, names: seen.append(names) or checked(where, names)
    try:
        items = listed(library)
    finally:
        library_module.check = checked
    assert seen == [["b.mp4", "copy.mp4"]]
    assert "text.mp4" not in items and items["copy.mp4"]["verdict"] == PLAYS


def test_bounds_hidden_symlinks_out_depth_and_count(folder, tmp_path):
    top = tmp_path / "media"
    shutil.copytree(folder, top)
    outside = tmp_path / "outside.mp4"
    shutil.copy(folder / "good.mp4", outside)
    (top / "out.mp4").symlink_to(outside)
    (top / "in.mp4").symlink_to(top / "good.mp4")
    (top / "loop").symlink_to(top)
    deep = top
    for level in range(20):
        deep = deep / f"d{level}"
    deep.mkdir(parents=True)
    shutil.copy(folder / "good.mp4", deep / "deep.mp4")
    names = [name for name, _, _ in scan(top).found]
    assert "out.mp4" not in names and "in.mp4" in names and ".recording.mp4" not in names
    assert not any(name.endswith("deep.mp4") for name in names)
    assert not any(name.startswith("loop/") for name in names)  # not followed: no loop
    limited = scan(top, max_files=2)
    assert len(limited.found) == 2 and limited.truncated


def test_pages_and_filter(folder):
    library = Library(folder, Pool())
    listed(library)
    page = library.page(offset=1, limit=2)
    assert page["total"] == 4 and page["files"] == 4 and len(page["items"]) == 2
    assert [i["name"] for i in page["items"]] == ["good.mp4", "sub/nested.MP4"]
    found = library.page(contains="NESTED")
    assert found["total"] == 1 and found["items"][0]["name"] == "sub/nested.MP4"


def test_a_batch_that_fails_shows_its_files_as_not_playable(folder, monkeypatch):
    def broken(where, names):
        raise RuntimeError("disk on fire")
    monkeypatch.setattr(library_module, "check", broken)
    items = listed(Library(folder, Pool()))
    assert {item["verdict"] for item in items.values()} == {WILL_NOT_PLAY}
    assert items["good.mp4"]["reason"] == "could not be checked"


def test_a_stale_listing_answers_at_once_and_the_rescan_shows_next_time(folder, tmp_path):
    top = tmp_path / "media"
    shutil.copytree(folder, top)
    clock, pool = Clock(), Pool(at_once=False)
    library = Library(top, pool, clock=clock)
    library.listing()
    pool.finish_one()  # the first scan: waited for
    while pool.waiting:
        pool.finish_one()  # the checks
    shutil.copy(top / "good.mp4", top / "new.mp4")
    clock.now += 5
    answered: list[Library] = []
    library.listing().addCallback(answered.append)
    assert answered and "new.mp4" not in library.items  # at once, from the last scan
    assert pool.ran.count("scan") == 2
    library.listing()  # the rescan is under way: not another
    assert pool.ran.count("scan") == 2
    pool.finish_one()
    assert library.items["new.mp4"].report is None  # found; being checked
