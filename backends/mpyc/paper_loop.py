"""The `paper-loop` protocol: the paper's evaluation, one patient after another.

A faithful re-implementation of Listings 2-3 and Algorithm 2: each patient's
fields are secret-shared as scalars, each restriction is evaluated with
`mpc.eq`/`mpc.lt`/`mpc.all`/`mpc.any`/`mpc.sum`/`mpc.sub`, a loop runs over
every exam slot, and the next patient starts when the previous one is done.
It exists so that the speed-up of the vectorised protocol is measured.
"""

from __future__ import annotations

from typing import Any

from circuits.ir import AgeRange, And, ExamCount, Gender, HasCondition, Not, Or, Smoker
from circuits.visitor import Visitor


class PaperPatient(Visitor[Any]):
    """One patient's secret fields; `visit` translates an IR node to a secure bit."""

    target = "MPyC's paper-loop lowering"

    def __init__(
        self, mpc: Any, secint: Any, age: Any, gender: Any, smoker: Any, conditions: list, exams: list
    ):
        self.mpc, self.secint = mpc, secint
        self.age, self.gender, self.smoker = age, gender, smoker
        self.conditions, self.exams = conditions, exams  # exams: [(code, months)]

    def visit_smoker(self, node: Smoker) -> Any:
        return self.mpc.eq(self.secint(node.code), self.smoker)

    def visit_gender(self, node: Gender) -> Any:
        return self.mpc.eq(self.secint(node.code), self.gender)

    def visit_age_range(self, node: AgeRange) -> Any:
        mpc, secint = self.mpc, self.secint
        return mpc.all(
            [mpc.lt(secint(node.min_exclusive), self.age), mpc.lt(self.age, secint(node.max_exclusive))]
        )

    def visit_has_condition(self, node: HasCondition) -> Any:
        mpc, secint = self.mpc, self.secint
        found = [mpc.eq(c, secint(code)) for c in self.conditions for code in node.codes]
        return mpc.any(found) if found else secint(0)

    def visit_exam_count(self, node: ExamCount) -> Any:
        mpc, secint = self.mpc, self.secint
        hits = [
            mpc.eq(code, secint(node.loinc)) * mpc.lt(months, secint(node.within_months + 1))
            for code, months in self.exams
        ]
        count = mpc.sum(hits) if hits else secint(0)
        return mpc.sub(secint(1), mpc.lt(count, secint(node.at_least)))

    def visit_not(self, node: Not) -> Any:
        return self.mpc.sub(self.secint(1), self.visit(node.child))

    def visit_and(self, node: And) -> Any:
        return self.mpc.all([self.visit(c) for c in node.children])

    def visit_or(self, node: Or) -> Any:
        return self.mpc.any([self.visit(c) for c in node.children])
