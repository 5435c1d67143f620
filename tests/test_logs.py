"""``log_format=json``: each event one JSON line with its fields, whatever its
text holds; a worker's events keep their worker; twistd's file, chosen as twistd
would; and the key's values."""

from __future__ import annotations

import io
import json
import re
import signal
import sys
from pathlib import Path

import pytest
from twisted.application import service
from twisted.logger import (
    ILogObserver,
    Logger,
    LogLevel,
    eventAsJSON,
    eventFromJSON,
    formatEvent,
)

from wcs import config, logs
from wcs.config import ConfigError

NOW = 1_800_000_000.1239
TIMESTAMP = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
FIELDS = {"timestamp", "level", "logger", "worker", "session", "stream", "message"}


def emitted(emit) -> list[dict]:
    """The events ``emit(log)`` logs through a Logger of namespace ``wcs.test``."""
    events: list[dict] = []
    emit(Logger(namespace="wcs.test", observer=events.append))
    return events


def line_of(event: dict) -> dict:
    """The event's JSON line, checked to be one ASCII line, parsed."""
    line = logs.as_json(event)
    assert line is not None and line.endswith("\n") and "\n" not in line[:-1]
    assert line.isascii()
    parsed = json.loads(line)
    assert set(parsed) == FIELDS
    return parsed


def test_the_fields_of_a_session_and_stream_event():
    [event] = emitted(lambda log: log.info(
        "session {session} stream {media_session} ({name}): {status}",
        session="s-1", media_session="m-1", name="vod://main.mp4", status="PLAYING"))
    event["log_time"] = NOW
    assert line_of(event) == {
        "timestamp": "2027-01-15T08:00:00.123Z", "level": "info", "logger": "wcs.test",
        "worker": None, "session": "s-1", "stream": "vod://main.mp4",
        "message": "session s-1 stream m-1 (vod://main.mp4): PLAYING"}


def test_events_about_no_session_or_stream_have_nulls_and_a_real_timestamp():
    [event] = emitted(lambda log: log.info("open-file limit: {n}", n=1024))
    parsed = line_of(event)
    assert parsed["session"] is None and parsed["stream"] is None
    assert TIMESTAMP.match(parsed["timestamp"])


def test_every_level_by_its_name():
    events = emitted(lambda log: [log.emit(level, "at {level_name}", level_name=level.name)
                                  for level in LogLevel.iterconstants()])
    assert [line_of(event)["level"] for event in events] == [
        "debug", "info", "warn", "error", "critical"]


def test_a_failure_s_traceback_follows_its_message():
    def fail(log: Logger) -> None:
        try:
            1 / 0
        except ZeroDivisionError:
            log.failure("stream {id} ({name!r}) failed", id="st-1", name="show")

    [event] = emitted(fail)
    parsed = line_of(event)
    assert parsed["level"] == "critical" and parsed["stream"] == "show"
    first, rest = parsed["message"].split("\n", 1)
    assert first == "stream st-1 ('show') failed"
    assert rest.startswith("Traceback") and "ZeroDivisionError" in rest
    assert "1 / 0" in rest or "in fail" in rest


def test_non_ascii_text_survives_as_json_escapes():
    text = "Ωmega ünïcode 漢字 🎬 \udcff"  # the last one a lone surrogate (a bad file name)
    [event] = emitted(lambda log: log.info("opened {path}", path=text, name="vod://é.mp4"))
    parsed = line_of(event)
    assert parsed["message"] == f"opened {text}"
    assert parsed["stream"] == "vod://é.mp4"


def test_braces_in_values_and_formats_are_text():
    [value, escaped, broken] = emitted(lambda log: [
        log.info("got {body}", body='{"a": {b}} {name}'),
        log.info("{{literal}} and {x}", x=1),
        log.info("missing {field}"),
    ])
    assert line_of(value)["message"] == 'got {"a": {b}} {name}'
    assert line_of(escaped)["message"] == "{literal} and 1"
    assert "Unable to format event" in line_of(broken)["message"]  # said, not raised


def test_newlines_in_a_message_stay_in_one_line():
    [event] = emitted(lambda log: log.warn("first\nsecond\r\nthird {x}", x="a\nb"))
    assert line_of(event)["message"] == "first\nsecond\r\nthird a\nb"


def test_an_event_with_nothing_to_say_is_no_line_as_in_the_text_log():
    assert logs.as_json({"log_time": NOW, "log_level": LogLevel.info}) is None


def test_an_event_that_cannot_be_read_is_still_one_line():
    class Weird:
        def __str__(self) -> str:
            raise RuntimeError("no")

    [event] = emitted(lambda log: log.info("about {session}", session=Weird()))
    parsed = json.loads(logs.as_json(event))
    assert parsed["level"] == "error" and "unable to format" in parsed["message"]


