"""Sites as MPyC parties, end to end (issue 14): real party processes on loopback, one per
site, for every deployment, local mode and output, each answer checked against the
plaintext oracle; every party's result file read back to check that it holds what the
deployment reveals to that party and nothing more; the records' account of what was
secure; the Synthea sample split by provider; `count_by_site` where it cannot be.

What each party may learn is written out here a second time (`reveals`), independently
of `Cohort.learnt`, and the two are compared, so that a wrong rule there fails too.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml

from backends.mpyc.engine import MpycSpec
from circuits.holdings import GROUP_COLUMNS, Holdings, Partition
from circuits.ir import AgeRange, And, ExamCount, Gender, HasCondition, Not, Or, Output, Query, Smoker
from circuits.locality import split
from circuits.oracle import Cohort, cohort
from circuits.population import ARRAYS, Padding, Population
from conftest import REPO, cli_run, refused, run_cli
from mp_spdz_vms import need_vm
from test_mp_spdz_sites import expected_lines, printed
from harness.analysis import records
from harness.analysis.records import Record
from harness.data import synthetic
from harness.data.sources import parse_source
from harness.run.config import load_experiment
from harness.run.deployment import Placement, Sites
from harness.run.runner import CellRunner, Outcome
from harness.run.sweep import cells

# Every criterion kind, across the three column groups: under columns some subtrees are
# one site's and the rest is secure.  9 nodes.
TREE = Or(
    (
        And((Smoker(0), AgeRange(30, 70), ExamCount(57698, 1, 60))),
        And((HasCondition((55822004, 38341003, 15777000)), Not(Gender(1)))),
    )
)
TREE_NODES = 9
# The same tree in a config's own words.
TREE_YAML = {
    "any": [
        {
            "all": [
                {"smoker": "never"},
                {"age": {"min_exclusive": 30, "max_exclusive": 70}},
                {"exams": {"loinc": "57698-3", "at_least": 1, "within_months": 60}},
            ]
        },
        {"all": [{"condition": [55822004, 38341003, 15777000]}, {"not": {"gender": "female"}}]},
    ]
}
PADDING = Padding(4, 6)
POPULATION = {3: (48, 11), 5: (60, 12)}  # sites -> (patients, seed)
# The keys of a party's result file: its answer, and figures that are not data.
RESULT_KEYS = {"pid", "bit_length", "compute_s", "result", "peak_rss_kib", "secure", "local_s"}
RESULT_KEYS |= {"input_s", "input_bytes"}


def deployment(name: str, sites: int, local: str) -> Sites:
    """The deployments under test, as a config's `deployments:` entry would give them."""
    spread = {
        3: {"demographics": 0, "conditions": 1, "exams": 2},
        5: {"demographics": 1, "conditions": 3, "exams": 4},
    }
    shared = {
        3: {"demographics": 0, "conditions": 0, "exams": 1},
        5: {"demographics": 3, "conditions": 1, "exams": 3},
    }
    entry: dict = {
        "rows-round-robin": {"partition": "rows", "assign": "round-robin"},
        "rows-random": {"partition": "rows", "assign": "random:7"},
        # every group at a site of its own; the bits to a site that is not the first
        "columns-spread": {"partition": "columns", "columns": spread[sites], "reveal_to": 2},
        # two groups at one site; the bits to a site holding no group (3 sites), or to it (5)
        "columns-shared": {
            "partition": "columns",
            "columns": shared[sites],
            "reveal_to": {3: 2, 5: 3}[sites],
        },
    }[name]
    return Sites.model_validate({"sites": sites, "local": local, **entry})


def population(sites: int) -> Population:
    n, seed = POPULATION[sites]
    return synthetic.generate(n, seed=seed, padding=PADDING, truncate=True)


def place(dep: Sites, pop: Population) -> tuple[Placement, list[str]]:
    """Who holds what, as the sweep places it; and what the placement warned."""
    warned: list[str] = []
    return Placement.of(dep, parse_source(f"synthetic:{len(pop)}"), pop, None, warned.append), warned


