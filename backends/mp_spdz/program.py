"""The criteria IR translated to a readable MP-SPDZ program (`.mpc` source), and its I/O.

The program works on every patient at once, so the number of communication
rounds depends on the query, never on the population.  Two lowerings:

* ``binary`` (the default; by far the cheapest on every protocol measured):
  party 0 inputs each column as *bit planes*, one N-bit number per bit of the
  column, which MP-SPDZ turns into one secret-shared binary register per
  plane with one lane per patient.  Every criterion is then a small Boolean
  circuit on those planes, where XOR and NOT are free and each AND gate costs
  one secure multiplication of bits for all patients together:

  - equality with a public value: an AND over the bits' literals (k - 1 gates);
    "any of these SNOMED codes" in about k gates for any number of codes: bits
    where the codes agree are literals, bits that differ between the codes in
    the same pattern must flip together, and a small decision diagram over one
    bit per pattern picks the code (two codes: exactly k - 1 gates);
  - comparison with a public value: the borrow chain of x - c, whose steps
    are all ANDs or all ORs over each run of equal bits of c, evaluated as
    balanced trees (at most k - 1 gates, depth = runs of c);
  - ``at_least n`` of the exam slots: an OR (n = 1) or a popcount and a comparison;
  - And / Or / Not: gates; public constants (an always-true bound) fold away.

  Only the final per-patient bit leaves the binary domain (one daBit per
  patient), to be revealed to party 0 or summed into the count.

* ``arithmetic``: the lowering of the MPyC translator (backends/mpyc/vectorised.py)
  in MP-SPDZ's own idioms: sint vectors, MP-SPDZ comparisons with explicit bit
  lengths (`x.less_than(c, bit_length=k)`, `x.equal(c, bit_length=k)`),
  Lagrange indicator polynomials for small public domains in a prime field,
  products for And, 1 - products of complements for Or.  It is kept as the
  reference point for "what a direct translation costs" (and to exercise
  MP-SPDZ's comparison protocols and their options: edaBits, ring splitting).

Column widths are public: age 8 bits (MAX_AGE 150), gender and smoker 2 bits,
exam months 11 bits (MAX_MONTHS 1800), exam-vocabulary indexes
bit_length(V) bits, SNOMED and LOINC codes the bit length of the data's public
code bounds (`DataBounds`).  Exam types in the public vocabulary are tested on
the slot's vocabulary index, as party 0 of the MPyC backend encodes them.
With ``exact`` padding the per-patient counts are not exploited: every patient
has the (public) maximum number of slots, empty ones holding code 0.

Private criteria (`circuits.secret`): the tree is a template whose leaves name only the
indexes of their constants; party RESEARCHER inputs them (`input_constants`, after
its other inputs), each at a public width (`constant_widths`), as `researcher_lines`
encodes them; the lines then compare columns with secret values (`less_than_secret`,
`equals_secret`, `any_secret_code`, `at_least_secret`), so that every query of one
template has the same source.

A stats query (`circuits.stats`, patient deployment) builds each of its columns as one
secret integer per patient from the same inputs (`StatsColumns`: an age, an exam tally, an
indicator of a category, a range test, a product), and reveals to every party only the
cohort's sums, bits . column, each plus its noise with dp: every party inputs its own
share of each sum's noise (`input_noise`, `write_noise`), after its other inputs.

The revealed output is printed: ``ELIGIBLE [b0, b1, ...]`` by party 0 (to
whom alone the bits are revealed), or ``COUNT n`` / ``STATS s0 s1 ...`` (revealed to every
party, printed by every party that runs with ``-OF .``); `parse_output` reads it.
"""

from __future__ import annotations

import decimal
import re
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np

from backends.mp_spdz.protocols import FIELD, RING
from circuits import noise
from circuits.codes import GENDERS, SMALL_DOMAIN, SMOKER_STATES
from circuits.cost import AGE_BITS, MONTH_BITS, DataBounds
from circuits.holdings import Partition
from circuits.ir import AgeRange, And, ExamCount, Gender, HasCondition, LocalBit, Node, Not, Or, Output, Query
from circuits.ir import SecretAge, SecretCondition, SecretExam, SecretGender, SecretSmoker
from circuits.ir import Smoker, leaves, normalise, render
from circuits.locality import Split, local_column, local_index
from circuits.oracle import site_sums
from circuits.population import Population
from circuits.stats import COLUMNS as STATS_COLUMNS
from circuits.stats import Attribute, Cross, InBin, IsCode, Ones, Power, Stats
from circuits.visitor import Unsupported, Visitor

BINARY, ARITHMETIC = "binary", "arithmetic"
LOWERINGS = (BINARY, ARITHMETIC)
PROGRAM_NAME = "cohort"
INPUT_FILE = "Input-P0-0"  # party 0, main thread, under Player-Data/
TRANSLATOR_VERSION = 8  # bump when the generated source changes for the same inputs

SMALL_CODE_BITS = (SMALL_DOMAIN - 1).bit_length()  # gender and smoking status: 0..3
RING_SUMS = 1 << 63  # a revealed sum modulo 2^64 is signed: |sum| below 2^63


