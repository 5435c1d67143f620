"""``wcs/media/audio.py``: AAC → Opus and Opus → AAC, and what they leave behind."""

from __future__ import annotations

import json
import subprocess
import sys

from testkit.harness import REPO

#: Transcodes a file's audio both ways with the collector off, then reports
#: the process's threads and what only the collector could free.
LEFT_BEHIND = """
import collections, gc, json, sys
from pathlib import Path
gc.disable()
from wcs.media.audio import AacTranscoder
from wcs.media.mp4 import Mp4File

def threads():
    with open("/proc/self/status") as status:
        return int(next(line for line in status if line.startswith("Threads:")).split()[1])

gc.collect()
before = threads()
for _ in range(3):
    media = Mp4File(Path(sys.argv[1]), "test")
    opus = list(media.opus_samples())
    media.close()
    aac = AacTranscoder()
    made = [sample for packet in opus for sample in aac.feed(packet)]
    del media, aac
gc.set_debug(gc.DEBUG_SAVEALL)
gc.collect()
garbage = collections.Counter(type(o).__module__ + "." + type(o).__qualname__
                              for o in gc.garbage if not type(o).__module__ == "builtins")
print(json.dumps({"threads": threads() - before, "garbage": garbage,
                  "opus": len(opus), "aac": len(made)}))
"""


def test_transcoders_let_go_of_everything_without_the_collector():
    """Every play without the Opus cache makes a transcoder: its FFmpeg objects
    (and their threads) must go when it does, not at the next collection.
    PyAV 18.1.1's resampler kept its filter graph in a cycle with two threads of
    its own (setup.py keeps PyAV below it)."""
    done = subprocess.run([sys.executable, "-c", LEFT_BEHIND, str(REPO / "media" / "sample.mp4")],
                          cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    found = json.loads(done.stdout)
    assert found["opus"] > 100 and found["aac"] > 100, found
    assert found["threads"] == 0 and found["garbage"] == {}, found
