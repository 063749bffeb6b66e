"""Every IR node type through every translator of the tree.

Two halves: every `Visitor` subclass in circuits/ and backends/ has a method for
every node type of `circuits.ir.NODES` (one that cannot lower a node defines the
method and raises `Unsupported`, so the gap is explicit); and one example of each
node type goes through each public entry point: the oracle, the cost model,
`render`, the native round trip, both MPyC lowerings (in this process) and the
MP-SPDZ program source.  The paper's query.json is only ever read, so there is no
paper-format writer to test.  `EXAMPLES` must cover `NODES` exactly: a node type
added to circuits/ir.py without its translators fails here.
"""

from __future__ import annotations

import dataclasses
import importlib
import json
import pkgutil
from types import ModuleType

import pytest

import mpyc_inprocess  # first: MPyC's runtime must not read pytest's command line
import backends
import circuits
from backends.mp_spdz import program
from circuits import cost
from circuits.cost import DataBounds
from circuits.ir import NODES, AgeRange, And, ExamCount, Gender, HasCondition, Not, Or, Query, Smoker, render
from circuits.oracle import evaluate
from circuits.queryfile import dump_native, parse_query
from circuits.visitor import Unsupported, Visitor

EXAMPLES = {
    AgeRange: AgeRange(12, 24),
    Gender: Gender(0),
    Smoker: Smoker(2),
    HasCondition: HasCondition((55822004, 68496003)),
    ExamCount: ExamCount(57698, 2, 200),
    Not: Not(Gender(0)),
    And: And((Smoker(0), Not(Gender(0)))),
    Or: Or((Gender(0), Smoker(1))),
}
EXAMPLE_IDS = [kind.__name__ for kind in EXAMPLES]
MP_SPDZ_ONLY = {"Compiler"}  # MP-SPDZ's own compiler package, on the path only where it is installed
MHE_PARTIES_ONLY = {"openfhe"}  # imported by the MHE parties, under their own interpreter (.venv-mhe)
ELSEWHERE = ModuleType("imported under the MHE parties' interpreter only")


def _import(name: str) -> ModuleType | None:
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as e:
        if e.name in MP_SPDZ_ONLY:
            return None
        if e.name in MHE_PARTIES_ONLY and name.startswith("backends.mhe."):
            return ELSEWHERE
        raise


MODULES = [
    _import(m.name)
    for pkg in (circuits, backends)
    for m in pkgutil.walk_packages(pkg.__path__, pkg.__name__ + ".")
]


def _subclasses(cls: type) -> list[type]:
    return [c for sub in cls.__subclasses__() for c in (sub, *_subclasses(sub))]


VISITORS = sorted(
    {v for v in _subclasses(Visitor) if v.__module__.startswith(("circuits.", "backends."))},
    key=lambda v: f"{v.__module__}.{v.__qualname__}",
)


def test_every_module_of_circuits_and_backends_imports():
    assert None not in MODULES, "a module needs MP-SPDZ's compiler to import; it should not"


def test_the_translators_are_found():
    names = {v.__name__ for v in VISITORS}
    assert {
        "Oracle",
        "CostModel",
        "PaperCodeBits",
        "Renderer",
        "NativeWriter",
        "Vectorised",
        "PaperPatient",
    } <= names


@pytest.mark.parametrize("visitor", VISITORS, ids=lambda v: f"{v.__module__}.{v.__qualname__}")
def test_every_visitor_has_a_method_for_every_node(visitor):
    assert visitor.missing() == []


def test_examples_cover_every_node_type():
    assert set(EXAMPLES) == set(NODES)
    assert all(isinstance(node, kind) for kind, node in EXAMPLES.items())


def test_a_node_without_its_method_is_unsupported_naming_node_and_target():
    class Stranger:
        pass

    with pytest.raises(Unsupported, match="the tree renderer cannot translate Stranger nodes"):
        render(Stranger())  # type: ignore[arg-type]


def _nodes(node: object) -> list[object]:
    """The node and every node below it."""
    below = []
    for f in dataclasses.fields(node):  # type: ignore[arg-type]
        value = getattr(node, f.name)
        for v in value if isinstance(value, tuple) else (value,):
            if isinstance(v, NODES):
                below += _nodes(v)
    return [node, *below]


@pytest.mark.parametrize("node", EXAMPLES.values(), ids=EXAMPLE_IDS)
def test_oracle_and_both_mpyc_lowerings_agree(node, boundary_population, tmp_path):
    expected = evaluate(node, boundary_population)
    assert 0 < expected.sum() < len(boundary_population)  # the example tells patients apart
    for protocol in ("shamir", "paper-loop"):
        got = mpyc_inprocess.run(protocol, Query(node), boundary_population, tmp_path / protocol)
        assert got == expected.astype(int).tolist(), protocol


@pytest.mark.parametrize("node", EXAMPLES.values(), ids=EXAMPLE_IDS)
def test_cost_model(node):
    c = cost.estimate(node, 4, 4)
    assert c.depth >= 1 and c.comparisons + c.equalities + c.multiplications > 0


@pytest.mark.parametrize("node", EXAMPLES.values(), ids=EXAMPLE_IDS)
def test_render_gives_a_line_per_node(node):
    assert len(render(node).splitlines()) == len(_nodes(node))


@pytest.mark.parametrize("node", EXAMPLES.values(), ids=EXAMPLE_IDS)
def test_native_round_trip(node):
    q = Query(node, name="example")
    assert parse_query(json.loads(json.dumps(dump_native(q))), "example.json") == (q, [])


@pytest.mark.parametrize("lowering", program.LOWERINGS)
@pytest.mark.parametrize("node", EXAMPLES.values(), ids=EXAMPLE_IDS)
def test_mp_spdz_program_source(node, lowering, boundary_population):
    pop = boundary_population
    shape = program.Shape(len(pop), pop.slots, DataBounds.of(pop))
    source = program.translate(Query(node), shape, lowering)
    compile(source, "cohort.mpc", "exec")  # an .mpc program is Python: it must at least parse
    assert "reveal_eligible(" in source