@dataclass(frozen=True)
class Shape:
    """The public facts a program is compiled for: population size, slots and code bounds."""

    patients: int
    slots: tuple[int, int]  # (condition slots C, exam slots E) per patient
    bounds: DataBounds = DataBounds()

    def __post_init__(self) -> None:
        if not (isinstance(self.patients, int) and self.patients >= 1):
            raise ValueError("an MP-SPDZ program needs at least one patient")
        if len(self.slots) != 2 or min(self.slots) < 1:
            raise ValueError("slots must be (conditions >= 1, exams >= 1)")

    @staticmethod
    def of(pop: Population, bounds: DataBounds | None = None) -> Shape:
        conditions, exams = pop.slots
        return Shape(len(pop), (int(conditions), int(exams)), bounds or DataBounds.of(pop))


@dataclass(frozen=True)
class Column:
    """One input column: `bits` unsigned bits per value, `slots` values per patient
    (0: a single value, a plain column; otherwise a list over slots in the program)."""

    name: str
    bits: int
    slots: int
    meaning: str


@dataclass(frozen=True)
class Sites:
    """A run over several sites: the query's split (`circuits.locality`) and the public
    sizes of the sites' blocks in the secure arrays (rows; one block under columns)."""

    plan: Split
    blocks: tuple[int, ...]

    @property
    def rows(self) -> bool:
        return self.plan.holdings.partition is Partition.ROWS


_ORDER = ("age", "gender", "smoker", "conditions", "exam_index", "exam_codes", "exam_months")


def all_columns(shape: Shape) -> dict[str, Column]:
    """Every column the encoding has, with its public width."""
    b = shape.bounds
    c_slots, e_slots = shape.slots
    return {
        "age": Column("age", AGE_BITS, 0, "whole years"),
        "gender": Column("gender", SMALL_CODE_BITS, 0, "0 male, 1 female, 2 other, 3 unknown"),
        "smoker": Column("smoker", SMALL_CODE_BITS, 0, "0 never, 1 current, 2 former, 3 unknown"),
        "conditions": Column(
            "conditions",
            max(b.max_condition_code, 1).bit_length(),
            c_slots,
            "SNOMED CT codes, 0 = empty slot",
        ),
        "exam_index": Column(
            "exam_index",
            (b.exam_domain - 1).bit_length(),
            e_slots,
            "LOINC codes as exam-vocabulary indexes 1..V, 0 = other or empty",
        ),
        "exam_codes": Column(
            "exam_codes", max(b.max_exam_code, 1).bit_length(), e_slots, "LOINC code bodies, 0 = empty slot"
        ),
        "exam_months": Column("exam_months", MONTH_BITS, e_slots, "months before the reference date"),
    }


class _ColumnsRead(Visitor[set[str]]):
    """The input columns a tree reads."""

    target = "MP-SPDZ input columns"

    def __init__(self, shape: Shape):
        self.shape = shape

    def visit_age_range(self, node: AgeRange) -> set[str]:
        return {"age"}

    def visit_gender(self, node: Gender) -> set[str]:
        return {"gender"}

    def visit_smoker(self, node: Smoker) -> set[str]:
        return {"smoker"}

    def visit_has_condition(self, node: HasCondition) -> set[str]:
        return {"conditions"}

    def visit_exam_count(self, node: ExamCount) -> set[str]:
        known = self.shape.bounds.exam_index(node.loinc) is not None
        return {"exam_index" if known else "exam_codes", "exam_months"}

    def visit_local_bit(self, node: LocalBit) -> set[str]:
        return {local_column(node.index)}

    def visit_secret_age(self, node: SecretAge) -> set[str]:
        return {"age"}

    def visit_secret_gender(self, node: SecretGender) -> set[str]:
        return {"gender"}

    def visit_secret_smoker(self, node: SecretSmoker) -> set[str]:
        return {"smoker"}

    def visit_secret_condition(self, node: SecretCondition) -> set[str]:
        return {"conditions"}

    def visit_secret_exam(self, node: SecretExam) -> set[str]:
        return {"exam_index", "exam_months"}

    def visit_not(self, node: Not) -> set[str]:
        return self.visit(node.child)

    def visit_and(self, node: And) -> set[str]:
        return set().union(*map(self.visit, node.children))

    visit_or = visit_and


def _stats_reads(stats: Stats, shape: Shape) -> set[str]:
    """The input columns a stats query's attributes read (`site` reads none: no lowering)."""
    reads: set[str] = set()
    for a in stats.attributes():
        if a.kind == "exams":
            reads |= _ColumnsRead(shape).visit(ExamCount(a.loinc, 1, a.within_months))
        elif a.kind != "site":
            reads.add(a.kind)
    return reads


