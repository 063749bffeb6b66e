"""Cost model: per-patient secure operations of the vectorised lowering, and bit lengths.

The vectorised backends lower each leaf the same way, which this module counts:

* `Gender`/`Smoker`: the Lagrange indicator polynomial of the code on its public
  domain {0..SMALL_DOMAIN - 1} (`circuits.codes`): two multiplications, no comparison.
* `AgeRange`: two comparisons (min < age, age < max) and one multiplication (AND).
* `HasCondition`: the product of every (slot - code) difference, then one zero
  test: C*k - 1 multiplications in a log-depth tree instead of C*k equality tests.
* `ExamCount`: per exam slot one comparison (months) and an exam-type test, ANDed
  by one multiplication; then a sum (free) and one comparison with `at_least`.
  A LOINC code in the public exam vocabulary (`codes.EXAM_VOCABULARY`) is tested
  on the slot's vocabulary index with the Lagrange indicator polynomial (V - 1
  multiplications, no comparison); any other code with an equality test.
* `Not` is free (1 - x); `And`/`Or` of k children cost k - 1 multiplications.

A private query's leaves (`circuits.secret`) compare with secret constants at the
same public widths (a comparison or a zero test costs the same whatever its
constant), except where the public lowering used the constant's value: a small
domain's indicator becomes a *selection*, the powers x^1..x^(D-1) then one inner
product with the coefficients of the researcher's secret indicator polynomial
(one resharing); a condition node has its padded number of codes.

Depth counts layers of dependent secure operations (a comparison or a zero
test is one layer, whatever its internal rounds).  Bit lengths come from the
public ranges of the query constants and of the data (`DataBounds`), never
from private values.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from circuits.codes import EXAM_VOCABULARY, SMALL_DOMAIN
from circuits.ir import MAX_AGE, MAX_MONTHS, AgeRange, And, ExamCount, Gender, HasCondition, Node, Not, Or
from circuits.ir import SecretAge, SecretCondition, SecretExam, SecretGender, SecretSmoker, Smoker, leaves
from circuits.population import Population
from circuits.visitor import Visitor


@dataclass(frozen=True)
class DataBounds:
    """Public upper bounds on the data's codes (published with the data, like the padding)."""

    max_condition_code: int = 10**18 - 1
    max_exam_code: int = 10**7 - 1
    exam_vocabulary: tuple[int, ...] = EXAM_VOCABULARY

    @staticmethod
    def covering(max_condition: int, max_exam: int) -> DataBounds:
        """Bounds rounded up to a power of two minus one, so only a bit length is revealed."""
        return DataBounds(
            (1 << max(max_condition, 1).bit_length()) - 1, (1 << max(max_exam, 1).bit_length()) - 1
        )

    @staticmethod
    def of(pop: Population) -> DataBounds:
        """The public bounds of a population: its largest codes, rounded up as in `covering`."""
        return DataBounds.covering(int(pop.conditions.max(initial=0)), int(pop.exam_codes.max(initial=0)))

    def exam_indexes(self, codes: np.ndarray) -> np.ndarray:
        """`exam_index` of every code in an array (0 where a code is outside the vocabulary)."""
        out = np.zeros(np.shape(codes), dtype=np.int64)
        for i, code in enumerate(self.exam_vocabulary, 1):
            out[np.asarray(codes) == code] = i
        return out

    def exam_index(self, loinc: int) -> int | None:
        """Index of a LOINC code in the exam vocabulary (1..V), None when outside it."""
        try:
            return self.exam_vocabulary.index(loinc) + 1
        except ValueError:
            return None

    @property
    def exam_domain(self) -> int:
        """Number of values a vocabulary index takes (0 is 'other')."""
        return len(self.exam_vocabulary) + 1


def signed_bits(lo: int, hi: int) -> int:
    """Smallest l with -2^(l-1) <= x < 2^(l-1) for every x in [lo, hi]."""
    return max((lo < 0 and (-lo - 1).bit_length()) or 0, hi.bit_length()) + 1


