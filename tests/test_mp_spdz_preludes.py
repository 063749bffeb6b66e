"""The MP-SPDZ preludes' helpers run on plaintext stand-ins for sbits and sint, without MP-SPDZ.

The prelude source that programs include (`program.prelude`) is executed with a
stand-in `Compiler` package: a bit plane is a Python int with one bit per lane
(patient), a sint vector a list of ints.  Each helper is checked against plain
integer arithmetic on many values.
"""

from __future__ import annotations

import ast
import sys
import types

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from backends.mp_spdz import program

LANES = 6


class Plane:
    """One secret binary register of LANES lanes, in the clear."""

    def __init__(self, value: int) -> None:
        self.value = value & ((1 << LANES) - 1)

    def __invert__(self) -> Plane:
        return Plane(~self.value)

    def __and__(self, other: Plane) -> Plane:
        return Plane(self.value & other.value)

    def __xor__(self, other: Plane) -> Plane:
        return Plane(self.value ^ other.value)


class Vector:
    """An sint vector in the clear, with the operations the arithmetic prelude uses."""

    def __init__(self, values) -> None:
        self.values = list(values)

    def _map(self, other, f) -> Vector:
        o = other.values if isinstance(other, Vector) else [other] * len(self.values)
        return Vector(f(a, b) for a, b in zip(self.values, o))

    def __add__(self, other):
        return self._map(other, lambda a, b: a + b)

    def __sub__(self, other):
        return self._map(other, lambda a, b: a - b)

    def __rsub__(self, other):
        return self._map(other, lambda a, b: b - a)

    def __mul__(self, other):
        return self._map(other, lambda a, b: a * b)

    def less_than(self, c, bit_length):
        return Vector(int(a < c) for a in self.values)

    def equal(self, c, bit_length):
        return Vector(int(a == c) for a in self.values)


def tree_reduce(function, sequence):
    sequence = list(sequence)
    while len(sequence) > 1:
        pairs = [function(a, b) for a, b in zip(sequence[::2], sequence[1::2])]
        sequence = pairs + sequence[len(sequence) // 2 * 2 :]
    return sequence[0]


class Cint:
    def __init__(self, value) -> None:
        self.value = value

    def field_div(self, other: Cint):
        from fractions import Fraction

        return Fraction(self.value, other.value)


def _compiler() -> dict[str, types.ModuleType]:
    """A stand-in for the parts of MP-SPDZ's Compiler package that the preludes import."""
    mods = {
        name: types.ModuleType(name)
        for name in (
            "Compiler",
            "Compiler.util",
            "Compiler.types",
            "Compiler.library",
            "Compiler.GC",
            "Compiler.GC.types",
        )
    }
    mods["Compiler"].util = mods["Compiler.util"]
    mods["Compiler.util"].tree_reduce = tree_reduce
    mods["Compiler.types"].sint = Vector
    mods["Compiler.types"].cint = Cint
    mods["Compiler.library"].print_ln = mods["Compiler.library"].print_ln_to = print
    mods["Compiler.GC.types"].sbits = types.SimpleNamespace(get_type=lambda n: Plane)
    return mods


def load(lowering: str) -> dict:
    """The namespace of `lowering`'s prelude, run on the stand-ins."""
    namespace: dict = {}
    with pytest.MonkeyPatch.context() as mp:
        for name, module in _compiler().items():
            mp.setitem(sys.modules, name, module)
        exec(compile(program.prelude(lowering), f"<{lowering} prelude>", "exec"), namespace)
    return namespace


BINARY = load(program.BINARY)
ARITHMETIC = load(program.ARITHMETIC)


def planes(values: list[int], bits: int) -> list[Plane]:
    """The bit planes of LANES values (plane i: bit i of every value)."""
    return [Plane(sum(((v >> i) & 1) << j for j, v in enumerate(values))) for i in range(bits)]


def lanes(bit) -> list[int]:
    """A result (secret plane, or folded constant) as one 0/1 per lane."""
    if isinstance(bit, (bool, int)):
        return [int(bool(bit))] * LANES
    return [(bit.value >> j) & 1 for j in range(LANES)]


def number(bits: list) -> list[int]:
    """A list of result planes (least significant first) as one integer per lane."""
    return [sum(lanes(b)[j] << i for i, b in enumerate(bits)) for j in range(LANES)]


values = st.integers(1, 12).flatmap(
    lambda k: st.tuples(
        st.just(k),
        st.lists(st.integers(0, 2**k - 1), min_size=LANES, max_size=LANES),
        st.integers(-3, 2**k + 3),
    )
)


@settings(max_examples=300, deadline=None)
@given(values)
def test_comparisons_and_equality_with_a_public_constant(case):
    k, xs, c = case
    for ns, x in ((BINARY, planes(xs, k)), (ARITHMETIC, Vector(xs))):
        got = {name: ns[name](x, c, k) for name in ("less_than", "greater_than", "equals")}
        got = {name: lanes(v) if ns is BINARY or isinstance(v, bool) else v.values for name, v in got.items()}
        assert got["less_than"] == [int(v < c) for v in xs]
        assert got["greater_than"] == [int(v > c) for v in xs]
        assert got["equals"] == [int(v == c) for v in xs]


@settings(max_examples=200, deadline=None)
@given(
    st.integers(1, 10).flatmap(
        lambda k: st.tuples(
            st.just(k),
            st.lists(st.integers(0, 2**k - 1), min_size=LANES, max_size=LANES),
            st.sets(st.integers(-2, 2**k + 2), min_size=1, max_size=6),
        )
    )
)
def test_in_codes_and_any_code(case):
    k, xs, codes = case
    codes = sorted(codes)
    assert lanes(BINARY["in_codes"](planes(xs, k), codes)) == [int(v in codes) for v in xs]
    slots = [xs, xs[::-1]]
    want = [int(a in codes or b in codes) for a, b in zip(*slots)]
    assert lanes(BINARY["any_code"]([planes(s, k) for s in slots], codes, k)) == want
    hit = ARITHMETIC["any_code"]([Vector(s) for s in slots], codes, k)
    assert (lanes(hit) if isinstance(hit, bool) else hit.values) == want


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.lists(st.booleans(), min_size=LANES, max_size=LANES) | st.booleans(), min_size=1, max_size=9),
    st.integers(0, 10),
)
def test_popcount_and_at_least(hits, n):
    secret = [h if isinstance(h, bool) else Plane(sum(b << j for j, b in enumerate(h))) for h in hits]
    per_lane = [sum(lanes(h)[j] for h in secret) for j in range(LANES)]
    assert number(BINARY["popcount"](secret)) == per_lane
    assert lanes(BINARY["at_least"](secret, n)) == [int(c >= n) for c in per_lane]
    arith = [h if isinstance(h, bool) else Vector(lanes(h)) for h in secret]
    got = ARITHMETIC["at_least"](arith, n)
    assert (lanes(got) if isinstance(got, bool) else got.values) == [int(c >= n) for c in per_lane]


