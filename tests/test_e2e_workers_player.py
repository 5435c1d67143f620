"""The SDK's player pages in Chromium, on two workers of one server: one broadcast."""

from __future__ import annotations

import os
import re
import signal
import statistics
import time

from testkit.browser import recorded_page
from testkit.pages import (
    frame_differences,
    open_player,
    video_state,
    wait_status,
    wait_video,
)
from testkit.rest_client import call
from tests.test_e2e_workers import NAME, TRIES, pids_of_workers, worker_pid, workers_of


def busy_workers(server) -> set[str]:
    return {worker for worker, viewers in workers_of(server, "warm").items() if viewers}


def test_two_pages_on_two_workers_show_the_same_frame(start_server, page, browser, media):
    server = start_server(media_dir=str(media), workers="2", vod_live_loop="true")
    # the broadcast runs before anyone watches, so that both pages join it late (a
    # page there from the start buffers its burst differently); plays of its uri join it
    status, _, _ = call(server.http_url, "/rest-api/vod/startup",
                        {"uri": NAME, "localStreamName": "warm"})
    assert status == 200
    time.sleep(3)
    open_player(page, server, NAME)
    wait_status(page, "PLAYING")
    wait_video(page)
    time.sleep(1.5)
    first_worker = busy_workers(server)
    assert len(first_worker) == 1
    contexts = []
    try:
        other = None
        for _ in range(TRIES):  # pages until one lands on the other worker
            candidate = recorded_page(browser)
            contexts.append(candidate.context)
            # the first page's worker pauses while this one connects: only the
            # other worker can accept it (which one does is the kernel's choice)
            paused = pids_of_workers(server)[next(iter(first_worker)).split(".")[0]]
            os.kill(paused, signal.SIGSTOP)
            try:
                open_player(candidate, server, NAME)
                wait_status(candidate, "PLAYING")
            finally:
                os.kill(paused, signal.SIGCONT)
            wait_video(candidate)
            time.sleep(1.5)  # each worker reports its viewers every second
            if len(busy_workers(server)) == 2:
                other = candidate
                break
        assert other is not None, f"{TRIES} pages all landed on worker {first_worker}"
        time.sleep(1.0)
        shown = frame_differences(page, other)
        received = frame_differences(page, other, as_received=True)
        print(f"frame differences across workers: shown {shown}, received {received}")
        # the server's side is in step within 100 ms (test_e2e_workers measures each
        # frame's arrival); what two pages show differs by what each one's jitter
        # buffer holds back as well (8-10 frames idle, 16-18 while the suite runs)
        assert statistics.median(received) <= 6, (received, shown)
        before = video_state(other)
        time.sleep(1.0)
        after = video_state(other)
        assert after["width"] > 0 and after["time"] > before["time"]
        # the second page's worker dies: that page sees its server lost, the first
        # page plays on, and a new worker takes the dead one's place
        [second_worker] = busy_workers(server) - first_worker
        index = int(second_worker.split(".")[0])
        os.kill(worker_pid(server, index), signal.SIGKILL)
        wait_status(other, "DISCONNECTED")
        before = video_state(page)
        time.sleep(1.5)
        after = video_state(page)
        assert after["time"] > before["time"] + 1.0, (before, after)
        assert page.evaluate("window.__statuses").count("DISCONNECTED") == 0
        deadline = time.monotonic() + 15
        while len(re.findall(rf"worker {index}\.\d+ started", server.log())) < 2:
            assert time.monotonic() < deadline, "the dead worker was not replaced"
            time.sleep(0.2)
    finally:
        for context in contexts:
            context.close()
