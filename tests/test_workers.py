"""The supervisor's side of its workers: their log events, passed on as they come."""

from __future__ import annotations

from twisted.internet.task import Clock
from twisted.logger import Logger, globalLogPublisher, jsonFileLogObserver

from wcs.cluster.workers import WorkerProcess


class Supervisor:
    reactor = Clock()


def test_each_event_goes_on_as_soon_as_its_line_is_complete():
    import io

    out = io.StringIO()
    observer = jsonFileLogObserver(out)
    Logger(namespace="w", observer=observer).info("first {n}", n=1)
    Logger(namespace="w", observer=observer).info("second")
    first, second = out.getvalue().encode().split(b"\n")[:2]
    seen: list[dict] = []
    globalLogPublisher.addObserver(seen.append)
    try:
        worker = WorkerProcess(Supervisor(), 1, "1.1")  # type: ignore[arg-type]
        worker.outReceived(first[:20])
        assert not [e for e in seen if e.get("worker") == "1.1"]  # half an event: held
        worker.outReceived(first[20:] + b"\n" + second[:5])
        got = [e for e in seen if e.get("worker") == "1.1"]
        assert [e.get("n") for e in got] == [1]  # the whole one at once, alone
        worker.outReceived(second[5:] + b"\n")
        got = [e for e in seen if e.get("worker") == "1.1"]
        assert len(got) == 2 and got[1]["log_format"].endswith("second")
    finally:
        globalLogPublisher.removeObserver(seen.append)


def test_a_workers_event_is_formatted_from_its_values_as_the_worker_would():
    import io

    from twisted.logger import formatEvent

    out = io.StringIO()
    Logger(namespace="w", observer=jsonFileLogObserver(out)).warn(
        "trying again in {delay:g} s ({n} of {most})", delay=1.0, n=1, most=3)
    seen: list[dict] = []
    globalLogPublisher.addObserver(seen.append)
    try:
        WorkerProcess(Supervisor(), 2, "2.1").outReceived(out.getvalue().encode())  # type: ignore[arg-type]
    finally:
        globalLogPublisher.removeObserver(seen.append)
    assert [formatEvent(e) for e in seen if e.get("worker") == "2.1"] == [
        "[worker 2] trying again in 1 s (1 of 3)"]


def test_an_event_with_a_field_json_cannot_carry_is_still_formatted():
    import io

    from twisted.logger import formatEvent

    out = io.StringIO()
    Logger(namespace="w", observer=jsonFileLogObserver(out)).warn(
        "{why}; again in {delay:g} s", why=OSError("gone"), delay=2.0)
    seen: list[dict] = []
    globalLogPublisher.addObserver(seen.append)
    try:
        WorkerProcess(Supervisor(), 1, "1.1").outReceived(out.getvalue().encode())  # type: ignore[arg-type]
    finally:
        globalLogPublisher.removeObserver(seen.append)
    assert [formatEvent(e) for e in seen if e.get("worker") == "1.1"] == [
        "[worker 1] gone; again in 2 s"]
