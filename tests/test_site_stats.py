"""Cohort statistics under sites (issue 16 with issue 14's deployments): the sums over
every site's cohort, or each site's own (`by_site`), and histograms of `site`.

Under rows with `local: auto` each site computes its own sums in the clear and inputs
them (a secure sum); otherwise the sums are taken over the secure cohort.  Every run is
MPyC or MP-SPDZ party processes, one per site, checked against the oracle, and every
party's output is read: each learnt the released sums and nothing else.
"""

from __future__ import annotations

import json
import math

import pytest

from backends.mhe.engine import MheSpec
from backends.mp_spdz.engine import MpSpdzSpec
from backends.mpyc.engine import MpycSpec
from circuits.holdings import Holdings, Partition
from circuits.ir import Output, Query
from circuits.oracle import cohort, site_sums, stats_sums
from circuits.stats import AGE, Aggregate, Attribute, Privacy, Stats, combine
from harness.analysis import accuracy
from harness.analysis.records import Record
from harness.run.runner import CellRunner, noise_of
from mp_spdz_vms import need_vm
from test_cohort_stats import noise_record
from test_mhe import needs_mhe
from test_mp_spdz_stats import learnt
from test_mp_spdz_stats import run_cell as run_once
from test_sites import TREE, deployment, place, population, result_files, run_cell

SITE = Attribute("site")
EXAMS = Attribute("exams", 57698, 60)
AGGREGATES = (
    Aggregate("count"),
    Aggregate("histogram", (AGE,), (0, 40, 65, 151)),
    Aggregate("mean", (AGE,)),
    Aggregate("std", (EXAMS,)),
    Aggregate("histogram", (Attribute("gender"),)),
    Aggregate("correlation", (AGE, EXAMS)),
)
TOTAL = Stats(AGGREGATES + (Aggregate("histogram", (SITE,)),))
BY_SITE = Stats(AGGREGATES, by_site=True)


def _holdings(name: str, sites: int, local: str) -> tuple[Holdings, object]:
    pop = population(sites)
    placement, _ = place(deployment(name, sites, local), pop)
    return placement.holdings, pop


def test_the_sites_sums_add_up_to_the_whole_cohorts():
    """Each site's own sums (what it inputs under rows) add up to the oracle's, and by
    site they are the oracle's `by_site` release, site after site."""
    holdings, pop = _holdings("rows-random", 3, "auto")
    q = Query(TREE, Output.STATS, "sites", TOTAL)
    eligible = cohort(q, pop, holdings).eligible
    own = [
        site_sums(TOTAL, pop.take(holdings.patients_of(s)), eligible[list(holdings.patients_of(s))], s, 3)
        for s in range(3)
    ]
    assert [sum(column) for column in zip(*own)] == list(stats_sums(TOTAL, pop, eligible, holdings))
    by_site = stats_sums(BY_SITE, pop, eligible, holdings)
    k = len(BY_SITE.columns(3))
    assert [list(by_site[s * k : (s + 1) * k]) for s in range(3)] == [
        list(
            site_sums(
                BY_SITE, pop.take(holdings.patients_of(s)), eligible[list(holdings.patients_of(s))], s, 3
            )
        )
        for s in range(3)
    ]
    released = combine(TOTAL, stats_sums(TOTAL, pop, eligible, holdings), 3)
    assert released["histogram(site)"] == [
        int(eligible[list(holdings.patients_of(s))].sum()) for s in range(3)
    ]
    per_site = combine(BY_SITE, by_site, 3)
    assert per_site["count"] == released["histogram(site)"]
    assert all(isinstance(v, list) and len(v) == 3 for v in per_site.values())


def test_by_site_names_each_sites_noise():
    stats = Stats((Aggregate("count"),), by_site=True, dp=Privacy(1.0, 1e-6))
    assert stats.sum_names(2) == ["n@site0", "n@site1"]
    assert stats.released(2) == stats.columns(2) * 2


CASES = [
    ("rows-random", 3, "auto", TOTAL),  # each site's own sums, added securely
    ("rows-random", 3, "auto", BY_SITE),  # and revealed site by site
    ("rows-round-robin", 3, "off", TOTAL),  # the sums over the secure cohort
    ("rows-round-robin", 5, "off", BY_SITE),  # by block
    ("columns-spread", 3, "auto", Stats(AGGREGATES)),  # the cohort across sites' columns
    ("columns-shared", 5, "off", Stats(AGGREGATES)),
]


