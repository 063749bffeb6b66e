"""The MHE engine (issue 17): OpenFHE threshold BFV, one real party process per site.

Rows (count, count_by_site, eligible; stats in tests/test_site_stats.py) and columns
(count, eligible), bfv and bfv-flood, 3 and 5 sites, on generated data, each answer
checked against the oracle by the runner and every party's result file read back
against what the deployment reveals to it
(`test_sites.reveals`, written out independently of `Cohort.learnt`); the star's
traffic through the relay; `keys: reuse`; the parameter table against OpenFHE; the
Synthea sample split into sites through `cohortbench run`.  Every test that runs
parties skips, with the reason, where no MHE interpreter (`.venv-mhe`, or
$COHORTBENCH_MHE_PYTHON) imports openfhe.
"""

from __future__ import annotations

import json
import subprocess
from dataclasses import replace
from pathlib import Path

import pytest
import yaml

from backends.mhe import interpreter
from backends.mhe.engine import MheSpec
from backends.mhe.params import FIXED, FLOODING, MAX_DEPTH, MODES, SMALL_MODULUS, depth, plaintext_modulus
from circuits.holdings import Holdings, Partition
from circuits.ir import And, LocalBit, Not, Or, Output, Query
from circuits.locality import split
from circuits.oracle import cohort
from circuits.population import Padding, Population
from conftest import REPO, cli_run
from harness.analysis import records
from harness.data import synthetic
from harness.net.networks import PROFILES, Network, parse_network
from harness.run.runner import LOOPBACK, CellRunner, Outcome
from test_mp_spdz_sites import GROUPS, TREE
from test_sites import reveals, sweep_config

FOUND = interpreter.find()
needs_mhe = pytest.mark.skipif(not FOUND.ok, reason=f"MHE engine unavailable: {FOUND.problem}")

# TREE: every criterion kind across the three column groups; under columns its secure
# remainder is an Or of two Ands of local bits, depth 2.
# What a party's result file holds: its answer, and figures that are not data.
RESULT_KEYS = {"answer", "secure", "local_s", "bytes_sent", "engine_s", "peak_rss_kib"}
RESULT_KEYS |= {"setup_s", "setup_bytes", "keys", "input_s", "input_bytes", "topology", "params"}


def population(patients: int = 300, seed: int = 5) -> Population:
    return synthetic.generate(patients, seed=seed, padding=Padding(3, 4), truncate=True)


def holdings_of(partition: str, sites: int, patients: int) -> Holdings:
    if partition == "rows":  # uneven blocks: site i holds patients i, i + sites + 1, ... and the rest
        site_of = tuple(min(i % (sites + 1), sites - 1) for i in range(patients))
        return Holdings(Partition.ROWS, sites, site_of)
    return Holdings(Partition.COLUMNS, sites, (), GROUPS[sites])


def run_cell(
    tmp: Path,
    protocol: str,
    sites: int,
    partition: str,
    output: Output,
    patients: int = 300,
    network: Network = LOOPBACK,
    reveal_to: int = 0,
) -> tuple[Outcome, Holdings, Population, Query]:
    pop = population(patients)
    query, holdings = (
        Query(TREE, output),
        replace(holdings_of(partition, sites, patients), reveal_to=reveal_to),
    )
    spec = MheSpec(engine="mhe", protocol=protocol, parties=sites)
    runner = CellRunner(spec, query, pop, tmp, holdings)
    try:
        assert runner.cell is not None, runner.unavailable
        outcome = runner.run("r0", 300, network)
    finally:
        runner.close()
    return outcome, holdings, pop, query


def check_parties(run_dir: Path, query: Query, pop: Population, holdings: Holdings) -> list[dict]:
    """Each party's result file holds what the deployment reveals to it, and nothing else
    that is data; its log is empty; no key share outlives the run."""
    may = reveals(query.output, holdings, cohort(query, pop).eligible)
    files = [json.loads((run_dir / f"result-{p}.json").read_text()) for p in range(holdings.sites)]
    for pid, got in enumerate(files):
        assert set(got) <= RESULT_KEYS, set(got) - RESULT_KEYS
        assert got["answer"] == may[pid], pid
        assert (run_dir / f"party-{pid}.log").read_text() == "", pid
    assert not (run_dir / "keys").exists(), "per-run key shares stay after the run"
    return files


