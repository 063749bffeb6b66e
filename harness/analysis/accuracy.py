"""The accuracy of DP releases: each sum's noise against epsilon, beside OpenDP's own.

Benchmark runs (`budget: unlimited`) record each released sum's noise (`dp_error`).
Per engine, mechanism, epsilon and sum, the empirical (1 - alpha) error is the
(1 - alpha) quantile of |noise| over the runs; OpenDP's stated accuracy is that of
the noise the release carries (`circuits.privacy.stated_accuracy`).
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import groupby

import numpy as np
from rich.table import Table

from circuits.privacy import stated_accuracy
from harness.analysis.records import Record

ALPHA = 0.05


@dataclass(frozen=True)
class Point:
    engine: str  # engine/protocol/parties
    mechanism: str
    epsilon: float
    column: str  # the sum, e.g. `n`
    runs: int
    empirical: float  # the (1 - ALPHA) quantile of |noise|
    stated: float | None  # OpenDP's accuracy at ALPHA

    @property
    def ratio(self) -> float | None:
        return None if not self.stated else self.empirical / self.stated


def _key(r: Record, column: str) -> tuple:
    assert r.dp is not None
    return (f"{r.engine}/{r.protocol}/{r.parties}p", r.dp["mechanism"], r.dp["epsilon"], column)


def points(records: list[Record], column: str = "n") -> list[Point]:
    """One point per engine, mechanism, epsilon for `column`, over the correct measured runs."""
    usable = [r for r in records if r.dp_error and column in r.dp_error and r.correct and not r.warmup]
    usable.sort(key=lambda r: _key(r, column))
    out = []
    for (engine, mechanism, epsilon, col), group in groupby(usable, key=lambda r: _key(r, column)):
        runs = list(group)
        assert runs[0].dp is not None
        d = runs[0].dp
        errors = np.abs([r.dp_error[col] for r in runs if r.dp_error])
        stated = stated_accuracy(mechanism, d["scale"][col], d["parties"], d["honest_shares"], ALPHA)
        out.append(
            Point(engine, mechanism, epsilon, col, len(runs), float(np.quantile(errors, 1 - ALPHA)), stated)
        )
    return out


def table(records: list[Record]) -> Table | None:
    """The accuracy table for `show` (None without DP benchmark runs)."""
    found = points(records)
    if not found:
        return None
    t = Table(title=f"DP accuracy of the count: {100 * (1 - ALPHA):g}% error, empirical vs OpenDP")
    for name in ("engine", "mechanism", "epsilon", "runs", "empirical", "OpenDP", "ratio"):
        t.add_column(name, justify="left" if name in ("engine", "mechanism") else "right")
    for p in found:
        stated = "-" if p.stated is None else f"{p.stated:.3g}"
        ratio = "-" if p.ratio is None else f"{p.ratio:.2f}"
        t.add_row(p.engine, p.mechanism, f"{p.epsilon:g}", str(p.runs), f"{p.empirical:.3g}", stated, ratio)
    return t
