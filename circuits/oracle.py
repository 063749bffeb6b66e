"""The plaintext oracle: the IR evaluated in the clear with numpy.

Every secure run is checked against it; it is also the `plain` engine.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from circuits.ir import AgeRange, And, ExamCount, Gender, HasCondition, Node, Not, Or, Query, Smoker
from circuits.population import Population


@dataclass(frozen=True, eq=False)
class Cohort:
    """The answer to a query: one bit per patient (the count is their sum)."""
    eligible: np.ndarray  # bool (N,)

    @property
    def count(self) -> int:
        return int(self.eligible.sum())

    def ids(self, population: Population) -> list[str]:
        return [population.ids[i] for i in np.flatnonzero(self.eligible)]


def evaluate(node: Node, pop: Population) -> np.ndarray:
    """Boolean vector: which patients satisfy `node`."""
    if isinstance(node, AgeRange):
        return (pop.age > node.min_exclusive) & (pop.age < node.max_exclusive)
    if isinstance(node, Gender):
        return pop.gender == node.code
    if isinstance(node, Smoker):
        return pop.smoker == node.code
    if isinstance(node, HasCondition):
        return np.isin(pop.conditions, node.codes).any(axis=1)
    if isinstance(node, ExamCount):
        hits = (pop.exam_codes == node.loinc) & (pop.exam_months <= node.within_months)
        return hits.sum(axis=1) >= node.at_least
    if isinstance(node, Not):
        return ~evaluate(node.child, pop)
    if isinstance(node, And):
        return np.logical_and.reduce([evaluate(c, pop) for c in node.children])
    if isinstance(node, Or):
        return np.logical_or.reduce([evaluate(c, pop) for c in node.children])
    raise TypeError(f"not an IR node: {node!r}")


def cohort(query: Query, pop: Population) -> Cohort:
    return Cohort(evaluate(query.root, pop))