CASES = [  # (protocol, sites, partition, output)
    ("bfv", 3, "rows", Output.COUNT),
    ("bfv", 3, "rows", Output.COUNT_BY_SITE),
    ("bfv", 3, "rows", Output.ELIGIBLE),
    ("bfv", 3, "columns", Output.COUNT),
    ("bfv-flood", 3, "rows", Output.COUNT),
    ("bfv-flood", 3, "rows", Output.COUNT_BY_SITE),
    ("bfv", 5, "rows", Output.COUNT),
    ("bfv", 5, "rows", Output.COUNT_BY_SITE),
    ("bfv", 5, "columns", Output.COUNT),
    ("bfv-flood", 5, "rows", Output.COUNT),
]


@needs_mhe
@pytest.mark.parametrize("case", CASES, ids=lambda c: f"{c[0]}-{c[1]}s-{c[2]}-{c[3].value}")
def test_sites_match_the_oracle_and_learn_only_what_the_query_reveals(tmp_path, case):
    protocol, sites, partition, output = case
    outcome, holdings, pop, query = run_cell(tmp_path, protocol, sites, partition, output)
    assert outcome.error is None and outcome.correct, outcome.error
    files = check_parties(tmp_path / "r0", query, pop, holdings)
    assert not list(tmp_path.glob("site-*.npz")), "the sites' data files stay after the cell"
    f = outcome.figures
    if output is Output.ELIGIBLE:  # rows, eligible: each site's bits are its own, nothing is sent
        assert f["bytes_sent"] == 0 and f["setup_s"] is None and not any(r["secure"] for r in files)
        return
    params = f["scheme_params"]
    assert params["depth"] == (0 if partition == "rows" else 2) and params["plaintext_modulus"] == 65537
    assert params["mode"] == MODES[protocol] and params["ring_dimension"] >= 4096
    assert f["keys"] == "generated" and f["topology"] == "star" and f["setup_s"] > 0
    assert 0 < f["setup_bytes"] < f["bytes_sent"] == sum(f["bytes_by_party"])


@needs_mhe
def test_columns_under_noise_flooding(tmp_path):
    """bfv-flood on the depth-2 remainder (its ring dimension is 16,384): a small population."""
    outcome, holdings, pop, query = run_cell(tmp_path, "bfv-flood", 3, "columns", Output.COUNT, patients=60)
    assert outcome.error is None and outcome.correct, outcome.error
    check_parties(tmp_path / "r0", query, pop, holdings)
    assert outcome.figures["scheme_params"]["ring_dimension"] == 16384


@needs_mhe
def test_more_patients_than_slots(tmp_path):
    """9,000 patients at ring dimension 8,192: two ciphertexts per column, and the
    padding slots' public value taken out of the masked sum."""
    outcome, holdings, pop, query = run_cell(tmp_path, "bfv", 3, "columns", Output.COUNT, patients=9000)
    assert outcome.error is None and outcome.correct, outcome.error
    site_1 = json.loads((tmp_path / "r0" / "result-1.json").read_text())
    ciphertext = site_1["input_bytes"] / 4  # one local part and one mask, two blocks each
    assert outcome.figures["scheme_params"]["ring_dimension"] == 8192 and ciphertext > 100_000


@needs_mhe
@pytest.mark.parametrize("sites,reveal_to,patients", [(3, 2, 9000), (5, 0, 300)])
def test_columns_eligible_is_decrypted_by_reveal_to_alone(tmp_path, sites, reveal_to, patients):
    """Eligible bits under columns: unmasked, decrypted by `reveal_to` only (party 0, or a
    site that party 0 sends every other partial decryption to); 9,000 patients: two blocks."""
    outcome, holdings, pop, query = run_cell(
        tmp_path, "bfv", sites, "columns", Output.ELIGIBLE, patients, reveal_to=reveal_to
    )
    assert outcome.error is None and outcome.correct, outcome.error
    files = check_parties(tmp_path / "r0", query, pop, holdings)
    assert [f["answer"] is not None for f in files] == [p == reveal_to for p in range(sites)]
    assert outcome.figures["keys"] == "generated" and outcome.figures["setup_s"] > 0


@needs_mhe
def test_more_patients_than_the_small_plaintext_modulus(tmp_path):
    """70,000 patients: a plaintext modulus above them (786,433), rows and columns."""
    for partition in ("rows", "columns"):
        outcome, *_ = run_cell(tmp_path / partition, "bfv", 3, partition, Output.COUNT, patients=70_000)
        assert outcome.error is None and outcome.correct, outcome.error
        assert outcome.figures["scheme_params"]["plaintext_modulus"] == plaintext_modulus(70_000) == 786433