@pytest.mark.parametrize(
    "name, sites, local, stats",
    CASES,
    ids=[f"{c[0]}-{c[1]}-{c[2]}-{'by' if c[3].by_site else 'all'}" for c in CASES],
)
def test_stats_under_sites_equal_the_oracle_and_every_party_learns_only_them(
    tmp_path, name, sites, local, stats
):
    holdings, pop = _holdings(name, sites, local)
    q = Query(TREE, Output.STATS, "sites", stats)
    expected = cohort(q, pop, holdings)
    outcome, run_dir, _ = run_cell(tmp_path, q, pop, holdings)
    assert outcome.correct and outcome.error is None, outcome.error
    assert outcome.figures["stats"] == combine(stats, expected.sums, sites)
    assert outcome.cohort_size == expected.count
    files = result_files(run_dir)
    assert [f["result"] for f in files] == [list(expected.sums)] * sites
    presum = holdings.partition is Partition.ROWS and local == "auto"
    assert all(f["secure"] for f in files)
    # a site's input phase under rows+auto is one vector of sums, not its patients' columns
    if presum:
        assert max(outcome.figures["input_bytes_by_party"]) < 20_000


def test_noisy_by_site_release_is_noised_per_site(tmp_path):
    """With dp, by site: every party learns the same release, each sum plausibly near the
    oracle's, the noise named per site, and the privacy spent is one release's
    (parallel composition over the sites' disjoint patients)."""
    stats = Stats((Aggregate("count"), Aggregate("mean", (AGE,))), by_site=True, dp=Privacy(1.0, 1e-6))
    holdings, pop = _holdings("rows-random", 3, "auto")
    q = Query(TREE, Output.STATS, "sites", stats)
    outcome, run_dir, _ = run_cell(tmp_path, q, pop, holdings)
    assert outcome.correct, outcome.error
    files = result_files(run_dir)
    assert all(f["result"] == files[0]["result"] for f in files)
    noise = outcome.figures["dp_error"]
    assert sorted(noise) == sorted(f"{c}@site{s}" for s in range(3) for c in ("n", "sum(age)"))
    expected = cohort(q, pop, holdings)
    assert noise == noise_of(stats, expected, files[0]["result"], 3)
    assert outcome.figures["dp"]["epsilon_spent"] <= 1.0 + 1e-9
    assert all(isinstance(v, list) and len(v) == 3 for v in outcome.figures["stats"].values())
    assert not any(isinstance(v, float) and math.isnan(v) for v in outcome.figures["stats"]["mean(age)"])


SPDZ_CASES = [
    ("shamir", "rows-random", 3, "auto", TOTAL),
    ("shamir", "rows-random", 3, "auto", BY_SITE),
    ("malicious-shamir", "rows-random", 3, "auto", BY_SITE),
    ("shamir", "rows-round-robin", 3, "off", Stats(AGGREGATES)),
    ("semi2k", "columns-spread", 3, "auto", Stats(AGGREGATES)),
]


@pytest.mark.parametrize(
    "protocol, name, sites, local, stats",
    SPDZ_CASES,
    ids=[f"{c[0]}-{c[1]}-{c[3]}-{'by' if c[4].by_site else 'all'}" for c in SPDZ_CASES],
)
def test_mp_spdz_stats_under_sites_equal_the_oracle(tmp_path, protocol, name, sites, local, stats):
    """Every party printed the oracle's sums as its one answer."""
    need_vm(protocol)
    holdings, pop = _holdings(name, sites, local)
    q = Query(TREE, Output.STATS, "sites", stats)
    expected = cohort(q, pop, holdings)
    spec = MpSpdzSpec(engine="mp-spdz", protocol=protocol, parties=sites)
    outcome, _ = run_once(spec, q, pop, tmp_path, holdings)
    assert outcome.correct, outcome.error
    assert outcome.figures["stats"] == combine(stats, expected.sums, sites)
    assert learnt(tmp_path / "r0", sites) == [list(expected.sums)] * sites


def test_mp_spdz_noisy_stats_by_site_are_noised_per_site(tmp_path, monkeypatch):
    """Each site's noised sums: in the tests' debug path the harness keeps every party's
    shares, and the release minus them is the oracle's exact by-site sums."""
    need_vm("shamir")
    monkeypatch.setenv("COHORTBENCH_DEBUG_NOISE", "1")
    stats = Stats((Aggregate("count"), Aggregate("histogram", (SITE,))), by_site=True, dp=Privacy(1.0, 1e-6))
    holdings, pop = _holdings("rows-random", 3, "auto")
    q = Query(TREE, Output.STATS, "sites", stats)
    outcome, _ = run_once(
        MpSpdzSpec(engine="mp-spdz", protocol="shamir", parties=3), q, pop, tmp_path, holdings
    )
    assert outcome.correct, outcome.error
    assert len(outcome.figures["dp_error"]) == 3 * 4  # n and 3 site bins, at each of 3 sites
    (released,) = {tuple(r) for r in learnt(tmp_path / "r0", 3)}
    shares = [json.loads((tmp_path / "r0" / f"noise-{p}.json").read_text()) for p in range(3)]
    noise_free = [r - sum(s) for r, *s in zip(released, *shares)]
    assert noise_free == list(cohort(q, pop, holdings).sums) != list(released)


