"""Whether every party of a run is blocked waiting: the lock-step relay's barrier.

Assumes Linux's /proc and that the parties are this process's children, one per
party, started by `harness.run.parties.run_group` (with their own children, if
any).  A thread waits when it sleeps (state S), in a timed sleep too (MP-SPDZ
polls with `usleep` while it waits for a peer); a party that has exited waits
for nothing.  Until every party has started, the parties are not waiting.
"""

from __future__ import annotations

import os
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
    """Callable: True when every one of `parties` started children of this process waits."""

    def __init__(self, parties: int) -> None:
        self.parties = parties
        self.started = False

    def __call__(self) -> bool:
        children = _children(os.getpid())
        if not self.started:
            if len(children) < self.parties:
                return False
            self.started = True
        return all(_process_waits(c) for c in children)
