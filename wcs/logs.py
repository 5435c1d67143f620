"""The server's log as one JSON object a line (``log_format=json``), for log shippers.

Each event becomes ``{"timestamp", "level", "logger", "worker", "session",
"stream", "message"}``: ``timestamp`` ISO 8601 UTC to the millisecond, ``level``
Twisted's level name (debug, info, warn, error, critical), ``logger`` the event's
namespace, ``message`` the text the text log would show (a failure's traceback
after it). ``worker`` is the worker's id (``1.1``, ``node/1.1``) when the event
came from a worker process, else null. ``session`` and ``stream`` come from the
keys the code logs them under: ``session`` (a signalling session's id) and
``name`` (a stream's name: what a page plays or publishes, a REST stream's
``localStreamName``); null when the event has none. The code logs other things
under other keys (a message's name as ``message``, a media session's id as
``media_session``, a recording's file as ``record``); the one exception is a
record download's file (``/client/records/``), logged as ``name``. Lines are ASCII
(other characters escaped by JSON), so no locale or file encoding can break one,
and one event is always one line: JSON escapes the newlines of a message.

How twistd is made to write it, and why this way: twistd calls ``makeService``
first and sets its log up afterwards (``ApplicationRunner.run``:
``createOrGetApplication``, then ``AppLogger.start``), and ``AppLogger.start``
logs to the application's ``ILogObserver`` component when it has one (the
documented way a ``.tac`` file picks its observer) instead of the text observer
it would make. A plugin's only handle on that application is its service, which
twistd makes a child of it; so :class:`ApplicationLog`, the service
``makeService`` returns for ``log_format=json``, sets that component when it is
given its parent. Every line of the log then goes through the one observer, the
lines twistd writes before ours and the events logged while the settings were
read (buffered until logging begins) included; nothing is swapped after lines
were written. (The other ways: ``--logger`` names an observer factory on twistd's
command line, which the properties file cannot set and which twistd reads before
``makeService``; replacing twistd's text observer once the server starts would
leave twistd's first lines, and the settings' warnings, in text.) The one cost:
the observer must write where twistd would have, so :func:`twistd_log_file`
follows twistd's own rules (``UnixAppLogger``): ``-n`` without ``--logfile`` (or
``--logfile=-``) is standard output, otherwise ``--logfile`` (default
``twistd.log``), rotated on SIGUSR1. An explicit
``--logger`` is the operator's choice and stays in charge; ``--syslog`` with
``log_format=json`` is refused. ``log_format=text`` changes nothing at all.

Workers log Twisted's JSON events to the supervisor (:mod:`wcs.cluster.workers`),
which marks each with :func:`mark_worker` and publishes it in its own log, so
both formats come out of the supervisor's one observer.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import IO, Any

from twisted.application import service
from twisted.logger import FileLogObserver, ILogObserver, LogEvent, eventAsText
from twisted.python.components import Componentized

#: The event keys read for the JSON fields ``session`` and ``stream``.
SESSION_KEY, STREAM_KEY = "session", "name"
#: Keys the supervisor adds to a worker's event: the worker's id, and the text
#: it put before the event's format (shown by the text log, left out of ``message``).
WORKER_KEY, WORKER_PREFIX_KEY = "log_worker", "log_worker_prefix"


class LogSetupError(Exception):
    """The log cannot be written as asked; the message names ``log_format``."""


def mark_worker(event: dict[str, Any], worker: str, prefix: str) -> dict[str, Any]:
    """``event``, from the worker ``worker``, marked for the supervisor's log:
    ``prefix`` (a format, no fields) before its text, and the worker's id kept."""
    event["log_format"] = prefix + (event.get("log_format") or "")
    event[WORKER_KEY] = worker
    event[WORKER_PREFIX_KEY] = prefix
    return event


