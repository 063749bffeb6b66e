"""The criteria IR: one small, immutable, hashable tree of cohort criteria.

Leaves test one patient attribute against public constants; `Not`, `And` and
`Or` combine them.  A private query's leaves (`Secret*`) keep only their type and
the positions of their constants in the researcher's secret input.  Every engine
(the plaintext oracle, MPyC, MP-SPDZ) is a translator of this tree, and its hash keys
compile caches and result records.
Constructors validate their constants, so a tree that exists is a valid query.
"""

from __future__ import annotations

import enum
import hashlib
import json
from dataclasses import dataclass, field, fields
from typing import Any, ClassVar, Union

from circuits.codes import GENDERS, MAX_AGE, SMOKER_STATES, format_loinc
from circuits.stats import Stats
from circuits.visitor import Visitor

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
        _require(
            _is_int(self.min_exclusive) and _is_int(self.max_exclusive),
            "age bounds must be whole numbers of years",
        )
        _require(
            -1 <= self.min_exclusive <= MAX_AGE and 0 <= self.max_exclusive <= MAX_AGE + 1,
            f"age bounds must lie between -1 and {MAX_AGE + 1}",
        )
        _require(
            self.max_exclusive - self.min_exclusive >= 2,
            f"no age lies strictly between {self.min_exclusive} and {self.max_exclusive}; "
            "the bounds are exclusive, so max must exceed min by at least 2",
        )


@dataclass(frozen=True)
class _SmallCode:
    """attribute == code, for an attribute with the public domain `names` (0..len - 1)."""

    code: int
    names: ClassVar[tuple[str, ...]]
    what: ClassVar[str]

    def __post_init__(self) -> None:
        _require(
            _is_int(self.code) and 0 <= self.code < len(self.names),
            f"{self.what} code must be 0-{len(self.names) - 1} ({', '.join(self.names)})",
        )


@dataclass(frozen=True)
class Gender(_SmallCode):
    """gender == code (0 male, 1 female, 2 other, 3 unknown)."""

    names = GENDERS
    what = "gender"


@dataclass(frozen=True)
class Smoker(_SmallCode):
    """smoking status == code (0 never, 1 current, 2 former, 3 unknown)."""

    names = SMOKER_STATES
    what = "smoker"


@dataclass(frozen=True)
class HasCondition:
    """The patient has an active, confirmed condition with any of these SNOMED CT codes.

    Check digits are the front ends' business (a legacy query may carry a typo
    and still load, with a warning); the IR only needs positive concept ids.
    """

    codes: tuple[int, ...]

    def __post_init__(self) -> None:
        _require(
            isinstance(self.codes, tuple) and len(self.codes) > 0,
            "a condition criterion needs at least one SNOMED CT code",
        )
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
        _require(
            _is_int(self.at_least) and self.at_least >= 1,
            "at_least must be a whole number >= 1 (at least 0 exams is always true)",
        )
        _require(
            _is_int(self.within_months) and 0 <= self.within_months <= MAX_MONTHS,
            f"within_months must be a whole number from 0 to {MAX_MONTHS}",
        )

    @property
    def loinc_code(self) -> str:
        return format_loinc(self.loinc)


@dataclass(frozen=True)
class Not:
    child: Node


@dataclass(frozen=True)
class _Combination:
    """One or more criteria, combined (`word`: the native format's key, named in errors)."""

    children: tuple[Node, ...]
    word: ClassVar[str]

    def __post_init__(self) -> None:
        _require(
            isinstance(self.children, tuple) and len(self.children) >= 1,
            f"'{self.word}' needs at least one criterion",
        )


@dataclass(frozen=True)
class And(_Combination):
    """Every child holds."""

    word = "all"


@dataclass(frozen=True)
class Or(_Combination):
    """At least one child holds."""

    word = "any"


@dataclass(frozen=True)
class LocalBit:
    """Part `index` of a split query (`circuits.locality`), evaluated in the clear by the
    site holding its data and input secretly as one bit per patient.  Not a criterion:
    it appears only in the secure remainder, never in a query file."""

    index: int


@dataclass(frozen=True)
class _Secret:
    """A leaf of a private query (`circuits.secret`): its type is public, its constants are
    the researcher's secret inputs `first`, `first + 1`, ... (their number is public)."""

    first: int
    arity: ClassVar[int]

    @property
    def constants(self) -> range:
        """The indexes of its constants in the researcher's input."""
        return range(self.first, self.first + self.arity)


@dataclass(frozen=True)
class SecretAge(_Secret):
    """min_exclusive < age < max_exclusive; constants: (min_exclusive, max_exclusive)."""

    arity = 2


@dataclass(frozen=True)
class SecretGender(_Secret):
    """gender == code; constant: the code."""

    arity = 1


@dataclass(frozen=True)
class SecretSmoker(_Secret):
    """smoking status == code; constant: the code."""

    arity = 1


@dataclass(frozen=True)
class SecretCondition(_Secret):
    """A condition with any of `width` codes (the query's, padded with codes that match
    nothing); constants: the codes."""

    width: int = 1

    @property
    def constants(self) -> range:
        return range(self.first, self.first + self.width)


@dataclass(frozen=True)
class SecretExam(_Secret):
    """At least `at_least` exams of one type in the last `within_months` months; constants:
    (the type's index in the public exam vocabulary, at_least, within_months)."""

    arity = 3


