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

The revealed output is printed: ``ELIGIBLE [b0, b1, ...]`` by party 0 (to
whom alone the bits are revealed), or ``COUNT n`` (revealed to every party,
printed by every party that runs with ``-OF .``); `parse_output` reads it.
"""
from __future__ import annotations

import decimal
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from circuits.codes import GENDERS, SMALL_DOMAIN, SMOKER_STATES
from circuits.cost import AGE_BITS, MONTH_BITS, DataBounds
from circuits.ir import (AgeRange, And, ExamCount, Gender, HasCondition,
                         Node, Not, Or, Output, Query, Smoker, leaves, normalise, render)
from circuits.population import Population

BINARY, ARITHMETIC = "binary", "arithmetic"
LOWERINGS = (BINARY, ARITHMETIC)
FIELD, RING = "field", "ring"
PROGRAM_NAME = "cohort"
INPUT_FILE = "Input-P0-0"  # party 0, main thread, under Player-Data/
TRANSLATOR_VERSION = 3  # bump when the generated source changes for the same inputs

SMALL_CODE_BITS = (SMALL_DOMAIN - 1).bit_length()  # gender and smoking status: 0..3


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
        return Shape(len(pop), tuple(int(s) for s in pop.slots), bounds or DataBounds.of(pop))


@dataclass(frozen=True)
class Column:
    """One input column: `bits` unsigned bits per value, `slots` values per patient
    (0: a single value, a plain column; otherwise a list over slots in the program)."""
    name: str
    bits: int
    slots: int
    meaning: str


_ORDER = ("age", "gender", "smoker", "conditions", "exam_index", "exam_codes", "exam_months")


def all_columns(shape: Shape) -> dict[str, Column]:
    """Every column the encoding has, with its public width."""
    b = shape.bounds
    c_slots, e_slots = shape.slots
    return {
        "age": Column("age", AGE_BITS, 0, "whole years"),
        "gender": Column("gender", SMALL_CODE_BITS, 0, "0 male, 1 female, 2 other, 3 unknown"),
        "smoker": Column("smoker", SMALL_CODE_BITS, 0, "0 never, 1 current, 2 former, 3 unknown"),
        "conditions": Column("conditions", max(b.max_condition_code, 1).bit_length(), c_slots,
                             "SNOMED CT codes, 0 = empty slot"),
        "exam_index": Column("exam_index", (b.exam_domain - 1).bit_length(), e_slots,
                             "LOINC codes as exam-vocabulary indexes 1..V, 0 = other or empty"),
        "exam_codes": Column("exam_codes", max(b.max_exam_code, 1).bit_length(), e_slots,
                             "LOINC code bodies, 0 = empty slot"),
        "exam_months": Column("exam_months", MONTH_BITS, e_slots, "months before the reference date"),
    }


def columns(query: Query, shape: Shape) -> tuple[Column, ...]:
    """The columns the query reads, in input order (the program's and the input file's)."""
    used: set[str] = set()
    for leaf in leaves(query.root):
        if isinstance(leaf, AgeRange):
            used.add("age")
        elif isinstance(leaf, Gender):
            used.add("gender")
        elif isinstance(leaf, Smoker):
            used.add("smoker")
        elif isinstance(leaf, HasCondition):
            used.add("conditions")
        elif isinstance(leaf, ExamCount):
            known = shape.bounds.exam_index(leaf.loinc) is not None
            used.update(("exam_index" if known else "exam_codes", "exam_months"))
    every = all_columns(shape)
    return tuple(every[name] for name in _ORDER if name in used)


# --------------------------------------------------------------------------------------------
# The helpers each lowering defines at the top of the program.  Node translations call them by
# the same names with the same arguments, so the translator below serves both lowerings.

_COMMON_PRELUDE = '''\
import operator
from Compiler import util


def _fold(x):
    """Public constants (Python ints/bools) become True/False."""
    return bool(x) if isinstance(x, int) else x


def _fold_count(hits, n):
    """`at least n of hits` with public hits folded: (secret hits, n left, answer or None)."""
    hits = [_fold(h) for h in hits]
    n -= sum(1 for h in hits if h is True)
    hits = [h for h in hits if not isinstance(h, bool)]
    known = True if n <= 0 else False if n > len(hits) else None
    return hits, n, known


def NOT(x):
    x = _fold(x)
    return (not x) if isinstance(x, bool) else _negate(x)


def AND(*xs):
    xs = [_fold(x) for x in xs]
    if any(x is False for x in xs):
        return False
    xs = [x for x in xs if x is not True]
    return util.tree_reduce(_conjoin, xs) if xs else True


def OR(*xs):
    return NOT(AND(*(NOT(x) for x in xs)))


def greater_than(x, c, bits):
    """[x > c] for x of `bits` unsigned bits and a public c."""
    return NOT(less_than(x, c + 1, bits))


def reveal_eligible(bit):
    """One bit per patient, revealed to party 0 only, who prints it."""
    bit = _fold(bit)
    value = sint(int(bit), size=N) if isinstance(bit, bool) else _to_sint(bit)
    print_ln_to(0, 'ELIGIBLE %s', value.reveal_to(0))


def reveal_count(bit):
    """Only the number of eligible patients, revealed to every party."""
    bit = _fold(bit)
    value = sint(int(bit), size=N) if isinstance(bit, bool) else _to_sint(bit)
    print_ln('COUNT %s', value.sum().reveal())
'''

_BINARY_PRELUDE = '''\
# Bit-sliced lowering.  A value is a list of bit planes, least significant first;
# plane i is one secret binary register holding bit i of every patient (one lane
# per patient), so each gate below acts on all N patients at once.  XOR and NOT
# are local; each AND is one round of bit multiplications for all lanes.
from Compiler.GC.types import sbits

lanes = sbits.get_type(N)


def input_column(bits):
    """A column from party 0, input as `bits` bit planes (one N-bit number each)."""
    return [lanes.get_input_from(0) for _ in range(bits)]


def _negate(x):
    return ~x


def _conjoin(x, y):
    return x & y


def _to_sint(x):
    return sint(x)  # one daBit per lane


def XOR(x, y):
    x, y = _fold(x), _fold(y)
    if isinstance(x, bool) and isinstance(y, bool):
        return x != y
    if isinstance(x, bool):
        x, y = y, x
    return (~x if y else x) if isinstance(y, bool) else x ^ y


def MUX(s, if1, if0):
    """if1 where s else if0, with one AND: if0 ^ (s & (if0 ^ if1))."""
    return XOR(if0, AND(s, XOR(if0, if1)))


def literal(x, bit):
    return x if bit else NOT(x)


def equals(x, c, bits):
    """[x == c] for a public c: the AND of the bits' literals."""
    if not 0 <= c < 2 ** len(x):
        return False
    return AND(*(literal(b, (c >> i) & 1) for i, b in enumerate(x)))