def test_a_worker_s_event_keeps_its_worker_its_level_and_its_traceback():
    def fail(log: Logger) -> None:
        try:
            raise ValueError("bad frame")
        except ValueError:
            log.failure("session {session}: {message} failed", session="s-9",
                        message="playStream")

    [event] = emitted(fail)
    # as the worker sends it and the supervisor reads it (wcs.cluster.workers)
    received = logs.mark_worker(eventFromJSON(eventAsJSON(event)), "2.1", "[worker 2] ")
    assert formatEvent(received) == "[worker 2] session s-9: playStream failed"  # text log
    parsed = line_of(received)
    assert parsed["worker"] == "2.1" and parsed["session"] == "s-9"
    assert parsed["level"] == "critical" and parsed["logger"] == "wcs.test"
    assert parsed["message"].startswith("session s-9: playStream failed\nTraceback")
    assert "ValueError" in parsed["message"]  # its value is not kept by Twisted's JSON


def test_a_worker_s_stray_line_is_marked_as_from_it():
    # what WorkerProcess._line logs for a line on a worker's stderr
    [event] = emitted(lambda log: log.warn(
        "[worker {worker}] {line}", worker="1.3", line="Segmentation fault",
        **{logs.WORKER_KEY: "1.3", logs.WORKER_PREFIX_KEY: "[worker {worker}] "}))
    assert formatEvent(event) == "[worker 1.3] Segmentation fault"
    parsed = line_of(event)
    assert parsed["worker"] == "1.3" and parsed["message"] == "Segmentation fault"


@pytest.mark.parametrize("out", [io.StringIO(), io.BytesIO()], ids=["text", "binary"])
def test_the_observer_writes_lines_to_text_and_binary_files(out):
    observer = logs.json_file_observer(out)
    for event in emitted(lambda log: [log.info("one {name}", name="a"), log.info("two")]):
        observer(event)
    written = out.getvalue()
    written = written.decode("ascii") if isinstance(written, bytes) else written
    assert [json.loads(line)["message"] for line in written.splitlines()] == ["one a", "two"]


@pytest.fixture
def usr1():
    """SIGUSR1's handler put back after the test (a log file installs one)."""
    before = signal.getsignal(signal.SIGUSR1)
    signal.signal(signal.SIGUSR1, signal.SIG_DFL)
    yield
    signal.signal(signal.SIGUSR1, before)


def test_text_or_no_twistd_or_an_explicit_logger_leaves_twistd_s_log_alone():
    assert logs.twistd_observer("text", {"nodaemon": True}) is None
    assert logs.twistd_observer("json", None) is None
    assert logs.twistd_observer("json", {"logger": object(), "nodaemon": True}) is None


def test_with_n_and_no_logfile_it_writes_to_standard_output(monkeypatch):
    out = io.StringIO()
    monkeypatch.setattr(sys, "stdout", out)
    for twistd in ({"nodaemon": True, "logfile": None}, {"nodaemon": True, "logfile": "-"}):
        logs.twistd_observer("json", twistd)(emitted(lambda log: log.info("hi"))[0])
    assert [json.loads(line)["message"] for line in out.getvalue().splitlines()] == ["hi"] * 2


def test_with_logfile_it_writes_to_that_file_rotated_on_sigusr1(tmp_path: Path, usr1):
    path = tmp_path / "server.log"
    observer = logs.twistd_observer("json", {"nodaemon": True, "logfile": str(path)})
    observer(emitted(lambda log: log.info("to the file {name}", name="x"))[0])
    assert json.loads(path.read_text())["message"] == "to the file x"
    assert callable(signal.getsignal(signal.SIGUSR1))


def test_json_refuses_what_twistd_would_refuse_or_write_its_own_way():
    with pytest.raises(logs.LogSetupError, match="syslog"):
        logs.twistd_observer("json", {"syslog": True, "nodaemon": True})
    with pytest.raises(logs.LogSetupError, match="stdout"):
        logs.twistd_observer("json", {"logfile": "-", "nodaemon": False})


def test_the_application_twistd_makes_gets_the_observer():
    observer = logs.json_file_observer(io.StringIO())
    logged = logs.ApplicationLog(observer)
    server = service.MultiService()
    server.setServiceParent(logged)
    application = service.Application("wcsvod")
    logged.setServiceParent(application)  # what twistd does with makeService's answer
    assert application.getComponent(ILogObserver, None) is observer  # AppLogger.start asks
    assert list(service.IServiceCollection(application)) == [logged]
    assert list(logged) == [server]


def test_log_format_is_text_unless_set_and_a_bad_value_names_the_key(tmp_path: Path):
    assert config.load(None, {"media_dir": str(tmp_path)}).log_format == "text"
    assert config.load(None, {"media_dir": str(tmp_path),
                              "log_format": "json"}).log_format == "json"
    with pytest.raises(ConfigError, match=r"^command line: log_format='xml': "
                                          r"must be text or json$"):
        config.load(None, {"media_dir": str(tmp_path), "log_format": "xml"})


def test_the_properties_file_documents_the_key():
    text = (config.REPO_ROOT / "conf" / "flashphoner.properties").read_text()
    assert "#log_format=text" in text