@dataclass(frozen=True)
class Cost:
    """Secure operations per patient."""

    comparisons: int = 0
    equalities: int = 0
    multiplications: int = 0
    depth: int = 0
    max_bits: int = 0  # widest comparison operand, in signed bits (zero tests need none)
    selections: int = 0  # inner products with secret coefficients (private small domains)

    def beside(self, other: Cost) -> Cost:
        """Both, evaluated in parallel."""
        return Cost(
            self.comparisons + other.comparisons,
            self.equalities + other.equalities,
            self.multiplications + other.multiplications,
            max(self.depth, other.depth),
            max(self.max_bits, other.max_bits),
            self.selections + other.selections,
        )

    def then(self, multiplications: int, depth: int) -> Cost:
        return Cost(
            self.comparisons,
            self.equalities,
            self.multiplications + multiplications,
            self.depth + depth,
            self.max_bits,
            self.selections,
        )


# Comparison widths (signed): the differences the lowerings compare with zero.
AGE_CMP_BITS = signed_bits(-MAX_AGE - 2, MAX_AGE + 2)
MONTH_CMP_BITS = signed_bits(-MAX_MONTHS - 1, MAX_MONTHS + 1)
# Column widths (unsigned): the bits that hold an age or a "months ago" value.
AGE_BITS = MAX_AGE.bit_length()
MONTH_BITS = MAX_MONTHS.bit_length()


def field_bits_needed(node: Node, bounds: DataBounds) -> int:
    """Bits the prime field must exceed: condition-code differences must not wrap to 0."""
    return max(
        (
            condition_code_bits(bounds, leaf)
            for leaf in leaves(node)
            if isinstance(leaf, (HasCondition, SecretCondition))
        ),
        default=0,
    )


@dataclass(frozen=True)
class PaperCodeBits(Visitor[int]):
    """Width of the widest raw-code equality test under a node in the paper's lowering
    (codes, not vocabulary indexes); 0 where it tests no code."""

    bounds: DataBounds
    target = "the paper-loop code widths"

    def visit_age_range(self, node: AgeRange) -> int:
        return 0

    def visit_gender(self, node: Gender) -> int:
        return 0

    def visit_smoker(self, node: Smoker) -> int:
        return 0

    def visit_has_condition(self, node: HasCondition) -> int:
        return condition_code_bits(self.bounds, node)

    def visit_exam_count(self, node: ExamCount) -> int:
        return exam_code_bits(self.bounds, node)

    def visit_not(self, node: Not) -> int:
        return self.visit(node.child)

    def visit_and(self, node: And) -> int:
        return max(map(self.visit, node.children))

    def visit_or(self, node: Or) -> int:
        return max(map(self.visit, node.children))


def paper_code_bits(node: Node, bounds: DataBounds) -> int:
    """Width of a raw-code equality test (the paper's lowering): codes, not indexes."""
    return PaperCodeBits(bounds).visit(node)


def exam_code_bits(bounds: DataBounds, node: ExamCount) -> int:
    return signed_bits(-max(node.loinc, bounds.max_exam_code), max(node.loinc, bounds.max_exam_code))


def condition_code_bits(bounds: DataBounds, node: HasCondition | SecretCondition) -> int:
    """Signed bits of a slot-minus-code difference; a secret code is 1 to the padding code,
    one above the data's bound (`circuits.secret.condition_pad`), and a slot 0 to the bound."""
    if isinstance(node, SecretCondition):
        return signed_bits(-(bounds.max_condition_code + 1), bounds.max_condition_code)
    top = max(max(node.codes), bounds.max_condition_code)
    return signed_bits(-top, top)


def count_bits(slots: int, at_least: int) -> int:
    return signed_bits(-at_least, slots)


