"""Shared fixtures: hand-built patients and the shared Synthea sample's location."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from circuits.population import Padding, Patient, encode

REPO = Path(__file__).resolve().parent.parent
SYNTHEA = REPO.parent / "shared" / "data" / "synthea-r4"


@pytest.fixture
def synthea_dir() -> Path:
    if not SYNTHEA.is_dir() or not any(SYNTHEA.glob("*.json")):
        pytest.skip(
            f"shared Synthea sample not found at {SYNTHEA} (it lives beside the repo, "
            "in ../shared/data/synthea-r4)"
        )
    return SYNTHEA


def patient(
    pid: str = "p",
    age: int = 30,
    gender: int = 1,
    smoker: int = 0,
    conditions: tuple[int, ...] = (),
    exams: tuple[tuple[int, int], ...] = (),
) -> Patient:
    return Patient(pid, age, gender, smoker, conditions, exams)


@pytest.fixture
def boundary_population():
    """Patients on the edges of the paper query's criteria (Padding 4/4)."""
    people = [
        patient("age12", age=12),
        patient("age13", age=13),
        patient("age23", age=23),
        patient("age24", age=24),
        patient("male", gender=0),
        patient("other", gender=2),
        patient("unknown", gender=3),
        patient("former", smoker=2),
        patient("current", smoker=1),
        patient("smk-unknown", smoker=3),
        patient("hyperlipid", conditions=(55822004,)),
        patient("hyper+polyp", conditions=(68496003, 55822004)),
        patient("polyp", conditions=(68496003,)),
        patient("lipid-2-at-200", exams=((57698, 200), (57698, 3))),
        patient("lipid-2-one-at-201", exams=((57698, 201), (57698, 3))),
        patient("lipid-1-cbc-1", exams=((57698, 1), (58410, 1))),
        patient("lipid-4", exams=((57698, 0), (57698, 1), (57698, 2), (57698, 3))),
        patient("none"),
    ]
    return encode(people, Padding(4, 4))


def cli_run(cfg: Path, out: Path, timeout: float = 600, env: dict | None = None):
    """`cohortbench run CFG --out OUT` in a subprocess, which must succeed; its result."""
    argv = [sys.executable, "-m", "harness.cli", "run", str(cfg), "--out", str(out)]
    p = subprocess.run(argv, capture_output=True, text=True, cwd=REPO, timeout=timeout, env=env)
    assert p.returncode == 0, p.stderr[-2000:]
    return p


def run_cli(monkeypatch, capsys, *argv: object) -> tuple[int, str]:
    """`cohortbench ARGV` in this process: its exit code and what it wrote to stderr."""
    from harness import cli

    monkeypatch.setattr(sys, "argv", ["cohortbench", *map(str, argv)])
    try:
        cli.main()
        code = 0
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else 1
    return code, capsys.readouterr().err


def refused(monkeypatch, capsys, tmp_path: Path, body: dict, dry_run: bool) -> str:
    """`cohortbench run` (or its dry run) of the config `body`, which must be refused before
    any run: exit 2, one error line naming the file, no traceback.  The error, on one line."""
    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml.safe_dump(body))
    out = tmp_path / "r.jsonl"
    code, err = run_cli(monkeypatch, capsys, "run", cfg, "--out", out, *(["--dry-run"] if dry_run else []))
    assert code == 2 and "Traceback" not in err, err
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and str(cfg) in err.replace("\n", ""), err
    assert not out.exists()  # refused before any run
    return " ".join(err.split())


def run_cli_sweep(cfg: Path, out: Path) -> Path:
    """`cohortbench run CFG --out OUT` afresh; the results file."""
    out.unlink(missing_ok=True)
    cli_run(cfg, out)
    return out
