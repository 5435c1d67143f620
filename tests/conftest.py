"""Shared fixtures: real servers, real Chromium, all on loopback."""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Optional

import pytest

from testkit.browser import CHROMIUM_ARGS, recorded_page
from testkit.harness import (
    CHROMIUM,
    WEBSDK,
    ServerProcess,
    own_network_namespace,
    require_loopback_only,
)

#: Fixtures that start real services: a test that uses one is end to end.
SYSTEM_FIXTURES = {"start_server", "browser", "page", "s3", "loopback", "redis_server"}


def pytest_configure(config: pytest.Config) -> None:
    """Each parallel test process (pytest-xdist's) in a loopback of its own; the
    test files made once for the whole run (its processes are started after this)."""
    from tools.makemedia import CACHE_VARIABLE

    if os.environ.get("PYTEST_XDIST_WORKER"):
        own_network_namespace()
    elif not os.environ.get(CACHE_VARIABLE):
        os.environ[CACHE_VARIABLE] = _made_here[0] = tempfile.mkdtemp(prefix="wcsvod-media-")


#: The media cache this process made, and removes at the end.
_made_here: list[str] = [""]


def pytest_unconfigure(config: pytest.Config) -> None:
    if _made_here[0]:
        shutil.rmtree(_made_here[0], ignore_errors=True)


#: Lines of a server's log shown under a failed test that started it.
LOG_TAIL = 60
#: The servers a test started, for its report.
SERVERS = pytest.StashKey[list[ServerProcess]]()


