"""MP-SPDZ backend: translation, input files, compile cache, reports, and real VM runs.

Translation, input files and report parsing run everywhere; compiling skips
without MP-SPDZ's compiler (MP_SPDZ_HOME, default /opt/mp-spdz), and each run
skips when its protocol's VM is not built (tests/mp_spdz_vms.py).  Every
run is checked against the plaintext oracle.  Populations are small, and
tiny for the slow dishonest-majority malicious protocols (mascot, spdz2k),
so that the module takes well under three minutes on two cores.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import numpy as np
import pytest

from backends.engine import Party
from backends.mp_spdz import launch, program, protocols
from backends.mp_spdz.compile import CompileOptions, compile_program, field_bits
from circuits.ir import AgeRange, And, ExamCount, Gender, HasCondition, Not, Or, Output, Query, Smoker
from circuits.oracle import cohort
from circuits.population import EXACT, Padding, encode
from circuits.queryfile import load_query
from harness.run.parties import free_ports, run_group
from harness.run.runner import check
from harness.data.synthetic import generate
from mp_spdz_vms import need_compiler, need_vm

REPO = Path(__file__).resolve().parent.parent
HOME = protocols.mp_spdz_home()

# Every node type, both exam encodings (a vocabulary code and one outside it), at_least > 1.
EVERY_NODE = And(
    (
        Or((Gender(1), Not(Smoker(0)))),
        AgeRange(20, 90),
        Or((HasCondition((38341003, 15777000, 162864005)), ExamCount(57698, 2, 60))),
        Not(ExamCount(2093, 1, 120)),
    )
)
SLOW = {"mascot", "spdz2k"}  # dishonest-majority malicious: big fixed preprocessing cost


def five_criteria() -> Query:
    return load_query(REPO / "configs" / "queries" / "five-criteria.yaml")[0]


@pytest.fixture(scope="module")
def cache(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("mp-spdz-cache")


def run(
    query: Query,
    pop,
    protocol: str,
    workdir: Path,
    cache: Path,
    parties: int | None = None,
    options: CompileOptions | None = None,
    tls: bool | None = None,
    timeout_s: float = 120,
):
    """Compile, lay out, run and read one run; returns (party 0's answer, figures, compiled);
    a count must be the same at every party."""
    need_vm(protocol)
    compiled = compile_program(query, program.Shape.of(pop), protocol, parties, options, cache_dir=cache)
    plan = launch.prepare_run(workdir, compiled, pop, free_ports(compiled.parties), tls=tls)
    group = run_group([Party(tuple(a), workdir) for a in plan.argv()], workdir, timeout_s)
    reports = [
        launch.read_report(i, group.logs[i], query, len(pop), group.returncodes[i], group.timed_out)
        for i in range(compiled.parties)
    ]
    if query.output is Output.COUNT:
        assert len({r.result for r in reports}) == 1, [r.result for r in reports]
    else:
        assert all(r.result is None for r in reports[1:])
    return reports[0].result, launch.figures(reports), compiled


def assert_oracle(query: Query, pop, answer) -> None:
    size, correct, error = check(query, cohort(query, pop), answer)
    assert correct, error


# --- without running a VM ------------------------------------------------------------------


def test_registry_facts():
    reg = protocols.PROTOCOLS
    assert set(reg) >= {
        "semi",
        "mascot",
        "shamir",
        "malicious-shamir",
        "replicated-ring",
        "ps-rep-ring",
        "semi2k",
        "spdz2k",
    }
    for p in reg.values():
        assert p.vm.endswith("-party.x")
        assert p.tls == (p.majority == protocols.HONEST)
        assert ("-R" in p.compile_flags) == (p.domain == protocols.RING)
    for name in ("replicated-ring", "ps-rep-ring"):
        assert not reg[name].takes_N and reg[name].allows(3) and not reg[name].allows(4)
    assert reg["mascot"].security == "malicious" and reg["mascot"].domain == "field"
    assert reg["spdz2k"].majority == "dishonest" and reg["spdz2k"].domain == "ring"
    with pytest.raises(ValueError, match="3 parties"):
        reg["ps-rep-ring"].check_parties(2)
    with pytest.raises(ValueError, match="unknown MP-SPDZ protocol"):
        protocols.get("spdz")


def test_translation_is_readable_and_vectorised():
    pop = generate(50, 3, Padding(4, 6), truncate=True)
    for lowering in program.LOWERINGS:
        src = program.translate(Query(EVERY_NODE), program.Shape.of(pop), lowering, "field")
        criteria = [line for line in src.splitlines() if line[:2] in {f"c{d}" for d in range(10)}]
        assert len(criteria) == 13  # one line per node (two for each exam count)
        assert all("  # " in line for line in criteria)
        assert "N = 50" in src and "reveal_eligible(" in src
        assert "range(N)" not in src  # no loop over patients: vectors of N
        inputs = [
            line
            for line in src.splitlines()
            if "input_column(" in line and " = " in line and not line.startswith((" ", "def "))
        ]
        assert [line.split(" = ")[0] for line in inputs] == [
            "age",
            "gender",
            "smoker",
            "conditions",
            "exam_index",
            "exam_codes",
            "exam_months",
        ]


def test_input_file_holds_bit_planes():
    pop = generate(70, 5, Padding(3, 5), truncate=True)
    query, shape = Query(EVERY_NODE), program.Shape.of(pop)
    lines = program.input_text(pop, query, shape, program.BINARY).split()
    planes = iter(int(x) for x in lines)
    for col in program.columns(query, shape):
        values = program.column_values(pop, col.name, shape.bounds)
        for v in [values] if not col.slots else [values[:, j] for j in range(col.slots)]:
            got = np.zeros(len(pop), dtype=np.int64)
            for i in range(col.bits):
                plane = next(planes)
                got |= np.array([(plane >> j) & 1 for j in range(len(pop))], dtype=np.int64) << i
            assert np.array_equal(got, v), col.name
    assert next(planes, None) is None
    arithmetic = program.input_text(pop, query, shape, program.ARITHMETIC).splitlines()
    assert len(arithmetic) == 3 + 3 + 5 + 5 + 5 and all(len(x.split()) == 70 for x in arithmetic)
    with pytest.raises(ValueError, match="does not match the program"):
        program.input_text(pop.subset(10), query, shape)


def test_read_report_parses_and_names_what_is_missing(tmp_path):
    log = tmp_path / "party-0.log"
    log.write_text(
        "Trying to run 64-bit computation\nELIGIBLE [1, 0, 1]\n"
        "The following benchmarks are including preprocessing (offline phase).\n"
        "Time = 0.25 seconds \n"
        "Data sent = 1.5 MB in ~42 rounds (party 0 only; use '-v' for more details)\n"
        "Global data sent = 4.25 MB (all parties)\n"
    )
    q = Query(Gender(1))
    r = launch.read_report(0, log, q, 3)
    assert (r.time_s, r.bytes_sent, r.rounds, r.global_bytes, r.result) == (
        0.25,
        1_500_000,
        42,
        4_250_000,
        [1, 0, 1],
    )
    assert r.online is None and launch.read_report(1, log, q, 3).result is None
    with log.open("a") as f:  # what -v adds
        f.write(
            "Spent 0.1 seconds (0.5 MB, 10 rounds) on the online phase and 0.15 seconds "
            "(1 MB, 32 rounds) on the preprocessing/offline phase.\n"
        )
    r = launch.read_report(0, log, q, 3)
    assert r.online == (0.1, 500_000, 10) and r.offline == (0.15, 1_000_000, 32)
    with pytest.raises(ValueError, match="holds 3 values, not 4"):
        launch.read_report(0, log, q, 4)
    with pytest.raises(ValueError, match="no 'COUNT"):
        launch.read_report(0, log, Query(Gender(1), Output.COUNT), 3)
    with pytest.raises(ValueError, match="exited with 1"):
        launch.read_report(0, log, q, 3, returncode=1)
    with pytest.raises(ValueError, match="timed out"):
        launch.read_report(1, log, q, 3, returncode=None, timed_out=True)
    log.write_text("Time = 0.25 seconds\n")
    with pytest.raises(ValueError, match="no 'Data sent.*and no 'Global data sent"):
        launch.read_report(1, log, q, 3)


# --- compiling ----------------------------------------------------------------------------


def test_compile_is_cached_outside_mp_spdz(cache):
    need_compiler()
    before = {p for p in (HOME / "Compiler").rglob("__pycache__")}
    pop = generate(20, 1, Padding(4, 6), truncate=True)
    shape = program.Shape.of(pop)
    first = compile_program(five_criteria(), shape, "shamir", cache_dir=cache)
    again = compile_program(five_criteria(), shape, "shamir", cache_dir=cache)
    assert again.cached and again.directory == first.directory
    assert cache in first.directory.parents and HOME not in first.directory.parents
    assert (first.programs / "Schedules" / "cohort.sch").is_file()
    meta = json.loads((first.directory / "compile.json").read_text())
    assert meta["compile_s"] > 0 and "online_bytes" in meta["expected"]
    assert "-E" in first.flags and "shamir" in first.flags
    assert first.flags[first.flags.index("-F") + 1] == str(field_bits(five_criteria(), shape, "binary"))
    other = compile_program(
        five_criteria(),
        shape,
        "shamir",
        options=CompileOptions(lowering="arithmetic", edabit=True),
        cache_dir=cache,
    )
    assert other.directory != first.directory and "-Y" in other.flags
    code_bits = program.all_columns(shape)["conditions"].bits  # the widest column here
    assert other.flags[other.flags.index("-F") + 1] == str(code_bits + 1)  # and a sign bit
    assert {p for p in (HOME / "Compiler").rglob("__pycache__")} == before


# --- running the VMs ----------------------------------------------------------------------


@pytest.mark.parametrize("protocol", list(protocols.PROTOCOLS))
def test_every_protocol_matches_the_oracle(protocol, tmp_path, cache):
    pop = generate(16 if protocol in SLOW else 40, 11, Padding(4, 6), truncate=True)
    query = Query(EVERY_NODE)
    expected = cohort(query, pop).count
    assert 0 < expected < len(pop)  # the test means something
    answer, figures, compiled = run(query, pop, protocol, tmp_path, cache)
    assert_oracle(query, pop, answer)
    assert figures["bytes_sent"] > 0 and all(t > 0 for t in figures["engine_s"])
    assert figures["online_bytes"] + figures["offline_bytes"] == pytest.approx(
        figures["bytes_sent"], rel=1e-3
    )
    assert len(figures["bytes_by_party"]) == compiled.parties
    # per-party and global figures agree (MP-SPDZ prints six significant digits)
    assert figures["bytes_sent"] == pytest.approx(figures["global_bytes"], rel=1e-5)


@pytest.mark.parametrize("protocol", ["replicated-ring", "shamir"])
def test_count_output(protocol, tmp_path, cache):
    pop = generate(40, 11, Padding(4, 6), truncate=True)
    query = Query(EVERY_NODE, Output.COUNT)
    answer, _, _ = run(query, pop, protocol, tmp_path, cache)
    assert answer == cohort(query, pop).count


@pytest.mark.parametrize(
    "protocol,output,options",
    [
        ("replicated-ring", Output.COUNT, CompileOptions(lowering="arithmetic")),
        ("shamir", Output.ELIGIBLE, CompileOptions(lowering="arithmetic")),
        ("semi2k", Output.ELIGIBLE, CompileOptions(lowering="arithmetic", edabit=True, split=False)),
        ("semi", Output.COUNT, CompileOptions(edabit=True)),
    ],
)
def test_other_lowerings_and_options(protocol, output, options, tmp_path, cache):
    pop = generate(30, 11, Padding(4, 6), truncate=True)
    query = Query(EVERY_NODE, output)
    answer, _, _ = run(query, pop, protocol, tmp_path, cache, options=options)
    assert_oracle(query, pop, answer)


def test_boundaries_of_each_criterion(boundary_population, tmp_path, cache):
    """The paper query's criteria one by one on patients at their edges (exclusive ages,
    an exam exactly 200 months ago counts, at least 2 exams)."""
    paper = load_query(REPO / "configs" / "queries" / "paper-listing1-fixed.json")[0]
    for i, criterion in enumerate(paper.root.children):
        query = Query(criterion)
        answer, _, _ = run(query, boundary_population, "replicated-ring", tmp_path / str(i), cache)
        assert_oracle(query, boundary_population, answer)


def test_three_dishonest_parties_over_tls(tmp_path, cache):
    pop = generate(20, 11, Padding(4, 6), truncate=True)
    query = Query(EVERY_NODE)
    answer, figures, _ = run(query, pop, "semi2k", tmp_path, cache, parties=3, tls=True)
    assert_oracle(query, pop, answer)
    assert len(figures["bytes_by_party"]) == 3
    assert (tmp_path / "P2" / "Player-Data" / "P2.pem").is_file()


def test_exact_padding_and_a_single_patient(tmp_path, cache):
    pop = generate(12, 4, Padding(EXACT, EXACT))
    query = five_criteria()
    answer, _, _ = run(query, pop, "replicated-ring", tmp_path / "exact", cache)
    assert_oracle(query, pop, answer)
    one = generate(1, 4, Padding(2, 2), truncate=True)
    answer, _, _ = run(Query(EVERY_NODE, Output.COUNT), one, "replicated-ring", tmp_path / "one", cache)
    assert answer == cohort(Query(EVERY_NODE), one).count


def test_run_layout_and_address_views(tmp_path, cache):
    need_vm("replicated-ring")
    pop = generate(5, 1, Padding(2, 2), truncate=True)
    compiled = compile_program(five_criteria(), program.Shape.of(pop), "replicated-ring", cache_dir=cache)
    views = [[f"127.0.0.1:{9000 + 10 * i + j}" for j in range(3)] for i in range(3)]
    plan = launch.prepare_run(tmp_path, compiled, pop, [9000, 9011, 9022], addresses=views)
    for i, pdir in enumerate(plan.party_dirs):
        assert (pdir / "hosts.txt").read_text().split() == views[i]
        assert (pdir / "Programs").resolve() == compiled.programs.resolve()
        data = pdir / "Player-Data"
        assert sorted(p.name for p in data.glob("P*.key")) == [f"P{i}.key"]
        assert len(list(data.glob("P*.pem"))) == 3 and len(list(data.glob("*.0"))) >= 3
        assert (data / "Input-P0-0").exists() == (i == 0)
    assert plan.commands[1][-1] == "cohort" and "-N" not in plan.commands[1]
    assert "-u" not in plan.commands[1] and "-e" not in plan.commands[1]  # TLS by default
    home = tmp_path / "no-insecure-build"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(protocols.PLAINTEXT_HOME_ENV, str(home))
        with pytest.raises(RuntimeError, match="only when built with -DINSECURE"):
            launch.prepare_run(tmp_path / "x", compiled, pop, [1, 2, 3], tls=False)


def test_tls_flags_against_each_vms_default(tmp_path):
    honest, dishonest = protocols.get("shamir"), protocols.get("semi")
    home = tmp_path / "insecure"
    command = lambda p, tls: launch.party_command(p, 0, 3, "cohort", tls, home)  # noqa: E731
    assert "-u" in command(honest, False) and "-e" not in command(honest, False)
    assert not {"-u", "-e"} & set(command(honest, True))
    assert "-e" in command(dishonest, True) and not {"-u", "-e"} & set(command(dishonest, False))
    assert honest.needs_plaintext_build(False) and not honest.needs_plaintext_build(None)
    assert not dishonest.needs_plaintext_build(False)


def test_a_failing_vm_is_an_error(tmp_path, cache):
    need_vm("replicated-ring")
    pop = generate(5, 1, Padding(2, 2), truncate=True)
    query = five_criteria()
    compiled = compile_program(query, program.Shape.of(pop), "replicated-ring", cache_dir=cache)
    plan = launch.prepare_run(tmp_path, compiled, pop, free_ports(3))
    (plan.party_dirs[0] / "Player-Data" / "Input-P0-0").unlink()  # party 0 has no data
    group = run_group([Party(tuple(a), tmp_path) for a in plan.argv()], tmp_path, 60)
    assert not group.ok
    bad = next(i for i, rc in enumerate(group.returncodes) if rc not in (0, None))
    with pytest.raises(ValueError, match=f"party {bad}"):
        launch.read_report(bad, group.logs[bad], query, len(pop), group.returncodes[bad], group.timed_out)


@pytest.mark.parametrize("protocol", ["replicated-ring", "shamir"])
def test_synthea_sample(protocol, synthea_dir, tmp_path, cache):
    from harness.data.fhir import extract_dir

    patients, _ = extract_dir(synthea_dir, dt.date(2021, 4, 1))
    pop = encode(patients, Padding(16, 32))
    query = five_criteria()
    answer, _, _ = run(query, pop, protocol, tmp_path, cache)
    assert_oracle(query, pop, answer)
    count = Query(query.root, Output.COUNT)
    answer, _, _ = run(
        count, pop, protocol, tmp_path / "count", cache, options=CompileOptions(lowering="arithmetic")
    )
    assert answer == cohort(count, pop).count


def test_sweep_through_the_harness_and_the_relay(tmp_path):
    """`cohortbench run` with MP-SPDZ protocols beside MPyC, direct and through the relay:
    records carry the protocol's security model, the VM's and the relay's figures."""
    need_vm("replicated-ring")
    need_vm("semi")
    from harness.run.config import load_experiment
    from harness.run.sweep import run_sweep

    query = Path(__file__).resolve().parent.parent / "configs" / "queries" / "five-criteria.yaml"
    cfg = tmp_path / "mps.yaml"
    cfg.write_text(f"""
name: mps
query: {query}
populations: [synthetic:60]
padding: {{conditions: 4, exams: 6}}
truncate: true
engines:
  - {{engine: mp-spdz, protocol: replicated-ring}}
  - {{engine: mp-spdz, protocol: semi}}
  - {{engine: mpyc, protocol: shamir}}
networks: [loopback, {{delay_ms: 2}}]
repeats: 1
warmup: 0
timeout_s: 120
""")
    records = run_sweep(load_experiment(cfg), tmp_path / "r.jsonl", False, lambda m: None)
    assert len(records) == 6 and all(r["error"] is None and r["correct"] for r in records), [
        r["error"] for r in records
    ]
    by = {(r["protocol"], r["engine"], r["network"]["relayed"]): r for r in records}
    ring = by[("replicated-ring", "mp-spdz", False)]
    assert (ring["security"], ring["majority"], ring["parties"]) == ("semi-honest", "honest", 3)
    assert ring["engine_rounds"] > 0 and ring["bytes_sent"] > 0 and ring["tls"] is True
    semi = by[("semi", "mp-spdz", True)]
    assert (semi["majority"], semi["parties"]) == ("dishonest", 2)
    assert semi["rounds"] > 0 and len(semi["bytes_by_link"]) == 2
    assert len({r["cohort_size"] for r in records}) == 1
