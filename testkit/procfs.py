"""A process's CPU and memory as ``/proc`` tells them: for the benches, which
measure a server and its workers, and for the suite's room trace."""

from __future__ import annotations

from pathlib import Path

#: Clock ticks a second in ``/proc/*/stat`` (USER_HZ, 100 on Linux).
TICKS = 100.0


def stat_fields(pid: int | str) -> list[str]:
    """``/proc/PID/stat``'s fields after the command name (the state is the first)."""
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()


def proc_stat(pid: int | str) -> tuple[float, int]:
    """(CPU seconds, RSS bytes) of a process, from /proc."""
    user, system, rss = proc_times(pid)
    return user + system, rss


def proc_times(pid: int | str) -> tuple[float, float, int]:
    """(user CPU seconds, kernel CPU seconds, RSS bytes) of a process, from /proc."""
    fields = stat_fields(pid)
    return int(fields[11]) / TICKS, int(fields[12]) / TICKS, int(fields[21]) * 4096


def tree_times(pid: int) -> tuple[float, float, int]:
    """:func:`proc_times` summed over a process and its children (a supervisor
    and its workers); processes that ended meanwhile are left out."""
    total = [0.0, 0.0, 0]
    for member in [pid, *children(pid)]:
        try:
            times = proc_times(member)
        except (FileNotFoundError, ProcessLookupError):
            continue
        total = [a + b for a, b in zip(total, times, strict=True)]
    # whole ticks summed as floats: rounded back to ticks, or an idle server's two
    # readings could differ by -1e-17 (printed "-0.00 % of a core")
    return round(total[0], 2), round(total[1], 2), int(total[2])


def children(pid: int) -> list[int]:
    """The direct children of a process, from /proc."""
    found = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        text = (task / "children").read_text().split() if (task / "children").exists() else []
        found += [int(child) for child in text]
    return found


def peak_rss(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    return 0


def descendants(pid: int) -> list[int]:
    """Every process under ``pid``: its children, theirs, and so on."""
    found: list[int] = []
    waiting = [pid]
    while waiting:
        try:
            below = children(waiting.pop())
        except (FileNotFoundError, ProcessLookupError):
            continue  # ended meanwhile
        found += below
        waiting += below
    return found


def total_cpu(pid: int | str) -> float:
    """CPU seconds of a process and of the children it has reaped (theirs included)."""
    fields = stat_fields(pid)
    return sum(int(value) for value in fields[11:15]) / TICKS
