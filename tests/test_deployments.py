"""Deployments in experiment YAML (who holds the data) and the rules that place patients at sites."""

from __future__ import annotations

import io

import datetime as dt
import json
from pathlib import Path

import pytest

from cell_records import record
from conftest import REPO, run_cli
from harness.analysis import latency, report, stats, summary
from harness.analysis.records import Record
from harness.data import fhir, sites
from harness.data.sources import parse_source
from harness.run.config import load_experiment
from harness.run.deployment import Placement, Sites, assignment
from harness.run.sweep import cells

QUERY = str(REPO / "configs" / "queries" / "five-criteria.yaml")
SAMPLE = REPO.parent / "shared" / "data" / "synthea-r4"
needs_sample = pytest.mark.skipif(
    not SAMPLE.is_dir(), reason=f"the shared Synthea sample is not at {SAMPLE} on this machine"
)


def config(tmp_path: Path, body: str) -> Path:
    p = tmp_path / "c.yaml"
    p.write_text(f"name: t\nquery: {QUERY}\npopulations: [synthetic:12]\n{body}\n")
    return p


MPYC = "engines: [{engine: mpyc, protocol: shamir}]"
COLUMNS = "columns: {demographics: 0, conditions: 1, exams: 2}"


def test_default_is_patient_and_its_cell_keys_stay(tmp_path):
    plain = load_experiment(config(tmp_path, MPYC))
    assert plain.config.deployments == ["patient"]
    keys = [c.key(plain) for c in cells(plain)]
    explicit = load_experiment(config(tmp_path, MPYC + "\ndeployments: [patient]"))
    assert [c.key(explicit) for c in cells(explicit)] == keys


def test_deployments_are_an_axis_with_defaults_filled_in(tmp_path):
    body = (
        "engines: [{engine: mpyc, protocol: shamir}, {engine: plain}]\n"
        "deployments:\n  - patient\n  - {sites: 3, partition: rows, local: off}\n"
        f"  - {{sites: 3, partition: columns, {COLUMNS}}}"
    )
    exp = load_experiment(config(tmp_path, body))
    grid = cells(exp)
    assert len(grid) == 6 and len({c.key(exp) for c in grid}) == 6
    rows, cols = exp.config.deployments[1], exp.config.deployments[2]
    assert rows.record() == {"sites": 3, "partition": "rows", "local": "off", "assign": "round-robin"}
    assert cols.record()["reveal_to"] == 0 and cols.record()["local"] == "auto"
    assert {c.engine.parties for c in grid if c.deployment is rows} == {3, 1}  # plain keeps one party


def test_omitted_parties_default_to_the_sites(tmp_path):
    body = "engines: [{engine: mpyc, protocol: shamir}]\ndeployments: [{sites: 5, partition: rows}]"
    exp = load_experiment(config(tmp_path, body))
    assert [c.engine.parties for c in cells(exp)] == [5]


@pytest.mark.parametrize(
    "body,says",
    [
        (
            "engines: [{engine: mpyc, protocol: shamir, parties: 3}]\n"
            "deployments: [{sites: 5, partition: rows}]",
            "engines[0].parties: mpyc/shamir/3p has 3 parties, but deployments[0] has 5 sites",
        ),
        (
            MPYC + "\ndeployments: [{sites: 3, partition: columns, columns: {demographics: 0, exams: 2}}]",
            "deployments[0]: columns: every group of demographics, conditions, exams needs exactly one "
            "site; conditions assigned to no site",
        ),
        (
            MPYC + "\ndeployments: [{sites: 3, partition: columns, "
            "columns: {demographics: [0, 1], conditions: 1, exams: 2}}]",
            "deployments[0]: columns: demographics is assigned to 2 sites [0, 1]; give one site",
        ),
        (
            MPYC + "\ndeployments: [{sites: 3, partition: columns, "
            "columns: {demographics: 0, conditions: 1, exams: 7}}]",
            "exams is assigned to site 7, not one of 0 to 2",
        ),
        (
            MPYC + "\ndeployments: [{sites: 3, partition: rows, assign: nearest}]",
            "deployments[0]: assign 'nearest': use round-robin, random:SEED or provider",
        ),
        (
            MPYC + "\ndeployments: [{sites: 3, partition: rows, sitez: 2}]",
            "deployments[0].sitez: unknown key",
        ),
        (MPYC + "\ndeployments: [hospital]", "deployments[0]"),
        (
            "engines: [{engine: mpyc, protocol: shamir}]\ndeployments: [{sites: 1, partition: rows}]",
            "deployments[0].sites: engines[0]",
        ),
    ],
)
def test_bad_deployments_are_one_clear_error(tmp_path, monkeypatch, capsys, body, says):
    path = config(tmp_path, body)
    code, err = run_cli(monkeypatch, capsys, "run", path, "--out", tmp_path / "r.jsonl", "--dry-run")
    assert code == 2 and "Traceback" not in err, err
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and str(path) in err.replace("\n", ""), err
    assert says in " ".join(err.split()), err