def columns(query: Query, shape: Shape, root: Node | None = None) -> tuple[Column, ...]:
    """The columns the query (or `root`, a split's secure remainder) reads, in input
    order (the program's and the input files'): raw columns, then local parts' bits."""
    used = _ColumnsRead(shape).visit(query.root if root is None else root)
    if query.stats is not None:
        used |= _stats_reads(query.stats, shape)
    every = all_columns(shape)
    local = sorted(k for k in map(local_index, used) if k is not None)
    return tuple(every[name] for name in _ORDER if name in used) + tuple(
        Column(local_column(k), 1, 0, f"local part {k}'s bit, evaluated in the clear") for k in local
    )


# --------------------------------------------------------------------------------------------
# The program: a header, the lowering's prelude (package data under preludes/), party 0's
# inputs and one line per node of the criteria tree.

PRELUDES = Path(__file__).with_name("preludes")
COMMON_PRELUDE = "common.py"  # the helpers both lowerings share, included first

# The prelude functions the generated program calls (common.py and the lowering's own file
# together define them all); each node translation calls them by the same names with the
# same arguments, so one translator serves both lowerings.
PRELUDE_INTERFACE = (
    "input_column",
    "NOT",
    "AND",
    "OR",
    "greater_than",
    "less_than",
    "equals",
    "is_value",
    "any_code",
    "at_least",
    "reveal_eligible",
    "reveal_count",
    "input_rows",
    "input_bit",
    "reveal_blocks",
    "reveal_block_counts",
    "input_counts",
    "reveal_total",
    "reveal_site_counts",
    "input_constants",
    "less_than_secret",
    "equals_secret",
    "any_secret_code",
    "at_least_secret",
    "number",
    "tally",
    "input_noise",
    "reveal_sums",
    "input_site_sums",
    "reveal_site_sums",
)


def prelude(lowering: str) -> str:
    """The source that `lowering`'s programs include: common.py, then <lowering>.py."""
    if lowering not in LOWERINGS:
        raise ValueError(f"unknown lowering {lowering!r}; use one of {', '.join(LOWERINGS)}")
    return "\n\n".join(
        (PRELUDES / name).read_text().rstrip() + "\n" for name in (COMMON_PRELUDE, f"{lowering}.py")
    )


class Translator(Visitor[str]):
    """The IR to program lines: one method per node type, each returning the name of the
    program variable that holds the node's per-patient bit (or a folded constant)."""

    def __init__(self, shape: Shape, domain: str = RING):
        self.shape = shape
        self.domain = domain
        self.lines: list[str] = []
        self._names = 0
        self._bits = {name: c.bits for name, c in all_columns(shape).items()}
        self.constant_bits: dict[int, int] = {}  # a private query's constants: index -> public width

    def _constant(self, index: int, bits: int) -> str:
        """The program variable of the researcher's constant `index`, `bits` public bits wide."""
        self.constant_bits[index] = bits
        return f"K[{index}]"

    def _emit(self, expression: str, comment: str) -> str:
        self._names += 1
        name = f"c{self._names}"
        self.lines.append(f"{name} = {expression}  # {comment}")
        return name

    def _is_value(self, x: str, v: int, column: str, domain: int) -> str:
        return (
            f"is_value({x}, {v}, bits={self._bits[column]}, domain={domain}, "
            f"prime_field={self.domain == FIELD})"
        )

    def visit_age_range(self, node: AgeRange) -> str:
        bits = self._bits["age"]
        return self._emit(
            f"AND(greater_than(age, {node.min_exclusive}, bits={bits}), "
            f"less_than(age, {node.max_exclusive}, bits={bits}))",
            f"{node.min_exclusive} < age < {node.max_exclusive}",
        )

    def visit_gender(self, node: Gender) -> str:
        return self._emit(
            self._is_value("gender", node.code, "gender", SMALL_DOMAIN), f"gender = {GENDERS[node.code]}"
        )

    def visit_smoker(self, node: Smoker) -> str:
        return self._emit(
            self._is_value("smoker", node.code, "smoker", SMALL_DOMAIN),
            f"smoker = {SMOKER_STATES[node.code]}",
        )

    def visit_has_condition(self, node: HasCondition) -> str:
        codes = tuple(node.codes)
        return self._emit(
            f"any_code(conditions, {codes!r}, bits={self._bits['conditions']})",
            f"a condition in {{{', '.join(map(str, codes))}}}",
        )

    def visit_exam_count(self, node: ExamCount) -> str:
        hits = self.exam_hits(node)
        return self._emit(f"at_least({hits}, {node.at_least})", f"at least {node.at_least} such exams")

    def exam_hits(self, node: ExamCount) -> str:
        """The variable of the node's per-slot hits: that exam type, within its window."""
        b = self.shape.bounds
        index = b.exam_index(node.loinc)
        if index is not None:
            same = self._is_value("exam_index[j]", index, "exam_index", b.exam_domain)
            kind = f"vocabulary index {index}"
        else:
            same = f"equals(exam_codes[j], {node.loinc}, bits={self._bits['exam_codes']})"
            kind = "not in the vocabulary"
        recent = f"less_than(exam_months[j], {node.within_months + 1}, bits={self._bits['exam_months']})"
        return self._emit(
            f"[AND({same}, {recent}) for j in range(E)]",
            f"per exam slot: LOINC {node.loinc_code} ({kind}), at most {node.within_months} months ago",
        )

    def visit_local_bit(self, node: LocalBit) -> str:
        return local_column(node.index)

    # Private criteria (circuits.secret): the constants are the researcher's secret inputs
    # K[i] (see `researcher_values` for their encoding), so the lines name only indexes.

    def visit_secret_age(self, node: SecretAge) -> str:
        bits = self._bits["age"]
        low = self._constant(node.first, AGE_BITS)  # min_exclusive + 1
        high = self._constant(node.first + 1, AGE_BITS)
        return self._emit(
            f"AND(NOT(less_than_secret(age, {low}, bits={bits})), "
            f"less_than_secret(age, {high}, bits={bits}))",
            f"{low} - 1 < age < {high} (secret bounds)",
        )

    def _secret_value(self, node: SecretGender | SecretSmoker, column: str) -> str:
        bits = self._bits[column]
        code = self._constant(node.first, SMALL_CODE_BITS)
        return self._emit(f"equals_secret({column}, {code}, bits={bits})", f"{column} = {code} (secret)")

    def visit_secret_gender(self, node: SecretGender) -> str:
        return self._secret_value(node, "gender")

    def visit_secret_smoker(self, node: SecretSmoker) -> str:
        return self._secret_value(node, "smoker")

    def visit_secret_condition(self, node: SecretCondition) -> str:
        bits = self._bits["conditions"]
        codes = [self._constant(i, bits + 1) for i in node.constants]  # top bit: the pad code
        return self._emit(
            f"any_secret_code(conditions, [{', '.join(codes)}], bits={bits})",
            f"a condition in {{{', '.join(codes)}}} (secret codes, padded)",
        )

    def visit_secret_exam(self, node: SecretExam) -> str:
        e_slots = self.shape.slots[1]
        ibits, mbits = self._bits["exam_index"], self._bits["exam_months"]
        index = self._constant(node.first, ibits)
        at_least = self._constant(node.first + 1, (e_slots + 1).bit_length())
        within = self._constant(node.first + 2, MONTH_BITS)
        hits = self._emit(
            f"[AND(equals_secret(exam_index[j], {index}, bits={ibits}), "
            f"NOT(less_than_secret({within}, exam_months[j], bits={mbits}))) for j in range(E)]",
            f"per exam slot: vocabulary index {index}, at most {within} months ago (secret)",
        )
        return self._emit(
            f"at_least_secret({hits}, {at_least}, bits={(e_slots + 1).bit_length()})",
            f"at least {at_least} such exams (secret)",
        )

    def visit_not(self, node: Not) -> str:
        child = self.visit(node.child)
        return self._emit(f"NOT({child})", f"not {child}")

    def visit_and(self, node: And) -> str:
        kids = [self.visit(c) for c in node.children]
        return self._emit(f"AND({', '.join(kids)})", "all of " + ", ".join(kids))

    def visit_or(self, node: Or) -> str:
        kids = [self.visit(c) for c in node.children]
        return self._emit(f"OR({', '.join(kids)})", "any of " + ", ".join(kids))


