"""``log_format=json`` with the real ``twistd wcsvod``: one process or two workers,
``-n`` (standard output) or ``--logfile``, every line of the log is a JSON object
with the fields, and a play's lines name its session and stream; the default
stays Twisted's text; a bad value stops the start naming the key."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import pytest

from testkit.harness import ServerProcess, run
from testkit.rtc_client import play

NAME = "vod://main.mp4"
FIELDS = {"timestamp", "level", "logger", "worker", "session", "stream", "message"}
TIMESTAMP = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
LEVELS = {"debug", "info", "warn", "error", "critical"}


def json_lines(text: str) -> list[dict]:
    """Every line of ``text`` as JSON with the fields; fails on any other line."""
    events = []
    for number, line in enumerate(text.splitlines(), 1):
        try:
            event = json.loads(line)
        except ValueError:
            raise AssertionError(f"line {number} is not JSON: {line!r}") from None
        assert isinstance(event, dict) and FIELDS <= set(event), line
        assert TIMESTAMP.match(event["timestamp"]) and event["level"] in LEVELS, line
        assert isinstance(event["message"], str) and event["message"], line
        events.append(event)
    return events


def the_log(server: ServerProcess, logfile: Path | None) -> str:
    return logfile.read_text(errors="replace") if logfile else server.log()


def wait_for(server: ServerProcess, logfile: Path | None, wanted, what: str,
             seconds: float = 15) -> list[dict]:
    """The log's events once ``wanted(events)`` holds (workers' lines come a bit later)."""
    deadline = time.monotonic() + seconds
    while True:
        events = json_lines(the_log(server, logfile))
        if wanted(events) or time.monotonic() > deadline:
            assert wanted(events), f"no {what} in the log:\n{the_log(server, logfile)[-4000:]}"
            return events
        time.sleep(0.2)


@pytest.mark.parametrize("workers", ["1", "2"], ids=["one-process", "two-workers"])
@pytest.mark.parametrize("to_file", [False, True], ids=["stdout", "logfile"])
def test_every_line_is_json_and_a_play_s_lines_name_its_session_and_stream(
        start_server, media, tmp_path, workers, to_file):
    logfile = tmp_path / "twistd-json.log" if to_file else None
    # ServerProcess runs [*wrap, twistd, -n, ...]: the wrapper adds --logfile
    wrap = ["sh", "-c", f'exec "$0" --logfile={logfile} "$@"'] if logfile else None
    server = start_server(wrap=wrap, media_dir=str(media), workers=workers,
                          log_format="json")

    got = run(play(server.ws_url, NAME, stop_after=2, timeout=40))
    assert got.statuses[:2] == ["PENDING", "PLAYING"], got.statuses

    def played(events: list[dict]) -> bool:
        return any(event["stream"] == NAME and event["session"]
                   and event["message"].endswith(f"({NAME}): PLAYING") for event in events)

    events = wait_for(server, logfile, played, f"PLAYING line of {NAME}")
    playing = next(event for event in events
                   if event["stream"] == NAME and event["message"].endswith("PLAYING"))
    session = playing["session"]
    assert playing["logger"] == "wcs.signalling.session" and playing["level"] == "info"
    assert playing["message"].startswith(f"session {session} stream ")
    assert any(event["session"] == session and event["stream"] is None
               and "opened from" in event["message"] for event in events)
    assert any(event["stream"] is None and event["session"] is None for event in events)
    assert any(event["message"].startswith("twistd ") for event in events)  # twistd's own
    if workers == "2":
        assert re.fullmatch(r"[12]\.\d+", playing["worker"]), playing
        assert not playing["message"].startswith("[worker")  # the field says it
        workers_seen = {event["worker"] for event in events} - {None}
        assert {worker.split(".")[0] for worker in workers_seen} == {"1", "2"}, workers_seen
        assert any(event["worker"] is None for event in events)  # the supervisor's own
        assert any(event["worker"] is None and "starting 2 worker processes"
                   in event["message"] for event in events)
    else:
        assert {event["worker"] for event in events} == {None}

    server.stop()  # its last lines too
    assert server.process.returncode in (0, -15), (  # not killed after 10 s
        f"ended {server.process.returncode}; stdout:\n{server.log()[-3000:]}")
    events = json_lines(the_log(server, logfile))
    assert events[-1]["message"] == "Server Shut Down."
    if logfile:
        assert server.log().strip() == "", "nothing on standard output with --logfile"


def test_the_default_stays_twisted_s_text(start_server, media):
    server = start_server(media_dir=str(media), workers="2")
    got = run(play(server.ws_url, NAME, stop_after=1, timeout=40))
    assert "PLAYING" in got.statuses, got.statuses
    pattern = re.compile(r"^\S+ \[wcs\.signalling\.session#info\] \[worker [12]\] "
                         rf"session \S+ stream \S+ \({re.escape(NAME)}\): PLAYING$", re.M)
    deadline = time.monotonic() + 15
    while not pattern.search(server.log()) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert pattern.search(server.log()), server.log()[-4000:]
    assert not any(line.startswith("{") for line in server.log().splitlines())


@pytest.mark.parametrize("workers", ["1", "2"])
def test_a_bad_value_stops_the_start_naming_log_format(start_server, workers):
    with pytest.raises(AssertionError, match=r"log_format='xml': must be text or json"):
        start_server(workers=workers, log_format="xml")