def reveals(output: Output, holdings: Holdings, eligible: np.ndarray) -> list:
    """What each party may hold at the end, written out from the deployments' rules."""
    bits = [int(b) for b in eligible]
    count, sites = sum(bits), holdings.sites
    if holdings.partition is Partition.ROWS:
        mine = [[b for b, at in zip(bits, holdings.site_of_patient) if at == s] for s in range(sites)]
        if output is Output.COUNT_BY_SITE:
            return [[sum(m) for m in mine]] * sites
        return [count] * sites if output is Output.COUNT else mine
    assert output is not Output.COUNT_BY_SITE
    if output is Output.COUNT:
        return [count] * sites
    return [bits if p == holdings.reveal_to else None for p in range(sites)]


def run_cell(workdir: Path, query: Query, pop: Population, holdings: Holdings) -> tuple[Outcome, Path, list]:
    """One run of one cell, each site a party; its outcome, run directory and the sites'
    private input files as they were (read before the cell removes them)."""
    runner = CellRunner(
        MpycSpec(engine="mpyc", protocol="shamir", parties=holdings.sites), query, pop, workdir, holdings
    )
    try:
        assert runner.cell is not None, runner.unavailable
        outcome = runner.run("r0", 180)
        inputs = []
        for path in runner.cell.site_paths:
            with np.load(path) as data:
                inputs.append({name: data[name] for name in data.files})
    finally:
        runner.close()
    return outcome, workdir / "r0", inputs


def result_files(run_dir: Path) -> list[dict]:
    """Every party's result file, where the job told the parties to write them."""
    job = json.loads((run_dir / "job.json").read_text())
    where = Path(job["result_path"])
    assert where == run_dir.resolve()
    found = sorted(p.name for p in where.glob("result-*.json"))
    parties = len(job["site_paths"])
    assert found == sorted(f"result-{p}.json" for p in range(parties)), found
    return [json.loads((where / f"result-{p}.json").read_text()) for p in range(parties)]


def check_party_files(run_dir: Path, query: Query, pop: Population, holdings: Holdings) -> list[dict]:
    """The leak check: each party's result file holds exactly what the deployment reveals
    to it, as `Cohort.learnt` says and as the rules say; nothing else in it is data."""
    expected = cohort(query, pop)
    may = reveals(query.output, holdings, expected.eligible)
    assert expected.learnt(query.output, holdings, holdings.sites) == may
    files = result_files(run_dir)
    for pid, (got, want) in enumerate(zip(files, may)):
        assert set(got) == RESULT_KEYS, (pid, sorted(got))
        assert got["pid"] == pid
        assert got["result"] == want, (pid, got["result"], want)
        extra = {k: v for k, v in got.items() if k != "result"}
        assert all(v is None or isinstance(v, (int, float, bool)) for v in extra.values()), (pid, extra)
        if query.output is Output.ELIGIBLE and holdings.partition is Partition.ROWS:
            assert len(got["result"]) == holdings.site_sizes(len(pop))[pid]
        if query.output is Output.ELIGIBLE and holdings.partition is Partition.COLUMNS:
            assert (got["result"] is None) == (pid != holdings.reveal_to)
    job = json.loads((run_dir / "job.json").read_text())  # what every party reads: public facts only
    assert job["data_path"] == "" and "site_of_patient" not in json.dumps(job)
    return files


def check_inputs(inputs: list[dict], pop: Population, holdings: Holdings) -> None:
    """Each site's private file holds its own data only: its patients' records, or its groups."""
    assert len(inputs) == holdings.sites
    for site, held in enumerate(inputs):
        if holdings.partition is Partition.ROWS:
            mine = pop.take(holdings.patients_of(site))
            assert set(held) == set(ARRAYS)
            for name in ARRAYS:
                assert np.array_equal(held[name], getattr(mine, name)), (site, name)
        else:
            groups = [g for g, s in holdings.site_of_group.items() if s == site]
            assert set(held) == {c for g in groups for c in GROUP_COLUMNS[g]}, (site, sorted(held))
            for name in held:
                assert np.array_equal(held[name], getattr(pop, name)), (site, name)