def is_value(x, v, bits, domain):
    """[x == v] for x in a small public domain {0..domain-1}."""
    return equals(x, v, bits)


def less_than(x, c, bits):
    """[x < c] for a public c: the borrow of x - c.  From the least significant bit up,
    r = NOT x_i OR r where c has a 1, r = NOT x_i AND r where c has a 0; each run of equal
    bits of c is one balanced tree (at most len(x) - 1 gates, depth = runs of c)."""
    if c <= 0:
        return False
    if c >= 2 ** len(x):
        return True
    r, i = False, 0
    while i < len(x):
        bit, j = (c >> i) & 1, i
        while j < len(x) and (c >> j) & 1 == bit:
            j += 1
        run = [NOT(b) for b in x[i:j]]
        r = OR(r, OR(*run)) if bit else AND(r, AND(*run))
        i = j
    return r


def in_codes(x, codes):
    """[x in codes] for distinct public codes, in about len(x) gates whatever the number
    of codes.  Relative to the first code, bit i of x "flips" when it differs from that
    code's bit.  Where all codes agree, no bit may flip; bits whose pattern across the
    codes is the same must flip together, so one bit z stands for its class and the
    others are tested against it; what remains is whether the flips z of the classes
    are those of one of the codes: a small decision diagram over z."""
    codes = [c for c in codes if 0 <= c < 2 ** len(x)]
    if not codes:
        return False
    base = codes[0]
    flips = [XOR(b, bool((base >> i) & 1)) for i, b in enumerate(x)]
    classes = {}  # pattern across the codes -> bit positions
    for i in range(len(x)):
        classes.setdefault(tuple(((c ^ base) >> i) & 1 for c in codes), []).append(i)
    tests = [NOT(flips[i]) for i in classes.pop((0,) * len(codes), [])]
    z, patterns = [], []
    for pattern, positions in classes.items():
        z.append(flips[positions[0]])
        tests += [NOT(XOR(flips[i], z[-1])) for i in positions[1:]]
        patterns.append(pattern)
    wanted = [sum(p[j] << k for k, p in enumerate(patterns)) for j in range(len(codes))]
    return AND(*tests, _in_codes(z, wanted, list(range(len(z)))))


