"""Private criteria on MP-SPDZ: the researcher's constants as secret inputs (circuits.secret).

Every secret node type on patients at its edges against the plaintext oracle, for both
lowerings, on shamir with an extra researcher (4 parties) and with party 0 as the
researcher (3 parties); two queries of one shape compile to the same program (source
and bytecode); padding codes match nothing.  Each run skips when shamir's VM is not built.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from backends.engine import Party
from backends.mp_spdz import launch, program
from backends.mp_spdz.compile import CompileOptions, compile_program
from backends.mp_spdz.engine import MpSpdzSpec
from backends.mp_spdz.site import JOB_FILE, SiteJob
from circuits import secret
from circuits.cost import DataBounds
from circuits.holdings import Holdings, Partition
from circuits.ir import AgeRange, And, ExamCount, Gender, HasCondition, Not, Or, Output, Query, Smoker
from circuits.oracle import Oracle, cohort
from circuits.population import Padding
from harness.data.synthetic import generate
from harness.run.parties import free_ports, run_group
from harness.run.runner import CellRunner, check
from mp_spdz_vms import need_compiler, need_vm

# One query per secret node type, at the edges of the boundary population (tests/conftest.py).
LEAVES = {
    "age": AgeRange(12, 24),
    "gender": Gender(1),
    "smoker": Smoker(2),
    "condition": HasCondition((55822004, 68496003)),
    "exam": ExamCount(57698, 2, 200),
}
# All of them at once, under and/or/not.
MIXED = Or(
    (
        And((AgeRange(12, 24), Not(Gender(0)))),
        And((Smoker(2), ExamCount(57698, 1, 1))),
        HasCondition((68496003,)),
    )
)


@pytest.fixture(scope="module")
def cache(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("mp-spdz-private-cache")


def run_private(
    query: Query,
    pop,
    workdir: Path,
    cache: Path,
    lowering: str,
    parties: int,
    researcher: int,
    protocol: str = "shamir",
):
    """Hide `query`, compile its template for `protocol`, run it with the researcher's
    input; party 0's answer, the compiled program and the hidden query."""
    need_vm(protocol)
    hidden = secret.hide(query, DataBounds.of(pop), pop.slots[1], 3)
    options = CompileOptions(lowering=lowering)
    shape = program.Shape.of(pop)
    compiled = compile_program(
        hidden.template, shape, protocol, parties, options, cache_dir=cache, researcher=researcher
    )
    plan = launch.prepare_run(
        workdir, compiled, pop, free_ports(parties), criteria=(researcher, hidden.constants)
    )
    group = run_group([Party(tuple(a), workdir) for a in plan.argv()], workdir, 120)
    reports = [
        launch.read_report(i, group.logs[i], hidden.template, len(pop), group.returncodes[i], group.timed_out)
        for i in range(parties)
    ]
    return reports[0].result, compiled, hidden


def assert_oracle(query: Query, pop, answer, hidden) -> None:
    expected = cohort(query, pop)
    size, correct, error = check(query, expected, answer)
    assert correct, error
    template = Oracle(pop, constants=hidden.constants).visit(hidden.template.root)
    assert template.tolist() == expected.eligible.tolist()  # the template and constants mean the query


@pytest.mark.parametrize("lowering", program.LOWERINGS)
@pytest.mark.parametrize("parties, researcher", [(4, 3), (3, 0)], ids=["extra", "party0"])
def test_every_secret_node_against_the_oracle(
    lowering, parties, researcher, boundary_population, tmp_path, cache
):
    for name, leaf in [*LEAVES.items(), ("mixed", MIXED)]:
        query = Query(leaf)
        assert 0 < cohort(query, boundary_population).count < len(boundary_population), name
        answer, _, hidden = run_private(
            query, boundary_population, tmp_path / name, cache, lowering, parties, researcher
        )
        assert_oracle(query, boundary_population, answer, hidden)


