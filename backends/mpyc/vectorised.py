"""The `shamir` protocol: the IR over all patients at once, as MPyC secure arrays.

Each leaf becomes a few array operations on every patient together, so the
number of communication rounds depends on the query, not on the population.
The lowering is the one `circuits.cost` counts; comparison widths come from
the public ranges there, so each secure comparison uses only the bits needed,
and small public domains (gender, smoking status, exam types in the public
vocabulary) are tested with an indicator polynomial instead of a comparison.
A private query's leaves (`circuits.secret`) compare with the researcher's secret
constants (`constants`, a secure array) at the same widths; a small domain's
equality becomes a selection: the powers of x and one inner product with the
coefficients of the secret value's indicator polynomial.
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np

from circuits import cost
from circuits.codes import SMALL_DOMAIN
from circuits.cost import DataBounds
from circuits.ir import AgeRange, And, ExamCount, Gender, HasCondition, LocalBit, Not, Or, SecretAge
from circuits.ir import SecretCondition, SecretExam, SecretGender, SecretLeaf, SecretSmoker, Smoker
from circuits.visitor import Visitor
from circuits.locality import local_column


def is_zero(mpc: Any, a: Any) -> Any:
    """[a == 0] elementwise for any field elements a: MPyC's probabilistic zero test [NO07].

    MPyC's public `np_equal` uses this test only for types wider than twice the
    security parameter and otherwise a comparison, which assumes a value within
    the type's bit length (a product of code differences is not).  The test itself
    is private (`_np_is_zero`, in mpyc 0.9 to 0.11), hence the version range in
    pyproject.toml and the check in tests/test_mpyc.py that it is still there.
    """
    return mpc._np_is_zero(a)


async def settle(mpc: Any, x: Any) -> None:
    """Wait until this party holds its shares of `x` (nothing is revealed).

    A barrier that blocks on the network: `mpc.barrier` spins on the event loop,
    so a lock-step relay, which delivers only once every party waits, never sees
    a party at a barrier wait and the run stalls."""
    await mpc.gather(x)


class Vectorised(Visitor[Any]):
    """Translator of IR nodes to secure 0/1 arrays of shape (N,).

    `column(name)` returns a secret-shared column (age, gender, smoker: (N,);
    conditions: (N, C); exam_codes, exam_index, exam_months: (N, E)); columns are
    input on first use, so a query only pays for the data it reads.
    """

    target = "MPyC's vectorised lowering (shamir)"

    def __init__(
        self,
        mpc: Any,
        column: Callable[[str], Any],
        bounds: DataBounds,
        slots: tuple[int, int],
        exam_mask: np.ndarray | None,
        constants: Any = None,
    ):
        self.mpc = mpc
        self.column = column
        self.bounds = bounds
        self.slots = slots
        # With exact padding (public counts) only real exam slots are tested.
        self.exam_mask = exam_mask
        self.constants = constants  # a private query's secret constants (circuits.secret)

    def visit_gender(self, node: Gender) -> Any:
        return self.indicator(self.column("gender"), node.code, SMALL_DOMAIN)

    def visit_smoker(self, node: Smoker) -> Any:
        return self.indicator(self.column("smoker"), node.code, SMALL_DOMAIN)

    def visit_age_range(self, node: AgeRange) -> Any:
        return self._between(node.min_exclusive, node.max_exclusive)

    def visit_secret_age(self, node: SecretAge) -> Any:
        return self._between(*self._secret(node))

    def _between(self, low: Any, high: Any) -> Any:
        """[low < age < high], the bounds public or secret."""
        age = self.column("age")
        below = self.mpc.np_stack((age - high, low - age))
        lt = self.mpc.np_sgn(below, l=cost.AGE_CMP_BITS, LT=True)
        return lt[0] * lt[1]

    def visit_secret_gender(self, node: SecretGender) -> Any:
        return self._selection(self.column("gender"), self._secret(node)[0], SMALL_DOMAIN)

    def visit_secret_smoker(self, node: SecretSmoker) -> Any:
        return self._selection(self.column("smoker"), self._secret(node)[0], SMALL_DOMAIN)

    def _secret(self, node: SecretLeaf) -> list:
        """The node's secret constants, each a secure array of shape (1,) (broadcast)."""
        if self.constants is None:
            raise ValueError("a private query's template needs the researcher's constants")
        return [self.constants[i : i + 1] for i in node.constants]

    def _selection(self, x: Any, value: Any, domain: int) -> Any:
        """[x == value] for x in {0..domain-1} and a secret value: the value's one-hot
        vector (indicators on one scalar), its indicator polynomial's coefficients (a
        public linear map of it), and their inner product with the powers of x."""
        p = x.sectype.field.order
        one_hot = [self.indicator(value, v, domain) for v in range(domain)]
        rows = _lagrange_rows(domain, p)
        coefficients = self.mpc.np_hstack(
            [sum(int(rows[v][k]) * one_hot[v] for v in range(domain)) for k in range(domain)]
        )
        return coefficients @ self.mpc.np_stack(self._powers(x, domain - 1), axis=x.ndim - 1)

    def _powers(self, x: Any, top: int) -> list:
        """x^0..x^top, in log2(top) rounds: each round multiplies the highest power so far
        by all lower ones together."""
        powers = [x * 0 + 1, x]
        while len(powers) <= top:
            high = len(powers) - 1
            lower = powers[1 : min(high, top - high) + 1]
            products = self.mpc.np_stack(lower) * powers[high]
            powers += [products[i] for i in range(len(lower))]
        return powers

    def visit_local_bit(self, node: LocalBit) -> Any:
        """A bit a site computed in the clear and input (`circuits.locality`)."""
        return self.column(local_column(node.index))

    def visit_not(self, node: Not) -> Any:
        return 1 - self.visit(node.child)

    def visit_and(self, node: And) -> Any:
        return self._product([self.visit(c) for c in node.children])

    def visit_or(self, node: Or) -> Any:
        return 1 - self._product([1 - self.visit(c) for c in node.children])

    def _product(self, xs: list) -> Any:
        return xs[0] if len(xs) == 1 else self.mpc.np_prod(self.mpc.np_stack(xs), axis=0)

    def indicator(self, x: Any, value: int, domain: int) -> Any:
        """[x == value] for x known to lie in {0..domain-1}: the Lagrange basis polynomial
        prod_{j != value} (x - j) / (value - j), with no comparison and no random bits."""
        p = x.sectype.field.order
        scale = 1
        for j in range(domain):
            if j != value:
                scale = scale * (value - j) % p
        factors = self.mpc.np_stack([x - j for j in range(domain) if j != value])
        return self.mpc.np_prod(factors, axis=0) * pow(scale, -1, p)

    def visit_has_condition(self, node: HasCondition) -> Any:
        return self._any_code(node, node.codes)

    def visit_secret_condition(self, node: SecretCondition) -> Any:
        return self._any_code(node, self._secret(node))

    def _any_code(self, node: HasCondition | SecretCondition, codes: Any) -> Any:
        """Any slot equal to any code <=> the product of all differences is 0 (mod p).

        One zero test per patient instead of C*k equality tests.  The field
        exceeds every difference (checked), so no factor wraps to 0.
        """
        mpc = self.mpc
        conds = self.column("conditions")
        field_bits = conds.sectype.field.order.bit_length()
        needed = cost.condition_code_bits(self.bounds, node)
        if needed >= field_bits:
            raise ValueError(f"SNOMED codes need {needed} bits, the field has {field_bits}: raise bit_length")
        factors = mpc.np_hstack([conds - c for c in codes])  # (N, C*k)
        return is_zero(mpc, mpc.np_prod(factors, axis=1))

    def visit_exam_count(self, node: ExamCount) -> Any:
        return self._at_least(self.exam_tally(node), node.at_least, node.at_least)

    def exam_tally(self, node: ExamCount) -> Any:
        """Per patient, how many exam slots hold the node's type within its window."""
        index = self.bounds.exam_index(node.loinc)
        kinds, months = self._exams("exam_index" if index is not None else "exam_codes")
        if index is not None:
            same = self.indicator(kinds, index, self.bounds.exam_domain)
        else:
            same = self.mpc.np_sgn(kinds - node.loinc, l=cost.exam_code_bits(self.bounds, node), EQ=True)
        return self._tally(same, months, node.within_months)

    def visit_secret_exam(self, node: SecretExam) -> Any:
        index, at_least, within = self._secret(node)
        kinds, months = self._exams("exam_index")
        same = self._selection(kinds, index, self.bounds.exam_domain)
        return self._at_least(self._tally(same, months, within), at_least, self.slots[1] + 1)

    def _exams(self, kind: str) -> tuple[Any, Any]:
        """The exam slots' types and months (with exact padding, only the real slots)."""
        kinds, months = self.column(kind), self.column("exam_months")
        if self.exam_mask is not None:
            kinds, months = kinds[self.exam_mask], months[self.exam_mask]
        return kinds, months

    def _tally(self, same: Any, months: Any, within: Any) -> Any:
        """Per patient, the slots of the right type (`same`) within `within` months."""
        mpc, mask = self.mpc, self.exam_mask
        recent = mpc.np_sgn(months - within - 1, l=cost.MONTH_CMP_BITS, LT=True)
        hits = same * recent
        if mask is not None:
            zeros = type(self.column("exam_months"))(np.zeros(mask.shape, dtype=np.int64))
            hits = mpc.np_update(zeros, mask, hits)
        return mpc.np_sum(hits, axis=1)

    def _at_least(self, count: Any, at_least: Any, most: int) -> Any:
        """[count >= at_least]; `most`: the largest value `at_least` may take (public),
        which fixes the comparison's width."""
        short = self.mpc.np_sgn(count - at_least, l=cost.count_bits(self.slots[1], most), LT=True)
        return 1 - short


def _lagrange_rows(domain: int, p: int) -> list[list[int]]:
    """Row v: the coefficients (x^0 first, mod p) of the polynomial that is 1 at v and 0
    at the other points of {0..domain-1}."""
    rows = []
    for v in range(domain):
        poly, scale = [1], 1
        for j in range(domain):
            if j != v:
                poly = [(a - j * b) % p for a, b in zip([0, *poly], [*poly, 0])]
                scale = scale * (v - j) % p
        inverse = pow(scale, -1, p)
        rows.append([c * inverse % p for c in poly])
    return rows
