"""`cohortbench show`: quality flags, anomaly marks, a table that fits 100 columns, CSV and JSON."""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner
from rich.console import Console

import cell_records as cr
from harness.analysis import latency, stats, summary
from harness.cli import cli

ROOT = Path(__file__).resolve().parents[1]


def one_cell(times: list[float], **kw) -> stats.Cell:
    recs = [cr.record("t", "shamir", "lan", i, t, **kw) for i, t in enumerate(times)]
    (cell,) = stats.cells(recs)
    return cell


def test_quality_flags():
    assert stats.QUALITIES == ("contended", "single-run", "noisy", "ok")  # in order of precedence
    assert one_cell([1.0]).quality == "single-run"
    assert one_cell([1.0, 1.5, 2.0]).quality == "noisy"  # coefficient of variation 0.33
    assert one_cell([1.0, 1.01, 1.02]).quality == "ok"
    quiet = one_cell([1.0, 1.01, 1.02])
    assert quiet.cv is not None and quiet.cv < stats.NOISY_CV
    # contended: a run ended with the load above the cores, or more parties than cores
    assert one_cell([1.0, 1.01, 1.02], load=8.5, cores=8).quality == "contended"
    assert one_cell([1.0, 1.01, 1.02], parties=5, cores=2, load=0.1).quality == "contended"
    assert one_cell([1.0, 1.01], load=8.0, cores=8).quality == "ok"  # at the cores: not above
    assert one_cell([1.0], parties=3, cores=2).quality == "contended"  # contention first
    assert one_cell([1.0, 1.5, 2.0], load=4.0, cores=2).quality == "contended"  # explains the noise


def test_a_cell_without_an_ok_run_has_no_quality():
    bad = cr.record("t", "shamir", "lan", 0, 1.0).to_json() | {"error": "party 1 died", "correct": False}
    (cell,) = stats.cells([stats.Record.from_json(bad)])
    assert cell.quality is None


def test_one_runs_iqr_is_a_dash_not_zero():
    recs = [cr.record("t", "shamir", "lan", 0, 1.0)]
    text = render(recs, wide=True, width=400)
    iqr = [line.split("│")[7].strip() for line in text.splitlines() if line.startswith("│ mpyc")]
    assert iqr == ["\u2013"]


def render(records, wide: bool = False, width: int = 100) -> str:
    console = Console(width=width, record=True, file=io.StringIO())
    console.print(summary.table(records, wide, width))
    return console.export_text()


@pytest.mark.parametrize("name", ["security_models", "latency", "synthea"])
def test_the_table_fits_100_columns_with_no_cut_cell(name):
    records = getattr(cr, name)()
    text = render(records)
    assert "\u2026" not in text  # rich's ellipsis: a cut cell
    assert max(len(line) for line in text.splitlines()) <= 100
    rows = text.splitlines()
    for c in stats.cells(records):
        label = f"{c.first.engine}/{c.first.protocol}"
        assert any(line.startswith(label) for line in rows), label  # every protocol whole
        assert c.network in text and c.quality in text
    for head in ("protocol", "security", "population", "network", "bytes", "rounds", "correct", "quality"):
        assert head in " ".join(rows[1:3])  # "engine s" may take two lines


def test_a_small_table_keeps_its_full_headers():
    text = render(cr.latency()[:6])  # MPyC only, loopback and relay
    assert "parties" in text and "engine s" in text and "m: parties" not in text


def test_wide_shows_every_column():
    text = render(cr.security_models(), wide=True, width=400)
    for head in summary.WIDE.split("|"):
        assert head in text, head
    assert "\u2026" not in text


def test_time_falling_as_delay_rises_is_marked():
    recs = [cr.record("t", "shamir", "lan", i, 5.0 + i / 100) for i in range(3)]
    recs += [cr.record("t", "shamir", "wan", i, 3.9 + i / 100) for i in range(3)]  # wan faster
    recs += [cr.record("t", "shamir", "metro", i, 5.1 + i / 100) for i in range(3)]  # within 5%: none
    cells = stats.cells(recs)
    by = {c.network: c for c in cells}
    assert stats.slower_at_lower_delay(by["wan"], cells) is by["metro"]
    assert stats.slower_at_lower_delay(by["lan"], cells) is None
    assert stats.slower_at_lower_delay(by["metro"], cells) is None
    text = render(recs)
    assert "3.91 s*" in text and "faster than 5.11 s on metro" in text
    rows = summary.rows(summary.ordered(recs))
    assert [r["network"] for r in rows if r["anomaly"]] == ["wan"]


def test_a_negative_latency_slope_is_marked():
    recs = [cr.record("t", "shamir", net, i, t) for net, t in (("lan", 5.0), ("wan", 3.9)) for i in range(2)]
    (slope,) = latency.slopes(recs)
    assert slope.negative
    console = Console(width=100, record=True, file=io.StringIO())
    console.print(latency.table(recs))
    text = console.export_text()
    assert f"{slope.flights:.1f} !" in text and "negative slope" in text


def write(path: Path, records) -> Path:
    path.write_text("".join(json.dumps(r.to_json()) + "\n" for r in records))
    return path


def test_csv_and_json_write_the_cell_table(tmp_path):
    path = write(tmp_path / "sm.jsonl", cr.security_models())
    n = len(stats.cells(cr.security_models()))
    r = CliRunner().invoke(cli, ["show", str(path), "--csv"])
    assert r.exit_code == 0, r.output
    rows = list(csv.DictReader(io.StringIO(r.output)))
    assert len(rows) == n and set(rows[0]) == set(summary.COLUMNS)
    assert {row["quality"] for row in rows} == {"ok"} and all(float(row["engine_s"]) > 0 for row in rows)
    r = CliRunner().invoke(cli, ["show", str(path), "--json"])
    assert r.exit_code == 0, r.output
    data = json.loads(r.output)
    assert len(data) == n and all(isinstance(d["engine_s"], float) and d["quality"] == "ok" for d in data)
    mascot = next(d for d in data if d["protocol"] == "mascot" and d["network"] == "lan")
    assert mascot["bytes_by_party_median"] == [1e9, 1e9] and mascot["parties"] == 2


def show(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    """`cohortbench show` as a user runs it, its output a pipe (not a terminal)."""
    base = {k: v for k, v in os.environ.items() if k != "COLUMNS"} | {"PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, "-m", "harness.cli", "show", *args],
        capture_output=True,
        text=True,
        env=base | (env or {}),
        cwd=ROOT,
        timeout=120,
    )


def test_show_fits_100_columns_in_a_pipe_and_honours_columns(tmp_path):
    path = write(tmp_path / "lat.jsonl", cr.latency())
    r = show(str(path))
    assert r.returncode == 0, r.stderr
    assert max(len(line) for line in r.stdout.splitlines()) <= 100 and "\u2026" not in r.stdout
    r = show(str(path), env={"COLUMNS": "140"})
    assert r.returncode == 0, r.stderr
    assert "parties" in r.stdout  # room for the full header at 140
    r = show(str(path), "--wide")
    assert "vs fastest SH" in r.stdout and "\u2026" not in r.stdout


def test_show_of_a_config_suggests_run(tmp_path):
    r = show("configs/default.yaml")
    assert r.returncode == 2 and r.stdout == ""
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "cohortbench run configs/default.yaml --out FILE" in lines[0], r.stderr
    text = tmp_path / "notes.txt"
    text.write_text("hello\n")
    r = show(str(text))
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 2 and len(lines) == 1 and "cohortbench run CONFIG --out FILE" in lines[0]