def _bytecode(compiled) -> str:
    h = hashlib.sha256()
    for path in sorted((compiled.programs / "Bytecode").iterdir()):
        h.update(path.name.encode() + path.read_bytes())
    return h.hexdigest()


@pytest.mark.parametrize("lowering", program.LOWERINGS)
def test_one_shape_one_program(lowering, tmp_path):
    """Two queries differing only in their constants: the same source and bytecode, compiled
    apart (two caches), and no constant of either in the source."""
    need_compiler()
    pop = generate(12, 3, Padding(3, 4), truncate=True)
    bounds = DataBounds.of(pop)
    a = Query(And((AgeRange(30, 70), Gender(1), HasCondition((38341003, 15777000)), ExamCount(57698, 2, 60))))
    b = Query(And((AgeRange(41, 52), Gender(0), HasCondition((55822004,)), ExamCount(58410, 1, 7))))
    shape = program.Shape.of(pop)
    sources, hashes = [], []
    for i, q in enumerate((a, b)):
        hidden = secret.hide(q, bounds, pop.slots[1], 2)
        compiled = compile_program(
            hidden.template,
            shape,
            "shamir",
            4,
            CompileOptions(lowering=lowering),
            cache_dir=tmp_path / f"cache{i}",
            researcher=3,
        )
        assert not compiled.cached
        sources.append(compiled.source.read_bytes())
        hashes.append(_bytecode(compiled))
    assert sources[0] == sources[1]
    assert hashes[0] == hashes[1]
    shared = compile_program(  # one cache entry for both
        secret.hide(b, bounds, pop.slots[1], 2).template,
        shape,
        "shamir",
        4,
        CompileOptions(lowering=lowering),
        cache_dir=tmp_path / "cache0",
        researcher=3,
    )
    assert shared.cached
    text = sources[0].decode()
    criteria = text[text.index("# The criteria") :]
    for constant in ("38341003", "15777000", "55822004", "57698", "58410", "70", "52"):
        assert constant not in criteria


@pytest.mark.parametrize("lowering", program.LOWERINGS)
def test_padding_codes_match_nothing(lowering, tmp_path, cache):
    """A condition node padded to 3 codes: its padding matches no slot, not even the empty
    ones (code 0) or the largest code the data holds."""
    pop = generate(20, 7, Padding(3, 4), truncate=True)
    bounds = DataBounds.of(pop)
    assert secret.condition_pad(bounds) & (secret.condition_pad(bounds) - 1) == 0
    top = int(pop.conditions.max())
    for i, codes in enumerate([(top,), (10**17,)]):  # the top code; a code no patient has
        query = Query(HasCondition(codes))
        answer, _, hidden = run_private(query, pop, tmp_path / str(i), cache, lowering, 4, 3)
        assert hidden.constants.count(secret.condition_pad(bounds)) >= 2
        assert_oracle(query, pop, answer, hidden)


def test_through_the_engine(tmp_path):
    """A cell with criteria: private, researcher extra: the harness's run, correct."""
    need_vm("shamir")
    pop = generate(16, 5, Padding(3, 4), truncate=True)
    query = Query(MIXED, Output.COUNT)
    spec = MpSpdzSpec(engine="mp-spdz", protocol="shamir", parties=4, criteria="private", researcher="extra")
    runner = CellRunner(spec, query, pop, tmp_path)
    try:
        assert runner.cell is not None, runner.unavailable
        outcome = runner.run("r0", 240)
    finally:
        runner.close()
    assert outcome.error is None and outcome.correct, outcome.error
    assert not list((tmp_path / "r0").glob("P*/Player-Data/Input-*")), "input files stay after the run"


