"""Private criteria under MHE (issue 17): the researcher's truth tables, the sites' lookups.

Each case runs real party processes (one per site, plus an extra researcher where
asked): the answer against the oracle on the public query, every party's result file
against what the deployment reveals to it, the constants file read by the researcher
alone, and the job file every party reads free of them.  Rows with eligible bits are
Unavailable (conditions and exams are refused at config load: tests/test_mhe_config.py).  Skips, with the
reason, where no MHE interpreter imports openfhe.
"""

from __future__ import annotations

import json
import os
import subprocess
from dataclasses import replace
from pathlib import Path

import pytest

import numpy as np

from backends.engine import python_path
from backends.mhe import lookup
from backends.mhe.engine import MheSpec
from circuits import secret
from circuits.codes import MAX_AGE
from circuits.cost import DataBounds
from circuits.holdings import Holdings
from circuits.ir import AgeRange, And, Gender, Node, Not, Or, Output, Query, Smoker
from circuits.oracle import cohort
from circuits.population import Population
from circuits.stats import Stats
from conftest import REPO
from harness.run.runner import CellRunner, Outcome
from test_mhe import FOUND, holdings_of, needs_mhe, population
from test_mp_spdz_sites import TREE
from test_mp_spdz_stats import run_cell as run_once
from test_site_stats import AGGREGATES
from test_sites import deployment, place, reveals
from test_sites import population as site_population

# Demographics only, depth 2: (not male and 30 < age < 80) or never smoked.
DEMOGRAPHICS = Or((And((Not(Gender(0)), AgeRange(30, 80))), Smoker(0)))


def run_private(
    tmp: Path,
    partition: str,
    sites: int,
    researcher: int | str,
    output: Output = Output.COUNT,
    protocol: str = "bfv",
    patients: int = 300,
    root: Node = DEMOGRAPHICS,
    reveal_to: int = 0,
) -> tuple[Outcome, CellRunner, Holdings, Population, Query]:
    pop = population(patients)
    query = Query(root, output)
    holdings = replace(holdings_of(partition, sites, patients), reveal_to=reveal_to)
    parties = sites + (researcher == "extra")
    spec = MheSpec(
        engine="mhe", protocol=protocol, parties=parties, criteria="private", researcher=researcher
    )
    runner = CellRunner(spec, query, pop, tmp, holdings)
    try:
        assert runner.cell is not None, runner.unavailable
        outcome = runner.run("r0", 300)
    finally:
        runner.close()
    return outcome, runner, holdings, pop, query


def learnt(run_dir: Path, parties: int) -> list:
    return [json.loads((run_dir / f"result-{p}.json").read_text())["answer"] for p in range(parties)]


CASES = [  # (partition, sites, researcher, output, protocol)
    ("rows", 3, "extra", Output.COUNT, "bfv"),
    ("rows", 3, 1, Output.COUNT, "bfv"),
    ("rows", 3, 0, Output.COUNT, "bfv-flood"),
    ("columns", 3, 0, Output.COUNT, "bfv"),
    ("columns", 3, 2, Output.COUNT, "bfv"),
    ("columns", 3, "extra", Output.ELIGIBLE, "bfv"),
    ("rows", 5, 4, Output.COUNT, "bfv"),
    ("columns", 5, "extra", Output.COUNT, "bfv"),
]


@needs_mhe
@pytest.mark.parametrize("case", CASES, ids=lambda c: f"{c[0]}-{c[1]}s-r{c[2]}-{c[3].value}-{c[4]}")
def test_private_criteria_match_the_oracle_and_each_party_learns_what_the_query_reveals(tmp_path, case):
    partition, sites, researcher, output, protocol = case
    outcome, runner, holdings, pop, query = run_private(
        tmp_path, partition, sites, researcher, output, protocol, reveal_to=sites - 1
    )
    assert outcome.error is None and outcome.correct, outcome.error
    parties = sites + (researcher == "extra")
    may = reveals(output, holdings, cohort(query, pop).eligible)
    may += [may[0] if output is Output.COUNT else None] * (parties - sites)  # the extra researcher
    assert learnt(tmp_path / "r0", parties) == may
    constants = secret.hide(query, DataBounds.of(pop), pop.slots[1]).constants
    job = json.loads((tmp_path / "r0" / "job.json").read_text())
    assert job["constants_path"].endswith("private-criteria.json")
    assert job["researcher"] == (parties - 1 if researcher == "extra" else researcher)
    assert "30" not in json.dumps(job["query"]) and constants == (0, 30, 80, 0)
    assert not (tmp_path / "private-criteria.json").exists(), "the constants file outlives the cell"
    f = outcome.figures
    assert f["scheme_params"]["depth"] == 2 and f["bytes_sent"] == sum(f["bytes_by_party"])


@needs_mhe
def test_more_patients_than_slots_under_rows_and_columns(tmp_path):
    """9,000 patients: under columns two blocks of 8,192 slots, under rows one per site's segment."""
    for partition in ("rows", "columns"):
        outcome, *_ = run_private(tmp_path / partition, partition, 3, 0, patients=9000)
        assert outcome.correct, outcome.error


