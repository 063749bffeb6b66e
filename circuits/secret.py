"""Private criteria: a query's constants as the researcher's secret inputs, its shape public.

`hide` turns a query into its template, the same tree with every leaf replaced by
a `Secret*` leaf that keeps only its type and where its constants lie in the
researcher's input, and those constants.  Two queries of the same shape (node
types, and/or/not structure, children, condition nodes padded to `max_codes`)
have the same template, so an engine compiles the same program for both; only
the researcher's input differs.

What stays public is what every lowering needs to fix its widths: `MAX_AGE`,
`MAX_MONTHS`, the exam slots and vocabulary, the data's code bounds.  So the
researcher encodes its constants on them: a SNOMED CT code above the public
bound, and every padding code, becomes `condition_pad` (one above the bound,
which no slot holds); an exam type becomes its index in the public vocabulary
(a type outside it cannot be private); `at_least` above the exam slots becomes
slots + 1 (both are never met).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Final

from circuits.cost import DataBounds
from circuits.ir import SECRET_LEAVES, AgeRange, And, ExamCount, Gender, HasCondition, Node, Not, Or, Query
from circuits.ir import SecretAge, SecretCondition, SecretExam, SecretGender, SecretSmoker, Smoker, leaves
from circuits.visitor import Visitor

PUBLIC: Final = "public"
PRIVATE: Final = "private"
EXTRA: Final = "extra"  # `researcher: extra`: one more party, holding no data, inputs the criteria


def condition_pad(bounds: DataBounds) -> int:
    """The code that pads a condition node's codes: above every code the data holds."""
    return bounds.max_condition_code + 1


def codes_needed(root: Node) -> int:
    """The most codes any condition node of the tree has (0 without one): the default
    `max_codes`, and the least a config may set."""
    return max((len(leaf.codes) for leaf in leaves(root) if isinstance(leaf, HasCondition)), default=0)


@dataclass(frozen=True)
class Hidden:
    """A private query: its public template and the researcher's secret constants."""

    template: Query
    constants: tuple[int, ...]


@dataclass
class _Hider(Visitor[Node]):
    """Each leaf to its `Secret*` leaf, its constants appended in tree order."""

    bounds: DataBounds
    exam_slots: int
    max_codes: int
    target = "private criteria"

    def __post_init__(self) -> None:
        self.constants: list[int] = []

    def _take(self, values: list[int]) -> int:
        self.constants += values
        return len(self.constants) - len(values)

    def visit_age_range(self, node: AgeRange) -> Node:
        return SecretAge(self._take([node.min_exclusive, node.max_exclusive]))

    def visit_gender(self, node: Gender) -> Node:
        return SecretGender(self._take([node.code]))

    def visit_smoker(self, node: Smoker) -> Node:
        return SecretSmoker(self._take([node.code]))

    def visit_has_condition(self, node: HasCondition) -> Node:
        pad = condition_pad(self.bounds)
        codes = [c if c < pad else pad for c in node.codes]
        return SecretCondition(self._take(codes + [pad] * (self.max_codes - len(codes))), self.max_codes)

    def visit_exam_count(self, node: ExamCount) -> Node:
        index = self.bounds.exam_index(node.loinc)
        if index is None:
            vocabulary = ", ".join(map(str, self.bounds.exam_vocabulary))
            raise ValueError(
                f"LOINC {node.loinc_code} is not in the public exam vocabulary ({vocabulary}); "
                "a private exam criterion names a type of that vocabulary"
            )
        at_least = min(node.at_least, self.exam_slots + 1)
        return SecretExam(self._take([index, at_least, node.within_months]))

    def visit_not(self, node: Not) -> Node:
        return Not(self.visit(node.child))

    def visit_and(self, node: And) -> Node:
        return And(tuple(map(self.visit, node.children)))

    def visit_or(self, node: Or) -> Node:
        return Or(tuple(map(self.visit, node.children)))


def hide(query: Query, bounds: DataBounds, exam_slots: int, max_codes: int | None = None) -> Hidden:
    """The template and constants of `query` on data of these public bounds and exam slots;
    every condition node padded to `max_codes` codes (default: the most any node has).
    ValueError when a node has more codes, or an exam type is outside the vocabulary."""
    needed = codes_needed(query.root)
    width = needed if max_codes is None else max_codes
    if width < needed:
        raise ValueError(f"max_codes {width} is below the {needed} codes of a condition node")
    hider = _Hider(bounds, exam_slots, width)
    template = replace(query, root=hider.visit(query.root), name=f"{query.name} (private)")
    return Hidden(template, tuple(hider.constants))


def is_private(root: Node) -> bool:
    """Whether the tree is a private query's template."""
    return any(isinstance(leaf, SECRET_LEAVES) for leaf in leaves(root))


def constants_count(root: Node) -> int:
    """The number of secret constants a template takes (public: its shape fixes it)."""
    return max((leaf.constants.stop for leaf in leaves(root) if isinstance(leaf, SECRET_LEAVES)), default=0)
