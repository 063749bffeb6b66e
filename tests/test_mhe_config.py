"""MHE cells that cannot be: one clear error and exit 2 when the config loads (run and dry
run), or Unavailable with its reason when the cell is prepared; `cohortbench doctor`'s
account of the MHE interpreter.  No party runs here: nothing skips.
"""

from __future__ import annotations

import json
import sys

import pytest
import yaml

from backends.mhe import interpreter, sums
from backends.mhe.engine import MheSpec
from backends.mhe.params import depth
from backends.mhe.sums import Factor
from circuits.holdings import Holdings, Partition
from circuits.ir import AgeRange, And, Gender, Output, Query, Smoker
from circuits.population import Padding
from circuits.locality import split
from circuits.stats import AGE, Aggregate, Attribute, Cross, Ones, Power, Stats
from conftest import REPO, refused, run_cli
from harness.data import synthetic
from harness.run.runner import CellRunner

COLUMNS = {"sites": 3, "partition": "columns", "columns": {"demographics": 0, "conditions": 1, "exams": 2}}
ROWS = {"sites": 3, "partition": "rows"}
FIVE = yaml.safe_load((REPO / "configs" / "queries" / "five-criteria.yaml").read_text())
BASE = {
    "name": "mhe-bad",
    "query": {**FIVE, "output": "count"},
    "populations": ["synthetic:12"],
    "repeats": 1,
    "warmup": 0,
}
# (config, the field the error names, what it says): each also in tests/test_fuzz.py's corpus
BAD = [
    (  # the patient deployment (deployments omitted): no sites to hold the key shares
        {**BASE, "engines": [{"engine": "mhe"}]},
        "deployments[0]",
        "engines[0] (mhe/bfv/2p) runs only where sites hold the data, but deployments[0] is patient",
    ),
    (
        {
            **BASE,
            "engines": [{"engine": "mhe", "protocol": "bfv-flood", "parties": 4}],
            "deployments": [ROWS],
        },
        "engines[0].parties",
        "mhe/bfv-flood/4p has 4 parties, but deployments[0] has 3 sites",
    ),
    (  # the five criteria across three sites need depth 2; 4,096 takes none
        {**BASE, "engines": [{"engine": "mhe", "ring_dimension": 4096}], "deployments": [COLUMNS]},
        "engines[0]",
        "the query needs multiplicative depth 2, but bfv at ring dimension 4096 takes depth 0 at most",
    ),
    (  # noise flooding needs 8,192 even for a sum
        {
            **BASE,
            "engines": [{"engine": "mhe", "protocol": "bfv-flood", "ring_dimension": 4096}],
            "deployments": [ROWS],
        },
        "engines[0]",
        "bfv-flood at ring dimension 4096 takes no circuit at all; use ring_dimension: 8192 or more",
    ),
    (  # private criteria with a condition and an exam: no public domain of useful size
        {**BASE, "engines": [{"engine": "mhe", "criteria": "private"}], "deployments": [ROWS]},
        "engines[0]",
        "private criteria under MHE take age, gender and smoking status only",
    ),
]


@pytest.mark.parametrize("dry_run", [True, False], ids=["dry-run", "run"])
@pytest.mark.parametrize("case", BAD, ids=lambda c: c[1] + ": " + c[2][:40])
def test_one_clear_error_and_exit_2(tmp_path, monkeypatch, capsys, case, dry_run):
    body, field, says = case
    said = refused(monkeypatch, capsys, tmp_path, body, dry_run)
    assert f"{field}: " in said and says in said, said


def test_a_reachable_depth_is_accepted(tmp_path, monkeypatch, capsys):
    body = {**BASE, "engines": [{"engine": "mhe", "ring_dimension": 8192}], "deployments": [COLUMNS, ROWS]}
    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml.safe_dump(body))
    code, err = run_cli(monkeypatch, capsys, "run", cfg, "--out", tmp_path / "r.jsonl", "--dry-run")
    assert code == 0, err


TREE = And((Smoker(0), Gender(1), AgeRange(30, 70)))
UNAVAILABLE = [  # (query, holdings, what the cell says)
    (
        Query(TREE, Output.COUNT),
        Holdings(Partition.ROWS, 3, tuple(i % 3 for i in range(12)), local=False),
        "local: off needs comparisons on encrypted raw columns",
    )
]


EXAMS = Attribute("exams", 57698, 60)
FACTORS = [  # (aggregate, demographics' site, exams' site, one of its sums, that sum's factors)
    (Aggregate("count"), 0, 2, Ones(), ()),
    (Aggregate("mean", (AGE,)), 0, 2, Power(AGE, 1), (Factor(0, Power(AGE, 1)),)),
    (Aggregate("correlation", (AGE, EXAMS)), 0, 0, Cross(AGE, EXAMS), (Factor(0, Cross(AGE, EXAMS)),)),
    (
        Aggregate("correlation", (AGE, EXAMS)),
        0,
        2,
        Cross(AGE, EXAMS),
        (Factor(0, Power(AGE, 1)), Factor(2, Power(EXAMS, 1))),
    ),
]