def test_round_robin_and_random():
    assert sites.round_robin(7, 3).site_of_patient == (0, 1, 2, 0, 1, 2, 0)
    a, b = sites.random_sites(200, 3, 5), sites.random_sites(200, 3, 5)
    assert a == b and a != sites.random_sites(200, 3, 6)
    assert sum(a.sizes(3)) == 200 and min(a.sizes(3)) > 40


def test_provider_keeps_a_provider_together_largest_first_and_counts_the_fallback():
    providers = ["b", "a", "b", None, "c", "b", "a", None, "d"]
    placed = sites.by_provider(providers, 3)
    # b (3 patients) -> site 0, a (2) -> site 1, then c and d (1 each) -> site 2, then the least
    assert placed.site_of_patient == (0, 1, 0, 0, 2, 0, 1, 1, 2)
    assert placed.fallback == 2 and sum(placed.sizes(3)) == len(providers)


def test_provider_on_generated_data_is_seeded_and_uneven():
    src = parse_source("synthetic:300:4")
    ids = tuple(map(str, range(300)))
    dep = Sites(sites=3, partition="rows", assign="provider")
    a, b = assignment(dep, src, ids), assignment(dep, src, ids)
    assert a == b and a.fallback == 0 and sum(a.sizes(3)) == 300


@needs_sample
def test_provider_on_the_synthea_sample_is_stable_and_adds_up():
    found = sites.bundle_providers(SAMPLE)
    patients, _ = fhir.extract_dir(SAMPLE, dt.date(2021, 4, 1))
    ids = tuple(p.id for p in patients)
    assert set(ids) <= set(found) and all(found[i] is not None for i in ids)
    dep = Sites(sites=3, partition="rows", assign="provider")
    src = parse_source(str(SAMPLE))
    a = assignment(dep, src, ids)
    assert a == assignment(dep, src, ids) and sum(a.sizes(3)) == len(ids) and a.fallback == 0
    by_provider: dict[str | None, set[int]] = {}
    for i, s in zip(ids, a.site_of_patient):
        by_provider.setdefault(found[i], set()).add(s)
    assert all(len(held) == 1 for held in by_provider.values())  # a provider's patients stay together


@needs_sample
def test_the_embedded_provider_sizes_are_the_samples():
    found = sites.bundle_providers(SAMPLE)
    assert sites.measure(found) == sites.SYNTHEA_PROVIDERS["sizes"]
    assert len(found) == sites.SYNTHEA_PROVIDERS["patients"]


@needs_sample
def test_the_consortium_config_splits_the_sample_by_provider(tmp_path, monkeypatch, capsys):
    exp = load_experiment(REPO / "configs" / "consortium.yaml")
    grid = cells(exp)
    assert len(grid) == 6 and {c.engine.parties for c in grid} == {3}
    assert {c.query.output.value for c in grid} == {"count", "eligible"}
    code, err = run_cli(
        monkeypatch,
        capsys,
        "run",
        REPO / "configs" / "consortium.yaml",
        "--out",
        tmp_path / "r.jsonl",
        "--dry-run",
    )
    assert code == 0, err


def test_extract_by_provider_counts_the_patients_without_encounters(tmp_path, monkeypatch, capsys):
    from test_fuzz import BUNDLE  # one patient, no Encounter

    bundles = tmp_path / "bundles"
    bundles.mkdir()
    for i in range(3):
        patient = {**BUNDLE["entry"][0]["resource"], "id": f"p{i}"}
        (bundles / f"{i}.json").write_text(json.dumps({**BUNDLE, "entry": [{"resource": patient}]}))
    out = tmp_path / "split"
    code, err = run_cli(
        monkeypatch, capsys, "extract", bundles, "--as-of", "2021-04-01", "--sites", "2", "--out", out
    )
    assert code == 0 and "3 patient(s) with no Encounter naming a serviceProvider" in err, err
    site_map = json.loads((out / "sites.json").read_text())
    assert site_map["fallback"] == 3 and site_map["site_sizes"] == [2, 1]
    assert site_map["site_of_patient"] == {"p0": 0, "p1": 1, "p2": 0}
    assert len((out / "site-1.jsonl").read_text().splitlines()) == 1