def as_json(event: LogEvent) -> str | None:
    """One event as a JSON line; None for an event with nothing to say (as the
    text log writes no line for it)."""
    try:
        return _as_json(event)
    except Exception as error:  # never lose a line, never raise into the publisher
        return (
            json.dumps(
                {
                    "timestamp": _timestamp(time.time()),
                    "level": "error",
                    "logger": __name__,
                    "worker": None,
                    "session": None,
                    "stream": None,
                    "message": f"unable to format a log event ({error!r}): {_safe_repr(event)}",
                }
            )
            + "\n"
        )


def _as_json(event: LogEvent) -> str | None:
    worker = event.get(WORKER_KEY)
    prefix = event.get(WORKER_PREFIX_KEY)
    log_format = event.get("log_format")
    if prefix and isinstance(log_format, str) and log_format.startswith(prefix):
        event = {**event, "log_format": log_format[len(prefix) :]}
    message = eventAsText(event, includeTimestamp=False, includeSystem=False).rstrip("\n")
    if not message:
        return None
    level = event.get("log_level")
    return (
        json.dumps(
            {
                "timestamp": _timestamp(event.get("log_time")),
                "level": getattr(level, "name", None) or (str(level) if level else "info"),
                "logger": event.get("log_namespace"),
                "worker": None if worker is None else str(worker),
                "session": _text(event.get(SESSION_KEY)),
                "stream": _text(event.get(STREAM_KEY)),
                "message": message,
            }
        )
        + "\n"
    )


def _timestamp(when: object) -> str:
    """ISO 8601, UTC, milliseconds: ``2026-12-01T05:35:11.123Z``."""
    seconds = when if isinstance(when, (int, float)) else time.time()
    moment = datetime.fromtimestamp(seconds, UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _text(value: object) -> str | None:
    return None if value is None or value == "" else str(value)


def _safe_repr(event: LogEvent) -> str:
    try:
        return repr(event)[:2000]
    except Exception:
        return "<unrepresentable event>"


def json_file_observer(out: IO[Any]) -> FileLogObserver:
    """An observer writing :func:`as_json` lines to ``out`` (text or binary)."""
    return FileLogObserver(out, as_json)


def twistd_log_file(twistd: Mapping[str, Any]) -> IO[Any]:
    """Where twistd would write its log, by ``UnixAppLogger._getLogObserver``'s rules."""
    logfile = twistd.get("logfile") or ""
    nodaemon = bool(twistd.get("nodaemon"))
    if logfile == "-":
        if not nodaemon:
            raise LogSetupError("Daemons cannot log to stdout, exiting!")  # twistd's words
        return sys.stdout
    if nodaemon and not logfile:
        return sys.stdout
    import signal

    from twisted.python.logfile import LogFile

    out = LogFile.fromFullPath(logfile or "twistd.log")
    if not signal.getsignal(signal.SIGUSR1):  # as twistd: logrotate's signal

        def rotate(_number: int, _frame: object) -> None:
            from twisted.internet import reactor
            from twisted.internet.interfaces import IReactorFromThreads

            IReactorFromThreads(reactor).callFromThread(out.rotate)

        signal.signal(signal.SIGUSR1, rotate)
    return out


def twistd_observer(log_format: str, twistd: Mapping[str, Any] | None) -> ILogObserver | None:
    """The observer twistd should log to for ``log_format``; None leaves twistd's
    own (``text``; not run by twistd; an explicit ``--logger``)."""
    if log_format != "json" or twistd is None or twistd.get("logger"):
        return None
    if twistd.get("syslog"):
        raise LogSetupError(
            "log_format=json: twistd --syslog writes syslog's own lines; "
            "use --logfile or -n with it"
        )
    return json_file_observer(twistd_log_file(twistd))


class ApplicationLog(service.MultiService):
    """The server's services, under an application that logs to ``observer``:
    made twistd's application's child, it sets the application's
    ``ILogObserver``, which ``AppLogger.start`` then logs to."""

    def __init__(self, observer: ILogObserver) -> None:
        super().__init__()
        self.observer = observer

    def setServiceParent(self, parent: Any) -> None:
        if isinstance(parent, Componentized):
            parent.setComponent(ILogObserver, self.observer)
        super().setServiceParent(parent)
