"""Cohort statistics (issue 16): the `stats` output, its sums and their combination.

The front end (every aggregate kind, a round trip of random stats, one clear error
per bad input), the clear combination against numpy's own statistics, the oracle's
sums on boundary patients, and MPyC's secure sums equal to the oracle's: in this
process on random trees, and in party processes, where every party's result file is
read to check that each learnt the sums and nothing else.
"""

from __future__ import annotations

import json
import math
import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import replace
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
import scipy.stats
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import mpyc_inprocess
from circuits import noise, privacy
from circuits.errors import InputError
from circuits.ir import AgeRange, Output, Query
from circuits.oracle import cohort
from circuits.population import Padding, encode
from circuits.queryfile import dump_native, load_query, parse_query
from circuits.stats import AGE, Aggregate, Attribute, Privacy, Stats, combine
from conftest import REPO, cli_run, patient, run_cli
import opendp.prelude as dp
from harness.analysis import accuracy, records
from harness.analysis.records import Record
from harness.privacy import ledger
from harness.data import synthetic
from test_queryfile import trees

QUERY = REPO / "configs" / "queries" / "cohort-stats.yaml"
EXAMS = Attribute("exams", 57698, 36)
NAMES = [
    "count",
    "histogram(age;0,18,40,65,151)",
    "mean(age)",
    "std(age)",
    "histogram(gender)",
    "mean(exams(57698-3,36))",
    "correlation(age,exams(57698-3,36))",
]

numeric = st.sampled_from([AGE, EXAMS, Attribute("exams", 58410, 12)])
categorical = st.sampled_from([Attribute("gender"), Attribute("smoker")])
edges = st.lists(st.integers(0, 151), min_size=2, max_size=5, unique=True).map(lambda b: tuple(sorted(b)))
aggregates = st.one_of(
    st.just(Aggregate("count")),
    st.builds(
        lambda op, x: Aggregate(op, (x,)), st.sampled_from(["sum", "mean", "variance", "std"]), numeric
    ),
    st.builds(lambda x, b: Aggregate("histogram", (x,), b), numeric, edges),
    st.builds(lambda x: Aggregate("histogram", (x,)), categorical),
    st.builds(lambda a, b: Aggregate("correlation", (a, b)), numeric, numeric),
)
privacies = st.one_of(
    st.none(),
    st.builds(Privacy, st.floats(0.01, 10), st.floats(1e-9, 0.5), st.just("discrete-gaussian")),
    st.builds(Privacy, st.floats(0.01, 10), st.just(0.0), st.just("discrete-laplace")),
)
stats_outputs = st.builds(
    Stats,
    st.lists(aggregates, min_size=1, max_size=6, unique_by=lambda g: g.name).map(tuple),
    st.booleans(),
    privacies,
    st.integers(0, 20),
)


def test_the_example_query_names_its_aggregates():
    q, warnings = load_query(QUERY)
    assert q.output is Output.STATS and not warnings
    assert [g.name for g in q.stats.aggregates] == NAMES


@settings(max_examples=200, deadline=None)
@given(trees, stats_outputs)
def test_stats_round_trip(tree, stats):
    q = Query(tree, Output.STATS, "rt", stats)
    back, _ = parse_query(json.loads(json.dumps(dump_native(q))), "rt.json")
    assert back == q and back.ir_hash == q.ir_hash


def test_the_paper_format_takes_stats_too():
    paper = {"restrictions": [{"restriction_type": "SMOKER", "value": 0}], "output": {"stats": ["count"]}}
    q, _ = parse_query(paper, "q.json")
    assert q.stats == Stats((Aggregate("count"),))


def _bad(change: dict) -> dict:
    return {"criteria": {"smoker": 0}, "output": {"stats": ["count"], **change}}


