"""A decoding viewer in a process of its own (``python -m testkit.full_viewer URL NAME
SECONDS``), so that a benchmark's own load does not starve its decoder: prints a
line at PLAYING (a loaded machine may take seconds to start it), plays for SECONDS
after it (0: until SIGTERM, at most an hour) and prints what it decoded as JSON."""

from __future__ import annotations

import asyncio
import json
import signal
import sys
import threading

from testkit.rtc_client import Received, play, run

#: The longest an until-told play lasts (s).
LONGEST = 3600.0


async def watch(url: str, name: str, seconds: float, told: threading.Event) -> Received:
    result = Received()
    stop = asyncio.Event()
    task = asyncio.ensure_future(
        play(
            url,
            name,
            stop_after=seconds or None,
            timeout=(seconds or LONGEST) + 60,
            stop_event=stop,
            result=result,
        )
    )
    said = False
    while not task.done():
        if not said and "PLAYING" in result.statuses:
            print("PLAYING", flush=True)
            said = True
        if told.is_set():
            stop.set()
        await asyncio.sleep(0.05)
    if not said:
        print("NOT PLAYING", flush=True)
    return await task


def main() -> None:
    url, name, seconds = sys.argv[1], sys.argv[2], float(sys.argv[3])
    told = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: told.set())
    got = run(watch(url, name, seconds, told), timeout=(seconds or LONGEST) + 90)
    print(json.dumps({"statuses": got.statuses, "video": got.video, "numbers": got.numbers}))


if __name__ == "__main__":
    main()
