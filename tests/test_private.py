"""Private criteria (issue 15) on MPyC: a query's constants as a researcher's secret
input, its shape public.  The template and its constants against the oracle; every
secret node type on boundary patients, in party processes and in this process; random
trees (hypothesis); the same messages, in number and size per link, for two queries
that differ only in their constants; who learns what with an extra researcher; and
the config's errors.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from hypothesis import HealthCheck, given, settings

import mpyc_inprocess
from circuits import secret
from circuits.codes import EXAM_VOCABULARY
from circuits.cost import DataBounds
from circuits.ir import AgeRange, And, ExamCount, Gender, HasCondition, Not, Or, Query, Smoker, leaves
from circuits.oracle import Oracle, cohort
from circuits.population import Padding, encode
from conftest import REPO, cli_run, patient, run_cli
from harness.analysis import records
from harness.data import synthetic
from test_queryfile import trees

# Patients on both sides of every constant of BOUNDARY's leaves.
PEOPLE = [
    patient("age30", age=30),
    patient("age31", age=31),
    patient("age69", age=69),
    patient("age70", age=70),
    *(patient(f"gender{g}", gender=g) for g in range(4)),
    *(patient(f"smoker{s}", smoker=s) for s in range(4)),
    patient("lipid", conditions=(55822004,)),
    patient("hyper", conditions=(38341003, 68496003)),
    patient("polyp", conditions=(68496003,)),
    patient("exam-at-36", exams=((57698, 36),)),
    patient("exam-at-37", exams=((57698, 37),)),
    patient("two-exams", exams=((57698, 1), (57698, 36))),
    patient("other-exam", exams=((58410, 1), (58410, 2))),
    patient("none"),
]
LEAVES = [
    AgeRange(30, 70),
    Gender(2),
    Smoker(1),
    HasCondition((55822004, 38341003)),
    ExamCount(57698, 2, 36),
    ExamCount(58410, 1, 1),
]


@pytest.fixture
def boundary():
    return encode(PEOPLE, Padding(3, 3))


def expected(query: Query, pop) -> list[int]:
    return cohort(query, pop).eligible.astype(int).tolist()


def test_the_template_with_its_constants_is_the_query(boundary):
    for leaf in LEAVES:
        for root in (leaf, Not(leaf), Or((leaf, Gender(0)))):
            hidden = secret.hide(Query(root), DataBounds.of(boundary), 3, max_codes=4)
            got = Oracle(boundary, constants=hidden.constants).visit(hidden.template.root)
            assert got.astype(int).tolist() == expected(Query(root), boundary), root


def test_two_queries_of_one_shape_share_their_template():
    a = And((AgeRange(30, 70), HasCondition((55822004,)), ExamCount(57698, 1, 36)))
    b = And((AgeRange(1, 9), HasCondition((68496003, 38341003)), ExamCount(58410, 4, 2)))
    ha, hb = (secret.hide(Query(q), DataBounds(), 6, max_codes=3) for q in (a, b))
    assert ha.template.ir_hash == hb.template.ir_hash and ha.constants != hb.constants
    assert secret.constants_count(ha.template.root) == len(ha.constants) == 2 + 3 + 3


def test_padding_codes_match_nothing(boundary):
    bounds = DataBounds.of(boundary)
    hidden = secret.hide(Query(HasCondition((55822004,))), bounds, 3, max_codes=5)
    pad = secret.condition_pad(bounds)
    assert hidden.constants == (55822004, pad, pad, pad, pad)
    assert pad > int(boundary.conditions.max()) and not np.isin(boundary.conditions, [pad]).any()
    only_padding = Oracle(boundary, constants=(pad,) * 5).visit(hidden.template.root)
    assert not only_padding.any()  # padding alone selects no one, not even empty slots
    too_big = secret.hide(Query(HasCondition((10**17 + 1,))), bounds, 3)
    assert too_big.constants == (pad,)  # a code above the public bound is the pad


def test_hide_refuses_what_it_cannot_hide():
    with pytest.raises(ValueError, match="max_codes 1 is below the 2 codes"):
        secret.hide(Query(HasCondition((55822004, 38341003))), DataBounds(), 3, max_codes=1)
    with pytest.raises(ValueError, match="not in the public exam vocabulary"):
        secret.hide(Query(ExamCount(2345, 1, 3)), DataBounds(), 3)


@pytest.mark.parametrize("leaf", LEAVES, ids=lambda n: type(n).__name__)
def test_every_secret_node_on_boundary_patients_in_process(leaf, boundary, tmp_path):
    for root in (leaf, Not(leaf)):
        hidden = secret.hide(Query(root), DataBounds.of(boundary), 3, max_codes=3)
        got = mpyc_inprocess.run("shamir", Query(root), boundary, tmp_path, hidden)
        assert got == expected(Query(root), boundary), root


in_vocabulary = trees.filter(
    lambda t: all(not isinstance(x, ExamCount) or x.loinc in EXAM_VOCABULARY for x in leaves(t))
)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(in_vocabulary)
def test_random_private_trees_equal_the_oracle(tmp_path, root):
    pop = synthetic.generate(12, seed=5, padding=Padding(3, 4), truncate=True)
    hidden = secret.hide(Query(root), DataBounds.of(pop), 4, max_codes=3)
    assert mpyc_inprocess.run("shamir", Query(root), pop, tmp_path, hidden) == expected(Query(root), pop)


FIVE = {
    "all": [
        {"smoker": "never"},
        {"not": {"gender": "male"}},
        {"age": {"min_exclusive": 30, "max_exclusive": 80}},
        {"condition": [55822004, 38341003]},
        {"exams": {"loinc": "57698-3", "at_least": 1, "within_months": 36}},
    ]
}
OTHER = {  # the same shape, every constant changed
    "all": [
        {"smoker": "former"},
        {"not": {"gender": "female"}},
        {"age": {"min_exclusive": 10, "max_exclusive": 50}},
        {"condition": [68496003, 15777000]},
        {"exams": {"loinc": "58410-2", "at_least": 3, "within_months": 120}},
    ]
}


def _config(tmp_path: Path, name: str, tree: dict, **extra) -> Path:
    cfg = {
        "name": name,
        "query": {"name": name, "output": "count", "criteria": tree},
        "populations": ["synthetic:30:7"],
        "padding": {"conditions": 3, "exams": 4},
        "truncate": True,
        "engines": [{"engine": "mpyc", "parties": 4, "criteria": "private", "max_codes": 3}],
        "networks": ["lan"],
        "repeats": 1,
        "warmup": 0,
        **extra,
    }
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def test_two_private_queries_send_the_same_messages(tmp_path):
    """Two queries of one shape: every party but the researcher is handed the same job
    (the same template, nothing of the constants), and the runs take the same rounds and
    the same bytes on every link.  MPyC's own byte counts vary by a few tens of bytes
    between two runs of one query (README), so bytes agree to 0.1 %; rounds exactly."""
    runs, jobs = {}, {}
    for name, tree in (("five", FIVE), ("other", OTHER)):
        out = tmp_path / f"{name}.jsonl"
        cli_run(_config(tmp_path, name, tree), out)
        (rec,) = [r for r in records.read(out) if not r.warmup]
        assert rec.correct and rec.criteria == "private" and rec.researcher == 3, rec.error
        runs[name] = rec
        (job,) = Path(rec.logs).rglob("job.json")
        jobs[name] = {k: v for k, v in json.loads(job.read_text()).items() if not k.endswith("path")}
    a, b = runs["five"], runs["other"]
    assert a.query["ir_hash"] != b.query["ir_hash"] and jobs["five"] == jobs["other"]
    assert "55822004" not in json.dumps(jobs["five"]) and jobs["five"]["constants"] == 2 + 1 + 1 + 3 + 3
    assert a.rounds == b.rounds and a.rounds is not None
    for row_a, row_b in zip(a.bytes_by_link, b.bytes_by_link):
        # MPyC's own counts vary by tens of bytes between runs of one query (a 40 kB link: 0.14 %)
        assert all(abs(x - y) <= max(0.001 * max(x, y), 256) for x, y in zip(row_a, row_b)), (row_a, row_b)


GROUPS_AT = {"demographics": 0, "conditions": 1, "exams": 2}


@pytest.mark.parametrize("deployment", ["patient", "rows", "columns"])
def test_every_party_learns_what_the_query_reveals(deployment, tmp_path):
    """Eligible bits with an extra researcher: the data holder (or each site, or
    reveal_to) learns its bits, the researcher nothing; every party's result file read."""
    sites = {
        "patient": "patient",
        "rows": {"sites": 3, "partition": "rows", "assign": "round-robin"},
        "columns": {
            "sites": 3,
            "partition": "columns",
            "columns": {"demographics": 0, "conditions": 1, "exams": 2},
        },
    }[deployment]
    cfg = _config(tmp_path, deployment, FIVE, deployments=[sites], networks=["loopback"])
    data = yaml.safe_load(cfg.read_text())
    data["query"]["output"] = "eligible"
    if deployment != "patient":
        del data["engines"][0]["parties"]  # sites plus the researcher
    cfg.write_text(yaml.safe_dump(data))
    out = tmp_path / "r.jsonl"
    cli_run(cfg, out)
    (rec,) = [r for r in records.read(out) if not r.warmup]
    assert rec.correct and rec.parties == 4 and rec.researcher == 3, rec.error
    results = sorted(Path(rec.logs).rglob("result-*.json"))
    learnt = {int(p.stem.split("-")[1]): json.loads(p.read_text())["result"] for p in results}
    assert set(learnt) == {0, 1, 2, 3} and learnt[3] is None
    holders = {"patient": [0], "rows": [0, 1, 2], "columns": [0]}[deployment]
    assert all((learnt[p] is not None) == (p in holders) for p in range(3))