@pytest.mark.parametrize(
    "partition, output, researcher",
    [
        ("rows", Output.ELIGIBLE, "extra"),
        ("columns", Output.COUNT, "extra"),
        ("rows", Output.COUNT_BY_SITE, 1),
        ("columns", Output.ELIGIBLE, 0),
    ],
)
def test_sites_with_a_researcher(partition, output, researcher, tmp_path):
    """Three sites; the researcher an extra party without data, or one of the sites (which
    inputs the constants after its own data)."""
    need_vm("shamir")
    pop = generate(18, 9, Padding(3, 4), truncate=True)
    n = len(pop)
    if partition == "rows":
        holdings = Holdings(Partition.ROWS, 3, tuple(i % 3 for i in range(n)), local=True)
    else:
        groups = {"demographics": 0, "conditions": 1, "exams": 2}
        holdings = Holdings(Partition.COLUMNS, 3, (), groups, True, reveal_to=2)
    parties = 4 if researcher == "extra" else 3
    spec = MpSpdzSpec(
        engine="mp-spdz", protocol="shamir", parties=parties, criteria="private", researcher=researcher
    )
    runner = CellRunner(spec, Query(MIXED, output), pop, tmp_path, holdings)
    try:
        assert runner.cell is not None, runner.unavailable
        outcome = runner.run("r0", 240)
    finally:
        runner.close()
    assert outcome.error is None and outcome.correct, outcome.error
    assert not list((tmp_path / "r0").glob("P*/Player-Data/Input-*")), "input files stay after the run"
    for job in (tmp_path / "r0").glob(f"P*/{JOB_FILE}"):
        assert not SiteJob.read(job).researcher_lines, "the researcher's constants stay after the run"


@pytest.mark.parametrize("lowering", program.LOWERINGS)
@pytest.mark.parametrize(
    "protocol, parties, researcher", [("replicated-ring", 3, 0), ("semi2k", 3, 2), ("malicious-shamir", 3, 2)]
)
def test_other_protocols(protocol, parties, researcher, lowering, boundary_population, tmp_path, cache):
    """The mixed query on a ring (replicated, semi2k: MP-SPDZ's comparisons modulo 2^64) and
    a malicious protocol; the researcher party 0, or a computing party without data.
    (malicious-shamir with 4 parties crashes in MP-SPDZ on public queries too.)"""
    query = Query(MIXED)
    answer, _, hidden = run_private(
        query, boundary_population, tmp_path, cache, lowering, parties, researcher, protocol
    )
    assert_oracle(query, boundary_population, answer, hidden)


def test_the_researchers_lines_and_widths(tmp_path):
    """Without a VM: the constants' public widths and encodings, appended to the researcher's
    file after its data (party 0 as researcher), and a template needs its researcher."""
    pop = generate(5, 2, Padding(3, 4), truncate=True)
    shape = program.Shape.of(pop)
    query = Query(And((AgeRange(30, 70), Gender(1), HasCondition((38341003,)), ExamCount(57698, 2, 60))))
    hidden = secret.hide(query, DataBounds.of(pop), pop.slots[1], 2)
    root = hidden.template.root
    cond = program.all_columns(shape)["conditions"].bits
    index = program.all_columns(shape)["exam_index"].bits
    assert program.constant_widths(root, shape) == (8, 8, 2, cond + 1, cond + 1, index, 3, 11)
    assert program.researcher_values(root, hidden.constants)[:2] == [31, 70]
    assert program.researcher_lines(root, hidden.constants, shape, "arithmetic")[:3] == ["31", "70", "1"]
    planes = program.researcher_lines(root, hidden.constants, shape, program.BINARY)
    assert len(planes) == sum(program.constant_widths(root, shape))
    assert planes[:8] == ["31", "31", "31", "31", "31", "0", "0", "0"]  # 31 = 0b11111 in all 5 lanes
    data = program.write_inputs(pop, hidden.template, shape, tmp_path)
    before = data.read_text()
    program.write_researcher(root, hidden.constants, shape, tmp_path, 0)
    assert data.read_text() == before + "\n".join(planes) + "\n"
    with pytest.raises(ValueError, match="researcher"):
        program.translate(hidden.template, shape)
