"""The `shamir` protocol: the IR over all patients at once, as MPyC secure arrays.

Each leaf becomes a few array operations on every patient together, so the
number of communication rounds depends on the query, not on the population.
The lowering is the one `circuits.cost` counts; comparison widths come from
the public ranges there, so each secure comparison uses only the bits needed,
and small public domains (gender, smoking status, exam types in the public
vocabulary) are tested with an indicator polynomial instead of a comparison.
"""
from __future__ import annotations

from typing import Callable

import numpy as np

from circuits import cost
from circuits.codes import SMALL_DOMAIN
from circuits.cost import DataBounds
from circuits.ir import AgeRange, And, ExamCount, Gender, HasCondition, Node, Not, Or, Smoker


class Vectorised:
    """Translator of IR nodes to secure 0/1 arrays of shape (N,).

    `column(name)` returns a secret-shared column (age, gender, smoker: (N,);
    conditions: (N, C); exam_codes, exam_index, exam_months: (N, E)); columns are
    input on first use, so a query only pays for the data it reads.
    """

    def __init__(self, mpc, column: Callable[[str], object], bounds: DataBounds,
                 slots: tuple[int, int], exam_mask: np.ndarray | None):
        self.mpc = mpc
        self.column = column
        self.bounds = bounds
        self.slots = slots
        # With exact padding (public counts) only real exam slots are tested.
        self.exam_mask = exam_mask

    def eval(self, node: Node):
        mpc = self.mpc
        if isinstance(node, (Gender, Smoker)):
            return self._indicator(self.column(type(node).__name__.lower()), node.code, SMALL_DOMAIN)
        if isinstance(node, AgeRange):
            age = self.column("age")
            below = mpc.np_stack((age - node.max_exclusive, node.min_exclusive - age))
            lt = mpc.np_sgn(below, l=cost.AGE_CMP_BITS, LT=True)
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

    def _indicator(self, x, value: int, domain: int):
        """[x == value] for x known to lie in {0..domain-1}: the Lagrange basis polynomial
        prod_{j != value} (x - j) / (value - j), with no comparison and no random bits."""
        p = x.sectype.field.order
        scale = 1
        for j in range(domain):
            if j != value:
                scale = scale * (value - j) % p
        factors = self.mpc.np_stack([x - j for j in range(domain) if j != value])
        return self.mpc.np_prod(factors, axis=0) * pow(scale, -1, p)

    def _any_condition(self, node: HasCondition):
        """Any slot equal to any code <=> the product of all differences is 0 (mod p).

        One zero test per patient instead of C*k equality tests.  The field
        exceeds every difference (checked), so no factor wraps to 0.  MPyC's
        probabilistic zero test [NO07] is exact for any field element; its
        public `np_equal` uses it only for wide types, so it is called directly.
        """
        mpc = self.mpc
        conds = self.column("conditions")
        field_bits = conds.sectype.field.order.bit_length()
        needed = cost.condition_code_bits(self.bounds, node)
        if needed >= field_bits:
            raise ValueError(f"SNOMED codes need {needed} bits, the field has {field_bits}: "
                             "raise bit_length")
        factors = mpc.np_hstack([conds - c for c in node.codes])  # (N, C*k)
        return mpc._np_is_zero(mpc.np_prod(factors, axis=1))

    def _exam_count(self, node: ExamCount):
        mpc = self.mpc
        mask = self.exam_mask
        index = self.bounds.exam_index(node.loinc)
        kinds = self.column("exam_index" if index is not None else "exam_codes")
        months = self.column("exam_months")
        if mask is not None:
            kinds, months = kinds[mask], months[mask]
        if index is not None:
            same = self._indicator(kinds, index, self.bounds.exam_domain)
        else:
            same = mpc.np_sgn(kinds - node.loinc, l=cost.exam_code_bits(self.bounds, node), EQ=True)
        recent = mpc.np_sgn(months - (node.within_months + 1), l=cost.MONTH_CMP_BITS, LT=True)
        hits = same * recent
        if mask is not None:
            zeros = type(self.column("exam_months"))(np.zeros(mask.shape, dtype=np.int64))
            hits = mpc.np_update(zeros, mask, hits)
        count = mpc.np_sum(hits, axis=1)
        short = mpc.np_sgn(count - node.at_least, l=cost.count_bits(self.slots[1], node.at_least),
                           LT=True)
        return 1 - short