def check_run(tmp: Path, query: Query, pop: Population, placement: Placement) -> tuple[Outcome, list[dict]]:
    """A cell run and checked: the oracle's answer, every party's file, every site's inputs."""
    holdings = placement.holdings
    expected = cohort(query, pop)
    o, run_dir, inputs = run_cell(tmp, query, pop, holdings)
    assert o.error is None and o.correct, o.error
    assert o.cohort_size == expected.count
    if query.output is Output.COUNT_BY_SITE:
        assert o.figures["count_by_site"] == expected.count_by_site(holdings)
    files = check_party_files(run_dir, query, pop, holdings)
    check_inputs(inputs, pop, holdings)
    nothing_secure = (
        holdings.partition is Partition.ROWS and holdings.local and query.output is Output.ELIGIBLE
    )
    assert [f["secure"] for f in files] == [not nothing_secure] * holdings.sites
    assert (o.figures["input_s"] == [None] * holdings.sites) == nothing_secure
    if holdings.partition is Partition.COLUMNS:  # a site inputs only what it holds and the query reads
        plan = split(query, holdings)
        senders = {p.site for p in plan.local} | {holdings.site_of_group[g] for g in plan.raw_groups()}
        assert senders <= set(holdings.site_of_group.values())
        sent = [f["input_bytes"] > 0 for f in files]
        assert sent == [site in senders for site in range(holdings.sites)], (senders, files)
    return o, files


OUTPUTS = {
    "rows": (Output.COUNT, Output.ELIGIBLE, Output.COUNT_BY_SITE),
    "columns": (Output.COUNT, Output.ELIGIBLE),
}
DEPLOYMENTS = ("rows-round-robin", "rows-random", "columns-spread", "columns-shared")
EVERY_CELL_AT_3 = [
    pytest.param(3, d, local, out, id=f"3-{d}-{local}-{out.value}")
    for d in DEPLOYMENTS
    for local in ("auto", "off")
    for out in OUTPUTS[d.split("-")[0]]
]
SOME_CELLS_AT_5 = [  # each deployment, each local mode and each output at least once
    pytest.param(5, d, local, out, id=f"5-{d}-{local}-{out.value}")
    for d, local, out in (
        ("rows-round-robin", "off", Output.ELIGIBLE),
        ("rows-round-robin", "auto", Output.COUNT_BY_SITE),
        ("rows-random", "off", Output.COUNT_BY_SITE),
        ("rows-random", "auto", Output.COUNT),
        ("columns-spread", "auto", Output.ELIGIBLE),
        ("columns-spread", "off", Output.COUNT),
        ("columns-shared", "auto", Output.COUNT),
        ("columns-shared", "off", Output.ELIGIBLE),
    )
]


def test_the_data_tells_the_parties_apart():
    """The populations make the checks below bite: a cohort neither empty nor everyone,
    every site holding patients, and sites whose answers differ."""
    for sites, (n, _) in POPULATION.items():
        pop = population(sites)
        expected = cohort(Query(TREE), pop)
        assert len(pop) == n and 0 < expected.count < n
        for name in ("rows-round-robin", "rows-random"):
            placement, warned = place(deployment(name, sites, "auto"), pop)
            assert not warned and min(placement.site_sizes) > 0
            by_site = expected.count_by_site(placement.holdings)
            assert len(set(by_site)) > 1, by_site
            mine = reveals(Output.ELIGIBLE, placement.holdings, expected.eligible)
            assert len({tuple(m) for m in mine}) == sites
        rr = place(deployment("rows-round-robin", sites, "auto"), pop)[0].holdings.site_of_patient
        rnd = place(deployment("rows-random", sites, "auto"), pop)[0].holdings.site_of_patient
        assert rr == tuple(i % sites for i in range(n)) and rnd != rr


@pytest.mark.parametrize("sites,name,local,output", EVERY_CELL_AT_3 + SOME_CELLS_AT_5)
def test_sites_as_parties_match_the_oracle_and_learn_only_their_share(tmp_path, sites, name, local, output):
    pop = population(sites)
    placement, warned = place(deployment(name, sites, local), pop)
    assert not warned
    check_run(tmp_path, Query(TREE, output), pop, placement)


