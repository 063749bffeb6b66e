"""The engine interface: engines found through the registry, and a new one added without the harness.

The toy engine (tests/toy_engine.py) is registered only through
$COHORTBENCH_ENGINES and runs through a real sweep: its two party processes,
the relay, the oracle check and the record, with no line of the harness
changed.  The harness itself names no engine (checked on its source).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from backends import registry
from backends.engine import Spec
from circuits.errors import InputError
from conftest import REPO, cli_run

TESTS = Path(__file__).resolve().parent


def test_every_built_in_engine_loads_and_names_its_protocols():
    engines = registry.engines({})
    assert set(engines) == set(registry.BUILT_IN)
    for name, engine in engines.items():
        assert engine.name == name and issubclass(engine.spec, Spec)
        assert engine.spec.defaults, name
        for facts in engine.spec.defaults.values():
            assert facts.security in ("semi-honest", "malicious", "none")
            assert facts.min_parties <= facts.default_parties <= facts.max_parties


def test_a_registered_engine_is_found_and_a_bad_entry_is_one_clear_error():
    env = {registry.ENV: "toy=toy_engine:ENGINE"}
    sys.path.insert(0, str(TESTS))
    try:
        assert registry.get("toy", env).name == "toy"
    finally:
        sys.path.remove(str(TESTS))
    with pytest.raises(InputError, match="name=module:object"):
        registry.locations({registry.ENV: "toy"})
    with pytest.raises(InputError, match="cannot load"):
        registry.get("nope", {registry.ENV: "nope=no_such_module:ENGINE"})
    with pytest.raises(ValueError, match="unknown engine 'toy'; use one of mpyc, mp-spdz, plain"):
        registry.get("toy", {})


def test_the_harness_names_no_engine():
    """No engine's name and no backend module outside the registry, in harness/ (but for
    `cohortbench eval --engine plain`, which runs the oracle itself, in-process)."""
    pattern = re.compile(
        r"from backends\.(mpyc|mp_spdz|plain)|import backends\.(mpyc|mp_spdz|plain)"
        r"|[\"'](mpyc|mp-spdz|plain)[\"']"
    )
    hits = [
        f"{p.relative_to(REPO)}:{n}: {line.strip()}"
        for p in (REPO / "harness").rglob("*.py")
        for n, line in enumerate(p.read_text().splitlines(), 1)
        if pattern.search(line) and 'click.Choice(["plain"])' not in line
    ]
    assert hits == []


def test_a_new_engine_runs_through_a_sweep_without_touching_the_harness(tmp_path):
    cfg = tmp_path / "toy.yaml"
    cfg.write_text("""
name: toy
query:
  name: women
  output: count
  criteria:
    all:
      - not: {gender: male}
      - age: {min_exclusive: 30, max_exclusive: 80}
populations: [synthetic:50:3]
padding: {conditions: 4, exams: 6}
truncate: true
engines:
  - {engine: toy}
  - {engine: plain}
networks: [loopback, {delay_ms: 2}]
repeats: 2
warmup: 0
""")
    out = tmp_path / "toy.jsonl"
    env = dict(
        os.environ,
        **{registry.ENV: "toy=toy_engine:ENGINE"},
        PYTHONPATH=os.pathsep.join([str(TESTS), str(REPO)]),
    )
    cli_run(cfg, out, timeout=300, env=env)
    records = [json.loads(line) for line in out.read_text().splitlines()]
    toy = [r for r in records if r["engine"] == "toy"]
    plain = [r for r in records if r["engine"] == "plain"]
    assert len(toy) == 4 and len(plain) == 4
    assert all(r["correct"] and r["error"] is None for r in records)
    assert {r["cohort_size"] for r in records} == {plain[0]["cohort_size"]}
    assert all((r["protocol"], r["parties"], r["security"]) == ("clear", 2, "none") for r in toy)
    relayed = [r for r in toy if r["network"]["relayed"]]
    assert len(relayed) == 2
    payload = len(str(plain[0]["cohort_size"]))
    assert all(r["bytes_sent"] == payload == r["relay_bytes"] and r["rounds"] == 1 for r in relayed)
    assert records[0]["meta"]["engines"]["toy"] == "1"
    show = subprocess.run(
        [sys.executable, "-m", "harness.cli", "show", str(out)],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=60,
        env=env,
    )
    assert show.returncode == 0 and "toy" in show.stdout