BAD = [
    ({"researcher": 5, "parties": 3}, "engines[0].researcher: 5 is not a party of 3"),
    ({"max_codes": 1}, "engines[0].max_codes: mpyc/shamir/4p private(r=extra): max_codes 1 is below"),
    ({"protocol": "paper-loop"}, "which MPyC paper-loop cannot take"),
]


@pytest.mark.parametrize("change, says", BAD)
def test_bad_private_settings_are_one_clear_error(change, says, tmp_path, monkeypatch, capsys):
    cfg = _config(tmp_path, "bad", FIVE)
    data = yaml.safe_load(cfg.read_text())
    data["engines"][0].update(change)
    cfg.write_text(yaml.safe_dump(data))
    code, err = run_cli(monkeypatch, capsys, "run", cfg, "--out", tmp_path / "r.jsonl", "--dry-run")
    assert code == 2 and says in " ".join(err.split()) and "Traceback" not in err, err


def test_the_experiment_sets_the_engines_criteria(tmp_path, monkeypatch, capsys):
    cfg = _config(tmp_path, "top", FIVE, criteria="private", max_codes=1)
    data = yaml.safe_load(cfg.read_text())
    data["engines"] = [{"engine": "mpyc", "parties": 4}, {"engine": "plain"}]
    cfg.write_text(yaml.safe_dump(data))
    code, err = run_cli(monkeypatch, capsys, "run", cfg, "--out", tmp_path / "r.jsonl", "--dry-run")
    assert code == 2 and "engines[0].max_codes" in err, err  # the plain oracle takes no criteria keys


def test_check_private_counts_the_selections():
    query = REPO / "configs/queries/five-criteria.yaml"
    argv = [sys.executable, "-m", "harness.cli", "check", str(query), "--private", "--max-codes", "4"]
    p = subprocess.run(argv, capture_output=True, text=True, cwd=REPO, env={"COLUMNS": "200", **os.environ})
    assert p.returncode == 0 and "11 secret constants" in p.stdout, p.stderr
    private = next(line for line in p.stdout.splitlines() if "│ private" in line)
    assert [int(x) for x in private.split("│")[2:-1]] == [35, 1, 296, 34, 10, 12]