def test_mp_spdz_stats_by_site_over_a_secure_cohort_is_unavailable(tmp_path):
    """Under rows with local: off, by_site is lowered by MPyC only: one clear message."""
    need_vm("shamir")
    holdings, pop = _holdings("rows-round-robin", 3, "off")
    q = Query(TREE, Output.STATS, "sites", BY_SITE)
    runner = CellRunner(
        MpSpdzSpec(engine="mp-spdz", protocol="shamir", parties=3), q, pop, tmp_path, holdings
    )
    assert runner.cell is None and "local: auto" in str(runner.unavailable), runner.unavailable


def test_by_site_noise_is_pooled_with_its_columns_scale():
    """The accuracy analysis reads a by-site sum's scale from its column's (n@site1 -> n)."""
    r = noise_record(1.0, 3, 4.0).to_json()
    r["dp_error"] = {"n@site0": 3, "n@site1": -5}
    (point,) = accuracy.points([Record.from_json(r)])
    assert point.samples == 2 and point.scale == 4.0


@pytest.mark.parametrize("engine, protocol", [("mpyc", "shamir"), ("mp-spdz", "shamir")])
def test_stats_with_private_criteria_equal_the_oracle(tmp_path, engine, protocol):
    """The researcher (an extra party) inputs the criteria; the sites' sums over the secure
    cohort are revealed to all four parties, the researcher too."""
    if engine == "mp-spdz":
        need_vm(protocol)
    holdings, pop = _holdings("rows-round-robin", 3, "auto")
    q = Query(TREE, Output.STATS, "sites", Stats(AGGREGATES))
    spec = (MpycSpec if engine == "mpyc" else MpSpdzSpec)(
        engine=engine, protocol=protocol, parties=4, criteria="private", researcher="extra"
    )
    outcome, _ = run_once(spec, q, pop, tmp_path, holdings)
    assert outcome.correct, outcome.error
    assert outcome.figures["stats"] == combine(q.stats, cohort(q, pop, holdings).sums, 3)


MHE_CASES = [
    ("bfv", "rows-random", 3, TOTAL),
    ("bfv", "rows-round-robin", 5, BY_SITE),
    ("bfv-flood", "rows-random", 3, BY_SITE),
    ("bfv", "columns-spread", 3, Stats(AGGREGATES)),  # a correlation across two sites' columns
    ("bfv", "columns-shared", 5, Stats(AGGREGATES)),
]


@needs_mhe
@pytest.mark.parametrize(
    "protocol, name, sites, stats",
    MHE_CASES,
    ids=[f"{c[0]}-{c[1]}-{c[2]}-{'by' if c[3].by_site else 'all'}" for c in MHE_CASES],
)
def test_mhe_stats_under_sites_equal_the_oracle(tmp_path, protocol, name, sites, stats):
    """Rows: each site encrypts its own sums; columns: the cohort's bits times each sum's
    factors, masked.  The released sums, every party's answer, are the oracle's (signed
    slots, by site in turn)."""
    holdings, pop = _holdings(name, sites, "auto")
    q = Query(TREE, Output.STATS, "sites", stats)
    outcome, run_dir = run_once(
        MheSpec(engine="mhe", protocol=protocol, parties=sites), q, pop, tmp_path, holdings
    )
    assert outcome.correct, outcome.error
    expected = cohort(q, pop, holdings)
    assert outcome.figures["stats"] == combine(stats, expected.sums, sites)
    answers = [json.loads((run_dir / f"result-{p}.json").read_text())["answer"] for p in range(sites)]
    assert answers == [list(expected.sums)] * sites


NOISY = {
    "rows-random": Stats(
        (Aggregate("count"), Aggregate("mean", (AGE,)), Aggregate("histogram", (SITE,))),
        by_site=True,
        dp=Privacy(1.0, 1e-6),
    ),
    "columns-spread": Stats(
        (Aggregate("count"), Aggregate("mean", (AGE,)), Aggregate("correlation", (AGE, EXAMS))),
        dp=Privacy(1.0, 1e-6),
    ),
}


@needs_mhe
@pytest.mark.parametrize("name", NOISY)
def test_mhe_noisy_stats_minus_the_shares_are_exact(tmp_path, monkeypatch, name):
    """With dp every party adds its encrypted noise shares (rows: to its sums; columns: as
    its masks' totals); in the tests' debug path each also writes them, and the decrypted
    release minus them is the oracle's sums."""
    monkeypatch.setenv("COHORTBENCH_DEBUG_NOISE", "1")
    stats = NOISY[name]
    holdings, pop = _holdings(name, 3, "auto")
    q = Query(TREE, Output.STATS, "sites", stats)
    outcome, run_dir = run_once(MheSpec(engine="mhe", protocol="bfv", parties=3), q, pop, tmp_path, holdings)
    assert outcome.correct, outcome.error
    assert outcome.figures["dp"]["honest_shares"] == 1  # n-out-of-n: one party's share suffices
    released = json.loads((run_dir / "result-0.json").read_text())["answer"]
    shares = [json.loads((run_dir / f"noise-{p}.json").read_text()) for p in range(3)]
    noise_free = [r - sum(s) for r, *s in zip(released, *shares)]
    assert noise_free == list(cohort(q, pop, holdings).sums) != released