@pytest.hookimpl(tryfirst=True)  # before pytest-xdist's reads the groups
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark every test ``unit`` or ``e2e``, so ``-m unit`` runs the fast ones alone."""
    for item in items:
        params = getattr(getattr(item, "callspec", None), "params", {})
        system = (item.module.__name__.split(".")[-1].startswith("test_e2e_")
                  or SYSTEM_FIXTURES & set(getattr(item, "fixturenames", ()))
                  or "redis" in params.values())  # a store test against a real Redis
        item.add_marker(pytest.mark.e2e if system else pytest.mark.unit)
        if item.get_closest_marker("alone") is not None:
            # one process runs them one after the other (``--dist loadgroup``), keeping
            # the room between them: the others drain once, not once per such test
            item.add_marker(pytest.mark.xdist_group("alone"))
    # pytest-xdist starts the largest group first (the alone tests): the minute-long
    # bench runs, first by name, would hold it back at the start; a third in, they
    # spread over the run instead
    benches = [item for item in items if item.name.startswith("test_every_bench_runs")]
    rest = [item for item in items if item not in benches]
    items[:] = rest[:len(rest) // 3] + benches + rest[len(rest) // 3:]


def pytest_collection_finish(session: pytest.Session) -> None:
    """In a test process of ``--dist loadgroup``: every ``alone`` test carries its
    group (pytest 9.2 renamed what pytest-xdist 3.8 rewrites for it, and the load
    tests were silently spread over the processes, each draining the others)."""
    if getattr(session.config.option, "loadgroup", False):
        lost = [item.nodeid for item in session.items
                if _alone(item) and not item.nodeid.endswith("@alone")]
        if lost:
            raise pytest.UsageError(f"pytest-xdist did not group {lost[0]} with the other "
                                    "alone tests: see setup.py's pins of pytest")


NEXT = pytest.StashKey[Optional[pytest.Item]]()
#: This process's hold on the room while it runs ``alone`` tests one after another.
_held: list[Any] = []


@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None):
    item.stash[NEXT] = nextitem  # the room is kept for a next test that is alone too
    return (yield)


def _alone(item: pytest.Item | None) -> bool:
    return item is not None and item.get_closest_marker("alone") is not None


@pytest.fixture(autouse=True)
def room(request: pytest.FixtureRequest) -> Iterator[None]:
    """Tests marked ``alone`` run with no other test beside them (the parallel
    processes' other tests wait); every other test shares the machine, and of
    those marked ``heavy`` (a throttled link, a flood) one runs at a time.

    A load test measures what a server does on the whole machine, and the tests
    beside one would measure a starved browser: two file locks keep them apart
    (the turnstile lets no test in while an ``alone`` test waits for the room).
    The ``alone`` tests all run in one process, one after the other, and it keeps
    the room from the first to the last: the other processes drain once."""
    run = os.environ.get("PYTEST_XDIST_TESTRUNUID")
    if run is None:  # one process: nothing runs beside
        yield
        return
    folder = Path(tempfile.gettempdir()) / f"wcsvod-suite-{run}"
    folder.mkdir(exist_ok=True)
    alone = _alone(request.node)
    _trace("wait", request.node.nodeid)
    if alone and _held:  # the last test was alone too: the room is still ours
        locks = _held.pop()
    else:
        turnstile, room = open(folder / "turnstile", "a"), open(folder / "room", "a")
        locks = (turnstile, room)
        fcntl.flock(turnstile, fcntl.LOCK_EX)
        fcntl.flock(room, fcntl.LOCK_EX if alone else fcntl.LOCK_SH)
        if not alone:
            fcntl.flock(turnstile, fcntl.LOCK_UN)
    heavy = None
    if request.node.get_closest_marker("heavy") is not None and not alone:
        heavy = open(folder / "heavy", "a")  # one at a time, beside the light ones
        fcntl.flock(heavy, fcntl.LOCK_EX)
    _trace("in", request.node.nodeid)
    try:
        yield
    finally:
        _trace("out", request.node.nodeid)
        if heavy is not None:
            heavy.close()  # (and its lock with it)
        if alone and _alone(request.node.stash.get(NEXT, None)):
            _held.append(locks)
        else:
            for lock in reversed(locks):
                fcntl.flock(lock, fcntl.LOCK_UN)
                lock.close()


def _trace(what: str, nodeid: str) -> None:
    """With ``WCSVOD_ROOM_TRACE=FILE``, when each test began to wait for the room,
    went in and came out, by test process, with the CPU seconds this process and
    all it started had used by then: where a run's wall time and CPU went."""
    path = os.environ.get("WCSVOD_ROOM_TRACE")
    if path:
        with open(path, "a") as out:
            out.write(f"{time.time():.2f} {os.environ.get('PYTEST_XDIST_WORKER')} {what} "
                      f"{nodeid} cpu={_tree_cpu():.2f}\n")


def _tree_cpu() -> float:
    """CPU seconds of this process, the children it has reaped (and theirs) and
    every descendant still running (a session's Chromium, a test's servers)."""
    from testkit.procfs import descendants, total_cpu

    used = total_cpu(os.getpid())
    for pid in descendants(os.getpid()):
        try:
            used += total_cpu(pid)
        except (FileNotFoundError, ProcessLookupError):
            continue  # ended meanwhile (and counted once its parent reaps it)
    return used


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]):
    """A failed test's servers' last log lines go in its report: what the server
    saw is most of what a CI failure has to say."""
    report = yield
    if report.failed:
        for n, server in enumerate(item.stash.get(SERVERS, [])):
            lines = server.log(most=0.5).splitlines()[-LOG_TAIL:]
            report.sections.append((f"server {n + 1}'s log (last {len(lines)} lines)",
                                    "\n".join(lines)))
    return report


@pytest.fixture
def loopback() -> None:
    require_loopback_only()


@pytest.fixture
def start_server(loopback: None, tmp_path: Path, request: pytest.FixtureRequest
                 ) -> Iterator[Callable[..., ServerProcess]]:
    """Start ``twistd wcsvod`` with extra properties; every one is stopped after."""
    servers: list[ServerProcess] = []
    request.node.stash[SERVERS] = servers

    def start(wrap: list[str] | None = None, **settings: str) -> ServerProcess:
        workdir = Path(tempfile.mkdtemp(dir=tmp_path))
        settings = {k.replace("__", "."): v for k, v in settings.items()}
        settings.setdefault("media_dir", str(tmp_path))
        settings.setdefault("websdk_dir", str(WEBSDK))
        server = ServerProcess(workdir, settings, wrap)
        servers.append(server)
        return server.start()

    yield start
    for server in servers:
        server.stop()