@needs_mhe
def test_the_star_goes_through_the_relay(tmp_path):
    """On a relayed network party 0 alone talks to each site, and the relay carries exactly
    the bytes the parties counted."""
    lan = parse_network("lan", PROFILES)
    outcome, *_ = run_cell(tmp_path, "bfv", 5, "columns", Output.COUNT, network=lan)
    assert outcome.error is None and outcome.correct, outcome.error
    f, links = outcome.figures, outcome.figures["bytes_by_link"]
    assert f["relay_bytes"] == f["bytes_sent"]
    assert all((links[i][j] > 0) == (0 in (i, j) and i != j) for i in range(5) for j in range(5)), links
    assert [links[0][j] for j in range(1, 5)] == [sum(row[j] for row in links) for j in range(1, 5)]
    assert f["rounds"] >= 6  # setup: 4 messages per link at depth 2; query: inputs, result, partials, answer


@needs_mhe
def test_keys_reused_across_runs(tmp_path):
    """`keys: reuse`: the first run makes the keys (each party's share in its own file),
    the next loads them and records no setup; `close` removes them."""
    pop, holdings = population(), holdings_of("columns", 3, 300)
    spec = MheSpec(engine="mhe", protocol="bfv", parties=3, keys="reuse")
    runner = CellRunner(spec, Query(TREE, Output.COUNT), pop, tmp_path, holdings)
    try:
        assert runner.cell is not None, runner.unavailable
        first, second = runner.run("r0", 300), runner.run("r1", 300)
        shares = sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.glob("keys/party-*/secret.bin"))
        assert shares == [f"keys/party-{i}/secret.bin" for i in range(3)]
        assert (tmp_path / "keys/party-0/mult.bin").exists() and not (
            tmp_path / "keys/party-1/mult.bin"
        ).exists()
    finally:
        runner.close()
    assert first.correct and second.correct, (first.error, second.error)
    a, b = first.figures, second.figures
    assert (a["keys"], b["keys"]) == ("generated", "reused") and a["setup_bytes"] > 0
    assert b["setup_bytes"] == 0 and b["setup_s"] == 0
    # the query's bytes alike (serialized ciphertexts name their key's tag: a few bytes apart)
    assert abs(b["bytes_sent"] - (a["bytes_sent"] - a["setup_bytes"])) < 0.001 * b["bytes_sent"]
    assert not (tmp_path / "keys").exists()


def test_depth_of_a_remainder():
    assert depth(LocalBit(0)) == 0 and depth(Not(LocalBit(0))) == 0
    assert depth(And((LocalBit(0), LocalBit(1)))) == 1
    assert depth(And(tuple(LocalBit(i) for i in range(5)))) == 3  # a balanced tree of 5
    assert depth(Or((And((LocalBit(0), LocalBit(1))), Not(LocalBit(2))))) == 2
    holdings = holdings_of("columns", 3, 1)
    assert depth(split(Query(TREE, Output.COUNT), holdings).secure) == 2


def test_the_plaintext_modulus_exceeds_the_population():
    assert plaintext_modulus(300) == plaintext_modulus(65536) == SMALL_MODULUS
    for patients in (65537, 1_000_000):
        t = plaintext_modulus(patients)
        assert t > patients and t % (1 << 17) == 1 and all(t % d for d in range(2, 1000))


_TABLE_PROBE = """
import json, sys, openfhe as f
def fits(mode, ring, d):
    p = f.CCParamsBFVRNS(); p.SetPlaintextModulus(65537); p.SetMultiplicativeDepth(d)
    p.SetThresholdNumOfParties(16); p.SetRingDim(ring)
    p.SetMultipartyMode(f.FIXED_NOISE_MULTIPARTY if mode == "fixed-noise" else f.NOISE_FLOODING_MULTIPARTY)
    try:
        f.GenCryptoContext(p)
        return True
    except Exception:
        return False
table = json.loads(sys.argv[1])
print(json.dumps({m: {r: [d < 0 or fits(m, int(r), d), fits(m, int(r), d + 1)] for r, d in t.items()}
                  for m, t in table.items()}))
"""


