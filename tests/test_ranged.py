"""A remote object as a file: chunks fetched ahead of the reader, bounded,
retried, and given up with the reason; with a fake fetch and a fake clock."""

from __future__ import annotations

import struct

import pytest
from twisted.internet.defer import Deferred
from twisted.internet.task import Clock

from wcs.errors import NotFound, SourceUnavailable, WrongFormat
from wcs.sources import ranged
from wcs.sources.ranged import CHUNK, NotYetDownloaded, RangedFile


class Remote:
    """The object's bytes, and every ranged GET made for them, answered by hand."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.asked: list[tuple[int, int, Deferred]] = []

    def fetch(self, start: int, end: int) -> Deferred:
        waiting: Deferred = Deferred()
        self.asked.append((start, end, waiting))
        return waiting

    def pending(self) -> list[int]:
        return [start // CHUNK for start, _, d in self.asked if not d.called]

    def answer(self, index: int | None = None, error: Exception | None = None) -> None:
        for start, end, waiting in self.asked:
            if not waiting.called and (index is None or start // CHUNK == index):
                if error is None:
                    waiting.callback(self.data[start:end + 1])
                else:
                    waiting.errback(error)
                return
        raise AssertionError(f"no request for chunk {index} is waiting")


@pytest.fixture
def remote_file(tmp_path):
    remote = Remote(bytes(range(256)) * (CHUNK * 20 // 256))
    clock = Clock()
    file = RangedFile(remote.fetch, len(remote.data), tmp_path / "x.part", "test", clock)
    yield remote, file, clock
    file.close()


def test_reads_what_arrived_and_refuses_what_did_not(remote_file):
    remote, file, _ = remote_file
    assert file.ensure(0, 10).called is False
    remote.answer(0)
    assert file.read(10) == remote.data[:10]
    file.seek(3 * CHUNK)
    with pytest.raises(NotYetDownloaded):
        file.read(1)


def test_the_download_runs_a_bounded_distance_ahead_two_at_a_time(remote_file):
    remote, file, _ = remote_file
    assert file.ready() is False
    assert remote.pending() == [0, 1]  # PARALLEL requests at a time
    for _ in range(30):
        if not remote.pending():
            break
        remote.answer()
        file.prefetch()
    fetched = sorted(start // CHUNK for start, _, _ in remote.asked)
    assert fetched == list(range(ranged.AHEAD // CHUNK + 1))  # never past AHEAD
    assert file.ready() is True
    file.seek(6 * CHUNK)
    file.read(1)  # reading on moves the window
    assert remote.pending() == [9, 10]
    for _ in range(30):
        if not remote.pending():
            break
        remote.answer()
        file.prefetch()
    assert max(start // CHUNK for start, _, _ in remote.asked) == \
        (6 * CHUNK + 1 + ranged.AHEAD) // CHUNK


def test_a_failed_chunk_is_tried_again_after_a_delay(remote_file):
    remote, file, clock = remote_file
    file.prefetch()
    remote.answer(0, SourceUnavailable("S3 endpoint unreachable"))
    assert 0 not in remote.pending()
    clock.advance(ranged.RETRY_DELAY)
    assert 0 in remote.pending()
    remote.answer(0)
    assert file.has(0, CHUNK)


def test_a_chunk_given_up_fails_the_reader_when_it_gets_there(remote_file):
    remote, file, clock = remote_file
    file.prefetch()
    remote.answer(0)
    for _ in range(ranged.TRIES):
        remote.answer(1, SourceUnavailable("S3 download stalled"))
        clock.advance(ranged.RETRY_DELAY)
    file.seek(CHUNK - 10)
    with pytest.raises(SourceUnavailable) as lost:
        file.ready()
    assert lost.value.info == "S3 download stalled"
    failure = []
    file.ensure(CHUNK, 10).addErrback(failure.append)
    assert failure[0].value.info == "S3 download stalled"


def test_a_missing_object_is_not_tried_again(remote_file):
    remote, file, clock = remote_file
    waiting = file.ensure(0, 10)
    errors = []
    waiting.addErrback(errors.append)
    remote.answer(0, NotFound())
    clock.advance(10)
    assert errors[0].check(NotFound) and 0 not in remote.pending()


def test_a_short_chunk_is_a_failure(remote_file):
    remote, file, clock = remote_file
    file.prefetch()
    start, end, waiting = remote.asked[0]
    waiting.callback(remote.data[start:end])  # one byte short
    assert not file.has(0, CHUNK)
    clock.advance(ranged.RETRY_DELAY)
    assert 0 in remote.pending()


def test_close_cancels_the_transfers_and_removes_the_cache(remote_file, tmp_path):
    remote, file, _ = remote_file
    file.prefetch()
    assert (tmp_path / "x.part").exists()
    file.close()
    assert not (tmp_path / "x.part").exists()
    assert all(waiting.called for _, _, waiting in remote.asked)


def box(kind: str, size: int) -> bytes:
    return struct.pack(">I4s", size, kind.encode())


def mp4_layout(*boxes: tuple[str, int]) -> bytes:
    """Box headers padded to their sizes."""
    return b"".join(box(kind, size) + b"\x00" * (size - 8) for kind, size in boxes)


def prepared(data: bytes, tmp_path, clock: Clock):
    remote = Remote(data)
    file = RangedFile(remote.fetch, len(data), tmp_path / "p.part", "test", clock)
    result: list = []
    ranged.prepare(file).addBoth(result.append)
    for _ in range(100):
        if result or not remote.pending():
            break
        remote.answer()
    return result[0], remote, file


def test_prepare_fetches_moov_first_wherever_it_is(tmp_path):
    media = 5 * CHUNK
    data = mp4_layout(("ftyp", 32), ("mdat", media), ("moov", 200_000))
    found, remote, file = prepared(data, tmp_path, Clock())
    assert [b.kind for b in found] == ["ftyp", "mdat", "moov"]
    moov = found[2]
    assert file.has(moov.offset, moov.size)  # all of moov, though it is last
    assert file.has(0, 2 * CHUNK)  # and the start of the media
    assert not file.has(4 * CHUNK, 1)  # but not the rest of it
    file.close()


def test_prepare_refuses_a_damaged_or_huge_layout(tmp_path):
    damaged = mp4_layout(("ftyp", 32)) + box("moov", 10 * CHUNK)
    failure, _, file = prepared(damaged, tmp_path, Clock())
    assert failure.check(WrongFormat) and "truncated" in failure.value.info
    file.close()
    huge = mp4_layout(("ftyp", 32), ("moov", ranged.MAX_MOOV + 8))
    failure, _, file = prepared(huge, tmp_path, Clock())
    assert failure.check(WrongFormat) and "too large" in failure.value.info
    file.close()
