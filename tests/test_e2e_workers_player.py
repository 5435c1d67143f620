"""The SDK's player pages in Chromium, on two workers of one server: one broadcast."""

from __future__ import annotations

import statistics
import time

from testkit.browser import STATUS_RECORDER
from testkit.pages import (
    frame_differences,
    open_player,
    video_state,
    wait_status,
    wait_video,
)
from testkit.rest_client import call
from tests.test_e2e_workers import NAME, TRIES, workers_of


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
            context = browser.new_context()
            context.add_init_script(STATUS_RECORDER)
            contexts.append(context)
            candidate = context.new_page()
            open_player(candidate, server, NAME)
            wait_status(candidate, "PLAYING")
            wait_video(candidate)
            time.sleep(1.5)  # each worker reports its viewers every second
            if len(busy_workers(server)) == 2:
                other = candidate
                break
        assert other is not None, f"{TRIES} pages all landed on worker {first_worker}"
        time.sleep(1.0)
        differences = frame_differences(page, other)
        print(f"frame differences across workers: {differences}")
        assert statistics.median(differences) <= 3, differences
        before = video_state(other)
        time.sleep(1.0)
        after = video_state(other)
        assert after["width"] > 0 and after["time"] > before["time"]
    finally:
        for context in contexts:
            context.close()