def _in_codes(x, codes, positions):
    """[x in codes] as a decision diagram: the literals of the bits where the codes
    agree, then a branch (MUX) on a bit where they differ, recursively."""
    agree = [i for i in positions if len({(c >> i) & 1 for c in codes}) == 1]
    common = AND(*(literal(x[i], (codes[0] >> i) & 1) for i in agree))
    if len(codes) == 1:
        return common
    split = next(i for i in positions if i not in agree)
    rest = [i for i in positions if i not in agree and i != split]
    ones = [c for c in codes if (c >> split) & 1]
    zeros = [c for c in codes if not (c >> split) & 1]
    return AND(common, MUX(x[split], _in_codes(x, ones, rest), _in_codes(x, zeros, rest)))


def any_code(slots, codes, bits):
    """[some slot holds one of the codes]."""
    return OR(*(in_codes(x, codes) for x in slots))


def at_least(hits, n):
    """[at least n of the hit bits are set]."""
    hits, n, known = _fold_count(hits, n)
    if known is not None:
        return known
    if n == 1:
        return OR(*hits)
    if n == len(hits):
        return AND(*hits)
    count = popcount(hits)
    return NOT(less_than(count, n, len(count)))


def popcount(bits):
    """The number of set bits, as bits (least significant first): a Wallace tree of full
    adders (one AND each: carry = ((a ^ b) & (b ^ c)) ^ b) and half adders."""
    columns = [list(bits)]
    while any(len(col) > 1 for col in columns):
        merged = [[] for _ in range(len(columns) + 1)]
        for i, col in enumerate(columns):
            while len(col) >= 3:
                a, b, c = col.pop(), col.pop(), col.pop()
                merged[i].append(XOR(XOR(a, b), c))
                merged[i + 1].append(XOR(AND(XOR(a, b), XOR(b, c)), b))
            if len(col) == 2:
                a, b = col
                merged[i].append(XOR(a, b))
                merged[i + 1].append(AND(a, b))
            else:
                merged[i].extend(col)
        columns = merged if merged[-1] else merged[:-1]
    return [col[0] if col else False for col in columns]
'''

_ARITHMETIC_PRELUDE = '''\
# Arithmetic lowering.  A value is an sint vector with one entry per patient; a
# criterion is a 0/1 sint vector; AND is a product, OR one minus the product of
# complements; comparisons are MP-SPDZ's with explicit bit lengths.


def input_column(bits):
    """A column from party 0: one sint per patient (`bits` is the public width)."""
    return sint.get_input_from(0, size=N)


def _negate(x):
    return 1 - x


def _conjoin(x, y):
    return x * y


def _to_sint(x):
    return x


def equals(x, c, bits):
    """[x == c] for a public c; x - c needs bits + 1 signed bits."""
    if not 0 <= c < 2 ** bits:
        return False
    return x.equal(c, bit_length=bits + 1)


def is_value(x, v, bits, domain):
    """[x == v] for x in {0..domain-1}: the Lagrange basis polynomial
    prod_{j != v} (x - j) / (v - j) in a prime field (domain - 2 multiplications, no
    comparison); an equality test in a ring, where the division does not exist."""
    if not 0 <= v < domain:
        return False
    if DOMAIN != 'field':
        return equals(x, v, bits)
    scale = 1
    for j in range(domain):
        if j != v:
            scale *= v - j
    factors = [x - j for j in range(domain) if j != v]
    return util.tree_reduce(operator.mul, factors) * cint(1).field_div(cint(scale))


def less_than(x, c, bits):
    """[x < c] for x of `bits` unsigned bits and a public c (x - c needs bits + 1)."""
    if c <= 0:
        return False
    if c >= 2 ** bits:
        return True
    return x.less_than(c, bit_length=bits)


def any_code(slots, codes, bits):
    """[some slot holds one of the codes]: the number of matches compared with 0."""
    matches = [equals(x, c, bits) for x in slots for c in codes]
    matches = [m for m in matches if m is not False]
    if not matches:
        return False
    total = util.tree_reduce(operator.add, matches)
    return greater_than(total, 0, len(matches).bit_length())


def at_least(hits, n):
    """[at least n of the hit bits are set]: their sum compared with n."""
    hits, n, known = _fold_count(hits, n)
    if known is not None:
        return known
    total = util.tree_reduce(operator.add, hits)
    return NOT(less_than(total, n, len(hits).bit_length()))
