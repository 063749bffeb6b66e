"""Cohort statistics on MP-SPDZ (issue 16): the sums of a stats query, exact and with dp.

The exact sums equal the oracle's on the boundary patients of test_cohort_stats.py for
every protocol (both lowerings on a ring and a field protocol), and on random stats
queries; with dp, `cohortbench run` on semi-honest and malicious protocols: every party
shows the same release, and the release minus every party's noise shares (the tests' debug
path) is the oracle's exact sums.  Every party's log is read: each learnt the sums and
nothing else.  Each run skips when its protocol's VM is not built (tests/mp_spdz_vms.py).
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import replace
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from backends.mp_spdz import program, protocols
from backends.mp_spdz.compile import CompileOptions, compile_flags, compile_program
from backends.engine import Spec, Unavailable
from backends.mp_spdz.engine import MpSpdzCell, MpSpdzSpec
from circuits.holdings import PATIENT_HELD, Holdings
from circuits.ir import AgeRange, Output, Query
from circuits.oracle import cohort
from circuits.population import Padding, encode
from circuits.queryfile import load_query
from circuits.stats import AGE, Aggregate, Attribute, Privacy, Stats
from circuits.visitor import Unsupported
from conftest import cli_run
from harness.analysis import records
from harness.data import synthetic
from harness.run.runner import CellRunner
from mp_spdz_vms import need_compiler, need_vm
from test_cohort_stats import EDGES, PEOPLE, QUERY, aggregates
from test_mp_spdz_preludes import program_calls
from test_queryfile import trees

ALL = Query(AgeRange(-1, 151), Output.STATS, "all", EDGES)
_STATS_LINE = re.compile(r"^STATS .*$", re.M)
_OTHER_ANSWERS = re.compile(r"^(?:ELIGIBLE|COUNT|COUNT_BY_SITE) ", re.M)


@pytest.fixture(scope="module")
def cache(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("mp-spdz-stats-cache")


@pytest.fixture
def in_cache(cache, monkeypatch) -> Path:
    """The engine's compile cache in this module's own directory."""
    monkeypatch.setenv("COHORTBENCH_MP_SPDZ_CACHE", str(cache))
    return cache


@pytest.fixture
def edges():
    return encode(PEOPLE, Padding(2, 3))


def run_cell(spec: Spec, query: Query, pop, workdir: Path, holdings: Holdings = PATIENT_HELD):
    """One run of a cell through the harness's runner: its outcome and its run directory."""
    runner = CellRunner(spec, query, pop, workdir, holdings)
    try:
        assert runner.cell is not None, runner.unavailable
        return runner.run("r0", 300), workdir / "r0"
    finally:
        runner.close()


def learnt(run_dir: Path, parties: int) -> list[list[int]]:
    """What each party printed as its answer: exactly one STATS line, and no other answer."""
    out = []
    for pid in range(parties):
        text = (run_dir / f"party-{pid}.log").read_text()
        lines = _STATS_LINE.findall(text)
        assert len(lines) == 1 and not _OTHER_ANSWERS.search(text), (pid, text[-2000:])
        out.append([int(v) for v in lines[0].split()[1:]])
    return out


@pytest.mark.parametrize("protocol", list(protocols.PROTOCOLS))
def test_exact_sums_on_the_edges(protocol, edges, tmp_path, in_cache):
    """Every protocol: every party learns the oracle's sums, and nothing else."""
    need_vm(protocol)
    spec = MpSpdzSpec(engine="mp-spdz", protocol=protocol)
    outcome, run_dir = run_cell(spec, ALL, edges, tmp_path)
    assert outcome.correct, outcome.error
    exact = list(cohort(ALL, edges).sums)
    assert learnt(run_dir, spec.parties) == [exact] * spec.parties
    assert outcome.figures["stats"] == cohort(ALL, edges).released(EDGES)
    assert outcome.figures["dp"] is None
    assert not list(run_dir.glob("P*/Player-Data/Input-*")), "input files stay after the run"


@pytest.mark.parametrize("protocol", ["semi2k", "shamir"])
def test_the_arithmetic_lowering_too(protocol, edges, tmp_path, in_cache):
    """A ring and a field protocol, with MP-SPDZ's own comparisons for the range tests."""
    need_vm(protocol)
    spec = MpSpdzSpec(engine="mp-spdz", protocol=protocol, lowering="arithmetic")
    outcome, run_dir = run_cell(spec, ALL, edges, tmp_path)
    assert outcome.correct, outcome.error
    assert learnt(run_dir, spec.parties) == [list(cohort(ALL, edges).sums)] * spec.parties


exact_stats = st.builds(
    Stats,
    st.lists(aggregates, min_size=1, max_size=5, unique_by=lambda g: g.name).map(tuple),
    st.just(False),
    st.none(),
    st.integers(0, 20),
)