class BinaryTranslator(Translator):
    target = "MP-SPDZ binary lowering"


class ArithmeticTranslator(Translator):
    target = "MP-SPDZ arithmetic lowering"


TRANSLATORS: dict[str, type[Translator]] = {BINARY: BinaryTranslator, ARITHMETIC: ArithmeticTranslator}


class StatsColumns(Visitor[str]):
    """A stats query's columns (`circuits.stats`) to program lines, in the criteria's
    translator: each column's variable holds one integer per patient in the arithmetic
    domain (an sint vector; the binary lowering converts bits and bit planes with one daBit
    each), or a public constant.  Ages and exam tallies are kept in the criteria's domain
    for range tests, and converted once for sums and products."""

    nodes = STATS_COLUMNS

    def __init__(self, translator: Translator):
        self.t = translator
        self.target = f"{translator.target}'s statistics"
        self.values: dict[Attribute, tuple[str, int]] = {}  # in the criteria's domain, and its bits
        self.numbers: dict[Attribute, str] = {}  # as an sint vector

    def sums(self, stats: Stats) -> list[str]:
        """Every column's variable, in `Stats.columns` order (the order revealed)."""
        self.t.lines.append("# The statistics' columns, one integer per patient, in the order revealed.")
        return [self.visit(c) for c in stats.columns()]

    def visit_ones(self, node: Ones) -> str:
        return "1"

    def visit_power(self, node: Power) -> str:
        x = self.number(node.of)
        return x if node.power == 1 else self.t._emit(f"{x} * {x}", node.name)

    def visit_cross(self, node: Cross) -> str:
        return self.t._emit(f"{self.number(node.a)} * {self.number(node.b)}", node.name)

    def visit_in_bin(self, node: InBin) -> str:
        """[low <= x < high], the edges clamped to 0..bound + 1 (as MPyC's lowering does)."""
        top = node.of.bound(self.t.shape.slots[1]) + 1
        low, high = max(node.low, 0), min(node.high, top)
        if low >= high:
            return "0"
        x, bits = self.value(node.of)
        test = f"AND(NOT(less_than({x}, {low}, bits={bits})), less_than({x}, {high}, bits={bits}))"
        return self.t._emit(f"number({test}, N)", node.name)

    def visit_is_code(self, node: IsCode) -> str:
        if node.of.kind == "site":
            raise Unsupported(node, self.target, "a histogram of site needs a deployment of sites")
        bit = self.t._is_value(node.of.kind, node.code, node.of.kind, SMALL_DOMAIN)
        return self.t._emit(f"number({bit}, N)", node.name)

    def value(self, a: Attribute) -> tuple[str, int]:
        """A numeric attribute in the criteria's domain (planes or sint) and its public bits."""
        if a not in self.values:
            if a.kind == "age":
                self.values[a] = ("age", AGE_BITS)
            else:
                hits = self.t.exam_hits(ExamCount(a.loinc, 1, a.within_months))
                tally = self.t._emit(f"tally({hits}, N)", f"{a.name}: exams of that type in the window")
                self.values[a] = (tally, self.t.shape.slots[1].bit_length())
        return self.values[a]

    def number(self, a: Attribute) -> str:
        """A numeric attribute as an sint vector."""
        if a not in self.numbers:
            self.numbers[a] = self.t._emit(f"number({self.value(a)[0]}, N)", a.name)
        return self.numbers[a]