def test_small_domain_values_and_gates():
    xs = [0, 1, 2, 3, 3, 0]
    for v in range(5):
        want = [int(x == v) for x in xs]
        assert lanes(BINARY["is_value"](planes(xs, 2), v, 2, 4, False)) == want
        for field in (True, False):
            got = ARITHMETIC["is_value"](Vector(xs), v, 2, 4, field)
            assert (lanes(got) if isinstance(got, bool) else got.values) == want
    a, b = Plane(0b101100), Plane(0b110010)
    for ns in (BINARY,):
        assert lanes(ns["AND"](a, b, True)) == lanes(Plane(a.value & b.value))
        assert lanes(ns["OR"](a, b, False)) == lanes(Plane(a.value | b.value))
        assert ns["AND"](a, False) is False and ns["OR"](True, a) is True and ns["NOT"](0) is True
        assert lanes(ns["MUX"](a, b, Plane(0))) == lanes(Plane(a.value & b.value))


def _defined(source: str) -> set[str]:
    return {n.name for n in ast.parse(source).body if isinstance(n, ast.FunctionDef)}


@pytest.mark.parametrize("lowering", program.LOWERINGS)
def test_each_prelude_provides_the_interface(lowering):
    """common.py and the lowering's file define every function the program calls, and the
    lowering defines every name common.py takes from it; the program calls nothing else."""
    assert set(program.PRELUDE_INTERFACE) <= _defined(program.prelude(lowering))
    common = ast.parse((program.PRELUDES / program.COMMON_PRELUDE).read_text())
    [block] = [n for n in common.body if isinstance(n, ast.If)]  # if TYPE_CHECKING:
    needed = {a.name for imp in block.body for a in imp.names}
    assert needed <= _defined((program.PRELUDES / f"{lowering}.py").read_text())


def test_the_translator_calls_only_the_interface():
    from circuits.ir import AgeRange, And, ExamCount, Gender, HasCondition, Not, Or, Query, Smoker
    from circuits.population import Padding
    from harness.data.synthetic import generate

    root = And(
        (
            Or((Gender(1), Not(Smoker(0)))),
            AgeRange(20, 90),
            Or((HasCondition((38341003, 15777000)), ExamCount(57698, 2, 60))),
            Not(ExamCount(2093, 1, 120)),
        )
    )
    shape = program.Shape.of(generate(20, 3, Padding(3, 4), truncate=True))
    for lowering in program.LOWERINGS:
        calls = program_calls(program.translate(Query(root), shape, lowering), lowering)
        assert calls <= set(program.PRELUDE_INTERFACE), calls


def program_calls(source: str, lowering: str) -> set[str]:
    """The functions a generated program's body (after its prelude) calls by name."""
    body = source.split(program.prelude(lowering))[1]
    tree = ast.walk(ast.parse(body))
    return {n.func.id for n in tree if isinstance(n, ast.Call) and isinstance(n.func, ast.Name)} - {"range"}


@pytest.mark.parametrize("translator", list(program.TRANSLATORS.values()))
def test_translators_are_visitors_with_no_missing_node(translator):
    from circuits.visitor import Unsupported, Visitor

    assert issubclass(translator, Visitor) and translator.missing() == []
    assert translator.target.startswith("MP-SPDZ ")
    with pytest.raises(Unsupported, match=translator.target):
        translator(program.Shape(1, (1, 1))).visit(object())
