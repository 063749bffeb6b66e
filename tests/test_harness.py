"""The harness: configs, sweeps, resume, process hygiene, and the CLI's exit codes."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil
import pytest

from circuits.errors import InputError
from harness.analysis import records as results
from harness.run.config import load_experiment
from harness.run.sweep import run_sweep
from conftest import REPO, SYNTHEA

CLI = [sys.executable, "-m", "harness.cli"]


def write(tmp_path: Path, text: str, name: str = "x.yaml") -> Path:
    p = tmp_path / name
    p.write_text(text)
    return p


QUERY = str(REPO / "configs" / "queries" / "five-criteria.yaml")


def config(tmp_path, engines: str, populations="[synthetic:30]", extra="") -> Path:
    return write(
        tmp_path,
        f"""
name: t
query: {QUERY}
populations: {populations}
padding: {{conditions: 4, exams: 6}}
truncate: true
engines:
{engines}
repeats: 1
warmup: 0
timeout_s: 60
{extra}
""",
    )


@pytest.mark.parametrize(
    "body,where,says",
    [
        (
            "engines:\n  - {engine: mpyc, protocol: shamir, parties: 2}",
            "engines[0]",
            "2 parties cannot run Shamir with an honest majority; use 3 or more",
        ),
        ("engines:\n  - {engine: mpyc, protocol: spdz}", "engines[0]", "unknown MPyC protocol"),
        ("engines:\n  - {engine: mpyc}\nrepeat: 3", "repeat", "unknown key"),
        ("engines:\n  - {engine: mpyc}\nnetworks: [moon]", "", "unknown network"),
        ("engines: []", "engines", "at least 1"),
    ],
)
def test_config_errors_name_file_and_key(tmp_path, body, where, says):
    p = write(tmp_path, f"name: t\nquery: {QUERY}\npopulations: [synthetic:5]\n{body}\n")
    with pytest.raises(InputError) as e:
        load_experiment(p)
    assert e.value.source == str(p) and e.value.location == where and says in str(e.value)


def test_bad_population_and_missing_as_of(tmp_path):
    p = config(tmp_path, "  - {engine: plain}", populations="[synthetik:5]")
    with pytest.raises(InputError, match=r"populations\[0\]"):
        load_experiment(p)
    p = config(tmp_path, "  - {engine: plain}", populations=f"[{REPO}]")
    with pytest.raises(InputError, match="as_of"):
        load_experiment(p)


def test_cli_bad_input_is_one_line_exit_2(tmp_path):
    p = write(tmp_path, "name: t\nengines: [", "bad.yaml")
    r = subprocess.run(
        [*CLI, "run", str(p), "--out", str(tmp_path / "r.jsonl")], capture_output=True, text=True, cwd=REPO
    )
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert "bad.yaml: line" in r.stderr and "invalid YAML" in r.stderr
    q = write(
        tmp_path, '{"restrictions": [{"restriction_type": "AGE", "min_age": "x", "max_age": 9}]}', "q.json"
    )
    r = subprocess.run(
        [*CLI, "eval", str(q), "--patients", "synthetic:5"], capture_output=True, text=True, cwd=REPO
    )
    assert r.returncode == 2 and "q.json: restrictions[0].min_age" in r.stderr
    assert "Traceback" not in r.stderr


def test_cli_eval_json_and_check():
    r = subprocess.run(
        [*CLI, "eval", QUERY, "--patients", "synthetic:500:1", "--json"],
        capture_output=True,
        text=True,
        cwd=REPO,
        check=True,
    )
    answer = json.loads(r.stdout)
    assert answer["count"] == len(answer["eligible"]) > 0
    r = subprocess.run(
        [
            *CLI,
            "check",
            str(REPO / "configs/queries/paper-listing1.json"),
            "--conditions",
            "8",
            "--exams",
            "16",
        ],
        capture_output=True,
        text=True,
        cwd=REPO,
        check=True,
    )
    assert "12 < age < 24" in r.stdout and "comparisons" in r.stdout and "55822004" in r.stderr


def test_cli_extract_and_eval_bundles(tmp_path, synthea_dir):
    out = tmp_path / "patients.jsonl"
    subprocess.run(
        [*CLI, "extract", str(synthea_dir), "--as-of", "2021-04-01", "--out", str(out)],
        check=True,
        capture_output=True,
        cwd=REPO,
    )
    assert len(out.read_text().splitlines()) == 60
    counts = []
    for src in (str(out), str(synthea_dir)):
        r = subprocess.run(
            [*CLI, "eval", QUERY, "--patients", src, "--as-of", "2021-04-01", "--json"],
            capture_output=True,
            text=True,
            cwd=REPO,
            check=True,
        )
        counts.append(json.loads(r.stdout)["count"])
    assert counts[0] == counts[1]
    r = subprocess.run(
        [*CLI, "eval", QUERY, "--patients", str(synthea_dir)], capture_output=True, text=True, cwd=REPO
    )
    assert r.returncode == 2 and "--as-of" in r.stderr


def party_processes() -> list[psutil.Process]:
    """MPyC parties started by this test process (not by any other sweep on the machine)."""
    found = []
    for p in psutil.Process().children(recursive=True):
        try:
            p.info = {"cmdline": p.cmdline()}
        except psutil.NoSuchProcess:
            continue
        if "backends.mpyc.party" in p.info["cmdline"]:
            found.append(p)
    return found


def test_killed_party_fails_the_cell_and_the_sweep_goes_on(tmp_path):
    cfg = config(
        tmp_path,
        "  - {engine: mpyc, protocol: paper-loop}\n  - {engine: mpyc, protocol: shamir}",
        populations="[synthetic:60]",
    )
    exp = load_experiment(cfg)
    killed: list[int] = []
    listened: set[int] = set()  # every party's own listening port (its -P at its -I index)

    def killer() -> None:
        deadline = time.time() + 60
        while time.time() < deadline and not killed:
            for p in party_processes():
                args = p.info["cmdline"]
                addresses = [args[k + 1] for k, a in enumerate(args[:-1]) if a == "-P"]
                if "-I" in args and addresses:
                    listened.add(int(addresses[int(args[args.index("-I") + 1])].rsplit(":", 1)[1]))
                if p.info["cmdline"][-1:] and "-I" in p.info["cmdline"]:
                    i = p.info["cmdline"].index("-I")
                    if p.info["cmdline"][i + 1] == "1" and time.time() - p.create_time() > 1.5:
                        os.kill(p.pid, signal.SIGKILL)
                        killed.append(p.pid)
                        return
            time.sleep(0.05)

    t = threading.Thread(target=killer)
    t.start()
    records = run_sweep(exp, tmp_path / "r.jsonl", False, lambda m: None)
    t.join()
    assert killed
    assert [r["protocol"] for r in records] == ["paper-loop", "shamir"]
    assert records[0]["error"] and "party 1 exited with -9" in records[0]["error"]
    assert records[0]["correct"] is False
    assert records[1]["error"] is None and records[1]["correct"]
    assert party_processes() == []
    assert listened
    for port in listened:  # no listener left: each port can be listened on again at once
        with socket.socket() as s:  # (SO_REUSEADDR: closed connections may sit in TIME_WAIT)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind(("127.0.0.1", port))
            s.listen()


def test_results_written_as_they_come_and_resume(tmp_path):
    cfg = config(tmp_path, "  - {engine: plain}", populations="[synthetic:10, synthetic:20, synthetic:30]")
    exp = load_experiment(cfg)
    out = tmp_path / "r.jsonl"
    full = run_sweep(exp, out, False, lambda m: None)
    assert len(full) == 3 and len(results.read(out)) == 3
    with pytest.raises(InputError, match="--resume"):
        run_sweep(exp, out, False, lambda m: None)
    # A sweep killed while writing its third line: two whole lines and half of one.
    lines = out.read_text().splitlines(keepends=True)
    out.write_text("".join(lines[:2]) + lines[2][:40])
    said: list[str] = []
    again = run_sweep(exp, out, True, said.append)
    assert any("half-written" in m for m in said)
    assert [r["population"] for r in again] == [30]
    final = results.read(out)
    assert sorted(r["population"] for r in final) == [10, 20, 30]
    assert all(r["meta"]["config_hash"] == exp.config_hash for r in final)


def test_relative_paths_and_plain_defaults(tmp_path, monkeypatch):
    cfg = config(
        tmp_path,
        "  - {engine: plain}\n  - {engine: mpyc, protocol: shamir, populations: [synthetic:10]}",
        populations="[synthetic:10]",
    )
    monkeypatch.chdir(tmp_path)
    records = run_sweep(load_experiment(cfg.relative_to(tmp_path)), Path("r.jsonl"), False, lambda m: None)
    assert [(r["protocol"], r["parties"]) for r in records] == [("oracle", 1), ("shamir", 3)]
    assert all(r["error"] is None and r["correct"] for r in records)


@pytest.mark.parametrize("path", sorted((REPO / "configs").glob("*.yaml")), ids=lambda p: p.name)
def test_shipped_configs_load(path):
    if "synthea-r4" in path.read_text() and not SYNTHEA.is_dir():
        pytest.skip(f"{path.name} reads the shared Synthea sample, absent at {SYNTHEA}")
    exp = load_experiment(path)
    assert exp.queries and exp.sources and exp.paddings


def shamir_sweep(tmp_path, populations: str, extra: str) -> list:
    """The records of a sweep of MPyC shamir (3 parties) with these populations and keys."""
    cfg = config(tmp_path, "  - {engine: mpyc, protocol: shamir}", populations, extra)
    return run_sweep(load_experiment(cfg), tmp_path / "r.jsonl", False, lambda m: None)


def test_relayed_network_counts_rounds_and_bytes(tmp_path):
    direct, relayed = shamir_sweep(
        tmp_path, "[synthetic:20]", "networks: [loopback, {profile: lan, links: {'0-2': {delay_ms: 5}}}]"
    )
    assert direct["network"]["relayed"] is False and direct["observed_rounds"] is None
    assert relayed["error"] is None and relayed["correct"]
    assert direct["rounds"] == relayed["rounds"] > 2  # the setting's lock-step count
    assert relayed["observed_rounds"] > 2 and relayed["messages"] > 0
    assert relayed["network"]["links"]["0->2"]["delay_ms"] == 5
    matrix = relayed["bytes_by_link"]
    assert len(matrix) == 3 and all(matrix[i][i] == 0 for i in range(3))
    # The relay sees MPyC's framed payload: within 1% of MPyC's own count.
    assert abs(relayed["relay_bytes"] - relayed["bytes_sent"]) <= 0.01 * relayed["bytes_sent"]


def test_kill_9_of_the_harness_then_resume(tmp_path):
    """A sweep killed with SIGKILL mid-run leaves no party behind, and --resume completes
    it to the same set of runs as an uninterrupted sweep."""
    cfg = config(
        tmp_path,
        "  - {engine: mpyc, protocol: shamir}",
        populations="[synthetic:10, synthetic:12, synthetic:14]",
    )
    cfg.write_text(cfg.read_text().replace("repeats: 1", "repeats: 2"))
    out = tmp_path / "r.jsonl"
    argv = [*CLI, "run", str(cfg), "--out", str(out)]
    p = subprocess.Popen(argv, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline and (not out.exists() or len(out.read_text().splitlines()) < 2):
        time.sleep(0.05)
    harness_proc = psutil.Process(p.pid)
    parties = harness_proc.children(recursive=True)
    p.send_signal(signal.SIGKILL)
    p.wait()
    gone, alive = psutil.wait_procs(parties, timeout=10)
    assert not alive, f"parties outlived the harness: {alive}"
    done_before = len(results.read(out, lambda m: None))
    assert 2 <= done_before < 6
    r = subprocess.run([*argv, "--resume"], cwd=REPO, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-2000:]
    final = results.read(out)
    exp = load_experiment(cfg)
    from harness.run.sweep import runs

    expected = {(c.key(exp), rep, warm) for c, rep, warm in runs(exp)}
    assert {results.run_key(x) for x in final} == expected and len(final) == len(expected)
    assert all(x["correct"] for x in final)


def test_budget_skips_larger_populations(tmp_path):
    first, second = shamir_sweep(tmp_path, "[synthetic:10, synthetic:12]", "budget_s: 0.01")
    assert first["error"] is None and first["correct"] and not first.get("skipped")
    assert second["skipped"] is True and "budget_s" in second["error"]
    assert second["population"] == 12


def test_free_ports_lie_outside_the_ephemeral_range():
    """So that no outgoing connection (the relay retrying a party that does not listen yet)
    can take a party's port as its source port, or connect to itself on it."""
    from harness.run import parties

    low, high = parties._ephemeral_ports()
    ports = parties.free_ports(8)
    assert len(set(ports)) == 8
    assert all(p >= 10_000 and not low <= p <= high for p in ports)