def sum_bound(stats: Stats, shape: Shape, noise: int = 0) -> int:
    """The largest |sum| the program reveals: every patient at its columns' bounds, plus
    `noise`, a bound on the total noise (`noise_bound`)."""
    return shape.patients * stats.max_bound(shape.slots[1]) + noise


def noise_bound(scales: list[Fraction], parties: int) -> int:
    """A bound on the total noise of a sum (`circuits.noise.bound`)."""
    return noise.bound(scales, parties)


def _header(
    query: Query,
    root: Node,
    shape: Shape,
    lowering: str,
    domain: str,
    settings: tuple[str, ...],
    sites: Sites | None,
    researcher: int | None = None,
) -> list[str]:
    """The comments naming the query and its tree, and the public sizes.  A private query's
    template is named by its IR hash alone (its name differs between queries of one shape)."""
    c_slots, e_slots = shape.slots
    tree = "\n".join("#   " + line for line in render(root).splitlines())
    where = (
        []
        if sites is None
        else [
            f"SITES = {sites.plan.holdings.sites}  # data-holding parties (public)",
            f"BLOCKS = {list(sites.blocks)}  # patients of each site's block, in site order (public)",
        ]
    )
    return [
        f"# cohortbench cohort selection, generated by backends/mp_spdz/program.py (v{TRANSLATOR_VERSION})",
        (
            f"# query {query.name!r} (IR hash {query.ir_hash}), output: {query.output.value}"
            if researcher is None
            else f"# private criteria: a template (IR hash {query.ir_hash}), output: {query.output.value}"
        ),
        *(
            []
            if sites is None
            else [f"# secure part over {sites.plan.holdings.partition.value}: {sites.plan.mode}"]
        ),
        tree,
        f"# lowering: {lowering}; domain: {domain}",
        "",
        f"N = {shape.patients}  # patients (public)",
        f"C = {c_slots}  # condition slots per patient (public padding)",
        f"E = {e_slots}  # exam slots per patient (public padding)",
        *where,
        *(
            []
            if researcher is None
            else [f"RESEARCHER = {researcher}  # the party that inputs the criteria's constants (public)"]
        ),
        *settings,
    ]


def _source(col: Column, sites: Sites | None) -> str:
    """The prelude call that inputs one value of `col` per patient."""
    if sites is None:
        return f"input_column({col.bits}, N)"
    if sites.rows:
        return f"input_rows({col.bits}, BLOCKS)"
    if local_index(col.name) is not None:
        return f"input_bit(N, party={sites.plan.holder(col.name)})"
    return f"input_column({col.bits}, N, party={sites.plan.holder(col.name)})"


def _input_lines(query: Query, shape: Shape, root: Node, sites: Sites | None) -> list[str]:
    """One line per column the tree reads, in the order of the parties' input files."""
    if sites is None:
        lines = ["# Party 0's inputs, in the order of Player-Data/Input-P0-0."]
    else:
        lines = ["# The sites' inputs; each party's in the order of its Player-Data/Input-P<i>-0."]
    if sites is not None and sites.plan.presum and query.stats is not None:
        k = len(query.stats.columns(sites.plan.holdings.sites))
        return [*lines, f"site_sums = input_site_sums(SITES, {k})  # each site's sums over its own cohort"]
    if sites is not None and sites.plan.presum:
        return [*lines, "site_counts = input_counts(SITES)  # each site's count of its own patients"]
    for col in columns(query, shape, root):
        call = _source(col, sites)
        if col.slots:
            slots = "C" if col.name == "conditions" else "E"
            lines.append(
                f"{col.name} = [{call} for slot in range({slots})]  # {col.meaning}, {col.bits} bits"
            )
        else:
            lines.append(f"{col.name} = {call}  # {col.meaning}, {col.bits} bits")
    return lines


