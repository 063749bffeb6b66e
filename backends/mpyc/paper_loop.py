"""The `paper-loop` protocol: the paper's evaluation, one patient after another.

A faithful re-implementation of Listings 2-3 and Algorithm 2: each patient's
fields are secret-shared as scalars, each restriction is evaluated with
`mpc.eq`/`mpc.lt`/`mpc.all`/`mpc.any`/`mpc.sum`/`mpc.sub`, a loop runs over
every exam slot, and the next patient starts when the previous one is done.
It exists so that the speed-up of the vectorised protocol is measured.
"""
from __future__ import annotations

from circuits.ir import AgeRange, And, ExamCount, Gender, HasCondition, Node, Not, Or, Smoker


class PaperPatient:
    """One patient's secret fields; `eval` translates an IR node to a secure bit."""

    def __init__(self, mpc, secint, age, gender, smoker, conditions: list, exams: list):
        self.mpc, self.secint = mpc, secint
        self.age, self.gender, self.smoker = age, gender, smoker
        self.conditions, self.exams = conditions, exams  # exams: [(code, months)]

    def eval(self, node: Node):
        mpc, secint = self.mpc, self.secint
        if isinstance(node, Smoker):
            return mpc.eq(secint(node.code), self.smoker)
        if isinstance(node, Gender):
            return mpc.eq(secint(node.code), self.gender)
        if isinstance(node, AgeRange):
            return mpc.all([mpc.lt(secint(node.min_exclusive), self.age),
                            mpc.lt(self.age, secint(node.max_exclusive))])
        if isinstance(node, HasCondition):
            found = [mpc.eq(c, secint(code)) for c in self.conditions for code in node.codes]
            return mpc.any(found) if found else secint(0)
        if isinstance(node, ExamCount):
            hits = [mpc.eq(code, secint(node.loinc)) * mpc.lt(months, secint(node.within_months + 1))
                    for code, months in self.exams]
            count = mpc.sum(hits) if hits else secint(0)
            return mpc.sub(secint(1), mpc.lt(count, secint(node.at_least)))
        if isinstance(node, Not):
            return mpc.sub(secint(1), self.eval(node.child))
        if isinstance(node, And):
            return mpc.all([self.eval(c) for c in node.children])
        if isinstance(node, Or):
            return mpc.any([self.eval(c) for c in node.children])
        raise TypeError(f"not an IR node: {node!r}")