@needs_mhe
def test_the_depth_table_is_openfhe_s():
    """Each ring dimension takes the depth MAX_DEPTH says, and not one more (16 parties)."""
    argv = [str(FOUND.path), "-c", _TABLE_PROBE, json.dumps(MAX_DEPTH)]
    got = json.loads(subprocess.run(argv, capture_output=True, text=True, check=True, timeout=300).stdout)
    assert got == {m: {str(r): [True, False] for r in MAX_DEPTH[m]} for m in (FIXED, FLOODING)}


@needs_mhe
def test_the_synthea_sample_split_into_sites(tmp_path, synthea_dir):
    """The shared sample through `cohortbench run`: 3 sites by provider (rows: count and
    count_by_site) and by column group (count), bfv and bfv-flood."""
    consortium = yaml.safe_load((REPO / "configs" / "consortium.yaml").read_text())
    count = next(q for q in consortium["queries"] if isinstance(q, dict) and q["output"] == "count")
    cfg = sweep_config(
        tmp_path,
        {
            "name": "mhe-synthea",
            "queries": [count, {**count, "name": "by-site", "output": "count_by_site"}],
            "populations": [str(synthea_dir)],
            "as_of": consortium["as_of"],
            "padding": consortium.get("padding", {"conditions": 16, "exams": 32}),
            "truncate": consortium.get("truncate", False),
            "engines": [{"engine": "mhe", "protocol": "bfv"}, {"engine": "mhe", "protocol": "bfv-flood"}],
            "deployments": [{"sites": 3, "partition": "rows", "assign": "provider"}],
            "timeout_s": 300,
        },
    )
    cli_run(cfg, tmp_path / "rows.jsonl")
    body = yaml.safe_load(cfg.read_text())
    body |= {"queries": [count], "deployments": [{"sites": 3, "partition": "columns", "columns": GROUPS[3]}]}
    cfg.write_text(yaml.safe_dump(body))
    cli_run(cfg, tmp_path / "columns.jsonl")
    recs = records.read(tmp_path / "rows.jsonl") + records.read(tmp_path / "columns.jsonl")
    assert len(recs) == 6
    for r in recs:
        assert r.error is None and r.correct and r.population == 60, r.error
        assert r.cohort_size is not None and 0 < r.cohort_size < 60
        assert r.setup_bytes and r.setup_s and r.keys == "generated" and r.topology == "star"
        assert r.scheme_params is not None and r.security == "semi-honest" and r.majority == "dishonest"
    by_site = [r.count_by_site for r in recs if r.query["output"] == "count_by_site"]
    assert by_site[0] == by_site[1] and sum(by_site[0]) == recs[0].cohort_size


@needs_mhe
def test_the_synthea_sample_split_into_sites_with_stats_and_eligible(tmp_path, synthea_dir):
    """The shared sample, bfv: the cohort statistics under rows and columns, and the
    eligible bits under columns, each run checked against the oracle by the runner."""
    consortium = yaml.safe_load((REPO / "configs" / "consortium.yaml").read_text())
    count = next(q for q in consortium["queries"] if isinstance(q, dict) and q["output"] == "count")
    stats = yaml.safe_load((REPO / "configs" / "queries" / "cohort-stats.yaml").read_text())
    body = {
        "name": "mhe-synthea-stats",
        "queries": [stats],
        "populations": [str(synthea_dir)],
        "as_of": consortium["as_of"],
        "padding": consortium.get("padding", {"conditions": 16, "exams": 32}),
        "truncate": consortium.get("truncate", False),
        "engines": [{"engine": "mhe", "protocol": "bfv"}],
        "deployments": [
            {"sites": 3, "partition": "rows", "assign": "provider"},
            {"sites": 3, "partition": "columns", "columns": GROUPS[3]},
        ],
        "timeout_s": 300,
    }
    cfg = sweep_config(tmp_path, body)
    cli_run(cfg, tmp_path / "stats.jsonl")
    body = yaml.safe_load(cfg.read_text())
    body |= {
        "queries": [{**count, "name": "eligible", "output": "eligible"}],
        "deployments": body["deployments"][1:],
    }
    cfg.write_text(yaml.safe_dump(body))
    cli_run(cfg, tmp_path / "eligible.jsonl")
    recs = records.read(tmp_path / "stats.jsonl") + records.read(tmp_path / "eligible.jsonl")
    assert [r.query["output"] == "eligible" for r in recs] == [False, False, True]
    for r in recs:
        assert r.error is None and r.correct and r.population == 60, r.error
        assert r.setup_bytes and r.keys == "generated"
    assert recs[0].stats == recs[1].stats and recs[0].stats["count"] == recs[0].cohort_size > 0
