"""A dry run: what a sweep would do, found without running anything.

It loads every population the grid uses (so that every padding bound that a
population exceeds is found at once, not one per real run), counts the runs
that a results file already holds, those still to do and those that the
file's records show `budget_s` would skip, checks that the DP runs fit the privacy
`budget`, and estimates the time the runs to do take:

* from earlier runs of the same cell in the results file (the median `wall_s`);
* else from the cost model (`circuits.cost`): the run's secure operations
  (multiplications, plus each comparison or equality test counted as its
  operand's bits of multiplications) times the patients, turned into seconds by
  a line `wall_s = a + b * operations` fitted to earlier records of the same
  engine, protocol and parties (on the same network if there are any): the
  results file's, else the committed CI baseline's (`baselines/ci.jsonl`, MPyC on
  loopback); a setting with neither has no estimate, and the dry run says so.

The estimate is rough: it leaves out compilation and calibration runs, and the
load of the machine when the records were made.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from circuits import cost, ir
from circuits.errors import InputError
from circuits.population import EXACT, Padding
from circuits.queryfile import load_query
from harness.analysis import records as results
from harness.analysis.records import Record
from harness.data.sources import Source
from harness.run.config import Experiment
from harness.run.meta import REPO
from harness.run.sweep import Budget, Cell, cells, privacy_budget, resumed_over, runs, to_do

BASELINE = REPO / "baselines" / "ci.jsonl"
KNOWN_QUERIES = REPO / "configs" / "queries"


@dataclass
class Estimate:
    """Seconds for the runs to do, and how many runs each way estimated them."""

    seconds: float = 0.0
    measured: int = 0  # from earlier runs of the same cell
    modelled: int = 0  # from the cost model and a fitted rate
    unknown: int = 0  # neither


@dataclass
class DryRun:
    cells: list[Cell]
    planned: int
    done: int
    todo: int
    skipped: int  # of the runs not done, those the file's records show budget_s would skip
    estimate: Estimate
    problems: list[InputError] = field(default_factory=list)


def dry_run(exp: Experiment, out: Path, force: bool, warn: Callable[[str], None]) -> DryRun:
    """What `run` would do with `out` (resumed if it exists); every problem found, collected."""
    problems: list[InputError] = []
    kept = results.read(out, warn) if out.exists() and out.stat().st_size else []
    try:
        resumed_over(exp, out, kept, force)
    except InputError as e:
        problems.append(e)
    shapes: dict[tuple[str, Padding], tuple[int, tuple[int, int]]] = {}
    for src, padding in dict.fromkeys((c.source, c.padding) for c in cells(exp)):
        try:
            pop = exp.population(src, padding, warn)
        except InputError as e:
            problems += _bound_errors(exp, src, padding, e)
            continue
        shapes[src.text, padding] = (len(pop), pop.slots)
    budget = Budget(exp.config.budget_s)
    budget.replay(exp, kept)
    todo = to_do(exp, kept)
    try:
        privacy_budget(exp, todo, out, warn)
    except InputError as e:
        problems.append(e)
    running = [c for c, _, _ in todo if budget.exceeded(c) is None]
    estimate = _estimate(exp, running, kept, shapes)
    plan = runs(exp)
    return DryRun(
        cells(exp),
        len(plan),
        len(plan) - len(todo),
        len(running),
        len(todo) - len(running),
        estimate,
        problems,
    )


def _bound_errors(exp: Experiment, src: Source, padding: Padding, first: InputError) -> list[InputError]:
    """Every bound of `padding` that the source exceeds, each tried on its own (a
    population over both bounds fails on the first one it checks)."""
    if not first.location.startswith("padding"):
        return [first]
    found = []
    for single in (Padding(padding.conditions, EXACT), Padding(EXACT, padding.exams)):
        if single == padding:
            continue
        try:
            exp.population(src, single, lambda message: None)
        except InputError as e:
            found.append(e)
    where = f"padding {padding.label()}, population {src.text}"
    return [InputError(e.source, where, e.problem, e.fix) for e in found or [first]]


def _estimate(
    exp: Experiment,
    running: list[Cell],
    kept: list[Record],
    shapes: dict[tuple[str, Padding], tuple[int, tuple[int, int]]],
) -> Estimate:
    out = Estimate()
    walls: dict[str, list[float]] = {}
    for r in kept:
        if not r.skipped and r.wall_s is not None:
            walls.setdefault(r.cell, []).append(r.wall_s)
    rates = _Rates(exp, kept)
    for cell in running:
        seen = walls.get(cell.key(exp))
        shape = shapes.get((cell.source.text, cell.padding))
        modelled = rates.seconds(cell, *shape) if shape and not seen else None
        if seen:
            out.seconds, out.measured = out.seconds + statistics.median(seen), out.measured + 1
        elif modelled is not None:
            out.seconds, out.modelled = out.seconds + modelled, out.modelled + 1
        else:
            out.unknown += 1
    return out


def operations(query: ir.Query, patients: int, slots: Iterable[int]) -> float:
    """A run's secure operations by the cost model: multiplications, each comparison or
    equality test counted as its operand's bits of multiplications."""
    c = cost.estimate(ir.normalise(query.root), *slots)
    return patients * (c.multiplications + (c.comparisons + c.equalities) * max(c.max_bits, 1))


class _Rates:
    """Seconds per secure operation, fitted per engine setting to records of known queries."""

    def __init__(self, exp: Experiment, kept: list[Record]):
        self.queries = {q.ir_hash: q for q in exp.queries}
        for path in sorted(KNOWN_QUERIES.glob("*.yaml")):
            q, _ = load_query(path)
            self.queries.setdefault(q.ir_hash, q)
        baseline = results.read(BASELINE, lambda message: None) if BASELINE.exists() else []
        self.sets = [[r for r in records if self._usable(r)] for records in (kept, baseline)]

    def _usable(self, r: Record) -> bool:
        return (
            not r.skipped
            and r.error is None
            and r.wall_s is not None
            and r.slots is not None
            and r.population is not None
            and r.query is not None
            and r.query["ir_hash"] in self.queries
        )

    def seconds(self, cell: Cell, patients: int, slots: tuple[int, int]) -> float | None:
        """From the records of the same engine setting on the same network, else on any;
        the results file's first, else the baseline's."""
        setting = (cell.engine.engine, cell.engine.protocol, cell.engine.parties)
        for records in self.sets:
            same = [r for r in records if (r.engine, r.protocol, r.parties) == setting]
            here = [r for r in same if r.network is not None and r.network.get("name") == cell.network.name]
            fit = _fit([(self._operations(r), r.wall_s or 0.0) for r in here or same])
            if fit is not None:
                return fit[0] + fit[1] * operations(cell.query, patients, slots)
        return None

    def _operations(self, r: Record) -> float:
        assert r.query is not None and r.population is not None and r.slots is not None
        return operations(self.queries[r.query["ir_hash"]], r.population, r.slots)


def _fit(points: list[tuple[float, float]]) -> tuple[float, float] | None:
    """(a, b) of wall_s = a + b * operations, neither negative; None without points."""
    if not points:
        return None
    x, y = np.array(points).T
    if len(set(x)) < 2:
        return 0.0, float(np.median(y / np.maximum(x, 1)))
    b, a = np.polyfit(x, y, 1)
    if b <= 0:
        return float(np.median(y)), 0.0
    return (float(a), float(b)) if a >= 0 else (0.0, float(np.median(y / np.maximum(x, 1))))
