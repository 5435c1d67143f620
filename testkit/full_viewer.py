"""A decoding viewer in a process of its own (``python -m testkit.full_viewer URL NAME
SECONDS``): plays for SECONDS after PLAYING and prints what it decoded as JSON, so
that a benchmark's own load does not starve its decoder."""

from __future__ import annotations

import json
import sys

from testkit.rtc_client import play, run


def main() -> None:
    url, name, seconds = sys.argv[1], sys.argv[2], float(sys.argv[3])
    got = run(play(url, name, stop_after=seconds, timeout=seconds + 60))
    print(json.dumps({"statuses": got.statuses, "video": got.video, "numbers": got.numbers}))


if __name__ == "__main__":
    main()