BAD = [
    (_bad({"dp": {"epsilon": 0}}), "output.dp.epsilon", "must be > 0"),
    (_bad({"dp": {"epsilon": -1.0}}), "output.dp.epsilon", "must be > 0"),
    (_bad({"dp": {"epsilon": 1.0, "delta": 1.0}}), "output.dp.delta", "[0, 1)"),
    (_bad({"dp": {"epsilon": 1.0, "mechanism": "laplace"}}), "output.dp.mechanism", "discrete-laplace"),
    (_bad({"stats": [{"mean": "height"}]}), "output.stats[0].mean", "unknown attribute 'height'"),
    (_bad({"stats": [{"mean": "agee"}]}), "output.stats[0].mean", "did you mean 'age'"),
    (
        _bad({"stats": [{"histogram": {"of": "age", "bins": [0, 40, 18]}}]}),
        "output.stats[0].histogram",
        "strictly increasing",
    ),
    (_bad({"stats": [{"histogram": {"of": "age"}}]}), "output.stats[0].histogram", "needs bins"),
    (
        _bad({"stats": [{"histogram": {"of": "gender", "bins": [0, 1]}}]}),
        "output.stats[0].histogram",
        "takes no bins",
    ),
    (_bad({"stats": [{"correlation": ["age"]}]}), "output.stats[0].correlation", "two attributes"),
    (_bad({"stats": [{"mean": "gender"}]}), "output.stats[0].mean", "needs a numeric attribute"),
    (_bad({"stats": [{"median": "age"}]}), "output.stats[0].median", "unknown aggregate"),
    (_bad({"stats": []}), "output.stats", "one or more aggregates"),
    (_bad({"stats": ["count", "count"]}), "output.stats", "repeated"),
    (
        _bad({"dp": {"epsilon": 1.0, "delta": 1e-6, "weights": {"mean(age)": 2}}}),
        "output.dp.weights",
        "not an aggregate",
    ),
    (
        _bad({"dp": {"epsilon": 1.0, "delta": 1e-6, "weights": {"count": 0}}}),
        "output.dp.weights",
        "must be > 0",
    ),
    (_bad({"dp": {"epsilon": 1.0, "weights": [1]}}), "output.dp.weights", "not a mapping"),
    (_bad({"supress_below": 5}), "output.supress_below", "did you mean 'suppress_below'"),
    (
        _bad({"stats": [{"mean": {"exams": {"loinc": "57698-4", "within_months": 36}}}]}),
        "output.stats[0].mean.exams.loinc",
        "check digit",
    ),
]


@pytest.mark.parametrize("data, where, says", BAD)
def test_bad_stats_are_one_clear_error(data, where, says):
    with pytest.raises(InputError) as e:
        parse_query(data, "q.yaml")
    assert e.value.location == where and says in str(e.value), str(e.value)


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 150), st.integers(0, 16)), min_size=0, max_size=40))
def test_combine_matches_numpy(rows):
    """Sample variance and std (n - 1), Pearson's r and the histogram, from the sums."""
    stats = Stats(
        (
            Aggregate("count"),
            Aggregate("mean", (AGE,)),
            Aggregate("variance", (AGE,)),
            Aggregate("std", (EXAMS,)),
            Aggregate("correlation", (AGE, EXAMS)),
            Aggregate("histogram", (AGE,), (0, 18, 65, 151)),
        )
    )
    x = np.array([r[0] for r in rows], dtype=float)
    y = np.array([r[1] for r in rows], dtype=float)
    sums = {"n": len(rows), "sum(age)": x.sum(), "sum(age^2)": (x * x).sum()}
    sums |= {"sum(exams(57698-3,36))": y.sum(), "sum(exams(57698-3,36)^2)": (y * y).sum()}
    sums |= {"sum(age*exams(57698-3,36))": (x * y).sum()}
    sums |= {
        f"n({lo}<=age<{hi})": int(((lo <= x) & (x < hi)).sum()) for lo, hi in ((0, 18), (18, 65), (65, 151))
    }
    got = combine(stats, [sums[c.name] for c in stats.columns()])
    n = len(rows)
    assert got["count"] == n and got["histogram(age;0,18,65,151)"] == [
        sums["n(0<=age<18)"],
        sums["n(18<=age<65)"],
        sums["n(65<=age<151)"],
    ]
    assert got["mean(age)"] == (pytest.approx(x.mean()) if n else None)
    assert got["variance(age)"] == (pytest.approx(x.var(ddof=1), abs=1e-6) if n > 1 else None)
    assert got["std(exams(57698-3,36))"] == (pytest.approx(y.std(ddof=1), abs=1e-6) if n > 1 else None)
    spread = n > 1 and x.std() > 0 and y.std() > 0
    r = got["correlation(age,exams(57698-3,36))"]
    assert r == (pytest.approx(np.corrcoef(x, y)[0, 1], abs=1e-9) if spread else None)