@pytest.mark.parametrize("local", ["auto", "off"])
@pytest.mark.parametrize("output", [Output.ELIGIBLE, Output.COUNT_BY_SITE, Output.COUNT])
def test_a_site_holding_no_patient(tmp_path, local, output):
    """3 patients at 5 sites: sites 3 and 4 hold none, learn an empty list of bits (or
    the counts), and the secure arrays skip their empty blocks."""
    pop = synthetic.generate(3, seed=4, padding=PADDING, truncate=True)
    placement, warned = place(deployment("rows-round-robin", 5, local), pop)
    assert placement.site_sizes == (1, 1, 1, 0, 0)
    assert any("site(s) [3, 4] hold no patient" in w for w in warned), warned
    _, files = check_run(tmp_path, Query(TREE, output), pop, placement)
    if output is Output.ELIGIBLE:
        assert [f["result"] for f in files][3:] == [[], []]


@pytest.mark.parametrize(
    "name,output",
    [
        ("rows-random", Output.ELIGIBLE),
        ("rows-random", Output.COUNT_BY_SITE),
        ("columns-spread", Output.COUNT),
    ],
)
def test_exact_padding_with_the_whole_tree_secure(tmp_path, name, output):
    """Exact padding: the public exam counts must follow the secure arrays' order (under
    rows by random:SEED, the sites' blocks, not the population's order)."""
    pop = synthetic.generate(30, seed=5, padding=Padding("exact", "exact"))
    placement, _ = place(deployment(name, 3, "off"), pop)
    check_run(tmp_path, Query(TREE, output), pop, placement)


@pytest.mark.parametrize("output", [Output.ELIGIBLE, Output.COUNT])
def test_a_tree_one_site_holds_entirely(tmp_path, output):
    """Under columns, a query on demographics alone is site 0's to evaluate: the secure
    part is its one bit per patient, revealed to the site `reveal_to` names."""
    pop = population(3)
    placement, _ = place(deployment("columns-shared", 3, "auto"), pop)
    query = Query(And((Gender(1), Not(Smoker(0)))), output)
    assert 0 < cohort(query, pop).count < len(pop)
    _, files = check_run(tmp_path, query, pop, placement)
    assert [f["input_bytes"] > 0 for f in files] == [True, False, False]


# --- the records `cohortbench run` writes -----------------------------------------------


def sweep_config(tmp_path: Path, body: dict) -> Path:
    """A small experiment for `cohortbench run`: one repeat, no warmup, no calibration."""
    cfg = tmp_path / "sites.yaml"
    base = {
        "repeats": 1,
        "warmup": 0,
        "rounds_calibration": False,
        "isolation": "none",
        "networks": ["loopback"],
    }
    cfg.write_text(yaml.safe_dump({**base, **body}, sort_keys=False))
    return cfg


def by_cell(recs: list[Record]) -> dict[tuple[str, str], Record]:
    out = {(r.query["output"], r.local): r for r in recs}
    assert len(out) == len(recs)
    return out


def check_records_against_the_oracle(cfg: Path, recs: list[Record]) -> dict[tuple[str, str], Placement]:
    """Each record's answer against the oracle, and every party's result file of its run
    against what the deployment reveals; the placements, by (output, local)."""
    exp = load_experiment(cfg)
    placements = {}
    grid = {c.key(exp): c for c in cells(exp)}
    assert set(grid) == {r.cell for r in recs}
    for r in recs:
        cell = grid[r.cell]
        pop = exp.population(cell.source, cell.padding, lambda m: None)
        placement = Placement.of(cell.deployment, cell.source, pop, exp.config.as_of, lambda m: None)
        holdings, expected = placement.holdings, cohort(cell.query, pop)
        assert r.error is None and r.correct, r.error
        assert r.cohort_size == expected.count and r.site_sizes == list(placement.site_sizes)
        if cell.query.output is Output.COUNT_BY_SITE:
            assert r.count_by_site == reveals(Output.COUNT_BY_SITE, holdings, expected.eligible)[0]
        else:
            assert r.count_by_site is None
        assert r.logs is not None
        if r.engine == "mpyc":
            check_party_files(Path(r.logs), cell.query, pop, holdings)
        else:  # MP-SPDZ's parties print what they learn: every log holds its own answer only
            learnt = expected.learnt(cell.query.output, holdings, holdings.sites)
            for pid, may in enumerate(learnt):
                want = expected_lines(cell.query.output, may)
                assert printed(Path(r.logs) / f"party-{pid}.log") == want, pid
        placements[(r.query["output"], r.local)] = placement
    return placements


