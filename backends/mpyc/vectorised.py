"""The `shamir` protocol: the IR over all patients at once, as MPyC secure arrays.

Each leaf becomes a few array operations on every patient together, so the
number of communication rounds depends on the query, not on the population.
The lowering is the one `circuits.cost` counts; comparison widths come from
the public ranges there, so each secure comparison uses only the bits needed.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from circuits import cost
from circuits.cost import DataBounds
from circuits.ir import AgeRange, And, ExamCount, Gender, HasCondition, Node, Not, Or, Smoker


@dataclass
class Columns:
    """The secret-shared population: (N,) vectors and (N, slots) matrices."""
    age: object
    gender: object
    smoker: object
    conditions: object
    exam_codes: object
    exam_months: object


class Vectorised:
    """Translator of IR nodes to secure 0/1 arrays of shape (N,)."""

    def __init__(self, mpc, columns: Columns, bounds: DataBounds, exam_mask: np.ndarray | None):
        self.mpc = mpc
        self.col = columns
        self.bounds = bounds
        # With exact padding (public counts) only real exam slots are compared.
        self.exam_mask = exam_mask

    def eval(self, node: Node):
        mpc = self.mpc
        if isinstance(node, (Gender, Smoker)):
            x = self.col.gender if isinstance(node, Gender) else self.col.smoker
            return mpc.np_sgn(x - node.code, l=cost.CODE_BITS, EQ=True)
        if isinstance(node, AgeRange):
            age = self.col.age
            below = mpc.np_stack((age - node.max_exclusive, node.min_exclusive - age))
            lt = mpc.np_sgn(below, l=cost.AGE_BITS, LT=True)
            return lt[0] * lt[1]
        if isinstance(node, HasCondition):
            return self._any_condition(node)
        if isinstance(node, ExamCount):
            return self._exam_count(node)
        if isinstance(node, Not):
            return 1 - self.eval(node.child)
        if isinstance(node, And):
            return self._product([self.eval(c) for c in node.children])
        if isinstance(node, Or):
            return 1 - self._product([1 - self.eval(c) for c in node.children])
        raise TypeError(f"not an IR node: {node!r}")

    def _product(self, xs: list):
        return xs[0] if len(xs) == 1 else self.mpc.np_prod(self.mpc.np_stack(xs), axis=0)

    def _any_condition(self, node: HasCondition):
        """Any slot equal to any code <=> the product of all differences is 0 (mod p).

        One zero test per patient instead of C*k equality tests.  The field
        exceeds every difference (checked), so no factor wraps to 0.  MPyC's
        probabilistic zero test [NO07] is exact for any field element; its
        public `np_equal` uses it only for wide types, so it is called directly.
        """
        mpc = self.mpc
        conds = self.col.conditions
        field_bits = conds.sectype.field.order.bit_length()
        if cost.condition_code_bits(self.bounds, node) >= field_bits:
            raise ValueError(f"SNOMED codes need {cost.condition_code_bits(self.bounds, node)} "
                             f"bits, the field has {field_bits}: raise bit_length")
        factors = mpc.np_hstack([conds - c for c in node.codes])  # (N, C*k)
        return mpc._np_is_zero(mpc.np_prod(factors, axis=1))

    def _exam_count(self, node: ExamCount):
        mpc = self.mpc
        codes, months = self.col.exam_codes, self.col.exam_months
        mask = self.exam_mask
        if mask is not None:
            codes, months = codes[mask], months[mask]
        same = mpc.np_sgn(codes - node.loinc, l=cost.exam_code_bits(self.bounds, node), EQ=True)
        recent = mpc.np_sgn(months - (node.within_months + 1), l=cost.MONTH_BITS, LT=True)
        hits = same * recent
        if mask is not None:
            zeros = type(self.col.exam_codes)(np.zeros(mask.shape, dtype=np.int64))
            hits = mpc.np_update(zeros, mask, hits)
        count = mpc.np_sum(hits, axis=1)
        slots = self.col.exam_codes.shape[1]
        short = mpc.np_sgn(count - node.at_least, l=cost.count_bits(slots, node.at_least), LT=True)
        return 1 - short