def test_suppression_hides_small_counts():
    stats = Stats((Aggregate("count"), Aggregate("histogram", (Attribute("gender"),))), suppress_below=10)
    assert combine(stats, [9, 3, 12, 0, 10]) == {"count": "<10", "histogram(gender)": ["<10", 12, "<10", 10]}


PEOPLE = [
    patient("a17", age=17, gender=0, exams=((57698, 36),)),
    patient("a18", age=18, gender=1, exams=((57698, 37),)),
    patient("a39", age=39, gender=2, exams=((57698, 1), (57698, 2))),
    patient("a40", age=40, gender=3, exams=((58410, 1),)),
    patient("a64", age=64, gender=1, exams=((57698, 0), (57698, 36), (57698, 5))),
    patient("a65", age=65, gender=0),
    patient("a150", age=150, gender=1, exams=((57698, 3),)),
    patient("a0", age=0, gender=1),
]
EDGES = Stats(
    (
        Aggregate("count"),
        Aggregate("histogram", (AGE,), (0, 18, 40, 65, 151)),
        Aggregate("histogram", (EXAMS,), (0, 1, 2, 4)),
        Aggregate("histogram", (Attribute("gender"),)),
        Aggregate("mean", (EXAMS,)),
        Aggregate("correlation", (AGE, EXAMS)),
        Aggregate("std", (AGE,)),
    )
)


@pytest.fixture
def edges_population():
    return encode(PEOPLE, Padding(2, 3))


def test_the_oracle_on_the_bins_edges(edges_population):
    q = Query(AgeRange(-1, 151), Output.STATS, "all", EDGES)
    got = cohort(q, edges_population).released(EDGES)
    assert got["count"] == 8
    assert got["histogram(age;0,18,40,65,151)"] == [2, 2, 2, 2]
    assert got["histogram(exams(57698-3,36);0,1,2,4)"] == [4, 2, 2]  # a64 fills its 3 slots
    assert got["histogram(gender)"] == [2, 4, 1, 1]
    assert got["mean(exams(57698-3,36))"] == pytest.approx(7 / 8)


def test_mpyc_sums_on_the_edges_in_process(edges_population, tmp_path):
    q = Query(AgeRange(-1, 151), Output.STATS, "all", EDGES)
    assert mpyc_inprocess.run("shamir", q, edges_population, tmp_path) == list(
        cohort(q, edges_population).sums
    )


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(trees, stats_outputs)
def test_random_stats_queries_equal_the_oracle_in_process(tmp_path, tree, stats):
    pop = synthetic.generate(40, seed=3, padding=Padding(4, 4), truncate=True)
    q = Query(tree, Output.STATS, "rnd", stats)
    assert mpyc_inprocess.run("shamir", q, pop, tmp_path / "run") == list(cohort(q, pop).sums)


def _config(tmp_path: Path, **top) -> Path:
    cfg = tmp_path / "stats.yaml"
    data = {
        "name": "stats",
        "query": str(QUERY),
        "populations": ["synthetic:120"],
        "padding": {"conditions": 8, "exams": 16},
        "truncate": True,
        "engines": [{"engine": "mpyc", "protocol": "shamir", "parties": 3}, {"engine": "plain"}],
        "networks": ["loopback"],
        "repeats": 1,
        "warmup": 0,
        **top,
    }
    cfg.write_text(yaml.safe_dump(data))
    return cfg