def _reveal(query: Query, result: str, sites: Sites | None, sums: list[str]) -> str:
    """The line that reveals the answer, to whom the deployment says."""
    count = query.output is Output.COUNT
    if query.stats is not None:
        noise = ", NOISE" if query.stats.dp is not None else ""
        if sites is not None and sites.plan.presum:
            return f"reveal_site_sums(site_sums, {query.stats.by_site}{noise})"
        return f"reveal_sums({result}, [{', '.join(sums)}], N{noise})"
    if sites is None:
        return f"reveal_count({result}, N)" if count else f"reveal_eligible({result}, N)"
    if sites.plan.presum:
        return "reveal_total(site_counts)" if count else "reveal_site_counts(site_counts)"
    if count:
        return f"reveal_count({result}, N)"
    if query.output is Output.COUNT_BY_SITE:
        return f"reveal_block_counts({result}, BLOCKS)"
    if sites.rows:
        return f"reveal_blocks({result}, BLOCKS)"
    return f"reveal_eligible({result}, N, party={sites.plan.holdings.reveal_to})"


def translate(
    query: Query,
    shape: Shape,
    lowering: str = BINARY,
    domain: str = RING,
    settings: tuple[str, ...] = (),
    sites: Sites | None = None,
    researcher: int | None = None,
    parties: int = 0,
) -> str:
    """The readable `.mpc` source of `query` over `shape`.

    `domain` (field | ring) selects the arithmetic lowering's small-domain equality;
    `settings` are extra `program.*` lines (compile options with no compiler flag);
    `sites`: the data is held by several sites, and the program is the split's
    secure remainder over their inputs.  A private query's template (`circuits.secret`)
    takes its constants from party `researcher`, after that party's other inputs; the
    source then holds none of them, so every query of the template has the same program.
    A stats query reveals its sums to every party (`reveal_sums`); with dp each of the
    `parties` inputs its share of each sum's noise last (`input_noise`)."""
    if lowering not in LOWERINGS:
        raise ValueError(f"unknown lowering {lowering!r}; use one of {', '.join(LOWERINGS)}")
    if domain not in (FIELD, RING):
        raise ValueError(f"unknown domain {domain!r}; use field or ring")
    tree = query.root if sites is None else sites.plan.secure
    if tree is None:
        raise ValueError("nothing of this query is secure under its deployment: there is no program")
    root = normalise(tree)
    translator = TRANSLATORS[lowering](shape, domain)
    result = "" if sites is not None and sites.plan.presum else translator.visit(root)
    sums = _stats_lines(query, translator, sites, parties)
    released = (
        0
        if query.stats is None
        else len(query.stats.released(1 if sites is None else sites.plan.holdings.sites))
    )
    widths = _widths(translator)
    if widths and researcher is None:
        raise ValueError("a private query's template needs the researcher party (researcher=...)")
    if not widths:
        researcher = None
    constants = (
        [f"K = input_constants({list(widths)}, N, party=RESEARCHER)  # the criteria's constants, secret"]
        if widths
        else []
    )
    return "\n".join(
        [
            *_header(query, root, shape, lowering, domain, settings, sites, researcher),
            "",
            prelude(lowering),
            "",
            *_input_lines(query, shape, root, sites),
            *constants,
            *_noise_lines(query, parties, released),
            "",
            "# The criteria, one line per node of the tree.",
            *translator.lines,
            "",
            _reveal(query, result, sites, sums),
            "",
        ]
    )


def _stats_lines(query: Query, translator: Translator, sites: Sites | None, parties: int) -> list[str]:
    """A stats query's columns, translated after the criteria (their variables, in order)."""
    if query.stats is None:
        return []
    if query.stats.dp is not None and parties < 1:
        raise ValueError("a stats query with dp needs its parties (parties=...), each inputs noise")
    if sites is not None and sites.plan.presum:
        return []  # each site inputs its own sums
    if sites is not None and query.stats.needs_sites:
        raise ValueError(
            "stats by_site or of site are lowered under rows with local: auto (each site's own sums) only"
        )
    return StatsColumns(translator).sums(query.stats)


def _noise_lines(query: Query, parties: int, k: int) -> list[str]:
    """With dp: every party's shares of the `k` sums' noise, its last inputs (after data
    and constants)."""
    if query.stats is None or query.stats.dp is None:
        return []
    return [
        f"PARTIES = {parties}  # each inputs its share of every sum's noise (public)",
        f"NOISE = input_noise({k}, PARTIES)  # the sums' noise: every party's shares added, secret",
    ]


def _widths(translator: Translator) -> tuple[int, ...]:
    """The public widths of the constants the translated tree read, in index order."""
    bits = translator.constant_bits
    if sorted(bits) != list(range(len(bits))):
        raise ValueError(f"a template's constants must be 0..n-1; it reads {sorted(bits)}")
    return tuple(bits[i] for i in range(len(bits)))


