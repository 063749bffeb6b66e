"""A stats query's sums over the cohort (`circuits.stats`), as MPyC secure arrays.

Each column is a per-patient secure value built from the shared inputs with the
criteria lowering's own operations (`Vectorised`): an age, an exam tally, a
Lagrange indicator of a category, a range test, a product of two of them.  The
cohort's bits then meet all the columns in one matrix product, so a batch of
patients adds one round and one secure sum per column, whatever the population.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from mpyc.runtime import mpc

from backends.mpyc.job import Job
from circuits import cost, noise
from circuits.codes import SMALL_DOMAIN
from circuits.ir import ExamCount
from circuits.cost import DataBounds
from circuits.stats import COLUMNS, Attribute, Column, Cross, InBin, IsCode, Ones, Power, Stats
from circuits.visitor import Visitor
from backends.mpyc.vectorised import Vectorised


def range_bits(of: Attribute, exam_slots: int) -> int:
    """The signed width of x - edge for a bin of `of` (edges clamped to 0..bound + 1)."""
    top = of.bound(exam_slots) + 1
    return cost.AGE_CMP_BITS if of.kind == "age" else cost.count_bits(top, top)


def comparison_bits(stats: Stats, exam_slots: int, bounds: DataBounds, sites: int = 1) -> int:
    """The widest secure comparison the columns make: the bit length they need."""
    widths = [8]
    for c in stats.columns(sites):
        attributes = (c.a, c.b) if isinstance(c, Cross) else (c.of,) if isinstance(c, (Power, InBin)) else ()
        for a in attributes:
            if a.kind == "exams":
                widths.append(
                    cost.estimate(ExamCount(a.loinc, 1, a.within_months), 1, exam_slots, bounds).max_bits
                )
        if isinstance(c, InBin):
            widths.append(range_bits(c.of, exam_slots))
    return max(widths)


class Columns(Visitor[Any]):
    """Translator of stats columns to secure integer arrays of shape (N,).  Under sites
    holding rows, `site_of_row` is the public site of each secure row (its block)."""

    target = "MPyC's statistics lowering (shamir)"
    nodes = COLUMNS

    def __init__(self, lowering: Vectorised, site_of_row: np.ndarray | None = None):
        self.lowering, self.site_of_row = lowering, site_of_row
        self.values: dict[Attribute, Any] = {}  # each attribute computed once per batch

    def sums(self, bits: Any, columns: tuple[Column, ...]) -> Any:
        """The cohort's sum of every column: bits (N,) times the columns (N, K)."""
        return bits @ self.lowering.mpc.np_stack([self.visit(c) for c in columns], axis=1)

    def sums_by_block(self, bits: Any, columns: tuple[Column, ...], blocks: list[int]) -> Any:
        """Each block's sums in turn (K per block): a site's cohort, by site."""
        matrix = self.lowering.mpc.np_stack([self.visit(c) for c in columns], axis=1)
        edges = np.cumsum([0, *blocks])
        parts = [bits[a:b] @ matrix[a:b] if b > a else matrix[0] * 0 for a, b in zip(edges, edges[1:])]
        return self.lowering.mpc.np_concatenate(parts)

    def visit_ones(self, node: Ones) -> Any:
        return self.lowering.column("age") * 0 + 1

    def visit_power(self, node: Power) -> Any:
        x = self.value(node.of)
        return x if node.power == 1 else x * x

    def visit_cross(self, node: Cross) -> Any:
        return self.value(node.a) * self.value(node.b)

    def visit_in_bin(self, node: InBin) -> Any:
        """[low <= x < high], the edges clamped to the attribute's range (public)."""
        top = node.of.bound(self.lowering.slots[1]) + 1
        low, high = max(node.low, 0), min(node.high, top)
        if low >= high:
            return self.visit_ones(Ones()) * 0
        bits = range_bits(node.of, self.lowering.slots[1])
        x = self.value(node.of)
        below = self.lowering.mpc.np_sgn(self.lowering.mpc.np_stack((x - low, x - high)), l=bits, LT=True)
        return (1 - below[0]) * below[1]

    def visit_is_code(self, node: IsCode) -> Any:
        if node.of.kind == "site":
            if self.site_of_row is None:
                raise ValueError("a histogram of site needs a deployment of sites holding rows")
            return self.visit_ones(Ones()) * (self.site_of_row == node.code).astype(np.int64)
        return self.lowering.indicator(self.lowering.column(node.of.kind), node.code, SMALL_DOMAIN)

    def value(self, a: Attribute) -> Any:
        """A numeric attribute of every patient: the age, or the exam tally."""
        if a not in self.values:
            if a.kind == "age":
                self.values[a] = self.lowering.column("age")
            else:
                self.values[a] = self.lowering.exam_tally(ExamCount(a.loinc, 1, a.within_months))
        return self.values[a]


async def release(job: Job, sums: Any, secint: Any) -> list[int]:
    """The sums revealed to every party, each plus its noise with dp."""
    if job.noise is not None:
        sums = sums + _noise(job, secint)
    return [int(v) for v in await mpc.output(sums)]


def _noise(job: Job, secint: Any) -> Any:
    """The sums' noise: every party draws its share of each (`circuits.noise.share`) and
    inputs it; the shares' sum stays secret.  COHORTBENCH_DEBUG_NOISE=1 (tests only) also
    writes this party's shares beside its result."""
    assert job.noise is not None
    mine = noise.draw(job.noise["mechanism"], job.noise["scales"], job.noise["honest"])
    noise.keep_for_tests(Path(job.result_path), mpc.pid, mine)
    shares = mpc.input(secint.array(np.array(mine, dtype=np.int64)))
    return sum(shares[1:], shares[0])