def test_every_party_learns_the_sums_and_only_them(tmp_path):
    """Three MPyC party processes: each result file holds the oracle's sums, and the
    record the oracle's aggregates."""
    out = tmp_path / "r.jsonl"
    cli_run(_config(tmp_path), out)
    mpyc, plain = [r for r in records.read(out) if not r.warmup]
    assert mpyc.correct and plain.correct, (mpyc.error, plain.error)
    assert mpyc.stats == plain.stats and list(mpyc.stats) == NAMES
    assert mpyc.cohort_size == mpyc.stats["count"]
    learnt = [json.loads(p.read_text())["result"] for p in sorted(Path(mpyc.logs).rglob("result-*.json"))]
    assert len(learnt) == 3 and all(r == learnt[0] for r in learnt)
    q, _ = load_query(QUERY)
    pop = synthetic.generate(120, padding=Padding(8, 16), truncate=True)
    assert learnt[0] == list(cohort(q, pop).sums) and not any(math.isnan(v) for v in learnt[0])


def test_by_site_without_sites_is_one_clear_error(tmp_path, monkeypatch, capsys):
    query = yaml.safe_load(QUERY.read_text())
    query["output"]["by_site"] = True
    (tmp_path / "q.yaml").write_text(yaml.safe_dump(query))
    cfg = _config(tmp_path, query=str(tmp_path / "q.yaml"))
    code, err = run_cli(monkeypatch, capsys, "run", cfg, "--out", tmp_path / "r.jsonl", "--dry-run")
    assert code == 2 and "by_site" in err and "sites" in err and "Traceback" not in err, err


# -- differential privacy ---------------------------------------------------------------


def _chi_square_p(samples: list[int], pmf: Callable[[int], float]) -> float:
    """p-value of a chi-square test of integer samples against a pmf (tails pooled so that
    every cell expects at least 5)."""
    n = len(samples)
    counts = Counter(samples)
    lo, hi = min(samples), max(samples)
    cells, observed, expected = [], [], []
    for x in range(lo, hi + 1):
        cells.append(x)
        observed.append(counts.get(x, 0))
        expected.append(n * pmf(x))
    tail = 1 - sum(expected) / n
    obs, exp = [], []
    acc_o = acc_e = 0.0
    for o, e in zip(observed, expected):
        acc_o, acc_e = acc_o + o, acc_e + e
        if acc_e >= 5:
            obs.append(acc_o)
            exp.append(acc_e)
            acc_o = acc_e = 0.0
    obs[-1] += acc_o
    exp[-1] += acc_e + n * tail
    return float(scipy.stats.chisquare(obs, exp).pvalue)


def _gaussian_pmf(variance: float) -> Callable[[int], float]:
    span = range(-int(40 * math.sqrt(variance)) - 2, int(40 * math.sqrt(variance)) + 3)
    norm = sum(math.exp(-(k * k) / (2 * variance)) for k in span)
    return lambda x: math.exp(-(x * x) / (2 * variance)) / norm


def _laplace_pmf(scale: float) -> Callable[[int], float]:
    a = math.exp(-1 / scale)
    return lambda x: (1 - a) / (1 + a) * a ** abs(x)


SAMPLES = 10_000


@pytest.mark.parametrize("variance", [Fraction(1, 4), Fraction(9, 4), Fraction(400)])
def test_discrete_gaussian_sampler_has_its_distribution(variance):
    rng = random.Random(20261203)
    samples = [noise.discrete_gaussian(variance, rng) for _ in range(SAMPLES)]
    assert _chi_square_p(samples, _gaussian_pmf(float(variance))) > 0.001


@pytest.mark.parametrize("scale", [Fraction(1, 2), Fraction(7, 2), Fraction(30)])
def test_discrete_laplace_sampler_has_its_distribution(scale):
    rng = random.Random(20261204)
    samples = [noise.discrete_laplace(scale, rng) for _ in range(SAMPLES)]
    assert _chi_square_p(samples, _laplace_pmf(float(scale))) > 0.001


def test_two_honest_gaussian_shares_add_up_to_the_whole_noise():
    """Two shares of variance s^2 / 2 sum to the discrete Gaussian of variance s^2 (to
    within Kairouz et al.'s tau, far below what 10^4 samples can see)."""
    rng, scale = random.Random(7), Fraction(6)
    samples = [sum(noise.share(noise.GAUSSIAN, scale, 2, rng) for _ in range(2)) for _ in range(SAMPLES)]
    assert _chi_square_p(samples, _gaussian_pmf(36.0)) > 0.001