'''


class Translator:
    """The IR to program lines: one method per node type, each returning the name of the
    program variable that holds the node's per-patient bit (or a folded constant)."""

    def __init__(self, shape: Shape):
        self.shape = shape
        self.lines: list[str] = []
        self._names = 0
        self._bits = {name: c.bits for name, c in all_columns(shape).items()}

    def translate(self, node: Node) -> str:
        return getattr(self, "_" + type(node).__name__)(node)

    def _emit(self, expression: str, comment: str) -> str:
        self._names += 1
        name = f"c{self._names}"
        self.lines.append(f"{name} = {expression}  # {comment}")
        return name

    def _AgeRange(self, node: AgeRange) -> str:
        bits = self._bits["age"]
        return self._emit(f"AND(greater_than(age, {node.min_exclusive}, bits={bits}), "
                          f"less_than(age, {node.max_exclusive}, bits={bits}))",
                          f"{node.min_exclusive} < age < {node.max_exclusive}")

    def _Gender(self, node: Gender) -> str:
        return self._emit(f"is_value(gender, {node.code}, bits={self._bits['gender']}, "
                          f"domain={SMALL_DOMAIN})", f"gender = {GENDERS[node.code]}")

    def _Smoker(self, node: Smoker) -> str:
        return self._emit(f"is_value(smoker, {node.code}, bits={self._bits['smoker']}, "
                          f"domain={SMALL_DOMAIN})", f"smoker = {SMOKER_STATES[node.code]}")

    def _HasCondition(self, node: HasCondition) -> str:
        codes = tuple(node.codes)
        return self._emit(f"any_code(conditions, {codes!r}, bits={self._bits['conditions']})",
                          f"a condition in {{{', '.join(map(str, codes))}}}")

    def _ExamCount(self, node: ExamCount) -> str:
        b = self.shape.bounds
        index = b.exam_index(node.loinc)
        if index is not None:
            same = (f"is_value(exam_index[j], {index}, bits={self._bits['exam_index']}, "
                    f"domain={b.exam_domain})")
            kind = f"vocabulary index {index}"
        else:
            same = f"equals(exam_codes[j], {node.loinc}, bits={self._bits['exam_codes']})"
            kind = "not in the vocabulary"
        recent = f"less_than(exam_months[j], {node.within_months + 1}, bits={self._bits['exam_months']})"
        hits = self._emit(f"[AND({same}, {recent}) for j in range(E)]",
                          f"per exam slot: LOINC {node.loinc_code} ({kind}), "
                          f"at most {node.within_months} months ago")
        return self._emit(f"at_least({hits}, {node.at_least})",
                          f"at least {node.at_least} such exams")

    def _Not(self, node: Not) -> str:
        child = self.translate(node.child)
        return self._emit(f"NOT({child})", f"not {child}")

    def _And(self, node: And) -> str:
        kids = [self.translate(c) for c in node.children]
        return self._emit(f"AND({', '.join(kids)})", "all of " + ", ".join(kids))

    def _Or(self, node: Or) -> str:
        kids = [self.translate(c) for c in node.children]
        return self._emit(f"OR({', '.join(kids)})", "any of " + ", ".join(kids))


def translate(query: Query, shape: Shape, lowering: str = BINARY, domain: str = RING,
              settings: tuple[str, ...] = ()) -> str:
    """The readable `.mpc` source of `query` over `shape`.

    `domain` (field | ring) selects the arithmetic lowering's small-domain equality;
    `settings` are extra `program.*` lines (compile options with no compiler flag)."""
    if lowering not in LOWERINGS:
        raise ValueError(f"unknown lowering {lowering!r}; use one of {', '.join(LOWERINGS)}")
    if domain not in (FIELD, RING):
        raise ValueError(f"unknown domain {domain!r}; use field or ring")
    root = normalise(query.root)
    cols = columns(query, shape)
    c_slots, e_slots = shape.slots
    tree = "\n".join("#   " + line for line in render(root).splitlines())
    head = [
        f"# cohortbench cohort selection, generated by backends/mp_spdz/program.py (v{TRANSLATOR_VERSION})",
        f"# query {query.name!r} (IR hash {query.ir_hash}), output: {query.output.value}",
        tree,
        f"# lowering: {lowering}; domain: {domain}",
        "",
        f"N = {shape.patients}  # patients (public)",
        f"C = {c_slots}  # condition slots per patient (public padding)",
        f"E = {e_slots}  # exam slots per patient (public padding)",
        f"DOMAIN = {domain!r}",
        *settings,
        "",
        _COMMON_PRELUDE.rstrip(),
        "",
        "",
        (_BINARY_PRELUDE if lowering == BINARY else _ARITHMETIC_PRELUDE).rstrip(),
        "",
        "",
        "# Party 0's inputs, in the order of Player-Data/Input-P0-0.",
    ]
    for col in cols:
        if col.slots:
            slots = "C" if col.name == "conditions" else "E"
            head.append(f"{col.name} = [input_column({col.bits}) for slot in range({slots})]"
                        f"  # {col.meaning}, {col.bits} bits")
        else:
            head.append(f"{col.name} = input_column({col.bits})  # {col.meaning}, {col.bits} bits")
    t = Translator(shape)
    result = t.translate(root)
    reveal = "reveal_count" if query.output is Output.COUNT else "reveal_eligible"
    body = ["", "# The criteria, one line per node of the tree.", *t.lines, "",
            f"{reveal}({result})", ""]
    return "\n".join(head + body)


# --------------------------------------------------------------------------------------------
# Party 0's input file.

def column_values(pop: Population, name: str, bounds: DataBounds) -> np.ndarray:
    """A column of the population as the program reads it: (N,) or (N, slots)."""
    if name == "exam_index":
        return bounds.exam_indexes(pop.exam_codes)
    return np.asarray(getattr(pop, name), dtype=np.int64)


def _check_shape(pop: Population, shape: Shape) -> None:
    if len(pop) != shape.patients or tuple(pop.slots) != tuple(shape.slots):
        raise ValueError(f"the population ({len(pop)} patients, slots {tuple(pop.slots)}) does "
                         f"not match the program ({shape.patients} patients, slots "
                         f"{tuple(shape.slots)}); compile for this population")


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
        return self.ctx.add(self.ctx.multiply(high, self.powers[half]),
                            self._convert(n & ((1 << half) - 1), half))


def _planes(values: np.ndarray, bits: int, to_decimal: _Decimal) -> list[str]:
    """Bit plane i of the values (lane j = bit i of value j) as decimal numbers."""
    out = []
    for i in range(bits):
        plane = np.packbits(((values >> i) & 1).astype(np.uint8), bitorder="little")
        out.append(to_decimal(int.from_bytes(plane.tobytes(), "little")))
    return out


def input_text(pop: Population, query: Query, shape: Shape, lowering: str = BINARY) -> str:
    """Party 0's input file for the program of (query, shape, lowering)."""
    _check_shape(pop, shape)
    lines: list[str] = []
    to_decimal = _Decimal()
    for col in columns(query, shape):
        values = column_values(pop, col.name, shape.bounds)
        if values.size and (values.min() < 0 or values.max() >= 1 << col.bits):
            raise ValueError(f"{col.name}: values must lie in 0..{(1 << col.bits) - 1} "
                             f"({col.bits} public bits), found {int(values.min())}.."
                             f"{int(values.max())}; derive the bounds from this population")
        per_slot = [values] if not col.slots else [values[:, j] for j in range(col.slots)]
        for v in per_slot:
            if lowering == BINARY:
                lines.extend(_planes(v, col.bits, to_decimal))
            else:
                lines.append(" ".join(map(str, v.tolist())))
    return "\n".join(lines) + "\n"


def write_inputs(pop: Population, query: Query, shape: Shape, player_data: Path,
                 lowering: str = BINARY) -> Path:
    """Write party 0's inputs to player_data/Input-P0-0; returns the path."""
    player_data.mkdir(parents=True, exist_ok=True)
    path = player_data / INPUT_FILE
    path.write_text(input_text(pop, query, shape, lowering))
    return path


# --------------------------------------------------------------------------------------------
# The revealed output.

_ELIGIBLE = re.compile(r"^ELIGIBLE (.*)$", re.M)
_COUNT = re.compile(r"^COUNT (-?\d+)\s*$", re.M)


def parse_output(text: str, query: Query, patients: int) -> list[int] | int:
    """The revealed result a party printed: the eligible bits (party 0), or the count.
    ValueError if absent."""
    if query.output is Output.COUNT:
        m = _COUNT.search(text)
        if not m:
            raise ValueError("printed no 'COUNT <n>' line")
        return int(m.group(1))
    m = _ELIGIBLE.search(text)
    if not m:
        raise ValueError("printed no 'ELIGIBLE [...]' line")
    bits = [int(b) for b in re.findall(r"-?\d+", m.group(1))]
    if len(bits) != patients or any(b not in (0, 1) for b in bits):
        raise ValueError(f"the ELIGIBLE line holds {len(bits)} values, not {patients} bits")
    return bits
