"""The criteria IR: one small, immutable, hashable tree of cohort criteria.

Leaves test one patient attribute against public constants; `Not`, `And` and
`Or` combine them.  Every engine (the plaintext oracle, MPyC, MP-SPDZ) is a
translator of this tree, and its hash keys compile caches and result records.
Constructors validate their constants, so a tree that exists is a valid query.
"""
from __future__ import annotations

import enum
import hashlib
import json
from dataclasses import dataclass, field, fields
from typing import Union

from circuits.codes import GENDERS, SMOKER_STATES, format_loinc

MAX_AGE = 150  # public bound on ages, in whole years
MAX_MONTHS = 12 * MAX_AGE  # public bound on "months ago" of an exam


def _require(ok: bool, message: str) -> None:
    if not ok:
        raise ValueError(message)


def _is_int(v: object) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


@dataclass(frozen=True)
class AgeRange:
    """min_exclusive < age < max_exclusive (the paper's exclusive interval)."""
    min_exclusive: int
    max_exclusive: int

    def __post_init__(self) -> None:
        _require(_is_int(self.min_exclusive) and _is_int(self.max_exclusive),
                 "age bounds must be whole numbers of years")
        _require(-1 <= self.min_exclusive <= MAX_AGE and 0 <= self.max_exclusive <= MAX_AGE + 1,
                 f"age bounds must lie between -1 and {MAX_AGE + 1}")
        _require(self.max_exclusive - self.min_exclusive >= 2,
                 f"no age lies strictly between {self.min_exclusive} and {self.max_exclusive}; "
                 "the bounds are exclusive, so max must exceed min by at least 2")


@dataclass(frozen=True)
class Gender:
    """gender == code (0 male, 1 female, 2 other, 3 unknown)."""
    code: int

    def __post_init__(self) -> None:
        _require(_is_int(self.code) and 0 <= self.code < len(GENDERS),
                 f"gender code must be 0-3 ({', '.join(GENDERS)})")


@dataclass(frozen=True)
class Smoker:
    """smoking status == code (0 never, 1 current, 2 former, 3 unknown)."""
    code: int

    def __post_init__(self) -> None:
        _require(_is_int(self.code) and 0 <= self.code < len(SMOKER_STATES),
                 f"smoker code must be 0-3 ({', '.join(SMOKER_STATES)})")


@dataclass(frozen=True)
class HasCondition:
    """The patient has an active, confirmed condition with any of these SNOMED CT codes.

    Check digits are the front ends' business (a legacy query may carry a typo
    and still load, with a warning); the IR only needs positive concept ids.
    """
    codes: tuple[int, ...]

    def __post_init__(self) -> None:
        _require(isinstance(self.codes, tuple) and len(self.codes) > 0,
                 "a condition criterion needs at least one SNOMED CT code")
        for c in self.codes:
            _require(_is_int(c) and 0 < c < 10**18, f"{c!r} is not a SNOMED CT concept id")
        _require(len(set(self.codes)) == len(self.codes), "SNOMED CT codes are repeated")


@dataclass(frozen=True)
class ExamCount:
    """At least `at_least` DiagnosticReports of LOINC `loinc` in the last `within_months` months.

    `loinc` is the code's numeric body (57698 for 57698-3); an exam exactly
    `within_months` months ago counts (inclusive).
    """
    loinc: int
    at_least: int
    within_months: int

    def __post_init__(self) -> None:
        _require(_is_int(self.loinc) and 0 < self.loinc < 10**7, "LOINC code body must be 1-7 digits")
        _require(_is_int(self.at_least) and self.at_least >= 1,
                 "at_least must be a whole number >= 1 (at least 0 exams is always true)")
        _require(_is_int(self.within_months) and 0 <= self.within_months <= MAX_MONTHS,
                 f"within_months must be a whole number from 0 to {MAX_MONTHS}")

    @property
    def loinc_code(self) -> str:
        return format_loinc(self.loinc)


@dataclass(frozen=True)
class Not:
    child: Node


