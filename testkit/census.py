"""Runs ``twistd`` with a census of the server's own objects on demand.

Used as a :class:`testkit.harness.ServerProcess` ``wrap``::

    python -m testkit.census OUT [--no-gc] [--consent-interval S] twistd -n ...

``--no-gc`` turns the cyclic garbage collector off, so that whatever is
released only through a reference cycle stays visible (and keeps its codec
threads) instead of vanishing at some later collection.
``--consent-interval`` shortens aioice's ICE consent checks (5 s apart, six
missed ones close the connection) so that a viewer that vanished is noticed
in a test's time. ``--tracemalloc FRAMES`` traces Python's allocations: the
first SIGUSR2 keeps a snapshot, and each later one lists the source lines whose
live allocations grew most since (slow: for finding a leak, not for timing).
``--trim`` makes each SIGUSR2 also hand glibc's free heap back to the system
(``malloc_trim``) and give the RSS after it: memory that goes then was free,
held by the allocator, not by live objects.
On SIGUSR1 the
process writes OUT (JSON): its threads, RSS and descriptors, and how many
objects of each type the garbage collector tracks. On SIGUSR2 it first runs
a full collection and writes, besides, what that collection freed, by type:
the objects that were only reachable through cycles.
"""

from __future__ import annotations

import ctypes
import gc
import json
import os
import signal
import sys
import threading
import time
import tracemalloc
from collections import Counter
from pathlib import Path
from types import FrameType
from typing import Any


def proc_status() -> dict[str, int]:
    """Threads and RSS (KiB) of this process, from /proc."""
    found: dict[str, int] = {}
    with open("/proc/self/status") as status:
        for line in status:
            key, _, value = line.partition(":")
            if key in ("Threads", "VmRSS"):
                found[key] = int(value.split()[0])
    return found


def type_counts() -> Counter[str]:
    """Objects the collector tracks, by the qualified name of their type."""
    counts: Counter[str] = Counter()
    for obj in gc.get_objects():
        kind = type(obj)
        counts[f"{kind.__module__}.{kind.__qualname__}"] += 1
    return counts


#: The snapshot ``--tracemalloc`` growth is measured from (the first SIGUSR2's).
_first_snapshot: tracemalloc.Snapshot | None = None


def traced_growth(top: int = 25) -> list[str]:
    """Source lines whose live Python allocations grew most since the first
    snapshot (empty at the first), as tracemalloc prints them."""
    global _first_snapshot
    snapshot = tracemalloc.take_snapshot().filter_traces(
        [tracemalloc.Filter(False, tracemalloc.__file__)])
    if _first_snapshot is None:
        _first_snapshot = snapshot
        return []
    return [str(stat) for stat in snapshot.compare_to(_first_snapshot, "lineno")[:top]]


def census(collect: bool, trim: bool = False) -> dict[str, Any]:
    before = type_counts()
    report: dict[str, Any] = {}
    if collect:
        report["collected"] = gc.collect()
        after = type_counts()
        report["freed_by_gc"] = {name: count - after[name] for name, count in before.items()
                                 if count > after[name]}
        before = after
        if tracemalloc.is_tracing():
            report["traced_growth"] = traced_growth()
            report["traced_kib"] = tracemalloc.get_traced_memory()[0] // 1024
    report.update(proc_status())
    if collect and trim:
        started = time.perf_counter()
        ctypes.CDLL("libc.so.6").malloc_trim(0)
        report["trim_ms"] = round((time.perf_counter() - started) * 1000, 1)
        report["VmRSS_trimmed"] = proc_status()["VmRSS"]
    report["fds"] = len(os.listdir("/proc/self/fd"))
    report["python_threads"] = sorted(thread.name for thread in threading.enumerate())
    report["gc_enabled"] = gc.isenabled()
    report["types"] = dict(before)
    return report


def main() -> None:
    out = Path(sys.argv[1])
    args = sys.argv[2:]
    trim = False
    while args and args[0].startswith("--"):
        option = args.pop(0)
        if option == "--no-gc":
            gc.disable()
        elif option == "--consent-interval":
            import aioice.ice

            aioice.ice.CONSENT_INTERVAL = float(args.pop(0))
        elif option == "--trim":
            trim = True
        elif option == "--tracemalloc":
            tracemalloc.start(int(args.pop(0)))
        else:
            raise SystemExit(f"census: unknown option {option}")

    def write(collect: bool) -> None:
        partial = out.with_suffix(".tmp")
        partial.write_text(json.dumps(census(collect, trim)))
        partial.replace(out)  # a reader never sees half a file

    def on_signal(number: int, _frame: FrameType | None) -> None:
        write(collect=number == signal.SIGUSR2)

    signal.signal(signal.SIGUSR1, on_signal)
    signal.signal(signal.SIGUSR2, on_signal)
    sys.argv = args
    from twisted.scripts.twistd import run

    run()


if __name__ == "__main__":
    main()
