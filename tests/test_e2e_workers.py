"""``workers=2``: one server seen from outside, whichever worker a client lands on.

Which worker serves a play is the kernel's choice (both accept on one socket),
so each test opens plays until the server's own ``find_all`` shows viewers on
both workers (pausing the one that serves while the next play connects), and
then checks what they got.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import signal
import statistics
import subprocess
import time

from testkit.rest_client import call, http_status
from testkit.rtc_client import Received, play, run
from testkit.rtc_publisher import Published, publish
from testkit.workers import on_both
from tools.makemedia import frames_in

NAME = "vod-live://live.mp4"
#: Most plays opened before two workers serve one stream.
TRIES = 10


def workers_of(server, name: str) -> dict[str, int]:
    """Viewers by worker of the stream called ``name``, as REST lists it."""
    status, found, _ = call(server.http_url, "/rest-api/vod/find_all", {})
    if status != 200:
        return {}
    return next((entry["workers"] for entry in found if entry["localStreamName"] == name), {})


def pids_of_workers(server) -> dict[str, int]:
    """Each worker's process id by its number, as REST lists them."""
    status, workers, _ = call(server.http_url, "/rest-api/cluster/workers")
    assert status == 200, workers
    return {w["worker"].split(".")[0]: w["pid"] for w in workers}


async def on_two_workers(server, name: str, stop: asyncio.Event, serving=None,
                         progress: list[Received] | None = None) -> list[asyncio.Future]:
    """Plays of ``name`` until two workers serve it (``serving`` says who, by
    default REST's viewer counts); each play runs until ``stop``.

    Which worker accepts is the kernel's choice, so once one worker serves, it
    is paused (``SIGSTOP``) while the next play connects: only the other one can
    accept it. It goes on (``SIGCONT``) as soon as that worker has answered the
    WebSocket upgrade, before the play: the paused worker may be the one that
    must relay a publication to it, and its publisher's packets must not pile
    up in a stopped process meanwhile."""
    serving = serving or (lambda: workers_of(server, name))
    plays: list[asyncio.Future] = []
    busy = [worker for worker, viewers in (await asyncio.to_thread(serving)).items() if viewers]
    for _ in range(TRIES):
        got = Received()
        if progress is not None:
            progress.append(got)
        paused = None
        if len(busy) == 1:
            paused = (await asyncio.to_thread(pids_of_workers, server))[busy[0].split(".")[0]]
            os.kill(paused, signal.SIGSTOP)
        try:
            plays.append(asyncio.ensure_future(play(server.ws_url, name, stop_event=stop,
                                                    timeout=90, result=got)))
            deadline = time.monotonic() + 6
            while not got.connected and time.monotonic() < deadline:
                await asyncio.sleep(0.02)
        finally:
            if paused:
                os.kill(paused, signal.SIGCONT)
        deadline = time.monotonic() + 6
        while "PLAYING" not in got.statuses and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        await asyncio.sleep(1.6)  # a report (every second) from each worker
        busy = [worker for worker, viewers in (await asyncio.to_thread(serving)).items()
                if viewers]
        if len(busy) >= 2:
            return plays
    stop.set()
    raise AssertionError(f"{TRIES} plays all landed on one worker")


def arrivals(got: Received) -> dict[int, float]:
    """When each frame number arrived (its first arrival)."""
    seen: dict[int, float] = {}
    for number, row in zip(got.numbers, got.video):
        seen.setdefault(number, row[0])
    return seen


def test_viewers_on_two_workers_see_the_same_moment(start_server, media):
    server = start_server(media_dir=str(media), workers="2", vod_live_loop="true")

    async def scenario() -> list[Received]:
        stop = asyncio.Event()
        plays = await on_two_workers(server, NAME, stop)
        await asyncio.sleep(3)
        stop.set()
        return list(await asyncio.gather(*plays))

    viewers = run(scenario())
    first = arrivals(viewers[0])
    for got in viewers:
        assert got.statuses[:2] == ["PENDING", "PLAYING"], got.statuses
        assert len(got.numbers) > 60, len(got.numbers)
        mine = arrivals(got)
        common = [number for number in mine if number in first]
        assert len(common) > 30
        lag = statistics.median(abs(mine[n] - first[n]) for n in common)
        assert lag < 0.1, f"frames arrive {lag * 1000:.0f} ms apart across workers"
    log = server.log()
    assert re.search(r"\[worker 1\] .*created for vod-live://live.mp4", log)
    assert re.search(r"\[worker 2\] .*created for vod-live://live.mp4", log)
    assert "s after it began" in log  # the second worker joined the first's timeline