Leaf = Union[AgeRange, Gender, Smoker, HasCondition, ExamCount]
SecretLeaf = Union[SecretAge, SecretGender, SecretSmoker, SecretCondition, SecretExam]
Node = Union[Leaf, Not, And, Or, LocalBit, SecretLeaf]
LEAVES = (AgeRange, Gender, Smoker, HasCondition, ExamCount)
NODES = LEAVES + (Not, And, Or)  # the criteria a query is written in
SECRET_LEAVES = (SecretAge, SecretGender, SecretSmoker, SecretCondition, SecretExam)
WIRE = NODES + (LocalBit,) + SECRET_LEAVES  # what a tree handed to a party process may hold


class Output(str, enum.Enum):
    """What a query reveals: one bit per patient, only the cohort size, (data held by
    several sites in rows) the cohort size at each site, or aggregates over the cohort
    (`circuits.stats`)."""

    ELIGIBLE = "eligible"
    COUNT = "count"
    COUNT_BY_SITE = "count_by_site"
    STATS = "stats"


@dataclass(frozen=True)
class Query:
    """A named criteria tree with its output mode (and, for `stats`, its aggregates)."""

    root: Node
    output: Output = Output.ELIGIBLE
    name: str = field(default="query", compare=False)
    stats: Stats | None = None

    def __post_init__(self) -> None:
        _require(
            (self.output is Output.STATS) == (self.stats is not None),
            "a stats output needs its aggregates, and only a stats output has them",
        )

    @property
    def ir_hash(self) -> str:
        """Stable hash of the tree and output (not the name): keys caches and results."""
        output: object = self.output.value
        if self.stats is not None:
            output = [output, self.stats.to_plain()]
        text = json.dumps([to_plain(self.root), output], sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:16]


def to_wire(query: Query) -> dict:
    """A query as JSON for a party process: its tree, output and stats (not its name)."""
    stats = None if query.stats is None else query.stats.to_plain()
    return {"root": to_plain(query.root), "output": query.output.value, "stats": stats}


def from_wire(data: dict) -> Query:
    """The inverse of `to_wire`."""
    stats = data.get("stats")
    return Query(
        from_plain(data["root"]),
        Output(data["output"]),
        stats=None if stats is None else Stats.from_plain(stats),
    )


def to_plain(node: Node) -> list:
    """A canonical JSON-able form: [type name, {field: value}] with children nested."""

    def plain(v: object) -> object:
        if isinstance(v, WIRE):
            return to_plain(v)
        return [plain(c) for c in v] if isinstance(v, tuple) else v

    return [type(node).__name__, {f.name: plain(getattr(node, f.name)) for f in fields(node)}]


def from_plain(data: list) -> Node:
    """The inverse of `to_plain`."""
    kind, values = data
    cls = {c.__name__: c for c in WIRE}[kind]

    def node_or_value(v: Any) -> Any:
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


class Renderer(Visitor[str]):
    """The tree as indented lines, one per node."""

    target = "the tree renderer"

    def visit_age_range(self, node: AgeRange, indent: str) -> str:
        return f"{indent}{node.min_exclusive} < age < {node.max_exclusive}"

    def visit_gender(self, node: Gender, indent: str) -> str:
        return f"{indent}gender = {GENDERS[node.code]}"

    def visit_smoker(self, node: Smoker, indent: str) -> str:
        return f"{indent}smoker = {SMOKER_STATES[node.code]}"

    def visit_has_condition(self, node: HasCondition, indent: str) -> str:
        return f"{indent}condition in {{{', '.join(map(str, node.codes))}}}"

    def visit_exam_count(self, node: ExamCount, indent: str) -> str:
        return (
            f"{indent}at least {node.at_least} x LOINC {node.loinc_code} "
            f"in the last {node.within_months} months"
        )

    def visit_secret_age(self, node: SecretAge, indent: str) -> str:
        return f"{indent}secret < age < secret"

    def visit_secret_gender(self, node: SecretGender, indent: str) -> str:
        return f"{indent}gender = secret"

    def visit_secret_smoker(self, node: SecretSmoker, indent: str) -> str:
        return f"{indent}smoker = secret"

    def visit_secret_condition(self, node: SecretCondition, indent: str) -> str:
        return f"{indent}condition in {{{node.width} secret codes}}"

    def visit_secret_exam(self, node: SecretExam, indent: str) -> str:
        return f"{indent}at least secret x secret exam type in the last secret months"

    def visit_local_bit(self, node: LocalBit, indent: str) -> str:
        return f"{indent}local part {node.index} (a site's bit, evaluated in the clear)"

    def visit_not(self, node: Not, indent: str) -> str:
        return f"{indent}NOT\n{self.visit(node.child, indent + '  ')}"

    def visit_and(self, node: And, indent: str) -> str:
        return self._combination("ALL", node.children, indent)

    def visit_or(self, node: Or, indent: str) -> str:
        return self._combination("ANY", node.children, indent)

    def _combination(self, head: str, children: tuple[Node, ...], indent: str) -> str:
        return f"{indent}{head}\n" + "\n".join(self.visit(c, indent + "  ") for c in children)


def render(node: Node, indent: str = "") -> str:
    """A readable multi-line rendering of the tree (for `cohortbench check`)."""
    return Renderer().visit(node, indent)
