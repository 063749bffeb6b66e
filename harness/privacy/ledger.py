"""The privacy ledger: every differentially private release of each data source.

One JSON line per run of a DP query, beside the results (`privacy-ledger.jsonl` in
their directory): time, data source, query hash, cell and run, the (epsilon, delta)
the run spends, the source's total after it and the budget it counts against.
Totals compose by basic composition: epsilons add up, and deltas.

A run is charged *before* its parties start, and its line is flushed and synced to
disk then: a run that fails has still spent its budget (its parties may have seen
the release), and a sweep killed at any point loses no release it made.  A half-
written last line can only come from a kill while charging, before that run's
parties started; it is dropped with a warning.
"""

from __future__ import annotations

import datetime as dt
import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from circuits.errors import InputError

NAME = "privacy-ledger.jsonl"
UNLIMITED = "unlimited"


@dataclass(frozen=True)
class Spend:
    """An (epsilon, delta) pair: a run's cost, a total, or a budget."""

    epsilon: float
    delta: float

    def __add__(self, other: Spend) -> Spend:
        return Spend(self.epsilon + other.epsilon, self.delta + other.delta)

    def within(self, budget: Spend) -> bool:
        slack = 1e-9  # float sums of split epsilons
        return self.epsilon <= budget.epsilon + slack and self.delta <= budget.delta + slack

    def to_json(self) -> dict:
        return {"epsilon": self.epsilon, "delta": self.delta}


ZERO = Spend(0.0, 0.0)


def beside(results: Path) -> Path:
    """The ledger of a results file: in its directory."""
    return results.parent / NAME


class Ledger:
    """A ledger file: read once, appended to line by line."""

    def __init__(self, path: Path, warn: Callable[[str], None] = lambda message: None):
        self.path = path
        self.entries, self.partial = _read(path, warn)

    def spent(self, source: str) -> Spend:
        """The composed total of a data source's releases."""
        total = ZERO
        for e in self.entries:
            if e["source"] == source:
                total = total + Spend(e["epsilon"], e["delta"])
        return total

    def budget(self, source: str) -> Spend | None:
        """The budget the source's last release counted against (None: no release yet)."""
        for e in reversed(self.entries):
            if e["source"] == source:
                return Spend(**e["budget"])
        return None

    def sources(self) -> list[str]:
        return sorted({e["source"] for e in self.entries})

    def charge(self, source: str, cost: Spend, budget: Spend, **about: object) -> Spend:
        """Record one release, synced to disk before returning; the source's new total."""
        total = self.spent(source) + cost
        entry = {
            "time": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            "source": source,
            **about,
            **cost.to_json(),
            "total": total.to_json(),
            "budget": budget.to_json(),
        }
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if self.partial:  # drop the half-written line before appending
            text = self.path.read_bytes()
            self.path.write_bytes(text[: text.rfind(b"\n") + 1])
            self.partial = False
        with self.path.open("a") as f:
            f.write(json.dumps(entry) + "\n")
            f.flush()
            os.fsync(f.fileno())
        self.entries.append(entry)
        return total


def _read(path: Path, warn: Callable[[str], None]) -> tuple[list[dict], bool]:
    """The entries, and whether a half-written last line was dropped."""
    if not path.exists():
        return [], False
    lines = path.read_text().splitlines()
    entries = []
    for i, line in enumerate(lines):
        try:
            entries.append(json.loads(line))
        except json.JSONDecodeError:
            if i == len(lines) - 1:
                warn(f"{path}: its last line is half-written (a kill while charging); dropped")
                return entries, True
            fix = "the ledger is written by `cohortbench run`; restore it from a copy"
            raise InputError(str(path), f"line {i + 1}", "not a ledger entry", fix) from None
    return entries, False