def test_rest_is_one_server_across_workers(start_server, media):
    server = start_server(media_dir=str(media), workers="2", access_log="true")
    body = {"uri": NAME, "localStreamName": "show", "loop": True}
    status, started, _ = call(server.http_url, "/rest-api/vod/startup", body)
    assert status == 200, started
    # the name is taken on both workers: 409 from each
    for status, refused, _ in on_both(server, "/rest-api/vod/startup",
                                      {**body, "uri": "vod-live://main.mp4"}, 409):
        assert status == 409, refused
    # and every worker lists the one stream, once
    for status, found, _ in on_both(server, "/rest-api/vod/find_all", {}, 200):
        assert status == 200 and [e["localMediaSessionId"] for e in found] == \
            [started["localMediaSessionId"]], found

    async def scenario() -> tuple[list[Received], tuple[int, object]]:
        stop = asyncio.Event()
        plays = await on_two_workers(server, "show", stop)
        found = await asyncio.to_thread(call, server.http_url, "/rest-api/vod/find",
                                        {"localStreamName": "show"})
        assert found[1][0]["viewers"] == len(plays), found
        status, workers, _ = await asyncio.to_thread(call, server.http_url,
                                                     "/rest-api/cluster/workers")
        assert status == 200 and [w["worker"].split(".")[0] for w in workers] == ["1", "2"]
        assert sum(w["viewers"] for w in workers) == len(plays) and all(
            w["pid"] and w["streams"] == 1 for w in workers), workers
        stopped = await asyncio.to_thread(call, server.http_url, "/rest-api/vod/terminate",
                                          {"localStreamName": "show"})
        got = await asyncio.wait_for(asyncio.gather(*plays), 20)
        stop.set()
        return list(got), stopped[:2]

    viewers, (status, terminated) = run(scenario())
    assert status == 200 and terminated[0]["localStreamName"] == "show"
    for got in viewers:  # every viewer, on either worker, was stopped by the server
        assert got.statuses == ["PENDING", "PLAYING", "STOPPED"], got.statuses
        assert got.infos[-1] == "Stopped by server", got.infos
        assert got.numbers
    deadline = time.monotonic() + 5
    while call(server.http_url, "/rest-api/vod/find_all", {})[0] != 404:
        assert time.monotonic() < deadline, "the stream is still listed"
        time.sleep(0.2)


def test_a_publication_plays_on_the_other_worker(start_server, media, tmp_path):
    folder = tmp_path / "media"  # (the recording goes in there)
    folder.mkdir()
    shutil.copy(media / "live.mp4", folder)
    server = start_server(media_dir=str(folder), workers="2")

    def relaying() -> dict[str, int]:
        """Which workers serve the publication: the publisher's (one viewer, its
        own) and, once a viewer lands elsewhere, the relaying one's. So the first
        play is made to land on the other worker while the publisher's is paused:
        the case where the relay must wait for that worker to go on."""
        log = server.log()
        published = re.findall(r"\[worker (\d)\] .*published as 'cam'", log)
        relayed = re.findall(r"\[worker (\d)\] .*relayed from", log)
        return {worker: 1 for worker in published + relayed}

    async def scenario() -> tuple[object, list[Received]]:
        publishing_started = Published()
        publishing = asyncio.ensure_future(
            publish(server.ws_url, "cam", media / "live.mp4", seconds=14, record=True,
                                            result=publishing_started))
        await publishing_started.publishing()
        stop = asyncio.Event()
        plays = await on_two_workers(server, "cam", stop, serving=relaying)
        published = await publishing
        got = await asyncio.wait_for(asyncio.gather(*plays), 20)
        return published, list(got)

    published, viewers = run(scenario(), timeout=150)
    assert published.statuses[:1] == ["PUBLISHING"], published.statuses
    relayed = [got for got in viewers if got.numbers]
    assert len(relayed) == len(viewers), [got.statuses for got in viewers]
    for got in viewers:
        assert got.statuses == ["PENDING", "PLAYING", "STOPPED"], got.statuses
        numbers = got.numbers
        assert numbers == sorted(numbers) and len(numbers) > 30
    log = server.log()
    assert log.count("relayed from") == 1  # once for the worker, however many viewers
    # recorded as on one worker: the file is complete when the page hears UNPUBLISHED
    record = published.events[-1]
    assert record["status"] == "UNPUBLISHED" and record["recordName"], record
    assert http_status(f"{server.http_url}/client/records/{record['recordName']}") == 200
    frames = frames_in(folder / record["recordName"])
    # every picture the page sent (test_recording's measure; a loaded client sends fewer)
    assert abs(frames - len(published.sent_video)) <= 2 and frames > 30, (
        frames, len(published.sent_video))