def constant_widths(root: Node, shape: Shape) -> tuple[int, ...]:
    """The public widths of a template's constants, in the researcher's input order."""
    translator = Translator(shape)
    translator.visit(normalise(root))
    return _widths(translator)


def researcher_values(root: Node, constants: tuple[int, ...]) -> list[int]:
    """The constants as the program reads them: an age node's lower bound is input as
    min_exclusive + 1 (0..151, so that [age > min] = NOT [age < min + 1]); the rest as they are."""
    values = [int(c) for c in constants]
    for leaf in leaves(root):
        if isinstance(leaf, SecretAge):
            values[leaf.first] += 1
    return values


def researcher_lines(
    root: Node, constants: tuple[int, ...], shape: Shape, lowering: str = BINARY
) -> list[str]:
    """The researcher's input lines for a template's constants: per constant, its bits as
    planes of N lanes all equal (binary), or one integer (arithmetic)."""
    widths = constant_widths(root, shape)
    values = researcher_values(root, constants)
    if len(values) != len(widths):
        raise ValueError(f"the template takes {len(widths)} constants, got {len(values)}")
    for v, w in zip(values, widths):
        if not 0 <= v < 1 << w:
            raise ValueError(f"a secret constant {v} does not fit its public {w} bits")
    if lowering != BINARY:
        return [str(v) for v in values]
    ones = _Decimal()((1 << shape.patients) - 1)
    return [ones if (v >> i) & 1 else "0" for v, w in zip(values, widths) for i in range(w)]


def write_researcher(
    root: Node,
    constants: tuple[int, ...],
    shape: Shape,
    player_data: Path,
    party: int,
    lowering: str = BINARY,
) -> Path:
    """Append the researcher's constants to its input file Input-P<party>-0 (after whatever
    else it inputs, as the program reads them); returns the path."""
    player_data.mkdir(parents=True, exist_ok=True)
    path = player_data / f"Input-P{party}-0"
    before = path.read_text() if path.exists() else ""
    path.write_text(before + _text(researcher_lines(root, constants, shape, lowering)))
    return path


def write_noise(shares: list[int], player_data: Path, party: int) -> Path:
    """Append a party's noise shares, one per sum, to its input file Input-P<party>-0 (its
    last inputs, as the program reads them); returns the path."""
    player_data.mkdir(parents=True, exist_ok=True)
    path = player_data / f"Input-P{party}-0"
    before = path.read_text() if path.exists() else ""
    path.write_text(before + _text([str(int(v)) for v in shares]))
    return path


# --------------------------------------------------------------------------------------------
# Party 0's input file.


def column_values(pop: Population, name: str, bounds: DataBounds) -> np.ndarray:
    """A column of the population as the program reads it: (N,) or (N, slots)."""
    if name == "exam_index":
        return bounds.exam_indexes(pop.exam_codes)
    return np.asarray(getattr(pop, name), dtype=np.int64)


def _check_shape(pop: Population, shape: Shape) -> None:
    if len(pop) != shape.patients or tuple(pop.slots) != tuple(shape.slots):
        raise ValueError(
            f"the population ({len(pop)} patients, slots {tuple(pop.slots)}) does "
            f"not match the program ({shape.patients} patients, slots "
            f"{tuple(shape.slots)}); compile for this population"
        )


class _Decimal:
    """Decimal strings of big non-negative ints, in O(n log^2 n): halves converted recursively
    and joined by multiplying with powers of two in the decimal module (whose big
    multiplications are fast, and which Python's int-to-str digit limit does not apply to)."""

    def __init__(self) -> None:
        self.ctx = decimal.Context(prec=decimal.MAX_PREC, Emax=decimal.MAX_EMAX)
        self.powers: dict[int, decimal.Decimal] = {}

    def __call__(self, n: int) -> str:
        return str(self._convert(n, max(n.bit_length(), 1)))

    def _convert(self, n: int, bits: int) -> decimal.Decimal:
        if bits <= 8192:
            return self.ctx.create_decimal(n)
        half = bits // 2
        if half not in self.powers:
            self.powers[half] = self.ctx.power(self.ctx.create_decimal(2), half)
        high = self._convert(n >> half, bits - half)
        return self.ctx.add(
            self.ctx.multiply(high, self.powers[half]), self._convert(n & ((1 << half) - 1), half)
        )


def _planes(values: np.ndarray, bits: int, to_decimal: _Decimal) -> list[str]:
    """Bit plane i of the values (lane j = bit i of value j) as decimal numbers."""
    out = []
    for i in range(bits):
        plane = np.packbits(((values >> i) & 1).astype(np.uint8), bitorder="little")
        out.append(to_decimal(int.from_bytes(plane.tobytes(), "little")))
    return out


def _encode(values: np.ndarray, col: Column, lowering: str, to_decimal: _Decimal) -> list[str]:
    """One column's values as input-file lines: bit planes or integers, slot by slot."""
    if values.size and (values.min() < 0 or values.max() >= 1 << col.bits):
        raise ValueError(
            f"{col.name}: values must lie in 0..{(1 << col.bits) - 1} "
            f"({col.bits} public bits), found {int(values.min())}.."
            f"{int(values.max())}; derive the bounds from this population"
        )
    per_slot = [values] if not col.slots else [values[:, j] for j in range(col.slots)]
    if lowering == BINARY:
        return [line for v in per_slot for line in _planes(v, col.bits, to_decimal)]
    return [" ".join(map(str, v.tolist())) for v in per_slot]