def starts_mpyc(run_dir: Path, parties: int) -> list[bool]:
    return ["Start MPyC" in (run_dir / f"party-{p}.log").read_text(errors="replace") for p in range(parties)]


def test_the_records_say_what_was_secure(tmp_path):
    """Rows by round-robin, local auto against off, for every output, through the CLI: under
    auto the eligible bits need nothing secure (no MPyC runtime started, nothing sent), and
    a count is a sum of the sites' counts, far cheaper than the whole tree secure."""
    queries = [
        {"name": f"tree-{o}", "output": o, "criteria": TREE_YAML}
        for o in ("eligible", "count", "count_by_site")
    ]
    cfg = sweep_config(
        tmp_path,
        {
            "name": "sites-records",
            "queries": queries,
            "populations": ["synthetic:40:3"],
            "padding": {"conditions": 4, "exams": 6},
            "truncate": True,
            "engines": [{"engine": "mpyc", "protocol": "shamir"}],
            "deployments": [
                {"sites": 3, "partition": "rows", "local": "auto"},
                {"sites": 3, "partition": "rows", "local": "off"},
            ],
            "timeout_s": 120,
        },
    )
    cli_run(cfg, tmp_path / "r.jsonl")
    recs = records.read(tmp_path / "r.jsonl")
    assert len(recs) == 6
    got = by_cell(recs)
    check_records_against_the_oracle(cfg, recs)
    for (output, local), r in got.items():
        assert r.parties == 3 and r.deployment == {
            "sites": 3,
            "partition": "rows",
            "local": local,
            "assign": "round-robin",
        }
        assert len(r.local_s) == len(r.input_s) == len(r.input_bytes_by_party) == 3
        if local == "off":
            assert r.secure == "tree" and r.local_nodes == 0
            assert all(b > 0 for b in r.input_bytes_by_party) and all(s is not None for s in r.input_s)
            assert starts_mpyc(Path(r.logs), 3) == [True] * 3
    nothing = got[("eligible", "auto")]
    assert nothing.secure == "none" and nothing.local_nodes == TREE_NODES
    assert nothing.input_s == [None] * 3 and nothing.input_bytes_by_party == [None] * 3
    assert nothing.bytes_by_party == [0, 0, 0] and nothing.bytes_sent == 0
    assert starts_mpyc(Path(nothing.logs), 3) == [False] * 3
    assert [f["secure"] for f in result_files(Path(nothing.logs))] == [False] * 3
    for output in ("count", "count_by_site"):
        summed, whole = got[(output, "auto")], got[(output, "off")]
        assert summed.secure == "sum" and summed.local_nodes == TREE_NODES
        assert starts_mpyc(Path(summed.logs), 3) == [True] * 3
        assert all(0 < b for b in summed.input_bytes_by_party)
        assert 0 < summed.bytes_sent and summed.bytes_sent * 100 < whole.bytes_sent, (
            summed.bytes_sent,
            whole.bytes_sent,
        )
        assert max(summed.input_bytes_by_party) * 20 < min(whole.input_bytes_by_party)


# --- the Synthea sample, split by provider -------------------------------------------------


