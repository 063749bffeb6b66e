"""`cohortbench compare`: matching cells, the per-figure rules, exit codes, bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from harness.analysis import compare as cmp
from harness.analysis.records import SCHEMA_VERSION, Record
from harness.run import meta
from conftest import run_cli_sweep, REPO

QUERY = str(REPO / "configs" / "queries" / "five-criteria.yaml")


def record(
    cell: str = "c1",
    repeat: int = 0,
    wall: float = 1.0,
    bytes_sent: int | None = 1000,
    rounds: int | None = None,
    cohort: int | None = 5,
    correct: bool = True,
    error: str | None = None,
    config: str = "t",
    warmup: bool = False,
    calibration: float | None = None,
    **extra,
) -> dict:
    """A minimal result record: the fields `compare` reads, plus the labels it prints."""
    meta = {"commit": "abc"} | ({"calibration_s": calibration} if calibration is not None else {})
    return {
        "schema_version": SCHEMA_VERSION,
        "config": config,
        "cell": cell,
        "engine": "mpyc",
        "protocol": f"p-{cell}",
        "parties": 3,
        "population": 100,
        "population_source": "synthetic:100",
        "network": {"name": "loopback", "delay_ms": 0.0, "bandwidth_mbit": None},
        "query": {"name": "q", "ir_hash": "h", "output": "eligible"},
        "repeat": repeat,
        "warmup": warmup,
        "wall_s": wall,
        "bytes_sent": bytes_sent,
        "rounds": rounds,
        "cohort_size": cohort,
        "correct": correct,
        "error": error,
        "meta": meta,
        **extra,
    }


# Three cells, five repeats each: deterministic bytes and rounds (c1), bytes that vary a
# little between repeats as MPyC's do (c2), and no byte count at all (c3, the plain engine).
WALLS = [1.00, 1.04, 0.97, 1.02, 0.99]
C2_BYTES = [9_537_288, 9_536_738, 9_537_100, 9_536_900, 9_537_000]


def sweep(
    walls=WALLS,
    scale: float = 1.0,
    c1_bytes: int = 1000,
    c1_rounds: int = 40,
    c2_bytes=C2_BYTES,
    cells=("c1", "c2", "c3"),
    calibration: float | None = None,
) -> list[dict]:
    out = []
    for cell in cells:
        for i, w in enumerate(walls):
            b = {"c1": c1_bytes, "c2": c2_bytes[i % len(c2_bytes)], "c3": None}[cell]
            out.append(
                record(cell, i, w * scale, b, c1_rounds if cell == "c1" else None, calibration=calibration)
            )
        out.append(record(cell, 0, 9.0, warmup=True))  # warmups are never counted
    return out


def compare(base: list[dict], new: list[dict], thresholds: cmp.Thresholds | None = None) -> cmp.Comparison:
    """`compare` of built records, read as a results file would be."""
    return cmp.compare([Record.from_json(r) for r in base], [Record.from_json(r) for r in new], thresholds)


def write(path: Path, records: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def run(tmp_path: Path, base: list[dict], new: list[dict], *args: str):
    b, n = write(tmp_path / "base.jsonl", base), write(tmp_path / "new.jsonl", new)
    return CliRunner().invoke(cmp.command, [str(b), str(n), *args])


def by_cell(c: cmp.Comparison) -> dict[str, cmp.CellResult]:
    return {x.cell: x for x in c.cells}


def test_identical_inputs_exit_0(tmp_path):
    r = run(tmp_path, sweep(), sweep())
    assert r.exit_code == 0, r.output
    assert "PASS" in r.output and "REGRESSION" not in r.output
    c = compare(sweep(), sweep())
    assert [x.verdict for x in c.cells] == ["ok"] * 3
    assert c.cells[0].check("bytes_sent").rule.startswith("exact (deterministic)")
    assert "tolerance" in by_cell(c)["c2"].check("bytes_sent").rule
    assert by_cell(c)["c3"].check("bytes_sent") is None  # not recorded: not compared


@pytest.mark.parametrize(
    "change,cell,metric",
    [
        (dict(c1_bytes=1010), "c1", "bytes_sent"),  # +1% on a deterministic cell
        (dict(c1_rounds=41), "c1", "rounds"),  # one more round
        (dict(scale=2.0), "c3", "wall_s"),  # every time x2, five samples each
        (dict(c2_bytes=[b * 1.01 for b in C2_BYTES]), "c2", "bytes_sent"),  # +1% beyond the spread
    ],
)
def test_injected_regression_exit_1(tmp_path, change, cell, metric):
    r = run(tmp_path, sweep(), sweep(**change))
    assert r.exit_code == 1, r.output
    assert "REGRESSION" in r.output and "FAIL" in r.output
    c = by_cell(compare(sweep(), sweep(**change)))[cell]
    assert c.verdict == "REGRESSION" and c.check(metric).verdict == "REGRESSION"


def test_slowed_time_series_is_significant(tmp_path):
    c = by_cell(compare(sweep(), sweep(scale=2.0)))["c1"].check("wall_s")
    assert c.ratio == pytest.approx(2.0) and c.p_value < 0.05 and "U test" in c.rule


def test_noise_within_the_baseline_spread_is_ok(tmp_path):
    # times reshuffled and jittered by a few percent, bytes inside the baseline's spread
    new = sweep(walls=[1.03, 0.98, 1.01, 0.96, 1.05], c2_bytes=[9_537_200, 9_536_800, 9_537_050])
    r = run(tmp_path, sweep(), new)
    assert r.exit_code == 0, r.output
    assert {x.verdict for x in compare(sweep(), new).cells} == {"ok"}


def test_large_but_insignificant_time_change_is_only_a_warning():
    # the median doubles, but the samples overlap so much that the U test cannot tell them apart
    base = sweep(walls=[1.0, 1.0, 3.0, 3.0, 1.0])
    new = sweep(walls=[3.0, 1.0, 3.0, 2.9, 1.0])
    w = by_cell(compare(base, new))["c3"].check("wall_s")
    assert w.ratio > 1.5 and w.p_value >= 0.05 and w.verdict == "warn"
    assert "not significant" in w.rule


def test_few_samples_use_the_ratio_alone_against_a_wider_threshold(tmp_path):
    base = sweep(walls=[1.0, 1.02, 0.98])
    c = by_cell(compare(base, sweep(walls=[1.0, 1.02, 0.98], scale=1.8)))["c3"].check("wall_s")
    assert c.verdict == "warn" and c.p_value is None and "too few for the U test" in c.rule
    c = by_cell(compare(base, sweep(walls=[1.0, 1.02, 0.98], scale=2.5)))["c3"].check("wall_s")
    assert c.verdict == "REGRESSION" and "ratio alone vs x2.00" in c.rule
    r = run(tmp_path, base, sweep(walls=[1.0, 1.02, 0.98], scale=2.5))
    assert r.exit_code == 1 and "too few" in r.output


def test_thresholds_are_options(tmp_path):
    slower = sweep(scale=1.3)
    assert run(tmp_path, sweep(), slower).exit_code == 0  # x1.3 is a warning by default
    assert "warn" in run(tmp_path, sweep(), slower).output
    assert run(tmp_path, sweep(), slower, "--fail", "0.2").exit_code == 1


def test_faster_is_improved_not_a_failure(tmp_path):
    c = compare(sweep(), sweep(scale=0.5, c1_bytes=900))
    assert {x.verdict for x in c.cells} == {"improved"} and c.exit_code == 0


def test_missing_cells_on_either_side_are_reported_and_fail(tmp_path):
    r = run(tmp_path, sweep(), sweep(cells=("c1", "c2")))
    assert r.exit_code == 1 and "missing" in r.output and "only in the baseline" in r.output
    r = run(tmp_path, sweep(cells=("c1",)), sweep())
    assert r.exit_code == 1 and "only in the new sweep" in r.output
    c = compare(sweep(cells=("c1",)), sweep(cells=("c2",)))
    assert [(x.cell, x.verdict, x.runs) for x in c.cells] == [
        ("c1", "missing", (5, 0)),
        ("c2", "missing", (0, 5)),
    ]


def test_same_cell_hash_in_another_config_is_another_cell():
    base = sweep()
    new = [dict(r, config="other") for r in sweep()]
    assert {x.verdict for x in compare(base, new).cells} == {"missing"}


def test_an_error_or_a_wrong_cohort_is_a_regression(tmp_path):
    new = sweep()
    new[1] = record("c1", 1, None, None, None, None, False, "party 1 exited with -9")
    c = by_cell(compare(sweep(), new))["c1"]
    assert (
        c.verdict == "REGRESSION"
        and "1 of 5 new run(s) failed: party 1 exited with -9" in c.check("correct").rule
    )
    new = [dict(r, cohort_size=6) if r["cell"] == "c2" else r for r in sweep()]
    c = by_cell(compare(sweep(), new))["c2"]
    assert c.verdict == "REGRESSION" and c.check("cohort_size").rule == "cohort size [5] -> [6]"
    new = [dict(r, correct=False) if r["cell"] == "c3" else r for r in sweep()]
    assert by_cell(compare(sweep(), new))["c3"].verdict == "REGRESSION"
    assert run(tmp_path, sweep(), new).exit_code == 1


def test_calibration_normalises_times_when_both_files_have_it():
    # a machine twice as slow: every time and the calibration doubled -> not a regression
    c = compare(sweep(calibration=0.2), sweep(scale=2.0, calibration=0.4))
    assert c.normalised and c.exit_code == 0 and "normalised" in c.notes[0]
    assert by_cell(c)["c1"].check("wall_s").ratio == pytest.approx(1.0)
    # only one side calibrated: raw seconds, and it says so
    c = compare(sweep(), sweep(scale=2.0, calibration=0.4))
    assert not c.normalised and c.exit_code == 1 and "missing in baseline" in c.notes[0]


def test_calibrate_is_a_short_fixed_workload():
    assert meta._workload() == meta._workload()  # deterministic
    t = meta.calibrate(repeats=3)
    assert 0.01 < t < 5.0


def test_json_output(tmp_path):
    r = run(tmp_path, sweep(), sweep(c1_bytes=1010), "--json")
    data = json.loads(r.output)
    assert r.exit_code == 1 and data["exit_code"] == 1 and data["summary"]["REGRESSION"] == 1
    c1 = next(c for c in data["cells"] if c["cell"] == "c1")
    assert {c["metric"]: c["verdict"] for c in c1["checks"]}["bytes_sent"] == "REGRESSION"


@pytest.mark.parametrize(
    "content,says",
    [
        (None, "cannot read: No such file or directory"),
        ("", "no records"),
        ("\n\n", "no records"),
        ("not json\n", "line 1: not a JSON record"),
        ('{"config": "t"}\n', "line 1: malformed record: no 'cell'"),
        ("[1, 2]\n", "line 1: not a result record (a JSON list)"),
        (
            json.dumps(record()) + "\n\n" + json.dumps(record(wall="slow")) + "\n",
            "line 3: malformed record: wall_s is 'slow'",
        ),
        (json.dumps(record(warmup=True)) + "\n", "only warmup runs"),
        (b"\x89PNG\r\n\x1a\n\xff\xfe", "not a text file"),
    ],
)
def test_bad_input_exits_2_with_one_clear_message(tmp_path, content, says):
    good = write(tmp_path / "good.jsonl", sweep())
    bad = tmp_path / "bad.jsonl"
    if isinstance(content, bytes):
        bad.write_bytes(content)
    elif content is not None:
        bad.write_text(content)
    for args in ([str(bad), str(good)], [str(good), str(bad)]):
        r = CliRunner().invoke(cmp.command, args)
        assert r.exit_code == 2, r.output
        assert r.exception is None or isinstance(r.exception, SystemExit)
        assert "Traceback" not in r.output
        lines = [line for line in r.output.splitlines() if line.strip()]
        assert len(lines) == 1 and lines[0].startswith(f"error: {bad}") and says in lines[0], r.output


def test_half_written_last_line_is_a_warning_not_an_error(tmp_path):
    good = write(tmp_path / "good.jsonl", sweep())
    cut = tmp_path / "cut.jsonl"
    cut.write_text(good.read_text() + json.dumps(record())[:40])
    r = CliRunner().invoke(cmp.command, [str(good), str(cut)])
    assert r.exit_code == 0 and "half-written" in r.output


# ---------------------------------------------------------------- a real sweep


@pytest.fixture(scope="module")
def real_results(tmp_path_factory) -> Path:
    """A real tiny sweep through the CLI: MPyC shamir and the plain engine on 10 and 20 patients
    (tests/test_report.py reports it too)."""
    d = tmp_path_factory.mktemp("real")
    cfg = d / "tiny.yaml"
    cfg.write_text(f"""