def test_a_wrong_distribution_is_rejected():
    """The test itself can fail: a Laplace sample is no Gaussian of the same variance."""
    rng = random.Random(3)
    samples = [noise.discrete_laplace(Fraction(3), rng) for _ in range(SAMPLES)]
    variance = sum(x * x for x in samples) / SAMPLES
    assert _chi_square_p(samples, _gaussian_pmf(variance)) < 1e-6


DP_STATS = Stats(
    (Aggregate("count"), Aggregate("mean", (AGE,)), Aggregate("histogram", (Attribute("gender"),))),
    dp=Privacy(1.0, 1e-6),
)


def test_the_plan_spends_the_query_epsilon_split_evenly():
    g = privacy.plan(DP_STATS, 16, 3, 1)
    assert g.honest == 2 and g.epsilon == pytest.approx(1.0, abs=1e-6) and g.epsilon <= 1.0 + 1e-9
    by_name = {tuple(c.name for c in r.columns): r for r in g.releases}
    assert by_name[("n(gender=0)", "n(gender=1)", "n(gender=2)", "n(gender=3)")].sensitivity == 1
    assert by_name[("sum(age)",)].sensitivity == 150
    assert by_name[("sum(age)",)].scale == pytest.approx(150 * float(by_name[("n",)].scale), rel=1e-6)
    laplace = privacy.plan(replace(DP_STATS, dp=Privacy(2.0, 0.0, "discrete-laplace")), 16, 3, 2)
    assert laplace.honest == 1 and laplace.epsilon == pytest.approx(2.0) and laplace.delta == 0
    assert [float(r.scale) for r in laplace.releases] == pytest.approx(
        [1.5, 1.5, 225.0]
    )  # 3 releases, 2/3 each


def test_weights_split_the_epsilon_in_proportion():
    """mean(age) weighs 2: the count and sum(age) it needs get 2/5 of epsilon each, the
    gender histogram 1/5; the whole still spends the query's epsilon; the weights round-trip."""
    weighted = Privacy(2.0, 0.0, "discrete-laplace", (("mean(age)", 2.0),))
    g = privacy.plan(replace(DP_STATS, dp=weighted), 16, 1, 0)
    scales = {r.columns[0].name: float(r.scale) for r in g.releases}
    assert scales == pytest.approx({"n(gender=0)": 2.5, "n": 1.25, "sum(age)": 187.5})
    assert g.epsilon == pytest.approx(2.0) and g.record()["weights"] == {"mean(age)": 2.0}
    text = yaml.safe_dump(
        {
            "criteria": {"smoker": 0},
            "output": {"stats": ["count"], "dp": {"epsilon": 1.0, "delta": 1e-6, "weights": {"count": 3}}},
        }
    )
    q, _ = parse_query(yaml.safe_load(text), "q.yaml")
    assert q.stats is not None and q.stats.dp is not None and q.stats.dp.weights == (("count", 3.0),)
    assert Stats.from_plain(q.stats.to_plain()) == q.stats
    assert "weights" not in json.dumps(
        DP_STATS.to_plain()
    )  # the hash of a query without weights is unchanged


def test_released_noise_over_repeated_secure_runs_has_its_mean_and_spread(edges_population, tmp_path):
    """30 runs of MPyC's secure sums with one party's noise: the released count's error
    has mean ~0 and the discrete Gaussian's standard deviation."""
    stats = Stats((Aggregate("count"),), dp=Privacy(1.0, 1e-6))
    q = Query(AgeRange(-1, 151), Output.STATS, "all", stats)
    (release,) = privacy.plan(stats, 3, 1, 0).releases
    job = {"mechanism": "discrete-gaussian", "scales": [str(release.scale)], "honest": 1}
    errors = [
        mpyc_inprocess.run("shamir", q, edges_population, tmp_path / f"r{i}", noise=job)[0] - 8
        for i in range(30)
    ]
    sd = float(
        release.scale
    )  # bounds at 4-5 standard errors: a false alarm ~1e-5, half or twice the noise fails
    assert abs(np.mean(errors)) < 4.5 * sd / math.sqrt(30)
    assert 0.45 * sd < np.std(errors, ddof=1) < 1.6 * sd