@dataclass(frozen=True)
class And:
    children: tuple[Node, ...]

    def __post_init__(self) -> None:
        _require(isinstance(self.children, tuple) and len(self.children) >= 1,
                 "'all' needs at least one criterion")


@dataclass(frozen=True)
class Or:
    children: tuple[Node, ...]

    def __post_init__(self) -> None:
        _require(isinstance(self.children, tuple) and len(self.children) >= 1,
                 "'any' needs at least one criterion")


Leaf = Union[AgeRange, Gender, Smoker, HasCondition, ExamCount]
Node = Union[Leaf, Not, And, Or]
LEAVES = (AgeRange, Gender, Smoker, HasCondition, ExamCount)
NODES = LEAVES + (Not, And, Or)


class Output(str, enum.Enum):
    """What a query reveals: one bit per patient, or only the cohort size."""
    ELIGIBLE = "eligible"
    COUNT = "count"


@dataclass(frozen=True)
class Query:
    """A named criteria tree with its output mode."""
    root: Node
    output: Output = Output.ELIGIBLE
    name: str = field(default="query", compare=False)

    @property
    def ir_hash(self) -> str:
        """Stable hash of the tree and output mode (not the name): keys caches and results."""
        text = json.dumps([to_plain(self.root), self.output.value], sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:16]


def to_plain(node: Node) -> list:
    """A canonical JSON-able form: [type name, {field: value}] with children nested."""
    def plain(v: object) -> object:
        if isinstance(v, NODES):
            return to_plain(v)
        return [plain(c) for c in v] if isinstance(v, tuple) else v
    return [type(node).__name__, {f.name: plain(getattr(node, f.name)) for f in fields(node)}]


def from_plain(data: list) -> Node:
    """The inverse of `to_plain`."""
    kind, values = data
    cls = {c.__name__: c for c in NODES}[kind]
    def node_or_value(v: object) -> object:
        if isinstance(v, list) and len(v) == 2 and isinstance(v[0], str):
            return from_plain(v)
        return tuple(map(node_or_value, v)) if isinstance(v, list) else v
    return cls(**{k: node_or_value(v) for k, v in values.items()})


def leaves(node: Node):
    """All leaves of the tree, depth first."""
    if isinstance(node, Not):
        yield from leaves(node.child)
    elif isinstance(node, (And, Or)):
        for c in node.children:
            yield from leaves(c)
    else:
        yield node


def normalise(node: Node) -> Node:
    """An equivalent, simpler tree: double negations removed, nested And/Or flattened,
    single-child And/Or replaced by the child."""
    if isinstance(node, Not):
        child = normalise(node.child)
        return child.child if isinstance(child, Not) else Not(child)
    if isinstance(node, (And, Or)):
        kids: list[Node] = []
        for c in map(normalise, node.children):
            kids.extend(c.children if type(c) is type(node) else (c,))
        return kids[0] if len(kids) == 1 else type(node)(tuple(kids))
    return node


def render(node: Node, indent: str = "") -> str:
    """A readable multi-line rendering of the tree (for `cohortbench check`)."""
    if isinstance(node, Not):
        return f"{indent}NOT\n{render(node.child, indent + '  ')}"
    if isinstance(node, (And, Or)):
        head = "ALL" if isinstance(node, And) else "ANY"
        return f"{indent}{head}\n" + "\n".join(render(c, indent + "  ") for c in node.children)
    if isinstance(node, AgeRange):
        return f"{indent}{node.min_exclusive} < age < {node.max_exclusive}"
    if isinstance(node, Gender):
        return f"{indent}gender = {GENDERS[node.code]}"
    if isinstance(node, Smoker):
        return f"{indent}smoker = {SMOKER_STATES[node.code]}"
    if isinstance(node, HasCondition):
        return f"{indent}condition in {{{', '.join(map(str, node.codes))}}}"
    return (f"{indent}at least {node.at_least} x LOINC {node.loinc_code} "
            f"in the last {node.within_months} months")
