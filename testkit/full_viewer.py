"""A decoding viewer in a process of its own (``python -m testkit.full_viewer URL NAME
SECONDS``): prints a line at PLAYING (a loaded machine may take seconds to start
it), plays for SECONDS after it and prints what it decoded as JSON, so that a
benchmark's own load does not starve its decoder."""

from __future__ import annotations

import asyncio
import json
import sys

from testkit.rtc_client import Received, play, run


async def watch(url: str, name: str, seconds: float) -> Received:
    result = Received()
    task = asyncio.ensure_future(
        play(url, name, stop_after=seconds, timeout=seconds + 60, result=result)
    )
    while not task.done() and "PLAYING" not in result.statuses:
        await asyncio.sleep(0.05)
    print("PLAYING" if "PLAYING" in result.statuses else "NOT PLAYING", flush=True)
    return await task


def main() -> None:
    url, name, seconds = sys.argv[1], sys.argv[2], float(sys.argv[3])
    got = run(watch(url, name, seconds))
    print(json.dumps({"statuses": got.statuses, "video": got.video, "numbers": got.numbers}))


if __name__ == "__main__":
    main()
