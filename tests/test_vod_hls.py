"""Files as HLS VOD (wcs/sources/vod_hls.py): one index per file version, kept
within its caps; segments made from the file's bytes; refusals typed."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from twisted.internet.defer import Deferred

from tools.makemedia import make_mp4
from wcs.errors import InvalidName, NotFound, WrongFormat
from wcs.sources import Sources, vod_hls
from wcs.sources.vod_hls import VodHls


def result(deferred: Deferred):
    found = []
    deferred.addBoth(found.append)
    assert found, "not fired"
    value = found[0]
    if hasattr(value, "raiseException"):
        value.raiseException()
    return value


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    made = tmp_path_factory.mktemp("vodhls")
    make_mp4(made / "a.mp4", seconds=14, profile="main")
    make_mp4(made / "b.mp4", seconds=4, profile="baseline")
    (made / "text.mp4").write_text("not a film")
    return made


def hls(folder: Path) -> VodHls:
    return VodHls(Sources(folder, None, folder / ".cache"))  # files run inline


def test_an_index_is_built_once_per_version_of_a_file(folder, tmp_path):
    vod = hls(folder)
    first = result(vod.index("a.mp4"))
    assert result(vod.index("./a.mp4")) is first  # one file, however it is spelt
    assert [round(s.duration) for s in first.segments] == [6, 6, 2]
    playlist = first.playlist("?token=x").decode()
    assert playlist.count("#EXTINF:") == 3 and "2.ts?token=x" in playlist
    assert "#EXT-X-TARGETDURATION:6" in playlist
    copy = tmp_path / "a.mp4"
    copy.write_bytes((folder / "a.mp4").read_bytes())
    other = hls(tmp_path)
    before = result(other.index("a.mp4"))
    os.utime(copy, ns=(1, 1))  # a new version: a new index and tag
    after = result(other.index("a.mp4"))
    assert after is not before and after.etag != before.etag


def test_indexes_are_let_go_past_their_caps(folder, monkeypatch):
    vod = hls(folder)
    a = result(vod.index("a.mp4"))
    monkeypatch.setattr(vod_hls, "MAX_INDEX_BYTES", a.weight + 1)
    result(vod.index("b.mp4"))
    assert result(vod.index("a.mp4")) is not a  # a was let go, and is made again
    assert vod.weight <= a.weight + 1 + result(vod.index("b.mp4")).weight


def test_a_segment_is_a_ts_of_its_own_samples(folder):
    vod = hls(folder)
    index = result(vod.index("a.mp4"))
    data = result(vod.segment(index, 1))
    assert data[:1] == b"G" and len(data) % 188 == 0
    assert result(vod.segment(index, 1)) == data  # the same bytes every time
    with pytest.raises(NotFound, match="no segment 3: the file has segments 0 to 2"):
        result(vod.segment(index, 3))


@pytest.mark.parametrize(("name", "error", "says"), [
    ("nothing.mp4", NotFound, "File not found"),
    ("../a.mp4", InvalidName, "'..' is not allowed"),
    ("text.mp4", WrongFormat, "File has wrong format"),
])
def test_refusals_are_typed(folder, name, error, says):
    with pytest.raises(error, match=says):
        result(hls(folder).index(name))