def _text(lines: list[str]) -> str:
    return "\n".join(lines) + "\n" if lines else ""


def input_text(pop: Population, query: Query, shape: Shape, lowering: str = BINARY) -> str:
    """Party 0's input file for the program of (query, shape, lowering)."""
    _check_shape(pop, shape)
    to_decimal = _Decimal()
    return _text(
        [
            line
            for col in columns(query, shape)
            for line in _encode(column_values(pop, col.name, shape.bounds), col, lowering, to_decimal)
        ]
    )


def site_input_text(
    sites: Sites, site: int, pop: Population, bits: np.ndarray, shape: Shape, lowering: str = BINARY
) -> str:
    """Site `site`'s input file for the program of (sites, shape, lowering): its values of
    each column it inputs, in program order.  `pop` is its own data (under rows, its
    block), `bits` its local parts' bits (`Split.local_bits`)."""
    plan = sites.plan
    if plan.presum and plan.query.stats is not None:
        stats, eligible = plan.query.stats, bits[:, 0].astype(bool)
        return _text([str(s) for s in site_sums(stats, pop, eligible, site, plan.holdings.sites)])
    if plan.presum:
        return f"{int(bits[:, 0].sum())}\n"
    if sites.rows and not sites.blocks[site]:
        return ""  # the program takes nothing from a site without patients
    assert plan.secure is not None
    lines: list[str] = []
    to_decimal = _Decimal()
    for col in columns(plan.query, shape, normalise(plan.secure)):
        if sites.rows or plan.holder(col.name) == site:
            k = local_index(col.name)
            own = (
                column_values(pop, col.name, shape.bounds)
                if k is None
                else bits[:, plan.parts_of(site).index(k)]
            )
            if sites.rows and lowering == BINARY:
                own = _in_block(own, sites.blocks, site)
            lines += _encode(own, col, lowering, to_decimal)
    return _text(lines)


def _in_block(values: np.ndarray, blocks: tuple[int, ...], site: int) -> np.ndarray:
    """A site's rows placed in its block of every patient's lanes, zeros elsewhere."""
    out = np.zeros((sum(blocks), *values.shape[1:]), dtype=np.int64)
    start = sum(blocks[:site])
    out[start : start + len(values)] = values
    return out


def write_inputs(
    pop: Population, query: Query, shape: Shape, player_data: Path, lowering: str = BINARY
) -> Path:
    """Write party 0's inputs to player_data/Input-P0-0; returns the path."""
    player_data.mkdir(parents=True, exist_ok=True)
    path = player_data / INPUT_FILE
    path.write_text(input_text(pop, query, shape, lowering))
    return path


# --------------------------------------------------------------------------------------------
# The revealed output.

_ELIGIBLE = re.compile(r"^ELIGIBLE (.*)$", re.M)
_COUNT = re.compile(r"^COUNT (-?\d+)\s*$", re.M)
_BY_SITE = re.compile(r"^COUNT_BY_SITE((?: -?\d+)*)\s*$", re.M)
_STATS = re.compile(r"^STATS((?: -?\d+)*)\s*$", re.M)


def parse_output(text: str, query: Query, patients: int, sites: int = 1) -> list[int] | int:
    """The revealed result a party printed: the count, every site's count, a stats query's
    sums (over `sites`), or the eligible bits of `patients` patients (those it learns).
    ValueError if absent."""
    if query.output is Output.COUNT:
        m = _COUNT.search(text)
        if not m:
            raise ValueError("printed no 'COUNT <n>' line")
        return int(m.group(1))
    if query.stats is not None:
        return _sums(text, len(query.stats.released(sites)))
    if query.output is Output.COUNT_BY_SITE:
        m = _BY_SITE.search(text)
        if not m:
            raise ValueError("printed no 'COUNT_BY_SITE <n> ...' line")
        return [int(c) for c in m.group(1).split()]
    m = _ELIGIBLE.search(text)
    if not m:
        raise ValueError("printed no 'ELIGIBLE [...]' line")
    bits = [int(b) for b in re.findall(r"-?\d+", m.group(1))]
    if len(bits) != patients or any(b not in (0, 1) for b in bits):
        raise ValueError(f"the ELIGIBLE line holds {len(bits)} values, not {patients} bits")
    return bits


def _sums(text: str, k: int) -> list[int]:
    """A stats query's k revealed sums, from its 'STATS s0 s1 ...' line."""
    m = _STATS.search(text)
    if not m:
        raise ValueError("printed no 'STATS <sum> ...' line")
    sums = [int(v) for v in m.group(1).split()]
    if len(sums) != k:
        raise ValueError(f"the STATS line holds {len(sums)} sums, not {k}")
    return sums
