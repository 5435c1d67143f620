"""The supervisor's side of its workers: their log events, passed on as they come."""

from __future__ import annotations

import io
from typing import Any

from twisted.internet.task import Clock
from twisted.logger import Logger, formatEvent, globalLogPublisher, jsonFileLogObserver

from wcs.cluster.workers import WorkerProcess


class Supervisor:
    reactor = Clock()


def logged(text: str, **fields: Any) -> bytes:
    """What a worker writes on its standard output for one event."""
    out = io.StringIO()
    Logger(namespace="w", observer=jsonFileLogObserver(out)).info(text, **fields)
    return out.getvalue().encode()


def relogged(index: int, *pieces: bytes) -> list[list[dict]]:
    """The events the supervisor passes on from worker ``index``, after each piece."""
    seen: list[dict] = []
    after: list[list[dict]] = []
    globalLogPublisher.addObserver(seen.append)
    try:
        worker = WorkerProcess(Supervisor(), index, f"{index}.1")  # type: ignore[arg-type]
        for piece in pieces:
            worker.outReceived(piece)
            after.append([e for e in seen if e.get("worker") == f"{index}.1"])
    finally:
        globalLogPublisher.removeObserver(seen.append)
    return after


def test_each_event_goes_on_as_soon_as_its_line_is_complete():
    first, second = logged("first {n}", n=1), logged("second")
    steps = relogged(1, first[:20], first[20:] + second[:5], second[5:])
    assert steps[0] == []  # half an event: held
    assert [e.get("n") for e in steps[1]] == [1]  # the whole one at once, alone
    assert len(steps[2]) == 2 and steps[2][1]["log_format"].endswith("second")


def test_a_workers_event_is_formatted_from_its_values_as_the_worker_would():
    steps = relogged(2, logged("trying again in {delay:g} s ({n} of {most})", delay=1.0, n=1,
                               most=3))
    assert [formatEvent(e) for e in steps[-1]] == ["[worker 2] trying again in 1 s (1 of 3)"]


def test_an_event_with_a_field_json_cannot_carry_is_still_formatted():
    steps = relogged(1, logged("{why}; again in {delay:g} s", why=OSError("gone"), delay=2.0))
    assert [formatEvent(e) for e in steps[-1]] == ["[worker 1] gone; again in 2 s"]