@pytest.fixture(scope="session")
def browser() -> Iterator[object]:
    require_loopback_only()
    if not CHROMIUM.exists():
        raise AssertionError(f"{CHROMIUM} is missing: run scripts/test.sh, which installs it")
    if not (WEBSDK / "flashphoner.js").exists():
        raise AssertionError(f"{WEBSDK} is missing: run scripts/test.sh, which installs it")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser: object) -> Iterator[object]:
    page = recorded_page(browser)
    page.console_messages = []  # type: ignore[attr-defined]
    page.on("console", lambda message: page.console_messages.append(message.text))
    yield page
    page.context.close()


@pytest.fixture(scope="session")
def media(tmp_path_factory) -> Path:
    """Test files made once per run by real encoders (Debian's ffmpeg, libx264, AAC)."""
    from tools.makemedia import corrupt_audio, make_mp4

    folder = tmp_path_factory.mktemp("media")
    make_mp4(folder / "main.mp4", seconds=8, profile="main")
    make_mp4(folder / "baseline.mp4", seconds=6, profile="baseline")
    make_mp4(folder / "high.mp4", seconds=6, profile="high")
    make_mp4(folder / "bframes.mp4", seconds=6, profile="high", bframes=3)
    make_mp4(folder / "audio-only.mp4", seconds=5, video=False)
    make_mp4(folder / "video-only.mp4", seconds=5, audio=False)
    corrupt_audio(folder / "high.mp4", folder / "corrupt-aac.mp4", frames=10)
    make_mp4(folder / "live.mp4", seconds=20, barcode=True)
    make_mp4(folder / "loop.mp4", seconds=3, barcode=True)
    (folder / "sub").mkdir()
    make_mp4(folder / "sub" / "nested.mp4", seconds=4)
    (folder / "not-an-mp4.mp4").write_text("hello, I am text\n")
    return folder


@pytest.fixture(scope="session")
def s3(media: Path, tmp_path_factory) -> Iterator[object]:
    """moto's S3 server on loopback with the test files (and a few of its own)."""
    from testkit.s3 import S3Server
    from tools.makemedia import make_mp4

    require_loopback_only()
    extra = tmp_path_factory.mktemp("s3-media")
    make_mp4(extra / "moov-at-end.mp4", seconds=6, faststart=False)
    part = make_mp4(extra / "part.mp4", seconds=40, bitrate="2000k")
    make_mp4(extra / "long-live.mp4", seconds=45, bitrate="1000k", barcode=True)
    (extra / "parts.txt").write_text(f"file '{part}'\n" * 6)
    subprocess.run(["ffmpeg", "-loglevel", "error", "-f", "concat", "-safe", "0", "-i",
                    str(extra / "parts.txt"), "-c", "copy", "-movflags", "+faststart",
                    str(extra / "large.mp4")], check=True)  # 4 minutes, about 60 MB
    server = S3Server()
    server.upload({"main.mp4": media / "main.mp4", "live.mp4": media / "live.mp4",
                   "folder/high.mp4": media / "high.mp4",
                   "moov-at-end.mp4": extra / "moov-at-end.mp4",
                   "large.mp4": extra / "large.mp4",
                   "long-live.mp4": extra / "long-live.mp4",
                   "not-an-mp4.mp4": media / "not-an-mp4.mp4"})
    server.sizes = {"large.mp4": (extra / "large.mp4").stat().st_size}
    yield server
    server.stop()


@pytest.fixture(scope="session")
def redis_server() -> Iterator[object]:
    """Debian's redis-server on loopback, emptied before each test that takes it."""
    from testkit.redis import RedisServer

    require_loopback_only()
    server = RedisServer()
    yield server
    server.stop()