@pytest.mark.parametrize("engine", ["mpyc", "mp-spdz"])
def test_the_consortium_on_the_synthea_sample(tmp_path, synthea_dir, engine):
    """configs/consortium.yaml's cells (3 sites by provider, local auto and off) for a
    count, the eligible bits and the count at each site, on the shared sample; with
    MPyC as in the config, and with MP-SPDZ shamir where its VM is built."""
    if engine == "mp-spdz":
        need_vm("shamir")
    consortium = yaml.safe_load((REPO / "configs" / "consortium.yaml").read_text())
    queries = [q if isinstance(q, dict) else str(REPO / "configs" / q) for q in consortium["queries"]]
    count = next(q for q in queries if isinstance(q, dict) and q["output"] == "count")
    queries.append({**count, "name": "five-criteria-by-site", "output": "count_by_site"})
    deployments = [d for d in consortium["deployments"] if d != "patient"]
    assert [Sites.model_validate(d).record() for d in deployments] == [
        {"sites": 3, "partition": "rows", "local": local, "assign": "provider"} for local in ("auto", "off")
    ]
    body = {k: v for k, v in consortium.items() if k not in ("repeats", "warmup")}
    body |= {"queries": queries, "populations": [str(synthea_dir)], "deployments": deployments}
    body["engines"] = [{"engine": engine, "protocol": "shamir"}]
    cfg = sweep_config(tmp_path, body)
    cli_run(cfg, tmp_path / "r.jsonl")
    recs = records.read(tmp_path / "r.jsonl")
    assert sorted(by_cell(recs)) == sorted(
        (o, loc) for o in ("count", "count_by_site", "eligible") for loc in ("auto", "off")
    )
    placements = check_records_against_the_oracle(cfg, recs)
    for r in recs:
        assert r.population == 60 and r.assign_fallback == 0 and r.deployment["assign"] == "provider"
        assert r.cohort_size is not None and 0 < r.cohort_size < 60
    sizes = {p.site_sizes for p in placements.values()}
    assert len(sizes) == 1 and sum(next(iter(sizes))) == 60  # one split, the same in every cell
    by_site = by_cell(recs)[("count_by_site", "auto")].count_by_site
    assert by_site == by_cell(recs)[("count_by_site", "off")].count_by_site
    assert sum(by_site) == by_cell(recs)[("count", "auto")].cohort_size


# --- count_by_site where it cannot be ----------------------------------------------------------


BY_SITE = {"name": "by-site", "output": "count_by_site", "criteria": {"smoker": "never"}}
FIVE = str(REPO / "configs" / "queries" / "five-criteria.yaml")
COLUMNS = {"sites": 3, "partition": "columns", "columns": {"demographics": 0, "conditions": 1, "exams": 2}}
ROWS = {"sites": 3, "partition": "rows"}


@pytest.mark.parametrize("dry_run", [True, False], ids=["dry-run", "run"])
@pytest.mark.parametrize(
    "queries,deployments,field,says",
    [
        ({"query": BY_SITE}, [COLUMNS], "query.output", "deployments[0] is columns"),
        ({"query": BY_SITE}, None, "query.output", "deployments[0] is patient"),
        ({"queries": [FIVE, BY_SITE]}, [ROWS, "patient"], "queries[1].output", "deployments[1] is patient"),
        ({"queries": [BY_SITE, FIVE]}, [ROWS, COLUMNS], "queries[0].output", "deployments[1] is columns"),
        ({"query": "by-site.yaml"}, [COLUMNS], "query.output", "deployments[0] is columns"),
    ],
)
def test_count_by_site_needs_rows(tmp_path, monkeypatch, capsys, queries, deployments, field, says, dry_run):
    (tmp_path / "by-site.yaml").write_text(yaml.safe_dump(BY_SITE))
    body = {
        "name": "t",
        **queries,
        "populations": ["synthetic:12"],
        "engines": [{"engine": "mpyc", "protocol": "shamir"}],
    }
    if deployments is not None:
        body["deployments"] = deployments
    said = refused(monkeypatch, capsys, tmp_path, body, dry_run)
    assert f"{field}: count_by_site needs sites holding rows, but {says}" in said, said


def test_count_by_site_under_rows_is_accepted(tmp_path, monkeypatch, capsys):
    """The same query where every deployment spreads rows: the config is fine."""
    body = {
        "name": "t",
        "queries": [FIVE, BY_SITE],
        "populations": ["synthetic:12"],
        "engines": [{"engine": "mpyc", "protocol": "shamir"}],
        "deployments": [ROWS, {**ROWS, "assign": "random:3", "local": "off"}],
    }
    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml.safe_dump(body))
    code, err = run_cli(monkeypatch, capsys, "run", cfg, "--out", tmp_path / "r.jsonl", "--dry-run")
    assert code == 0, err


def test_learnt_refuses_count_by_site_without_rows():
    """The oracle's side of the same rule: no per-site count exists under columns or patient."""
    result = Cohort(np.array([True, False, True]))
    for holdings in (Holdings(), Holdings(Partition.COLUMNS, 3, site_of_group=COLUMNS["columns"])):
        with pytest.raises(ValueError, match="count_by_site needs a deployment with partition: rows"):
            result.learnt(Output.COUNT_BY_SITE, holdings, 3)
        assert holdings.output_problem("count_by_site") is not None