@needs_mhe
def test_private_rows_with_eligible_bits_are_unavailable(tmp_path):
    pop, holdings = population(60), holdings_of("rows", 3, 60)
    spec = MheSpec(engine="mhe", protocol="bfv", parties=3, criteria="private", researcher=0)
    runner = CellRunner(spec, Query(DEMOGRAPHICS, Output.ELIGIBLE), pop, tmp_path, holdings)
    assert runner.cell is None and "count only" in str(runner.unavailable)


def test_truth_tables_are_the_leaves_on_every_value_of_their_domains():
    hidden = secret.hide(Query(DEMOGRAPHICS, Output.COUNT), DataBounds(), 4)
    gender, age, smoker = lookup.tables(hidden.template.root, hidden.constants)
    assert gender.tolist() == [1, 0, 0, 0] == smoker.tolist()  # the leaf is gender = male: its Not is secure
    assert len(age) == MAX_AGE + 1 and np.flatnonzero(age).tolist() == list(range(31, 80))
    assert lookup.table_sizes(hidden.template.root) == [4, MAX_AGE + 1, 4]
    assert lookup.unsupported(TREE) is not None and lookup.unsupported(DEMOGRAPHICS) is None


@needs_mhe
def test_stats_under_columns_with_private_criteria_equal_the_oracle(tmp_path):
    """The cohort's looked-up bits times each sum's factors (a correlation across two
    sites' columns), every party (the extra researcher too) learning the released sums."""
    pop = site_population(3)
    placement, _ = place(deployment("columns-spread", 3, "auto"), pop)
    q = Query(DEMOGRAPHICS, Output.STATS, "sites", Stats(AGGREGATES))
    spec = MheSpec(engine="mhe", protocol="bfv", parties=4, criteria="private", researcher="extra")
    outcome, run_dir = run_once(spec, q, pop, tmp_path, placement.holdings)
    assert outcome.correct, outcome.error
    assert learnt(run_dir, 4) == [list(cohort(q, pop, placement.holdings).sums)] * 4


_LOOKUP_PROBE = """
import json, sys
import numpy as np
from backends.mhe import lookup, scheme
from backends.mhe.params import Params
from backends.mhe.researcher import total
from circuits.sitedata import holding
from circuits.ir import SecretAge
protocol, ring, depth, domain = json.loads(sys.argv[1])
cc = scheme.context(Params(protocol, 3, depth, 65537, ring))
shares = [scheme.first_share(cc)]
shares += [scheme.next_share(cc, shares[0].public) for _ in range(2)]
joint = scheme.joint_public(cc, [s.public for s in shares])
tag = joint.GetKeyTag()
if depth:
    first = scheme.first_switch_key(cc, shares[0])
    switch = [first] + [scheme.next_switch_key(cc, s, first) for s in shares[1:]]
    joined = scheme.joint_switch_key(cc, switch, tag)
    scheme.install_mult_key(cc, [scheme.mult_key_share(cc, s, joined) for s in shares], tag)
slots, rng = cc.GetRingDimension(), np.random.default_rng(7)
cts, want = [], np.ones(slots, dtype=np.int64)
for _ in range(2 ** depth):  # a balanced product of 2^depth lookups: the deepest circuit
    table = rng.integers(0, 2, domain)
    ages = rng.integers(0, domain, slots)
    (present,) = lookup.indicators(SecretAge(0), holding(slots, (1, 1), {"age": ages}), 1, slots)
    encrypted = [scheme.encrypt(cc, joint, [int(b)] * slots) for b in table]
    terms = [cc.EvalMult(encrypted[d], cc.MakePackedPlaintext(m)) for d, m in present.items()]
    cts.append(total(cc, terms, encrypted[0]))
    want *= table[ages]
out = cts[0] if len(cts) == 1 else cc.EvalMultMany(cts)
parts = [scheme.partial_decryptions(cc, shares[0], [out], True)[0]]
parts += [scheme.partial_decryptions(cc, s, [out], False)[0] for s in shares[1:]]
print(json.dumps(scheme.fuse(cc, parts, slots) == want.tolist()))
"""


@needs_mhe
@pytest.mark.parametrize(
    "protocol, ring, depth, domain",
    [("bfv", 4096, 0, 151), ("bfv", 8192, 3, 151), ("bfv-flood", 16384, 6, 4)],
)
def test_a_lookup_takes_no_level_of_its_own(protocol, ring, depth, domain):
    """A lookup (a sum of up to `domain` plaintext products) feeds the deepest circuit a ring
    takes (MAX_DEPTH) and still decrypts exactly: the depth counts no level for it."""
    argv = [str(FOUND.path), "-c", _LOOKUP_PROBE, json.dumps([protocol, ring, depth, domain])]
    done = subprocess.run(
        argv, capture_output=True, text=True, cwd=REPO, env={**os.environ, **python_path()}, timeout=600
    )
    assert done.returncode == 0 and json.loads(done.stdout) is True, done.stderr[-2000:]
