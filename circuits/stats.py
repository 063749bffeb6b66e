"""Cohort statistics: the aggregates a `stats` query releases, the sums they need.

A stats query reveals only aggregates over its cohort, never a patient's value.
Every aggregate is a function of a few *sums over the cohort* of per-patient
integer columns (`Column`): the count is the sum of ones, a mean needs the sum
of the values and the count, a sample variance also the sum of squares, a
correlation the cross sum.  Engines compute exactly these sums securely (and,
with `dp`, add noise to each inside the secure computation); `combine` turns the
released sums into the aggregates in the clear, which is post-processing.

Clamping bounds are public and part of the query: an age lies in 0..MAX_AGE, an
exam count in 0..E (the exam slots).  A column's `bound` is the most one patient
adds to its sum, which sets its sensitivity.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Literal, Union

from circuits.codes import GENDERS, MAX_AGE, SMOKER_STATES, format_loinc

SITE_MARK = "@site"  # a by-site release's sum name: the column's, then the site: n@site2
CATEGORIES = {"gender": GENDERS, "smoker": SMOKER_STATES}  # and `site`: one code per site
NUMERIC = ("age", "exams")
MECHANISMS = ("discrete-gaussian", "discrete-laplace")


def _require(ok: bool, message: str) -> None:
    if not ok:
        raise ValueError(message)


@dataclass(frozen=True)
class Attribute:
    """A per-patient attribute: `age`, `exams` (how many exams of `loinc` in the last
    `within_months` months), or a category: `gender`, `smoker`, `site`."""

    kind: Literal["age", "exams", "gender", "smoker", "site"]
    loinc: int = 0
    within_months: int = 0

    @property
    def numeric(self) -> bool:
        return self.kind in NUMERIC

    @property
    def name(self) -> str:
        if self.kind == "exams":
            return f"exams({format_loinc(self.loinc)},{self.within_months})"
        return self.kind

    def bound(self, exam_slots: int) -> int:
        """The largest value a patient may have (a numeric attribute's clamping bound)."""
        _require(self.numeric, f"{self.name} is categorical: it has no numeric bound")
        return MAX_AGE if self.kind == "age" else exam_slots


AGE = Attribute("age")


# -- the secure sums: one per-patient column each, summed over the cohort ---------------


class _Indicator:
    """A 0/1 column: the count's ones, a histogram's bin or category."""

    def bound(self, exam_slots: int) -> int:
        return 1


@dataclass(frozen=True)
class Ones(_Indicator):
    """1 for every patient: its sum is the cohort's size."""

    @property
    def name(self) -> str:
        return "n"


@dataclass(frozen=True)
class Power:
    """x or x^2 of a numeric attribute."""

    of: Attribute
    power: Literal[1, 2]

    def bound(self, exam_slots: int) -> int:
        return int(self.of.bound(exam_slots) ** self.power)

    @property
    def name(self) -> str:
        return f"sum({self.of.name}{'^2' if self.power == 2 else ''})"


@dataclass(frozen=True)
class Cross:
    """x * y of two numeric attributes."""

    a: Attribute
    b: Attribute

    def bound(self, exam_slots: int) -> int:
        return self.a.bound(exam_slots) * self.b.bound(exam_slots)

    @property
    def name(self) -> str:
        return f"sum({self.a.name}*{self.b.name})"


@dataclass(frozen=True)
class InBin(_Indicator):
    """[low <= x < high] of a numeric attribute."""

    of: Attribute
    low: int
    high: int

    @property
    def name(self) -> str:
        return f"n({self.low}<={self.of.name}<{self.high})"


@dataclass(frozen=True)
class IsCode(_Indicator):
    """[x == code] of a categorical attribute."""

    of: Attribute
    code: int

    @property
    def name(self) -> str:
        return f"n({self.of.name}={self.code})"


Column = Union[Ones, Power, Cross, InBin, IsCode]
COLUMNS = (Ones, Power, Cross, InBin, IsCode)


# -- the aggregates ---------------------------------------------------------------------


@dataclass(frozen=True)
class Aggregate:
    """One released statistic: `count`, `sum`, `mean`, `variance`, `std` (sample statistics,
    divided by n - 1), `histogram` (categorical, or numeric over `bins`: [b0, b1) ...) or
    `correlation` (Pearson, of two numeric attributes)."""

    op: Literal["count", "sum", "mean", "variance", "std", "histogram", "correlation"]
    of: tuple[Attribute, ...] = ()
    bins: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        arity = {"count": 0, "correlation": 2}.get(self.op, 1)
        _require(len(self.of) == arity, f"{self.op} takes {arity} attribute(s), not {len(self.of)}")
        if self.op == "histogram":
            self._check_bins()
        elif self.op != "count":
            for a in self.of:
                _require(a.numeric, f"{self.op} needs a numeric attribute (age or exams), not {a.name}")

    def _check_bins(self) -> None:
        (of,) = self.of
        if not of.numeric:
            _require(not self.bins, f"{of.name} is categorical: its histogram takes no bins")
            return
        _require(len(self.bins) >= 2, f"a histogram of {of.name} needs bins: at least two edges")
        _require(
            all(a < b for a, b in zip(self.bins, self.bins[1:])),
            f"histogram bins must be strictly increasing, not {list(self.bins)}",
        )

    @property
    def name(self) -> str:
        """The canonical name records use, e.g. `mean(age)`, `histogram(age;0,18,151)`."""
        if self.op == "count":
            return "count"
        args = ",".join(a.name for a in self.of)
        if self.bins:
            args += ";" + ",".join(map(str, self.bins))
        return f"{self.op}({args})"

    def columns(self, sites: int = 0) -> tuple[Column, ...]:
        """The sums this aggregate is computed from."""
        if self.op == "count":
            return (Ones(),)
        if self.op == "histogram":
            (of,) = self.of
            if of.numeric:
                return tuple(InBin(of, lo, hi) for lo, hi in zip(self.bins, self.bins[1:]))
            return tuple(IsCode(of, c) for c in range(_domain(of, sites)))
        if self.op == "correlation":
            a, b = self.of
            return (Ones(), Power(a, 1), Power(b, 1), Power(a, 2), Power(b, 2), Cross(a, b))
        (x,) = self.of
        return {"sum": (Power(x, 1),), "mean": (Ones(), Power(x, 1))}.get(
            self.op, (Ones(), Power(x, 1), Power(x, 2))
        )


def _domain(of: Attribute, sites: int) -> int:
    if of.kind == "site":
        _require(sites > 0, "a histogram of site needs a deployment of sites")
        return sites
    return len(CATEGORIES[of.kind])


@dataclass(frozen=True)
class Privacy:
    """Differential privacy of one run: (epsilon, delta) over all its aggregates, split in
    proportion to `weights` (aggregate name -> weight; an aggregate not named weighs 1)."""

    epsilon: float
    delta: float = 0.0
    mechanism: Literal["discrete-gaussian", "discrete-laplace"] = "discrete-gaussian"
    weights: tuple[tuple[str, float], ...] = ()

    def weight(self, aggregate: str) -> float:
        return dict(self.weights).get(aggregate, 1.0)

    def __post_init__(self) -> None:
        for name, w in self.weights:
            _require(math.isfinite(w) and w > 0, f"dp.weights.{name} must be > 0, not {w}")
        _require(
            math.isfinite(self.epsilon) and self.epsilon > 0, f"dp.epsilon must be > 0, not {self.epsilon}"
        )
        _require(0 <= self.delta < 1, f"dp.delta must be in [0, 1), not {self.delta}")
        _require(self.mechanism in MECHANISMS, f"dp.mechanism must be one of {', '.join(MECHANISMS)}")
        _require(
            self.mechanism != "discrete-gaussian" or self.delta > 0,
            "the discrete Gaussian needs dp.delta > 0",
        )


@dataclass(frozen=True)
class Stats:
    """A stats query's output: its aggregates, per site or not, the privacy, suppression."""

    aggregates: tuple[Aggregate, ...]
    by_site: bool = False
    dp: Privacy | None = None
    suppress_below: int = 0

    def __post_init__(self) -> None:
        _require(len(self.aggregates) >= 1, "stats needs at least one aggregate")
        names = [a.name for a in self.aggregates]
        _require(len(set(names)) == len(names), "an aggregate is repeated")
        _require(self.suppress_below >= 0, "suppress_below must be >= 0")
        unknown = [w for w, _ in (self.dp.weights if self.dp else ()) if w not in names]
        _require(
            not unknown,
            f"dp.weights names {', '.join(unknown)}, not an aggregate of the query ({', '.join(names)})",
        )

    @property
    def needs_sites(self) -> bool:
        return self.by_site or any(a.kind == "site" for g in self.aggregates for a in g.of)

    def columns(self, sites: int = 0) -> tuple[Column, ...]:
        """Every sum the aggregates need, once each, in a fixed order."""
        out: dict[Column, None] = {}
        for g in self.aggregates:
            out.update(dict.fromkeys(g.columns(sites)))
        return tuple(out)

    def attributes(self) -> tuple[Attribute, ...]:
        """The per-patient attributes the aggregates read, in their order."""
        return tuple(dict.fromkeys(a for g in self.aggregates for a in g.of))

    def max_bound(self, exam_slots: int) -> int:
        """The most one patient adds to any sum (an indicator's 1, whatever the sites)."""
        return max(c.bound(exam_slots) for c in self.columns(sites=1))

    def groups(self, sites: int = 0) -> int:
        """How many times the sums are released: once per site `by_site`, else once."""
        return sites if self.by_site else 1

    def released(self, sites: int = 0) -> tuple[Column, ...]:
        """The column of every released sum, in release order: `columns`, once per site
        (site-major) `by_site`."""
        return self.columns(sites) * self.groups(sites)

    def sum_names(self, sites: int = 0) -> list[str]:
        """Every released sum's name: the column's, `@site<s>` added `by_site`."""
        names = [c.name for c in self.columns(sites)]
        if not self.by_site:
            return names
        return [f"{n}{SITE_MARK}{s}" for s in range(sites) for n in names]

    def to_plain(self) -> dict:
        """A canonical JSON-able form (the query's hash, the job handed to a party); no
        weights, none written (so a query's hash is the same as before weights existed)."""
        out = asdict(self)
        if self.dp is not None and not self.dp.weights:
            del out["dp"]["weights"]
        return out

    @staticmethod
    def from_plain(d: dict) -> Stats:
        """The inverse of `to_plain`."""
        aggregates = tuple(
            Aggregate(g["op"], tuple(Attribute(**a) for a in g["of"]), tuple(g["bins"]))
            for g in d["aggregates"]
        )
        dp = None
        if d["dp"] is not None:
            dp = Privacy(
                **{**d["dp"], "weights": tuple((n, float(w)) for n, w in d["dp"].get("weights", ()))}
            )
        return Stats(aggregates, d["by_site"], dp, d["suppress_below"])


def column_name(sum_name: str) -> str:
    """The column a released sum is of (`sum_names` without the site)."""
    return sum_name.split(SITE_MARK)[0]


Value = Union[int, float, str, list, None]  # str: a suppressed count, "<k"


def combine(stats: Stats, released: Sequence[int | float], sites: int = 0) -> dict[str, Value]:
    """Each aggregate's value from the released sums (in `Stats.released` order), in the
    clear: the statistics of the sums (post-processing, so no further privacy cost); `by_site`
    a list of each site's value.  Counts under `suppress_below` are released as "<k".  An
    aggregate undefined on the cohort (a mean of nobody, a variance of one) is None; a
    variance below 0 (noise) is 0 and a correlation is clipped to [-1, 1]."""
    columns = stats.columns(sites)
    k = len(columns)
    groups = [
        _aggregates(stats, dict(zip(columns, released[i : i + k])), sites) for i in range(0, len(released), k)
    ]
    if not stats.by_site:
        return groups[0]
    return {g.name: [values[g.name] for values in groups] for g in stats.aggregates}


def _aggregates(stats: Stats, sums: dict[Column, int | float], sites: int) -> dict[str, Value]:
    """One release of every aggregate from its sums."""
    return {g.name: _suppressed(g, _value(g, sums, sites), stats.suppress_below) for g in stats.aggregates}


def _suppressed(g: Aggregate, value: Value, below: int) -> Value:
    """A released count under `below` as the string "<below" (counts and histogram cells)."""
    if g.op == "count" and isinstance(value, int) and value < below:
        return f"<{below}"
    if g.op == "histogram" and isinstance(value, list):
        return [f"<{below}" if v < below else v for v in value]
    return value


def _value(g: Aggregate, sums: dict[Column, int | float], sites: int) -> Value:
    n = sums.get(Ones(), 0)
    if g.op == "count":
        return sums[Ones()]
    if g.op == "histogram":
        return [sums[c] for c in g.columns(sites)]
    if g.op == "correlation":
        return _correlation(n, *(sums[c] for c in g.columns()[1:]))
    (x,) = g.of
    s1 = sums[Power(x, 1)]
    if g.op == "sum":
        return s1
    if g.op == "mean":
        return s1 / n if n > 0 else None
    variance = _variance(n, s1, sums[Power(x, 2)])
    if variance is None or g.op == "variance":
        return variance
    return math.sqrt(variance)


def _variance(n: float, s1: float, s2: float) -> float | None:
    """The sample variance (n - 1 in the denominator) from n, sum x and sum x^2."""
    if n <= 1:
        return None
    return max(0.0, (s2 - s1 * s1 / n) / (n - 1))


def _correlation(n: float, sa: float, sb: float, saa: float, sbb: float, sab: float) -> float | None:
    """Pearson's r from the five sums; None when a variance is 0 or n <= 1."""
    if n <= 1:
        return None
    spread = (n * saa - sa * sa) * (n * sbb - sb * sb)
    if spread <= 0:
        return None
    return max(-1.0, min(1.0, (n * sab - sa * sb) / math.sqrt(spread)))