@settings(max_examples=5, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(trees, exact_stats, st.sampled_from(program.LOWERINGS))
def test_random_stats_queries_equal_the_oracle(tmp_path_factory, in_cache, tree, stats, lowering):
    need_vm("replicated-ring")
    pop = synthetic.generate(40, seed=3, padding=Padding(4, 4), truncate=True)
    q = Query(tree, Output.STATS, "rnd", stats)
    spec = MpSpdzSpec(engine="mp-spdz", protocol="replicated-ring", lowering=lowering)
    outcome, run_dir = run_cell(spec, q, pop, tmp_path_factory.mktemp("rnd"))
    assert outcome.correct, outcome.error
    assert learnt(run_dir, 3) == [list(cohort(q, pop).sums)] * 3


# -- differential privacy through `cohortbench run` --------------------------------------

DP_RUNS = [
    ("semi2k", "synthetic:120", 1),  # semi-honest, dishonest majority: each share the whole noise
    ("shamir", "synthetic:120", 2),  # semi-honest, honest majority: 2 of 3 shares make it up
    ("malicious-shamir", "synthetic:120", 2),
    ("ps-rep-ring", "synthetic:120", 2),
    ("spdz2k", "synthetic:30", 1),  # malicious, dishonest majority (slow)
]


def _dp_config(tmp_path: Path, protocol: str, population: str) -> Path:
    query = yaml.safe_load(QUERY.read_text())
    query["output"]["dp"] = {"epsilon": 1.0, "delta": 1e-6}
    (tmp_path / "q.yaml").write_text(yaml.safe_dump(query))
    cfg = tmp_path / "dp.yaml"
    data = {
        "name": "mp-spdz-dp",
        "query": str(tmp_path / "q.yaml"),
        "populations": [population],
        "padding": {"conditions": 8, "exams": 16},
        "truncate": True,
        "engines": [{"engine": "mp-spdz", "protocol": protocol}],
        "networks": ["loopback"],
        "repeats": 1,
        "warmup": 0,
        "rounds_calibration": False,
        "budget": "unlimited",
    }
    cfg.write_text(yaml.safe_dump(data))
    return cfg


@pytest.mark.parametrize("protocol, population, honest", DP_RUNS)
def test_a_noised_release_minus_every_share_is_the_oracle(protocol, population, honest, tmp_path, cache):
    """Every party learnt the same release (and nothing else); each party's shares were in
    its own input file alone; release - sum of all shares = the oracle's exact sums."""
    need_vm(protocol)
    out = tmp_path / "r.jsonl"
    env = {**os.environ, "COHORTBENCH_DEBUG_NOISE": "1", "COHORTBENCH_MP_SPDZ_CACHE": str(cache)}
    cli_run(_dp_config(tmp_path, protocol, population), out, env=env)
    (rec,) = records.read(out)
    assert rec.correct, rec.error
    assert rec.dp["honest_shares"] == honest and rec.dp["parties"] == rec.parties
    assert rec.dp["epsilon_spent"] <= 1.0 + 1e-9
    run_dir = Path(rec.logs)
    released = learnt(run_dir, rec.parties)
    shares = [json.loads((run_dir / f"noise-{pid}.json").read_text()) for pid in range(rec.parties)]
    assert all(r == released[0] for r in released)
    q, _ = load_query(tmp_path / "q.yaml")
    pop = synthetic.generate(int(population.split(":")[1]), padding=Padding(8, 16), truncate=True)
    noise_free = [r - sum(s) for r, *s in zip(released[0], *shares)]
    assert noise_free == list(cohort(q, pop).sums) and released[0] != noise_free
    assert not list(run_dir.glob("P*/Player-Data/Input-*")), "input files stay after the run"


def test_each_party_inputs_only_its_own_shares_and_each_run_draws_afresh(edges, tmp_path, in_cache):
    """Each party's input file ends with its own shares (one per sum) and holds no other
    party's; two runs of one cell draw different noise with one compiled program."""
    need_vm("semi2k")
    q = replace(ALL, stats=replace(EDGES, dp=Privacy(1.0, 1e-6)))
    spec = MpSpdzSpec(engine="mp-spdz", protocol="semi2k")
    runner = CellRunner(spec, q, edges, tmp_path)
    try:
        cell = runner.cell
        assert cell is not None, runner.unavailable
        k = len(EDGES.columns())
        drawn = []
        for name in ("a", "b"):
            (tmp_path / name).mkdir()
            shares = cell._shares(tmp_path / name)
            assert shares is not None and [len(s) for s in shares] == [k, k]
            drawn.append(shares)
        assert drawn[0] != drawn[1]
        outcome = runner.run("r0", 300)
        assert outcome.correct, outcome.error
        assert cell.compiled is not None and "NOISE = input_noise" in cell.compiled.source.read_text()
    finally:
        runner.close()
    released = learnt(tmp_path / "r0", 2)
    assert released[0] == released[1]


def test_the_input_files_order_data_then_noise(edges, tmp_path, in_cache):
    """Party 0's file: its data columns, then its k shares; party 1's: its k shares alone."""
    need_vm("semi2k")
    from backends.mp_spdz import launch

    q = replace(ALL, stats=replace(EDGES, dp=Privacy(1.0, 0.0, "discrete-laplace")))
    compiled = compile_program(q, program.Shape.of(edges), "semi2k", 2, cache_dir=in_cache)
    noise = [[1, -2] + [0] * 15, [7, 8] + [9] * 15]
    launch.prepare_run(tmp_path / "run", compiled, edges, [10000, 10001], noise=noise)
    data = program.input_text(edges, q, compiled.shape)
    p0 = (tmp_path / "run" / "P0" / "Player-Data" / "Input-P0-0").read_text()
    p1 = (tmp_path / "run" / "P1" / "Player-Data" / "Input-P1-0").read_text()
    assert p0 == data + "\n".join(map(str, noise[0])) + "\n"
    assert p1 == "\n".join(map(str, noise[1])) + "\n"


# -- the compile cache, the program, what is not lowered ---------------------------------


def test_the_cache_tells_aggregates_apart_and_dp_shares_one_program(edges, tmp_path):
    """Two stats queries differing in aggregates: two programs; one dp query compiled twice:
    one program, holding no noise value (the shares are inputs)."""
    need_compiler()
    shape = program.Shape.of(edges)
    a = Query(AgeRange(-1, 151), Output.STATS, "a", Stats((Aggregate("count"), Aggregate("mean", (AGE,)))))
    b = replace(a, stats=Stats((Aggregate("count"), Aggregate("variance", (AGE,)))))
    first = compile_program(a, shape, "semi2k", 2, cache_dir=tmp_path)
    second = compile_program(b, shape, "semi2k", 2, cache_dir=tmp_path)
    assert first.key != second.key and not second.cached
    dp = replace(a, stats=replace(a.stats, dp=Privacy(0.5, 1e-6)))
    once = compile_program(dp, shape, "semi2k", 2, cache_dir=tmp_path)
    again = compile_program(dp, shape, "semi2k", 2, cache_dir=tmp_path)
    assert again.cached and again.key == once.key != first.key
    source = once.source.read_text()
    assert "input_noise(2, PARTIES)" in source and "PARTIES = 2" in source


def test_the_stats_program_calls_only_the_interface(edges):
    shape = program.Shape.of(edges)
    q = replace(ALL, stats=replace(EDGES, dp=Privacy(1.0, 1e-6)))
    for lowering in program.LOWERINGS:
        source = program.translate(q, shape, lowering, parties=3)
        calls = program_calls(source, lowering)
        assert calls <= set(program.PRELUDE_INTERFACE), calls
        assert "reveal_sums" in calls and "NOISE" in source.split(program.prelude(lowering))[1]


def test_sums_that_could_wrap_modulo_2_64_are_refused():
    huge = program.Shape(1 << 49, (1, 1))  # 2^49 patients of age 150: sum(age^2) > 2^63
    q = Query(AgeRange(-1, 151), Output.STATS, "q", Stats((Aggregate("std", (AGE,)),)))
    with pytest.raises(ValueError, match="wraps modulo 2\\^64"):
        compile_flags(protocols.get("semi2k"), q, huge, CompileOptions(), 2)
    flags = compile_flags(protocols.get("shamir"), q, huge, CompileOptions(), 3)
    assert int(flags[flags.index("-F") + 1]) > 64  # a field: the prime grows with the sums


def test_a_site_histogram_without_sites_is_unavailable(edges, tmp_path):
    """A histogram of site in the patient deployment: one clear Unavailable (the config
    refuses it before; under sites, tests/test_site_stats.py)."""
    spec = MpSpdzSpec(engine="mp-spdz", protocol="shamir")
    by_site = replace(ALL, stats=Stats((Aggregate("histogram", (Attribute("site"),)),)))
    with pytest.raises(Unavailable, match="histogram of site") as e:
        MpSpdzCell(spec, by_site, edges, tmp_path / "site")
    assert str(e.value).startswith(spec.label)
    with pytest.raises((ValueError, Unsupported), match="a histogram of site needs a deployment of sites"):
        program.translate(by_site, program.Shape.of(edges))


def test_a_stats_line_is_parsed_and_checked():
    q = Query(AgeRange(-1, 151), Output.STATS, "q", Stats((Aggregate("count"), Aggregate("mean", (AGE,)))))
    assert program.parse_output("x\nSTATS -3 12\ny", q, 0) == [-3, 12]
    with pytest.raises(ValueError, match="3 sums, not 2"):
        program.parse_output("STATS 1 2 3\n", q, 0)
    with pytest.raises(ValueError, match="no 'STATS"):
        program.parse_output("COUNT 4\n", q, 0)