@needs_sample
def test_extract_splits_the_sample_by_provider(tmp_path, monkeypatch, capsys):
    out = tmp_path / "split"
    code, err = run_cli(
        monkeypatch, capsys, "extract", SAMPLE, "--as-of", "2021-04-01", "--sites", "3", "--out", out
    )
    assert code == 0, err
    site_map = json.loads((out / "sites.json").read_text())
    lines = [len((out / f"site-{s}.jsonl").read_text().splitlines()) for s in range(3)]
    assert lines == site_map["site_sizes"] and sum(lines) == len(site_map["site_of_patient"]) == 60
    assert site_map["fallback"] == 0


def _split(tmp_path: Path, monkeypatch, capsys) -> Path:
    out = tmp_path / "split"
    code, err = run_cli(
        monkeypatch, capsys, "extract", SAMPLE, "--as-of", "2021-04-01", "--sites", "3", "--out", out
    )
    assert code == 0, err
    return out


@needs_sample
def test_per_site_populations_keep_each_patients_site(tmp_path, monkeypatch, capsys):
    out = _split(tmp_path, monkeypatch, capsys)
    body = (
        "as_of: 2021-04-01\n" + MPYC + "\ndeployments: [{sites: 3, partition: rows}]\n"
        f"populations: [{{sites: {{0: {out}/site-0.jsonl, 1: {out}/site-1.jsonl, 2: {out}/site-2.jsonl}}}}]"
    )
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"name: t\nquery: {QUERY}\n{body}\n")
    exp = load_experiment(cfg)
    [cell] = cells(exp)
    pop = exp.population(cell.source, cell.padding, lambda m: None)
    placed = Placement.of(cell.deployment, cell.source, pop, exp.config.as_of, lambda m: None)
    site_map = json.loads((out / "sites.json").read_text())
    assert list(placed.site_sizes) == site_map["site_sizes"] and len(pop) == 60
    assert placed.holdings.site_of_patient == tuple(site_map["site_of_patient"][i] for i in pop.ids)


@pytest.mark.parametrize(
    "populations,deployments,says",
    [
        (
            "[{sites: {0: NOWHERE/a.jsonl, 1: NOWHERE/b}}]",
            "[{sites: 2, partition: rows}]",
            "populations[0].sites.0: ",
        ),
        (
            "[{sites: {0: synthetic:5}}]",
            "[{sites: 2, partition: rows}]",
            "populations[0].sites.0: a site's population",
        ),
        (
            "[{sites: {0: JSONL, 2: JSONL}}]",
            "[{sites: 2, partition: rows}]",
            "populations[0].sites: sites [0, 2] do not fit deployments[0] (rows, 2 sites)",
        ),
    ],
)
def test_bad_per_site_populations(tmp_path, monkeypatch, capsys, populations, deployments, says):
    cfg = tmp_path / "c.yaml"
    (tmp_path / "p.jsonl").write_text("")
    populations = populations.replace("NOWHERE", str(tmp_path / "none")).replace(
        "JSONL", str(tmp_path / "p.jsonl")
    )
    cfg.write_text(
        f"name: t\nquery: {QUERY}\n{MPYC}\npopulations: {populations}\ndeployments: {deployments}\n"
    )
    code, err = run_cli(monkeypatch, capsys, "run", cfg, "--out", tmp_path / "r.jsonl", "--dry-run")
    assert code == 2 and "Traceback" not in err and str(cfg) in err.replace("\n", ""), err
    assert says in " ".join(err.split()), err


def _deployed(base: Record, deployment: dict | str, engine_s: float) -> Record:
    data = base.to_json() | {"deployment": deployment, "engine_s": [engine_s] * 3}
    if isinstance(deployment, dict):
        data |= {"local": deployment["local"], "cell": base.cell + deployment["local"]}
    return Record.from_json(data)


def test_the_report_draws_cost_by_deployment_only_when_the_results_hold_several():
    rows = {"sites": 3, "partition": "rows", "assign": "provider"}
    recs = [
        _deployed(record("consortium", "shamir", net, rep, 1.0), d, t)
        for net in ("lan", "wan")
        for rep in range(3)
        for d, t in (("patient", 2.0), (rows | {"local": "auto"}, 0.5), (rows | {"local": "off"}, 2.5))
    ]
    drawn = {f.name: f for f in report.figures(report.cells(recs))}
    assert drawn["cost_by_deployment"].png and not drawn["cost_by_deployment"].skipped
    one = [r for r in recs if r.deployment == "patient"]
    assert "cost_by_deployment" not in {f.name for f in report.figures(report.cells(one))}
    assert {stats.Cell(tuple(r for r in recs if r.cell == c.key)).deployment for c in report.cells(recs)} == {
        "patient",
        "rows provider 3s",
        "rows provider 3s local:off",
    }