def indicator_multiplications(domain: int) -> int:
    """Multiplications of the Lagrange indicator [x == v] for x in {0..domain-1}."""
    return domain - 2


def _log2(k: int) -> int:
    return math.ceil(math.log2(k)) if k > 1 else 0


@dataclass(frozen=True)
class CostModel(Visitor[Cost]):
    """Per-patient cost of each node with C condition slots and E exam slots."""

    conditions: int
    exams: int
    bounds: DataBounds = DataBounds()
    target = "the cost model"

    def visit_age_range(self, node: AgeRange) -> Cost:
        return Cost(comparisons=2, multiplications=1, depth=2, max_bits=AGE_CMP_BITS)

    def visit_gender(self, node: Gender) -> Cost:
        return self._small_domain()

    def visit_smoker(self, node: Smoker) -> Cost:
        return self._small_domain()

    def _small_domain(self) -> Cost:
        return Cost(multiplications=indicator_multiplications(SMALL_DOMAIN), depth=_log2(SMALL_DOMAIN - 1))

    def visit_secret_age(self, node: SecretAge) -> Cost:
        return Cost(comparisons=2, multiplications=1, depth=2, max_bits=AGE_CMP_BITS)

    def visit_secret_gender(self, node: SecretGender) -> Cost:
        return self._selection(SMALL_DOMAIN)

    def visit_secret_smoker(self, node: SecretSmoker) -> Cost:
        return self._selection(SMALL_DOMAIN)

    def _selection(self, domain: int) -> Cost:
        """[x == secret] for x in {0..domain-1}: the powers of x, one secret inner product."""
        return Cost(multiplications=domain - 2, depth=_log2(domain - 1) + 1, selections=1)

    def visit_secret_condition(self, node: SecretCondition) -> Cost:
        factors = self.conditions * node.width
        return Cost(equalities=1, multiplications=factors - 1, depth=_log2(factors) + 1)

    def visit_secret_exam(self, node: SecretExam) -> Cost:
        exams, domain = self.exams, self.bounds.exam_domain
        each = self._selection(domain)
        return Cost(
            comparisons=exams + 1,
            multiplications=exams * (each.multiplications + 1),
            depth=each.depth + 2,
            max_bits=max(MONTH_CMP_BITS, count_bits(exams, exams + 1)),
            selections=exams,
        )

    def visit_has_condition(self, node: HasCondition) -> Cost:
        factors = self.conditions * len(node.codes)
        return Cost(equalities=1, multiplications=factors - 1, depth=_log2(factors) + 1)

    def visit_exam_count(self, node: ExamCount) -> Cost:
        exams, bounds = self.exams, self.bounds
        count = count_bits(exams, node.at_least)
        if bounds.exam_index(node.loinc) is not None:
            k = indicator_multiplications(bounds.exam_domain)
            return Cost(
                comparisons=exams + 1,
                multiplications=exams * (k + 1),
                depth=max(_log2(bounds.exam_domain - 1), 1) + 2,
                max_bits=max(MONTH_CMP_BITS, count),
            )
        return Cost(
            comparisons=exams + 1,
            equalities=exams,
            multiplications=exams,
            depth=3,
            max_bits=max(exam_code_bits(bounds, node), MONTH_CMP_BITS, count),
        )

    def visit_not(self, node: Not) -> Cost:
        return self.visit(node.child)

    def visit_and(self, node: And) -> Cost:
        return self._combination(node.children)

    def visit_or(self, node: Or) -> Cost:
        return self._combination(node.children)

    def _combination(self, children: tuple[Node, ...]) -> Cost:
        total = Cost()
        for c in children:
            total = total.beside(self.visit(c))
        k = len(children)
        return total.then(k - 1, _log2(k))


def estimate(node: Node, conditions: int, exams: int, bounds: DataBounds = DataBounds()) -> Cost:
    """Per-patient cost of `node` with C condition slots and E exam slots."""
    return CostModel(conditions, exams, bounds).visit(node)
