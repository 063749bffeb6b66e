"""`cohortbench run` as a user meets it: its errors, dry run, resume, overrides, progress and Ctrl-C."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from backends.engine import MAX_PARTIES
from harness.analysis import records as results
from harness.run.config import load_experiment
from harness.run.sweep import cells, to_do, warn_contention
from conftest import REPO, patient

CLI = [sys.executable, "-m", "harness.cli"]
QUERY = str(REPO / "configs" / "queries" / "five-criteria.yaml")


def cli(*args: object) -> subprocess.CompletedProcess:
    return subprocess.run([*CLI, *map(str, args)], cwd=REPO, capture_output=True, text=True, timeout=300)


def config(tmp_path: Path, body: str, name: str = "t", file: str = "c.yaml") -> Path:
    p = tmp_path / file
    p.write_text(f"name: {name}\nquery: {QUERY}\nwarmup: 0\ntimeout_s: 60\n{body}\n")
    return p


PLAIN = "populations: [synthetic:10, synthetic:20]\nengines: [{engine: plain}]\nrepeats: 2"


def one_error(r: subprocess.CompletedProcess) -> str:
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
    return r.stderr


@pytest.mark.parametrize(
    "body,says",
    [
        (
            "populations: [synthetic:5]\nengines: [{engine: plain}]\nrepaets: 2",
            "repaets: unknown key 'repaets'; did you mean 'repeats'?",
        ),
        (
            "populations: [synthetic:5]\nengines: [{engine: mpyc, protcol: shamir}]",
            "engines[0].protcol: unknown key 'protcol'; did you mean 'protocol'?",
        ),
        (
            "populations: [synthetic:5]\nengines: [{engine: plain}]\npadding: {conditons: 4}",
            "padding: unknown key 'conditons'; did you mean 'conditions'?",
        ),
    ],
)
def test_unknown_config_key_is_named_with_the_closest(tmp_path, body, says):
    assert says in one_error(cli("run", config(tmp_path, body), "--out", tmp_path / "r.jsonl"))


@pytest.mark.parametrize(
    "text,says",
    [
        ("criteria: {smokr: former}", "criteria: unknown criterion 'smokr'; did you mean 'smoker'?"),
        (
            "criteria: {exams: {loinc: 57698, at_leest: 2, within_months: 12}}",
            "criteria.exams.at_leest: unknown key 'at_leest'; did you mean 'at_least'?",
        ),
        ("critera: {smoker: former}", "critera: not a cohort query: unknown key 'critera'; did you mean"),
    ],
)
def test_unknown_query_key_is_named_with_the_closest(tmp_path, text, says):
    q = tmp_path / "q.yaml"
    q.write_text(text + "\n")
    assert says in one_error(cli("check", q))
    cfg = tmp_path / "c.yaml"
    cfg.write_text("name: t\nquery: q.yaml\npopulations: [synthetic:5]\nengines: [{engine: plain}]\n")
    assert says in one_error(cli("run", cfg, "--out", tmp_path / "r.jsonl", "--dry-run"))


def test_a_protocol_of_another_engine_is_named_as_such(tmp_path):
    cfg = config(
        tmp_path, "populations: [synthetic:5]\nengines: [{engine: mpyc, protocol: malicious-shamir}]"
    )
    said = one_error(cli("run", cfg, "--out", tmp_path / "r.jsonl", "--dry-run"))
    assert "engines[0].protocol: malicious-shamir is an MP-SPDZ protocol (engine: mp-spdz)" in said
    assert "write engine: mp-spdz, or one of MPyC's protocols: shamir, paper-loop" in said


def test_dry_run_loads_the_data_and_reports_every_bound_at_once(tmp_path):
    people = [
        patient("fits", conditions=(55822004,), exams=((57698, 1),)),
        patient("over-both", conditions=(55822004, 68496003, 38341003), exams=((57698, 1),) * 3),
    ]
    (tmp_path / "patients.jsonl").write_text("".join(json.dumps(p.to_json()) + "\n" for p in people))
    body = (
        "populations: [patients.jsonl, synthetic:10]\npadding: {conditions: 2, exams: 2}\n"
        "engines: [{engine: plain}]\nrepeats: 1"
    )
    r = cli("run", config(tmp_path, body), "--out", tmp_path / "r.jsonl", "--dry-run")
    said = one_error(r)
    errors = [line for line in said.splitlines() if line.startswith("error:")]
    assert len(errors) == 4, said  # generated patients follow the same rule as the file's
    expected = [
        "patients.jsonl: 1 patient(s) have more than 2 active conditions",
        "patients.jsonl: 1 patient(s) have more than 2 exams",
        "synthetic:10: 6 patient(s) have more than 2 active conditions",
        "synthetic:10: 8 patient(s) have more than 2 exams",
    ]
    for line, want in zip(errors, expected):
        assert f"padding C=2,E=2, population {want}" in line
    assert "2 cell(s), 2 run(s): 2 to do" in r.stdout  # the plan is still printed


def test_dry_run_counts_the_runs_done_and_to_do_and_overrides_change_them(tmp_path):
    cfg = config(tmp_path, PLAIN)
    out = tmp_path / "r.jsonl"
    assert cli("run", cfg, "--out", out).returncode == 0
    lines = out.read_text().splitlines(keepends=True)
    out.write_text("".join(lines[:3]))  # a sweep stopped after 3 of its 4 runs
    r = cli("run", cfg, "--out", out, "--dry-run")
    assert r.returncode == 0, r.stderr
    assert f"2 cell(s), 4 run(s): 3 done (in {out}), 1 to do" in r.stdout
    assert "estimated time: about" in r.stdout and "1 from earlier runs of the same cell" in r.stdout
    r = cli("run", cfg, "--out", out, "--dry-run", "--repeats", "1")
    assert f"2 cell(s), 2 run(s): 2 done (in {out}), 0 to do" in r.stdout
    r = cli("run", cfg, "--out", out, "--dry-run", "--populations", "synthetic:20,synthetic:30")
    assert f"2 cell(s), 4 run(s): 1 done (in {out}), 3 to do" in r.stdout
    assert out.read_text() == "".join(lines[:3])  # a dry run writes nothing


def test_bad_overrides_name_the_option(tmp_path):
    cfg = config(tmp_path, PLAIN)
    said = one_error(cli("run", cfg, "--out", tmp_path / "r.jsonl", "--engines", "mpyc", "--dry-run"))
    assert "--engines: 'mpyc' matches none of the config's engines (plain/oracle/1p)" in said
    said = one_error(cli("run", cfg, "--out", tmp_path / "r.jsonl", "--populations", "synthetik:5"))
    assert f"{cfg} with --populations: populations[0]: 'synthetik:5' is neither synthetic" in said
    said = one_error(cli("run", cfg, "--out", tmp_path / "r.jsonl", "--networks", "moon"))
    assert f"{cfg} with --networks: networks[0]" in said and "moon" in said


def test_resume_into_another_configs_file_is_refused_unless_forced(tmp_path):
    out = tmp_path / "r.jsonl"
    first = config(tmp_path, PLAIN, "first", "first.yaml")
    second = config(tmp_path, PLAIN.replace("synthetic:20", "synthetic:30"), "second", "second.yaml")
    assert cli("run", first, "--out", out).returncode == 0
    a, b = load_experiment(first).config_hash, load_experiment(second).config_hash
    said = one_error(cli("run", second, "--out", out, "--resume"))
    assert f"{out}: written by another config: 'first' (config hash {a}), not by {second}" in said
    assert f"'second', config hash {b}" in said and "--resume --force" in said
    assert len(results.read(out)) == 4  # nothing written
    assert "written by another config" in one_error(cli("run", second, "--out", out, "--dry-run"))
    r = cli("run", second, "--out", out, "--resume", "--force")
    assert r.returncode == 0, r.stderr
    added = [x for x in results.read(out) if x.config == "second"]
    assert len(added) == 2  # synthetic:30's two runs; synthetic:10's are the same cell, kept
    assert all(x.meta["config_hash"] == b and x.meta["resumed_over"] == [a] for x in added)
    r = cli("run", second, "--out", out, "--resume")  # forced once: the file is this config's too
    assert r.returncode == 0, r.stderr


def test_overrides_are_recorded_and_each_run_prints_a_line(tmp_path):
    body = (
        "populations: [synthetic:20, synthetic:40]\n"
        "engines: [{engine: mpyc, protocol: shamir}, {engine: mpyc, protocol: paper-loop}]\n"
        "networks: [loopback, lan]\nrepeats: 3"
    )
    cfg = config(tmp_path, body)
    out = tmp_path / "r.jsonl"
    flags = ["--populations", "synthetic:20", "--repeats", "1", "--engines", "mpyc/shamir"]
    r = cli("run", cfg, "--out", out, *flags, "--networks", "loopback")
    assert r.returncode == 0, r.stderr
    [record] = results.read(out)
    assert record.correct and record.protocol == "shamir" and record.population == 20
    assert record.meta["overrides"] == {
        "repeats": 1,
        "populations": ["synthetic:20"],
        "networks": ["loopback"],
        "engines": "mpyc/shamir",
    }
    assert record.meta["config_hash"] == load_experiment(cfg).config_hash  # the config as written
    assert "mpyc/shamir 3p synthetic:20 loopback repeat-0: engine " in r.stderr
    assert " MB, correct" in r.stderr


def test_a_progress_line_says_who_inputs_private_criteria(tmp_path):
    body = (
        "populations: [synthetic:20]\n"
        "engines: [{engine: mpyc}, {engine: mpyc, criteria: private, researcher: 0}, "
        "{engine: mpyc, parties: 4, criteria: private}]"
    )
    exp = load_experiment(config(tmp_path, body))
    assert [c.short_label(exp) for c in cells(exp)] == [
        "mpyc/shamir 3p synthetic:20 loopback",
        "mpyc/shamir 3p private(r=0) synthetic:20 loopback",
        "mpyc/shamir 4p private(r=extra) synthetic:20 loopback",
    ]


def test_ctrl_c_says_what_was_kept_and_how_to_continue(tmp_path):
    cfg = config(
        tmp_path, "populations: [synthetic:20]\nengines: [{engine: mpyc, protocol: shamir}]\nrepeats: 4"
    )
    out = tmp_path / "r.jsonl"
    p = subprocess.Popen(
        [*CLI, "run", str(cfg), "--out", str(out), "--repeats", "3"],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.time() + 120
    while time.time() < deadline and (not out.exists() or not out.read_text().count("\n")):
        time.sleep(0.05)
    p.send_signal(signal.SIGINT)
    _, stderr = p.communicate(timeout=120)
    kept = len(results.read(out, lambda message: None))
    assert p.returncode == 130, stderr
    assert 1 <= kept < 3
    assert (
        f"kept {kept} of 3 runs; continue with: cohortbench run {cfg} --out {out} --resume --repeats 3"
        in stderr
    )


def test_a_sweep_warns_when_parties_exceed_the_cores(tmp_path):
    cores = os.cpu_count() or 1
    if cores + 1 > MAX_PARTIES:
        pytest.skip(f"{cores} cores: more than an engine's {MAX_PARTIES} parties")
    cfg = config(tmp_path, f"populations: [synthetic:5]\nengines: [{{engine: mpyc, parties: {cores + 1}}}]")
    exp = load_experiment(cfg)
    said: list[str] = []
    warn_contention(exp, to_do(exp, []), said.append)
    assert said and f"mpyc/shamir/{cores + 1}p: more parties than the {cores} core(s) here" in said[0]
    cfg = config(tmp_path, "populations: [synthetic:5]\nengines: [{engine: plain}]")
    exp, said = load_experiment(cfg), []
    warn_contention(exp, to_do(exp, []), said.append)
    assert said == []


def test_dry_run_and_resume_know_the_budget_from_the_file(tmp_path):
    body = "populations: [synthetic:10, synthetic:20, synthetic:30]\nengines: [{engine: plain}]\nrepeats: 1"
    cfg = config(tmp_path, body + "\nbudget_s: 0.001")  # a plain run takes longer than 1 ms
    out = tmp_path / "r.jsonl"
    assert cli("run", cfg, "--out", out).returncode == 0
    lines = out.read_text().splitlines(keepends=True)
    out.write_text(lines[0])  # only the smallest population's run, over the budget
    r = cli("run", cfg, "--out", out, "--dry-run", "--resume")
    assert f"3 run(s): 1 done (in {out}), 0 to do, 2 skipped by budget_s" in r.stdout, r.stdout
    assert cli("run", cfg, "--out", out, "--resume").returncode == 0
    assert [x.skipped for x in results.read(out)] == [False, True, True]


def test_messages_print_codes_as_written(tmp_path):
    """No rich emoji: `synthetic:100:3:` must not become `synthetic💯3:`."""
    query = REPO / "configs" / "queries" / "five-criteria.yaml"
    r = subprocess.run(
        [*CLI, "eval", str(query), "--patients", "synthetic:100:3", "--conditions", "4", "--truncate"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert r.returncode == 0 and "synthetic:100:3: " in r.stderr, r.stderr
