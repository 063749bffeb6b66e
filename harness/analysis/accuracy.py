"""The accuracy of DP releases: each sum's noise against epsilon, beside OpenDP's own.

Benchmark runs (`budget: unlimited`) record each released sum's noise (`dp_error`).
Sums of one noise scale are samples of one distribution (a histogram's bins, say:
one release, independent noise per bin), so per engine, mechanism, epsilon and scale
they are pooled over the sums and the runs.  The empirical (1 - alpha) error is
OpenDP's definition of accuracy (alpha = P[|noise| >= a]) on the samples: the smallest
integer a with |noise| < a in at least 1 - alpha of them.  OpenDP's stated accuracy
is that of the noise the release carries (`circuits.privacy.stated_accuracy`).
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import groupby

import numpy as np
from rich.table import Table

from circuits.privacy import stated_accuracy
from circuits.stats import column_name
from harness.analysis.records import Record

ALPHA = 0.05


@dataclass(frozen=True)
class Point:
    engine: str  # engine/protocol/parties
    mechanism: str
    epsilon: float
    scale: float  # of the release (`dp.scale`)
    runs: int
    samples: int  # noises pooled: the sums of this scale in each run
    empirical: float  # the smallest a with |noise| < a in 1 - ALPHA of the samples
    stated: float | None  # OpenDP's accuracy at ALPHA

    @property
    def ratio(self) -> float | None:
        return None if not self.stated else self.empirical / self.stated


@dataclass(frozen=True)
class _Sample:
    key: tuple  # engine, mechanism, epsilon, scale
    run: int  # which record
    noise: int
    parties: int
    honest: int


def _samples(records: list[Record]) -> list[_Sample]:
    """One per sum and correct measured run."""
    out = []
    for i, r in enumerate(records):
        if not (r.dp and r.dp_error and r.correct and not r.warmup):
            continue
        d = r.dp
        engine = f"{r.engine}/{r.protocol}/{r.parties}p"
        for name, noise in r.dp_error.items():
            key = (engine, d["mechanism"], d["epsilon"], d["scale"][column_name(name)])
            out.append(_Sample(key, i, noise, d["parties"], d["honest_shares"]))
    return sorted(out, key=lambda s: s.key)


def points(records: list[Record]) -> list[Point]:
    """One point per engine, mechanism, epsilon and noise scale."""
    out = []
    for (engine, mechanism, epsilon, scale), group in groupby(_samples(records), key=lambda s: s.key):
        found = list(group)
        errors = np.abs([s.noise for s in found])
        empirical = float(np.quantile(errors, 1 - ALPHA, method="inverted_cdf")) + 1  # integers: < a
        stated = stated_accuracy(mechanism, scale, found[0].parties, found[0].honest, ALPHA)
        runs = len({s.run for s in found})
        out.append(Point(engine, mechanism, epsilon, scale, runs, len(found), empirical, stated))
    return out


def table(records: list[Record]) -> Table | None:
    """The accuracy table for `show` (None without DP benchmark runs)."""
    found = points(records)
    if not found:
        return None
    t = Table(title=f"DP accuracy: {100 * (1 - ALPHA):g}% error of the released sums, empirical vs OpenDP")
    for name in (
        "engine",
        "mechanism",
        "epsilon",
        "scale",
        "runs",
        "samples",
        "empirical",
        "OpenDP",
        "ratio",
    ):
        t.add_column(name, justify="left" if name in ("engine", "mechanism") else "right")
    for p in found:
        stated = "-" if p.stated is None else f"{p.stated:.3g}"
        ratio = "-" if p.ratio is None else f"{p.ratio:.2f}"
        cells = (f"{p.epsilon:g}", f"{p.scale:.3g}", str(p.runs), str(p.samples), f"{p.empirical:.3g}")
        t.add_row(p.engine, p.mechanism, *cells, stated, ratio)
    return t
