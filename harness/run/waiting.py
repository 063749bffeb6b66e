"""Whether every party of a run is blocked waiting: the lock-step relay's barrier.

Assumes Linux's /proc.  The parties are the processes `harness.run.parties.run_group`
starts for one run (with their own children, if any), handed over as they start.
A thread waits when it sleeps (state S), in a timed sleep too (MP-SPDZ polls with
`usleep` while it waits for a peer); a party that has exited waits for nothing.
Until every party has started, the parties are not waiting.
"""

from __future__ import annotations

from pathlib import Path


def _children(pid: int) -> list[int]:
    """The processes `pid` started (from every one of its threads)."""
    out: list[int] = []
    try:
        for task in Path(f"/proc/{pid}/task").iterdir():
            out.extend(int(c) for c in (task / "children").read_text().split())
    except OSError:
        pass
    return out


def _thread_waits(task: Path) -> bool:
    try:
        stat = (task / "stat").read_text()
        return stat[stat.rindex(")") + 2] in "SZX"  # asleep, or exited
    except (OSError, ValueError):
        return True  # gone: it waits for nothing


def _process_waits(pid: int) -> bool:
    try:
        tasks = list(Path(f"/proc/{pid}/task").iterdir())
    except OSError:
        return True
    return all(_thread_waits(t) for t in tasks) and all(_process_waits(c) for c in _children(pid))


class PartiesWaiting:
    """Callable: True when every one of the run's `parties` processes (each `add`ed as
    it starts) waits."""

    def __init__(self, parties: int) -> None:
        self.parties = parties
        self.pids: list[int] = []

    def add(self, pid: int) -> None:
        self.pids.append(pid)

    def __call__(self) -> bool:
        return len(self.pids) == self.parties and all(_process_waits(p) for p in self.pids)