def test_the_noise_free_sums_equal_the_oracle(tmp_path):
    """Three parties noise a release; in the tests' debug path each also writes its shares:
    the release minus every share is the oracle's exact sums, and every party learnt the
    same release."""
    query = yaml.safe_load(QUERY.read_text())
    query["output"]["dp"] = {"epsilon": 1.0, "delta": 1e-6}
    (tmp_path / "q.yaml").write_text(yaml.safe_dump(query))
    out = tmp_path / "r.jsonl"
    env = {**os.environ, "COHORTBENCH_DEBUG_NOISE": "1"}
    cfg = _config(
        tmp_path,
        query=str(tmp_path / "q.yaml"),
        engines=[{"engine": "mpyc", "parties": 3}],
        budget="unlimited",
    )
    cli_run(cfg, out, env=env)
    (rec,) = [r for r in records.read(out) if not r.warmup]
    assert rec.correct and rec.dp["honest_shares"] == 2 and rec.dp["epsilon_spent"] <= 1.0 + 1e-9, rec.error
    run_dir = Path(rec.logs)
    learnt = [json.loads(p.read_text())["result"] for p in sorted(run_dir.glob("result-*.json"))]
    shares = [json.loads(p.read_text()) for p in sorted(run_dir.glob("noise-*.json"))]
    assert len(learnt) == 3 == len(shares) and all(r == learnt[0] for r in learnt)
    q, _ = load_query(tmp_path / "q.yaml")
    pop = synthetic.generate(120, padding=Padding(8, 16), truncate=True)
    noise_free = [released - sum(s) for released, *s in zip(learnt[0], *shares)]
    assert noise_free == list(cohort(q, pop).sums) and learnt[0] != noise_free


# -- the privacy budget -----------------------------------------------------------------


def _dp_config(tmp_path: Path, budget: object, repeats: int = 1) -> Path:
    query = yaml.safe_load(QUERY.read_text())
    query["output"]["dp"] = {"epsilon": 1.0, "delta": 1e-6}
    (tmp_path / "q.yaml").write_text(yaml.safe_dump(query))
    return _config(
        tmp_path,
        query=str(tmp_path / "q.yaml"),
        engines=[{"engine": "mpyc", "parties": 3}],
        repeats=repeats,
        **({} if budget is None else {"budget": budget}),
    )


def test_an_over_budget_sweep_is_refused_before_any_party_starts(tmp_path, monkeypatch, capsys):
    """1 repeat + the rounds calibration = 2 runs of epsilon 1: a budget of 1.5 refuses
    the sweep whole; 2.5 runs it, charging both runs, and then refuses a second sweep."""
    out = tmp_path / "r.jsonl"
    cfg = _dp_config(tmp_path, {"epsilon": 1.5, "delta": 1e-5})
    code, err = run_cli(monkeypatch, capsys, "run", cfg, "--out", out)
    flat = " ".join(err.split())
    assert code == 2 and "would spend epsilon 2" in flat and "only epsilon 1.5" in flat, err
    assert not out.exists() and not (tmp_path / "privacy-ledger.jsonl").exists()
    cfg = _dp_config(tmp_path, {"epsilon": 2.5, "delta": 1e-5})
    cli_run(cfg, out)
    (rec,) = records.read(out)
    assert rec.correct and rec.budget == {"epsilon": 2.5, "delta": 1e-5}
    assert rec.budget_spent == pytest.approx({"epsilon": 2.0, "delta": 2e-6})
    book = ledger.Ledger(tmp_path / "privacy-ledger.jsonl")
    assert [e["run"] for e in book.entries] == ["repeat-0", "rounds-1"]
    code, err = run_cli(monkeypatch, capsys, "run", cfg, "--out", tmp_path / "again.jsonl")
    assert code == 2 and "only epsilon 0.5" in " ".join(err.split()), err
    code, _ = run_cli(
        monkeypatch, capsys, "budget", "synthetic:120", "--ledger", tmp_path / "privacy-ledger.jsonl"
    )
    assert code == 0


