"""Stats under columns: each released sum as the cohort's encrypted bits times the factors
its column needs, each factor a per-patient vector that one site computes in the clear.

A column over one site's attributes (a power, a bin, a code, a cross of two of them) is
one factor, computed by that site (`circuits.oracle.ColumnValues` on its own data); a
cross of two sites' attributes is two factors, each site's attribute, multiplied on
ciphertexts; the count's ones are none (the sum is the bits').  Party 0 multiplies the
bits by each sum's factors and adds every party's mask for that sum: uniform slots adding
up to the party's noise share (0 without dp), so the decrypted slots add up to the
released sum and are uniform given it.  (`by_site` and a histogram of `site` need sites
holding rows: the config refuses them here.)  Pure Python: both the harness and the parties import it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from circuits.locality import Split
from circuits.stats import Attribute, Column, Cross, Ones, Power

# The raw column that says which site holds an attribute (`Split.holder`).
_RAW_COLUMN = {"age": "age", "gender": "gender", "smoker": "smoker", "exams": "exam_codes"}


@dataclass(frozen=True)
class Factor:
    """One site's per-patient vector: `column` evaluated on its own data."""

    site: int
    column: Column


def factors(plan: Split) -> list[tuple[Factor, ...]]:
    """Each released sum's factors, in release order (`Stats.released`)."""
    stats = plan.query.stats
    assert stats is not None
    return [_factors(c, plan) for c in stats.released(plan.holdings.sites)]


def extra_depth(factors_of: tuple[Factor, ...], remainder: int) -> int:
    """The depth of the bits (at depth `remainder`) times a sum's factors, multiplied as
    bits x (product of the factors)."""
    if not factors_of:
        return remainder
    return max(remainder, math.ceil(math.log2(len(factors_of)))) + 1


def _factors(column: Column, plan: Split) -> tuple[Factor, ...]:
    attributes = _attributes(column)
    sites = {_holder(a, plan) for a in attributes}
    if len(sites) <= 1:
        return tuple(Factor(s, column) for s in sites)
    assert isinstance(column, Cross)  # the only column of two attributes
    return tuple(Factor(_holder(a, plan), Power(a, 1)) for a in (column.a, column.b))


def _attributes(column: Column) -> tuple[Attribute, ...]:
    if isinstance(column, Ones):
        return ()
    if isinstance(column, Cross):
        return (column.a, column.b)
    return (column.of,)


def _holder(a: Attribute, plan: Split) -> int:
    site = plan.holder(_RAW_COLUMN[a.kind])
    assert site is not None  # columns: every raw column has its site
    return site
