"""The plaintext oracle: the IR evaluated in the clear with numpy.

Every secure run is checked against it; it is also the `plain` engine.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from circuits.cost import DataBounds
from circuits.holdings import PATIENT_HELD, Holdings, Partition
from circuits.ir import AgeRange, And, ExamCount, Gender, HasCondition, LocalBit, Node, Not, Or, Output, Query
from circuits.ir import SecretAge, SecretCondition, SecretExam, SecretGender, SecretLeaf
from circuits.ir import SecretSmoker, Smoker
from circuits.population import Population
from circuits.stats import COLUMNS, Attribute, Cross, InBin, IsCode, Ones, Power, Stats, Value, combine
from circuits.visitor import Visitor


@dataclass(frozen=True, eq=False)
class Cohort:
    """The answer to a query: one bit per patient (the count is their sum) and, for a
    stats query, the exact sums over the cohort its aggregates need (`circuits.stats`)."""

    eligible: np.ndarray  # bool (N,)
    sums: tuple[int, ...] = ()  # in the order of `Stats.columns`

    def released(self, stats: Stats, sites: int = 0) -> dict[str, Value]:
        """The aggregates, noise-free."""
        return combine(stats, self.sums, sites)

    @property
    def count(self) -> int:
        return int(self.eligible.sum())

    def ids(self, population: Population) -> list[str]:
        return [population.ids[i] for i in np.flatnonzero(self.eligible)]

    def count_by_site(self, holdings: Holdings) -> list[int]:
        """The cohort size at each site (rows: the eligible patients each site holds)."""
        if holdings.partition is not Partition.ROWS:
            raise ValueError("count_by_site needs a deployment with partition: rows")
        return [int(self.eligible[list(holdings.patients_of(s))].sum()) for s in range(holdings.sites)]

    def learnt(self, output: Output, holdings: Holdings = PATIENT_HELD, parties: int = 1) -> list:
        """What each of `parties` parties may learn, and all it may learn: `count` and
        `count_by_site` every party; `eligible` the data holder (party 0) in the patient
        deployment, under `rows` each site its own patients' bits (in population order),
        under `columns` only `reveal_to`.  None: nothing (a party that is not a site, such
        as an extra researcher, learns no bits)."""
        everyone = max(parties, holdings.sites)
        if output is Output.COUNT:
            return [self.count] * everyone
        if output is Output.STATS:
            return [list(self.sums)] * everyone
        if output is Output.COUNT_BY_SITE:
            return [self.count_by_site(holdings)] * everyone
        bits = self.eligible.astype(int)
        if holdings.partition is Partition.ROWS:
            own = [bits[list(holdings.patients_of(s))].tolist() for s in range(holdings.sites)]
            return own + [None] * (everyone - holdings.sites)
        reader = holdings.reveal_to if holdings.partition is Partition.COLUMNS else 0
        return [bits.tolist() if p == reader else None for p in range(everyone)]


@dataclass(frozen=True)
class Oracle(Visitor[np.ndarray]):
    """Each node as a boolean vector over the population: which patients satisfy it."""

    pop: Population
    local: np.ndarray | None = None  # (N, parts): the local parts' bits, for a split's remainder
    constants: tuple[int, ...] = ()  # a private query's secret constants (`circuits.secret`)
    target = "the plaintext oracle"

    def visit_local_bit(self, node: LocalBit) -> np.ndarray:
        if self.local is None:
            raise ValueError("a LocalBit needs the local parts' bits (circuits.locality)")
        return self.local[:, node.index].astype(bool)

    def visit_age_range(self, node: AgeRange) -> np.ndarray:
        return (self.pop.age > node.min_exclusive) & (self.pop.age < node.max_exclusive)

    def visit_gender(self, node: Gender) -> np.ndarray:
        return self.pop.gender == node.code

    def visit_smoker(self, node: Smoker) -> np.ndarray:
        return self.pop.smoker == node.code

    def visit_has_condition(self, node: HasCondition) -> np.ndarray:
        return np.asarray(np.isin(self.pop.conditions, node.codes).any(axis=1))

    def visit_exam_count(self, node: ExamCount) -> np.ndarray:
        hits = (self.pop.exam_codes == node.loinc) & (self.pop.exam_months <= node.within_months)
        return hits.sum(axis=1) >= node.at_least

    def visit_secret_age(self, node: SecretAge) -> np.ndarray:
        low, high = self._constants(node)
        return (self.pop.age > low) & (self.pop.age < high)

    def visit_secret_gender(self, node: SecretGender) -> np.ndarray:
        return self.pop.gender == self._constants(node)[0]

    def visit_secret_smoker(self, node: SecretSmoker) -> np.ndarray:
        return self.pop.smoker == self._constants(node)[0]

    def visit_secret_condition(self, node: SecretCondition) -> np.ndarray:
        return np.asarray(np.isin(self.pop.conditions, self._constants(node)).any(axis=1))

    def visit_secret_exam(self, node: SecretExam) -> np.ndarray:
        index, at_least, within = self._constants(node)
        kinds = DataBounds().exam_indexes(self.pop.exam_codes)
        hits = (kinds == index) & (self.pop.exam_months <= within)
        return hits.sum(axis=1) >= at_least

    def _constants(self, node: SecretLeaf) -> list[int]:
        if len(self.constants) < node.constants.stop:
            raise ValueError("a private query's template needs its secret constants (circuits.secret)")
        return [self.constants[i] for i in node.constants]

    def visit_not(self, node: Not) -> np.ndarray:
        return ~self.visit(node.child)

    def visit_and(self, node: And) -> np.ndarray:
        return np.logical_and.reduce([self.visit(c) for c in node.children])

    def visit_or(self, node: Or) -> np.ndarray:
        return np.logical_or.reduce([self.visit(c) for c in node.children])


def evaluate(node: Node, pop: Population) -> np.ndarray:
    """Boolean vector: which patients satisfy `node`."""
    return Oracle(pop).visit(node)


class ColumnValues(Visitor[np.ndarray]):
    """Each stats column (`circuits.stats.Column`) as an integer vector over the population."""

    target = "the plaintext oracle's statistics"
    nodes = COLUMNS

    def __init__(self, pop: Population, site_of_patient: tuple[int, ...] = ()):
        self.pop, self.site_of_patient = pop, site_of_patient

    def visit_ones(self, node: Ones) -> np.ndarray:
        return np.ones(len(self.pop), dtype=np.int64)

    def visit_power(self, node: Power) -> np.ndarray:
        return self.value(node.of) ** node.power

    def visit_cross(self, node: Cross) -> np.ndarray:
        return self.value(node.a) * self.value(node.b)

    def visit_in_bin(self, node: InBin) -> np.ndarray:
        x = self.value(node.of)
        return ((node.low <= x) & (x < node.high)).astype(np.int64)

    def visit_is_code(self, node: IsCode) -> np.ndarray:
        return (self.value(node.of) == node.code).astype(np.int64)

    def value(self, a: Attribute) -> np.ndarray:
        """The attribute of every patient (exams: how many of that type in the window)."""
        if a.kind == "exams":
            hits = (self.pop.exam_codes == a.loinc) & (self.pop.exam_months <= a.within_months)
            return hits.sum(axis=1).astype(np.int64)
        if a.kind == "site":
            if len(self.site_of_patient) != len(self.pop):
                raise ValueError("a histogram of site needs a deployment of sites holding rows")
            return np.asarray(self.site_of_patient, dtype=np.int64)
        return np.asarray(getattr(self.pop, a.kind), dtype=np.int64)


def stats_sums(
    stats: Stats, pop: Population, eligible: np.ndarray, holdings: Holdings = PATIENT_HELD
) -> tuple[int, ...]:
    """The exact sum over the cohort of every column the aggregates need, in release
    order (`Stats.released`): `by_site`, each site's sums in turn."""
    values = ColumnValues(pop, holdings.site_of_patient)
    columns = [values.visit(c) for c in stats.columns(holdings.sites)]
    if not stats.by_site:
        return tuple(int(v[eligible].sum()) for v in columns)
    site = np.asarray(holdings.site_of_patient or (0,) * len(pop))  # the patient deployment: one site
    return tuple(int(v[eligible & (site == s)].sum()) for s in range(holdings.sites) for v in columns)


def site_sums(stats: Stats, pop: Population, eligible: np.ndarray, site: int, sites: int) -> tuple[int, ...]:
    """Site `site`'s own part of every sum (`Stats.columns` order), from its patients
    `pop` and their bits: what it computes in the clear when it holds whole records."""
    values = ColumnValues(pop, (site,) * len(pop))
    return tuple(int(values.visit(c)[eligible].sum()) for c in stats.columns(sites))


def cohort(query: Query, pop: Population, holdings: Holdings = PATIENT_HELD) -> Cohort:
    eligible = evaluate(query.root, pop)
    if query.stats is None:
        return Cohort(eligible)
    return Cohort(eligible, stats_sums(query.stats, pop, eligible, holdings))