def worker_pid(server, index: int) -> int:
    """The pid of worker ``index``'s latest incarnation, once its start is logged
    (the ports answer before the workers have started)."""
    deadline = time.monotonic() + 15
    while True:
        found = re.findall(rf"worker {index}\.\d+ started \(pid (\d+)\)", server.log())
        if found:
            return int(found[-1])
        assert time.monotonic() < deadline, f"worker {index} never started"
        time.sleep(0.1)


def test_a_killed_worker_is_replaced_and_the_other_plays_on(start_server, media):
    server = start_server(media_dir=str(media), workers="2", vod_live_loop="true")

    async def scenario() -> tuple[list[Received], float]:
        stop = asyncio.Event()
        plays = await on_two_workers(server, NAME, stop)
        killed = time.monotonic()
        os.kill(worker_pid(server, 2), signal.SIGKILL)
        await asyncio.sleep(4)
        stop.set()
        return list(await asyncio.gather(*plays, return_exceptions=True)), killed

    viewers, killed = run(scenario())
    survivors = [got for got in viewers if isinstance(got, Received)]
    # the killed worker's viewers lost their session at once, as with a lost server
    lost = [got for got in viewers if isinstance(got, asyncio.IncompleteReadError)]
    assert survivors and lost and len(survivors) + len(lost) == len(viewers), viewers
    for got in survivors:  # the other worker's viewers played on, steadily
        assert got.statuses == ["PENDING", "PLAYING", "STOPPED"], got.statuses
        after = [row[0] for row in got.video if row[0] > killed + 1]
        assert len(after) > 60, len(after)
    deadline = time.monotonic() + 15
    while len(re.findall(r"worker 2\.\d+ started", server.log())) < 2:
        assert time.monotonic() < deadline, "the killed worker was not replaced"
        time.sleep(0.2)
    assert "worker 2." in server.log() and "ended" in server.log()

    async def again() -> list[Received]:  # the new worker serves plays too
        stop = asyncio.Event()
        plays = await on_two_workers(server, NAME, stop)
        stop.set()
        return list(await asyncio.gather(*plays))

    for got in run(again()):
        assert got.statuses[:2] == ["PENDING", "PLAYING"] and got.numbers


def test_one_ctrl_c_stops_every_worker_and_their_viewers_hear_it(start_server, media):
    server = start_server(media_dir=str(media), workers="2", vod_live_loop="true")
    pids = [worker_pid(server, 1), worker_pid(server, 2)]

    progress: list[Received] = []

    async def scenario() -> list:
        stop = asyncio.Event()
        plays = await on_two_workers(server, NAME, stop, progress=progress)
        os.kill(server.process.pid, signal.SIGINT)  # what Ctrl-C sends the supervisor
        sent = time.monotonic()
        done, pending = await asyncio.wait(plays, timeout=45)
        if pending:  # say what each viewer saw, and what the server did
            seen = [(got.statuses, got.infos, round(got.video[-1][0] - time.time(), 1)
                     if got.video else None) for got in progress]
            alive = subprocess.run(["ps", "-eo", "pid,ppid,stat,etime,args"],
                                   capture_output=True, text=True).stdout
            connections = subprocess.run(["ss", "-tanp"], capture_output=True,
                                         text=True).stdout
            raise AssertionError(
                f"{len(pending)} of {len(plays)} plays still open "
                f"{time.monotonic() - sent:.0f} s after SIGINT; viewers saw "
                f"(statuses, infos, last frame s ago) {seen}\nprocesses:\n{alive}\n"
                f"connections:\n{connections}\nserver log:\n{server.log()[-6000:]}")
        return [play.result() if play.exception() is None else play.exception()
                for play in plays]

    viewers = run(scenario())
    for got in viewers:  # every viewer, on either worker, was told before the end
        assert isinstance(got, Received) and got.statuses[-1] == "STOPPED", got
        assert got.infos[-1] == "Server shutdown", got.infos
    # twistd ends as the signal says, having shut down cleanly
    assert server.process.wait(15) == -signal.SIGINT
    assert server.saw("Server Shut Down.")
    for pid in pids:  # no worker left behind
        assert not os.path.exists(f"/proc/{pid}") or \
            open(f"/proc/{pid}/stat").read().split(")")[1].split()[0] == "Z"