def test_show_has_a_deployment_column_only_when_a_cell_is_not_patient():
    rows = {"sites": 3, "partition": "rows", "assign": "provider", "local": "off"}
    base = [record("c", "shamir", "lan", rep, 1.0) for rep in range(2)]
    mixed = base + [_deployed(r, rows, 2.0) for r in base]
    assert summary.NARROW.split("|") == [c.header for c in summary.table(base).columns]
    head = [c.header for c in summary.table(mixed).columns]
    assert head[head.index("network") + 1] == "deployment"


def test_the_default_deployment_leaves_the_config_hash_as_it_was(tmp_path):
    plain = load_experiment(config(tmp_path, MPYC))
    assert (
        plain.config_hash == load_experiment(config(tmp_path, MPYC + "\ndeployments: [patient]")).config_hash
    )
    rows = load_experiment(config(tmp_path, MPYC + "\ndeployments: [patient, {sites: 3, partition: rows}]"))
    assert rows.config_hash != plain.config_hash


def test_the_wide_table_and_the_cell_rows_say_what_was_secure_and_what_the_sites_did():
    rows = {"sites": 3, "partition": "rows", "assign": "provider", "local": "auto"}
    base = [record("c", "shamir", "lan", rep, 1.0) for rep in range(3)]
    sited = [
        Record.from_json(
            _deployed(r, rows, 2.0).to_json()
            | {"secure": "sum", "local_s": [0.5, 0.25 * rep, None], "input_s": [0.1, 0.3, 0.2]}
        )
        for rep, r in enumerate(base)
    ]
    head = [c.header for c in summary.table(base + sited, wide=True).columns]
    assert head[-3:] == ["secure", "local s", "input s"]
    every = summary.ordered(base + sited)
    cells = {c.deployment: summary.row(c, every) for c in every}
    site = cells["rows provider 3s"]
    assert (site["secure"], site["local_s"], site["input_s"]) == ("sum", 0.5, 0.3)  # slowest site, median
    assert cells["patient"]["secure"] is None and cells["patient"]["local_s"] is None
    sited = [Record.from_json(r.to_json() | {"input_bytes_by_party": [40, None, 38]}) for r in sited]
    out = io.StringIO()
    summary.write_csv(out, [summary.row(c, summary.ordered(sited)) for c in summary.ordered(sited)])
    assert "40;;38" in out.getvalue()


def test_deployments_are_compared_only_with_themselves():
    """A site deployment that is faster on wan than the patient one on lan is no anomaly,
    and the latency fits keep the deployments apart."""
    rows = {"sites": 3, "partition": "rows", "assign": "provider", "local": "auto"}
    recs = [record("c", "shamir", "lan", rep, 7.0) for rep in range(3)]
    recs += [_deployed(record("c", "shamir", "wan", rep, 8.0), rows, 0.2) for rep in range(3)]
    every = summary.ordered(recs)
    assert len(every) == 2 and all(summary.anomaly(c, every) is None for c in every)
    assert latency.slopes([r.to_json() for r in recs]) == []  # one delay per deployment


def test_the_reports_summary_says_the_deployment_and_what_was_secure():
    rows = {"sites": 3, "partition": "rows", "assign": "provider", "local": "auto"}
    base = [record("c", "shamir", "lan", rep, 1.0) for rep in range(2)]
    sited = [Record.from_json(_deployed(r, rows, 0.2).to_json() | {"secure": "sum"}) for r in base]
    head = report._summary(summary.ordered(base + sited)).head
    assert "deployment" in head and "secure, local, input" in head
    two = base + [record("c", "shamir", "wan", rep, 1.0) for rep in range(2)]
    alone = report._summary(summary.ordered(two))
    assert not {"secure, local, input", "deployment"} & set(alone.head)
    assert ("deployment", "patient") in alone.common


def test_the_headline_compares_security_models_within_one_deployment():
    """A malicious protocol with one data holder is not set against a semi-honest one over
    row-split sites: their contexts differ; the same deployment on both sides compares."""
    from harness.analysis import headline

    rows = {"sites": 3, "partition": "rows", "assign": "provider", "local": "auto"}
    malicious = ("malicious", "honest")
    patient = [record("c", "malicious-shamir", "lan", r, 3.0, security=malicious) for r in range(2)]
    sited = [_deployed(record("c", "shamir", "lan", r, 1.0), rows, 0.1) for r in range(2)]
    assert headline.costs(summary.ordered(patient + sited)) == []
    both = [_deployed(r, rows, 0.3) for r in patient] + sited
    costs = headline.costs(summary.ordered(both))
    assert {c.model for c in costs} == {("semi-honest", "honest"), malicious}
    assert all("rows provider 3s" in headline.context_label(c.cell) for c in costs)