name: tiny
query: {QUERY}
populations: [synthetic:10, synthetic:20]
padding: {{conditions: 4, exams: 6}}
truncate: true
engines:
  - {{engine: mpyc, protocol: shamir, parties: 3}}
  - {{engine: plain}}
repeats: 2
warmup: 0
timeout_s: 120
""")
    out = d / "tiny.jsonl"
    return run_cli_sweep(cfg, out)


def test_real_sweep_against_itself_and_doctored(tmp_path, real_results):
    records = [json.loads(line) for line in real_results.read_text().splitlines()]
    assert len(records) == 8 and all(r["error"] is None for r in records)
    r = CliRunner().invoke(cmp.command, [str(real_results), str(real_results)])
    assert r.exit_code == 0, r.output
    assert "tiny mpyc/shamir/3p synthetic:10 loopback" in r.output and "PASS: 4 cell(s): 4 ok" in r.output
    # the MPyC cell's bytes grow 2%: beyond any tolerance its own spread allows
    doctored = [
        dict(r, bytes_sent=int(r["bytes_sent"] * 1.02)) if r["engine"] == "mpyc" else r for r in records
    ]
    r = CliRunner().invoke(cmp.command, [str(real_results), str(write(tmp_path / "d.jsonl", doctored))])
    assert r.exit_code == 1 and "bytes_sent +2" in r.output, r.output
    # the plain engine's times x10 (two samples: the ratio-alone rule)
    doctored = [dict(r, wall_s=r["wall_s"] * 10) if r["engine"] == "plain" else r for r in records]
    r = CliRunner().invoke(cmp.command, [str(real_results), str(write(tmp_path / "d.jsonl", doctored))])
    assert r.exit_code == 1 and "too few for the U test" in r.output, r.output


def test_zero_baseline_bytes_and_json_without_infinity(tmp_path):
    r = run(tmp_path, sweep(c1_bytes=0), sweep(c1_bytes=10), "--json")
    data = json.loads(r.output)  # strict JSON: the infinite ratio is written as "inf"
    c1 = next(c for c in data["cells"] if c["cell"] == "c1")
    check = next(c for c in c1["checks"] if c["metric"] == "bytes_sent")
    assert r.exit_code == 1 and check["verdict"] == "REGRESSION" and check["ratio"] == "inf"


def test_times_warn_keeps_exact_figures_failing():
    """--times warn: a slowed series is a warning, a changed byte count still fails."""
    from harness.analysis.compare import Thresholds

    base = sweep(cells=("c1",))
    slow = sweep(cells=("c1",), scale=3.0)
    assert compare(base, slow, Thresholds(times_fail=False)).exit_code == 0
    assert compare(base, slow).exit_code == 1
    chattier = sweep(cells=("c1",), c1_bytes=1001)
    assert compare(base, chattier, Thresholds(times_fail=False)).exit_code == 1


def test_times_across_placements_are_not_compared_unless_asked(tmp_path):
    """The same cell run here and on a cluster: its exact figures are compared, its times
    are a warning saying why not, unless --across-placements."""
    hosts = [{"node_id": f"n{i}", "ip": "127.0.0.1"} for i in range(3)]
    on_cluster = [r | {"hosts": hosts} for r in sweep(scale=3.0)]
    c = by_cell(compare(sweep(), on_cluster))["c1"]
    assert c.check("wall_s").verdict == "warn" and "not compared" in c.check("wall_s").rule
    assert "here in the baseline, on a cluster, STRICT_SPREAD in the new" in c.check("wall_s").rule
    assert c.check("bytes_sent").verdict == "ok"
    assert run(tmp_path, sweep(), on_cluster).exit_code == 0
    r = run(tmp_path, sweep(), on_cluster, "--across-placements")
    assert r.exit_code == 1 and "REGRESSION" in r.output


def test_times_across_concurrency_are_not_compared_unless_asked():
    """The same cell on the same cluster, one run at a time and two at once: times refused."""
    hosts = [{"node_id": f"n{i}", "ip": "127.0.0.1"} for i in range(3)]
    alone = [r | {"hosts": hosts} for r in sweep()]
    at_once = [r | {"hosts": hosts, "concurrency": 2} for r in sweep(scale=3.0)]
    c = by_cell(compare(alone, at_once))["c1"]
    assert c.check("wall_s").verdict == "warn"
    assert (
        "STRICT_SPREAD in the baseline, on a cluster, STRICT_SPREAD, 2 runs at once" in c.check("wall_s").rule
    )
    assert c.check("bytes_sent").verdict == "ok"
    across = by_cell(compare(alone, at_once, cmp.Thresholds(across_placements=True)))["c1"]
    assert across.check("wall_s").verdict == "REGRESSION"
