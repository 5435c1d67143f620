"""Opening a location: local files and S3 objects behind one door, with an
S3 endpoint faked at the HTTP level (signed ranged GETs answered from a real file)."""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest
from twisted.internet.defer import Deferred, succeed
from twisted.internet.task import Clock
from twisted.python.failure import Failure
from twisted.web.client import ResponseDone
from twisted.web.http_headers import Headers

from tools.makemedia import make_mp4
from wcs.errors import InvalidName, LimitReached, NotFound, SourceUnavailable, WrongFormat
from wcs.sources import OpenedMedia, Sources
from wcs.sources.s3 import S3Client


@pytest.fixture(scope="module")
def media(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("sources")
    make_mp4(folder / "clip.mp4", seconds=2, width=320, height=180)
    make_mp4(folder / "tail.mp4", seconds=2, width=320, height=180, faststart=False)
    (folder / "text.mp4").write_text("not a video\n")
    return folder


class Response:
    def __init__(self, code: int, body: bytes, headers: dict[str, str]) -> None:
        self.code = code
        self.body = body
        self.length = len(body)
        self.headers = Headers({k: [v] for k, v in headers.items()})

    def deliverBody(self, protocol) -> None:  # noqa: N802 (Twisted's name)
        protocol.dataReceived(self.body)
        protocol.connectionLost(Failure(ResponseDone()))


class FakeS3:
    """``GET /bucket/key`` with a Range header, from files on disk; records each request."""

    def __init__(self, objects: dict[str, bytes]) -> None:
        self.objects = objects
        self.requests: list[tuple[str, dict[str, list[str]]]] = []

    def get(self, url: str, headers: dict[str, list[str]]):
        self.requests.append((url, headers))
        key = url.split("/", 3)[3]
        data = self.objects.get(key)
        if data is None:
            return succeed(Response(404, b"<Code>NoSuchKey</Code>", {}))
        start, end = map(int, re.match(r"bytes=(\d+)-(\d+)", headers["Range"][0]).groups())
        end = min(end, len(data) - 1)
        return succeed(Response(206, data[start:end + 1],
                                {"Content-Range": f"bytes {start}-{end}/{len(data)}"}))


def opened(deferred) -> OpenedMedia:
    out: list = []
    deferred.addBoth(out.append)
    assert out, "not opened at once"
    if isinstance(out[0], Failure):
        out[0].raiseException()
    return out[0]


def sources_for(media: Path, tmp_path: Path, fake: FakeS3 | None = None,
                access_key: str = "") -> Sources:
    client = S3Client(Clock(), endpoint="http://s3.test", timeout=5.0, access_key=access_key,
                      secret_key="secret" if access_key else "", http=fake or FakeS3({}))
    return Sources(media, client, tmp_path / "cache")


def every_sample(source: OpenedMedia) -> list:
    out = []
    for sample in source.samples():
        assert source.ready()
        out.append(sample)
    return out


def test_a_local_file(media, tmp_path):
    source = opened(sources_for(media, tmp_path).open("clip.mp4", "vod://clip.mp4"))
    assert source.info.video.width == 320 and source.info.audio is not None
    got = every_sample(source)
    assert sum(s.kind == "video" for s in got) == 60 and got[0].keyframe
    source.close()


@pytest.mark.parametrize("location, error", [
    ("absent.mp4", NotFound), ("../x.mp4", InvalidName), ("text.mp4", WrongFormat),
    ("s3/BAD_BUCKET/x.mp4", InvalidName), ("s3/bucket/", InvalidName),
    ("s3/bucket/a/../b.mp4", InvalidName),
])
def test_what_cannot_open_fails_with_its_kind(media, tmp_path, location, error):
    with pytest.raises(error):
        opened(sources_for(media, tmp_path).open(location, location))


def test_an_s3_object_plays_the_same_samples_as_the_file(media, tmp_path):
    data = (media / "clip.mp4").read_bytes()
    fake = FakeS3({"bucket/dir/clip.mp4": data})
    source = opened(sources_for(media, tmp_path, fake, access_key="AKIATEST").open(
        "s3/bucket/dir/clip.mp4", "vod://s3/bucket/dir/clip.mp4"))
    local = opened(sources_for(media, tmp_path).open("clip.mp4", "clip"))
    assert [s.data for s in every_sample(source)] == [s.data for s in every_sample(local)]
    url, headers = fake.requests[0]
    assert url == "http://s3.test/bucket/dir/clip.mp4"
    assert headers["Authorization"][0].startswith("AWS4-HMAC-SHA256 Credential=AKIATEST/")
    assert "secret" not in repr(headers)
    cache = list((tmp_path / "cache").iterdir())
    assert len(cache) == 1
    source.close()
    local.close()
    assert list((tmp_path / "cache").iterdir()) == []


def test_an_s3_object_with_moov_at_the_end(media, tmp_path):
    fake = FakeS3({"bkt/tail.mp4": (media / "tail.mp4").read_bytes()})
    source = opened(sources_for(media, tmp_path, fake).open("s3/bkt/tail.mp4", "tail"))
    assert source.info.video is not None
    assert "Authorization" not in fake.requests[0][1]  # no credentials: unsigned
    source.close()


def test_s3_errors_are_typed(media, tmp_path):
    with pytest.raises(NotFound):
        opened(sources_for(media, tmp_path, FakeS3({})).open("s3/bkt/none.mp4", "x"))

    class Denied(FakeS3):
        def get(self, url, headers):
            return succeed(Response(403, b"<Code>AccessDenied</Code>", {}))

    with pytest.raises(SourceUnavailable, match="denied"):
        opened(sources_for(media, tmp_path, Denied({})).open("s3/bkt/x.mp4", "x"))


def test_check_opens_local_files_and_only_names_s3_objects(media, tmp_path):
    sources = sources_for(media, tmp_path)
    assert opened(sources.check("clip.mp4")) == "Available"
    assert opened(sources.check("s3/bucket/none.mp4")).startswith("Available")
    with pytest.raises(WrongFormat):
        opened(sources.check("text.mp4"))
    with pytest.raises(InvalidName):
        opened(sources.check("s3/B/x"))


def test_local_files_open_through_the_runner_and_a_flood_is_refused_not_queued(media, tmp_path):
    """Opening and checking go to ``run`` (the server's thread pool); past
    ``max_pending`` waiting at once, the next is refused at once, naming the key."""
    waiting: list = []

    def run(work, *args):
        deferred = Deferred()
        waiting.append((deferred, work, args))
        return deferred

    client = S3Client(Clock(), endpoint="http://s3.test", timeout=5.0, http=FakeS3({}))
    sources = Sources(media, client, tmp_path / "cache", run=run, max_pending=2)
    first, second = sources.open("clip.mp4", "a"), sources.check("clip.mp4")
    assert not first.called and not second.called and len(waiting) == 2
    with pytest.raises(LimitReached, match=r"max_pending_opens=2"):
        opened(sources.open("clip.mp4", "c"))
    for deferred, work, args in waiting:
        deferred.callback(work(*args))
    media_opened = opened(first)
    assert media_opened.info.video is not None and opened(second) == "Available"
    assert sources.pending == 0
    media_opened.close()
    again = sources.check("clip.mp4")  # room again: it goes to the runner
    assert not again.called and len(waiting) == 3


def test_one_spelling_of_a_location(media, tmp_path):
    import os

    (media / "sub").mkdir(exist_ok=True)
    os.symlink(media / "clip.mp4", media / "sub" / "link.mp4")
    try:
        sources = sources_for(media, tmp_path)
        for alias in ("clip.mp4", "./clip.mp4", ".//clip.mp4", "sub/link.mp4"):
            assert sources.canonical(alias) == "clip.mp4", alias
        assert sources.canonical("s3/bucket/a/b.mp4") == "s3/bucket/a/b.mp4"
        with pytest.raises(NotFound):
            sources.canonical("absent.mp4")
        for refused in ("../clip.mp4", "sub/../clip.mp4"):  # refused, not an alias
            with pytest.raises(InvalidName):
                sources.canonical(refused)
    finally:
        (media / "sub" / "link.mp4").unlink()


def test_a_file_opened_before_its_opus_was_cached_finds_the_cache_later(media, tmp_path):
    """A broadcast opened while nothing was cached transcodes; once its own
    transcoding has had the entry made, its next pass replays it."""
    from wcs.sources.opus_cache import OpusCache

    cache = OpusCache(tmp_path / "opus", 2**30)
    client = S3Client(Clock(), endpoint="http://s3.test", timeout=5.0, http=FakeS3({}))
    sources = Sources(media, client, tmp_path / "cache", opus=cache)
    source = opened(sources.open("clip.mp4", "vod-live://clip.mp4"))
    reader = source._reader
    assert reader.find_opus is not None and reader.find_opus() is None  # nothing yet
    assert any(s.codec == "opus" for s in source.samples())  # transcoded: the job queued
    deadline = time.monotonic() + 20
    while reader.find_opus is not None and reader.find_opus() is None:
        assert time.monotonic() < deadline, "the cache entry was not made"
        time.sleep(0.05)
    opus = [s for s in source.samples() if s.codec == "opus"]  # the next pass
    assert opus and reader.find_opus is None  # the cache replayed, asked no more
    source.close()
    cache.close()