@pytest.mark.parametrize("case", FACTORS, ids=lambda c: f"{c[0].name}-{c[1]}{c[2]}")
def test_each_sum_under_columns_is_the_bits_times_its_holders_factors(case):
    """One factor per sum where one site holds its attributes, one per site across two
    sites, none for the count; the depth grows by one level per product."""
    aggregate, demographics, exams, column, want = case
    groups = {"demographics": demographics, "conditions": 1, "exams": exams}
    stats = Stats((aggregate,))
    plan = split(Query(TREE, Output.STATS, stats=stats), Holdings(Partition.COLUMNS, 3, (), groups))
    by_column = dict(zip(stats.released(3), sums.factors(plan)))
    assert by_column[column] == want
    assert all(len(f) == (not isinstance(c, Ones)) for c, f in by_column.items() if not isinstance(c, Cross))
    remainder = depth(plan.secure)
    assert sums.extra_depth(want, remainder) == (max(remainder, len(want) - 1) + 1 if want else remainder)


@pytest.mark.parametrize("case", UNAVAILABLE, ids=lambda c: c[2][:30])
def test_what_is_not_lowered_is_unavailable(tmp_path, case):
    query, holdings, says = case
    pop = synthetic.generate(12, seed=1, padding=Padding(2, 2), truncate=True)
    runner = CellRunner(MheSpec(engine="mhe", parties=3), query, pop, tmp_path, holdings)
    assert runner.cell is None and runner.unavailable is not None and says in runner.unavailable
    assert runner.run("r0", 10).error == runner.unavailable


def test_no_interpreter_makes_the_cell_unavailable_and_the_doctor_says_the_fix(tmp_path, monkeypatch, capsys):
    missing = tmp_path / "no-python"
    monkeypatch.setenv(interpreter.ENV, str(missing))
    pop = synthetic.generate(12, seed=1, padding=Padding(2, 2), truncate=True)
    holdings = Holdings(Partition.ROWS, 3, tuple(i % 3 for i in range(12)))
    runner = CellRunner(MheSpec(engine="mhe", parties=3), Query(TREE, Output.COUNT), pop, tmp_path, holdings)
    assert runner.cell is None and f"no MHE interpreter at ${interpreter.ENV} ({missing})" in str(
        runner.unavailable
    )
    assert "make install" in str(runner.unavailable)
    mhe = _doctor_findings(monkeypatch, capsys)
    assert [(f["item"], f["ok"]) for f in mhe] == [("interpreter", False)]
    assert interpreter.ENV in mhe[0]["fix"] and "make install" in mhe[0]["fix"]


def test_the_doctor_lists_the_interpreter(monkeypatch, capsys):
    monkeypatch.delenv(interpreter.ENV, raising=False)
    found = interpreter.find()
    [finding] = _doctor_findings(monkeypatch, capsys)
    assert finding["ok"] == found.ok
    if found.ok:
        assert f"openfhe {found.openfhe}" in finding["detail"] and str(found.path) in finding["detail"]
    only = _doctor_findings(monkeypatch, capsys, "--engine", "mhe", engine=None)
    assert {f["engine"] for f in only} == {"MHE", "TLS", "harness"}


def _doctor_findings(monkeypatch, capsys, *argv: str, engine: str | None = "MHE") -> list[dict]:
    """`cohortbench doctor --json ARGV`'s findings (of `engine`, None: all)."""
    from harness import cli

    monkeypatch.setattr(sys, "argv", ["cohortbench", "doctor", "--json", *argv])
    with pytest.raises(SystemExit):
        cli.main()
    return [f for f in json.loads(capsys.readouterr().out) if engine in (None, f["engine"])]


def test_an_unavailable_cell_is_recorded_and_is_not_a_failure(tmp_path, monkeypatch, capsys):
    """A cell the engine cannot run (MHE under local: off) beside one it can (the plain
    engine): both recorded, the first `unavailable` with its reason; `run` exits 0 and says
    how many were unavailable."""
    body = {
        **BASE,
        "engines": [{"engine": "mhe"}, {"engine": "plain"}],
        "deployments": [{**ROWS, "local": "off"}],
        "rounds_calibration": False,
    }
    cfg, out = tmp_path / "c.yaml", tmp_path / "r.jsonl"
    cfg.write_text(yaml.safe_dump(body))
    code, err = run_cli(monkeypatch, capsys, "run", cfg, "--out", out)
    assert code == 0, err
    recs = [json.loads(line) for line in out.read_text().splitlines()]
    mhe = [r for r in recs if r["engine"] == "mhe"]
    assert mhe and all(r["unavailable"] is True and "local: off" in r["error"] for r in mhe)
    assert all("unavailable" not in r and r["correct"] for r in recs if r["engine"] == "plain")
    assert f"{len(mhe)} run(s) unavailable" in " ".join(err.split())
