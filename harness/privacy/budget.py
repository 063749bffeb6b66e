"""A sweep's privacy budget: refused as a whole when its DP runs would overspend a data
source, then charged run by run in the ledger (`harness.privacy.ledger`).

Each run of a DP query (repeats, warmups and calibration runs alike: all reveal the
release to their parties) spends the query's `dp.epsilon` and `dp.delta`.  The budget
is the config's `budget:`, per data source (each population); `budget: unlimited`
benchmarks without a ledger, and every record says so.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from circuits.errors import InputError
from circuits.ir import Query
from harness.privacy.ledger import UNLIMITED, Ledger, Spend, beside


def cost(query: Query) -> Spend | None:
    """What one run of the query spends (None: it is not differentially private)."""
    if query.stats is None or query.stats.dp is None:
        return None
    return Spend(query.stats.dp.epsilon, query.stats.dp.delta)


@dataclass
class Accountant:
    """The sweep's budget (None: unlimited) and its ledger (None: nothing to charge)."""

    budget: Spend | None
    ledger: Ledger | None

    def charge(self, source: str, query: Query, **about: object) -> Spend | None:
        """Charge one run before it starts; the source's total after it (None: no charge)."""
        run_cost = cost(query)
        if run_cost is None or self.ledger is None or self.budget is None:
            return None
        return self.ledger.charge(source, run_cost, self.budget, query=query.ir_hash, **about)

    def fields(self, source: str, query: Query, dp_error: dict | None) -> dict:
        """The record's `budget` and `budget_spent` (empty for a query without dp), and with
        an unlimited budget (a benchmark, not a release) `dp_error`, the noise of each sum."""
        if cost(query) is None:
            return {}
        if self.budget is None or self.ledger is None:
            return {"budget": UNLIMITED, "budget_spent": None, "dp_error": dp_error}
        return {"budget": self.budget.to_json(), "budget_spent": self.ledger.spent(source).to_json()}


def accountant(
    budget: str | dict | None,
    planned: Iterable[tuple[str, Query]],
    results: Path,
    source: str,
    warn: Callable[[str], None],
) -> Accountant:
    """The sweep's accountant, once its planned runs (data source, query) fit the budget;
    InputError naming the config's `budget` otherwise (`source`: the config file)."""
    runs = Counter((src, cost(q)) for src, q in planned if cost(q) is not None)
    if not runs:
        return Accountant(None, None)
    if budget is None:
        raise InputError(
            source,
            "budget",
            "the query releases differentially private statistics, but the config has no budget",
            "give budget: {epsilon: E, delta: D} (per data source), or budget: unlimited for a benchmark",
        )
    if budget == UNLIMITED:
        return Accountant(None, None)
    assert isinstance(budget, dict)
    total = Spend(float(budget["epsilon"]), float(budget.get("delta", 0.0)))
    ledger = Ledger(beside(results), warn)
    for src in sorted({s for s, _ in runs}):
        _fits(source, ledger, src, total, [(c, n) for (s, c), n in runs.items() if s == src])
    return Accountant(total, ledger)


def _fits(source: str, ledger: Ledger, src: str, total: Spend, runs: list[tuple[Spend | None, int]]) -> None:
    """InputError when the planned runs on `src` would exceed what is left of `total`."""
    planned = Spend(0.0, 0.0)
    count = 0
    for c, n in runs:
        assert c is not None
        planned = planned + Spend(c.epsilon * n, c.delta * n)
        count += n
    spent = ledger.spent(src)
    if (spent + planned).within(total):
        return
    left = Spend(max(0.0, total.epsilon - spent.epsilon), max(0.0, total.delta - spent.delta))
    raise InputError(
        source,
        "budget",
        f"the sweep's {count} DP run(s) on {src} would spend epsilon {planned.epsilon:g}, "
        f"delta {planned.delta:g}, but only epsilon {left.epsilon:g}, delta {left.delta:g} "
        f"of {total.epsilon:g}, {total.delta:g} is left ({ledger.path})",
        "raise the budget, run fewer repeats, or use budget: unlimited for a benchmark",
    )