def test_a_dp_query_needs_a_budget_and_unlimited_is_recorded(tmp_path, monkeypatch, capsys):
    code, err = run_cli(monkeypatch, capsys, "run", _dp_config(tmp_path, None), "--out", tmp_path / "r.jsonl")
    assert code == 2 and "budget" in err and "unlimited" in err, err
    out = tmp_path / "u.jsonl"
    cli_run(_dp_config(tmp_path, "unlimited"), out)
    (rec,) = records.read(out)
    assert rec.correct and rec.budget == "unlimited" and rec.budget_spent is None
    assert not (tmp_path / "privacy-ledger.jsonl").exists()


def test_the_ledger_survives_a_kill_9_mid_sweep(tmp_path):
    """A sweep killed with SIGKILL while its parties run: every run that started is in
    the ledger (charged before its parties), the ledger reads back, and the spend counts
    against the next sweep."""
    out = tmp_path / "r.jsonl"
    cfg = _dp_config(tmp_path, {"epsilon": 100.0, "delta": 1e-3}, repeats=20)
    book = tmp_path / "privacy-ledger.jsonl"
    argv = [sys.executable, "-m", "harness.cli", "run", str(cfg), "--out", str(out)]
    p = subprocess.Popen(
        argv, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and (not book.exists() or len(book.read_text().splitlines()) < 3):
        time.sleep(0.05)
    os.killpg(p.pid, signal.SIGKILL)
    p.wait()
    started = [d for d in out.with_suffix(".runs").glob("*/*") if d.is_dir() and any(d.iterdir())]
    entries = ledger.Ledger(book).entries
    assert len(entries) >= 3 and len(entries) >= len(started), (len(entries), started)
    assert {d.name for d in started} <= {e["run"] for e in entries}
    assert ledger.Ledger(book).spent("synthetic:120").epsilon == pytest.approx(len(entries))


# -- accuracy ---------------------------------------------------------------------------


def noise_record(epsilon: float, noise: int, scale: float) -> Record:
    return Record.from_json(
        {
            "config": "acc",
            "cell": f"c{epsilon}",
            "engine": "mpyc",
            "protocol": "shamir",
            "parties": 3,
            "repeat": 0,
            "warmup": False,
            "wall_s": 1.0,
            "cohort_size": None,
            "correct": True,
            "error": None,
            "dp": {
                "mechanism": "discrete-gaussian",
                "epsilon": epsilon,
                "parties": 3,
                "honest_shares": 2,
                "scale": {"n": scale},
            },
            "dp_error": {"n": noise},
        }
    )


def test_accuracy_points_against_opendp():
    """The empirical 95% error of Gaussian noise of the realised scale is OpenDP's within
    sampling error, and a noise twice as wide is not."""
    rng = np.random.default_rng(5)
    realised = 10.0 * math.sqrt(3 / 2)  # three shares of variance 100 / 2
    recs = [noise_record(1.0, int(round(x)), 10.0) for x in rng.normal(0, realised, 4000)]
    recs += [noise_record(2.0, int(round(x)), 10.0) for x in rng.normal(0, 2 * realised, 4000)]
    one, two = accuracy.points(recs)
    assert one.runs == 4000 and one.stated == pytest.approx(
        dp.discrete_gaussian_scale_to_accuracy(realised, 0.05)
    )
    assert one.ratio == pytest.approx(1.0, abs=0.08) and two.ratio == pytest.approx(2.0, abs=0.16)


def test_the_epsilon_axis_and_the_benchmark_noise(tmp_path):
    """`epsilons` makes one cell per epsilon; budget unlimited records each sum's noise."""
    cfg = _config(
        tmp_path,
        query={
            "name": "c",
            "output": {"stats": ["count"], "dp": {"epsilon": 1.0, "delta": 1e-6}},
            "criteria": {"smoker": "never"},
        },
        engines=[{"engine": "mpyc", "parties": 3}],
        epsilons=[0.5, 4],
        budget="unlimited",
        rounds_calibration=False,
    )
    out = tmp_path / "r.jsonl"
    cli_run(cfg, out)
    recs = records.read(out)
    assert sorted(r.dp["epsilon"] for r in recs) == [0.5, 4] and all(r.correct for r in recs)
    assert sorted(r["query"]["name"] for r in recs) == ["c eps=0.5", "c eps=4"]
    assert all(set(r.dp_error) == {"n"} and r.stats["count"] - r.dp_error["n"] >= 0 for r in recs)
