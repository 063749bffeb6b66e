"""`cohortbench report`: HTML (self-contained), CSV and the PNG figures the data supports."""

from __future__ import annotations

import csv
import json
from html.parser import HTMLParser
from pathlib import Path

import pytest
from click.testing import CliRunner

from harness.analysis import report
from harness.analysis.records import Record
import test_compare

real_results = test_compare.real_results  # one real tiny sweep serves both files
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
GENERAL = ("time_vs_population", "time_vs_network", "bytes_per_party", "security_model")
PAPER = ("paper_time_vs_population", "paper_bytes_per_criterion", "paper_bytes_vs_slots")


class _Links(HTMLParser):
    """Every URL-bearing attribute and every tag of a page."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []
        self.tags: set[str] = set()

    def handle_starttag(self, tag, attrs):
        self.tags.add(tag)
        self.urls += [v or "" for k, v in attrs if k in ("src", "href", "srcset", "data", "action")]


def assert_self_contained(page: str) -> _Links:
    p = _Links()
    p.feed(page)
    external = [u for u in p.urls if not (u.startswith("data:") or u.startswith("#"))]
    assert external == [], external
    assert not {"script", "link", "iframe", "object"} & p.tags
    assert "url(" not in page.split("</style>")[0]  # no CSS fetches either
    return p


def run_report(*args: str):
    return CliRunner().invoke(report.command, list(args))


def test_report_on_a_real_results_file(tmp_path, real_results):
    out = tmp_path / "report"
    r = run_report(str(real_results), "--out", str(out))
    assert r.exit_code == 0, r.output
    # two populations, MPyC beside the plaintext engine at each: these three are supported
    for name in ("time_vs_population", "bytes_per_party", "security_model"):
        png = out / f"{name}.png"
        assert png.read_bytes().startswith(PNG_MAGIC), name
        assert f"wrote {png}" in r.output
    assert not (out / "time_vs_network.png").exists()  # loopback only: skipped, with a note
    assert "skipped time_vs_network: every cell ran on a single network profile" in r.output
    for name in PAPER:
        assert not (out / f"{name}.png").exists()

    page = (out / "report.html").read_text()
    links = assert_self_contained(page)
    assert sum(u.startswith("data:image/png;base64,") for u in links.urls) == 3
    assert "Wall time vs network profile</b>: skipped" in page
    commits = {json.loads(line)["meta"]["commit"] for line in real_results.read_text().splitlines()}
    assert commits and all(f"<td>{c}</td>" in page for c in commits)  # run metadata: the real value
    assert "mpyc/shamir" in page and "plain/" in page  # the summary table

    rows = list(csv.DictReader((out / "cells.csv").open()))
    assert len(rows) == 4 and set(rows[0]) == set(report.CSV_COLUMNS)
    assert {(r["engine"], r["population"]) for r in rows} == {
        ("plain", "10"),
        ("plain", "20"),
        ("mpyc", "10"),
        ("mpyc", "20"),
    }
    for row in rows:
        assert row["correct"] == "True" and row["runs"] == "2" and row["failures"] == "0"
        assert float(row["wall_q1_s"]) <= float(row["wall_median_s"]) <= float(row["wall_q3_s"])
        assert row["cohort_size"] != ""
        if row["engine"] == "mpyc":
            assert float(row["bytes_sent_median"]) > 0 and len(row["bytes_by_party_median"].split(";")) == 3
        else:
            assert row["bytes_sent_median"] == ""


# ---------------------------------------------------------------- built records


def record(
    config: str,
    protocol: str,
    population: int,
    repeat: int,
    wall: float,
    query: str = "q",
    network: tuple = ("loopback", 0.0, None),
    bytes_sent: int | None = 1000,
    engine: str = "mpyc",
    error: str | None = None,
) -> dict:
    security = ("semi-honest", "honest") if engine == "mpyc" else ("none", "none")
    return {
        "config": config,
        "cell": f"{protocol}-{population}-{query}-{network[0]}",
        "engine": engine,
        "protocol": protocol,
        "security": security[0],
        "majority": security[1],
        "parties": 3,
        "population": population,
        "population_source": f"synthetic:{population}",
        "padding": {"conditions": 8, "exams": 16},
        "query": {"name": query, "ir_hash": query, "output": "eligible"},
        "network": {"name": network[0], "delay_ms": network[1], "bandwidth_mbit": network[2]},
        "repeat": repeat,
        "warmup": False,
        "wall_s": wall,
        "bytes_sent": bytes_sent,
        "bytes_by_party": [bytes_sent // 3] * 3 if bytes_sent else None,
        "rounds": None,
        "cohort_size": 1 if error is None else None,
        "correct": error is None,
        "error": error,
        "compare_to": {"protocol": "loop"},
        "time": "2026-01-01T00:00:00+00:00",
        "load_avg": [0.5, 0.5, 0.5],
        "meta": {"commit": "abc123", "cores": 2},
    }


def paper_records() -> list[dict]:
    out = []
    for proto, k in (("shamir", 1.0), ("loop", 3.0)):
        for n in (5, 10, 20, 50, 100):
            out += [
                record(
                    "paper",
                    proto,
                    n,
                    i,
                    k * (1 + n / 50) * (1 + i / 20),
                    "five-criteria",
                    bytes_sent=int(k * 40_000 * n),
                )
                for i in range(3)
            ]
        for q in ("age", "smoker", "gender", "conditions-1", "conditions-8", "exams-4", "exams-16"):
            size = int(q.split("-")[1]) if "-" in q else 1
            out.append(record("paper", proto, 20, 0, k, q, bytes_sent=int(k * 5000 * size)))
            out += [record("paper", proto, n, 0, k * n / 10, q) for n in (5, 100) if "-" not in q]
    return out


def paper_slots_records() -> list[dict]:
    """configs/paper-slots.yaml: the condition and exams queries at several paddings."""
    out = []
    for proto, k in (("shamir", 1.0), ("loop", 3.0)):
        for q in ("condition", "exams"):
            for slots in (1, 4, 16):
                r = record("paper-slots", proto, 100, 0, k, q, bytes_sent=int(k * 1000 * slots))
                r["padding"] = {"conditions": slots, "exams": slots}
                r["cell"] += f"-{slots}"
                out.append(r)
    return out


def network_records() -> list[dict]:
    nets = (("loopback", 0.0, None), ("lan", 1.0, 1000.0), ("wan", 50.0, 100.0))
    out = []
    for proto, k in (("shamir", 1.0), ("loop", 3.0)):
        for net in nets:
            out += [
                record("net", proto, 100, i, k * (1 + net[1] / 10) + i / 50, network=net) for i in range(3)
            ]
        out += [record("net", proto, 1000, i, 8 * k + i / 50) for i in range(3)]
    out.append(record("net", "plain", 100, 0, 0.001, engine="plain", bytes_sent=None))
    out.append(record("net", "shamir", 300, 0, 5.0, error="party 1 exited with -9"))
    return out


def cells_of(records: list[dict]) -> list:
    """The report's cells of built records, read as a results file would be."""
    return report.cells([Record.from_json(r) for r in records])


def write(path: Path, records: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def test_every_figure_when_the_data_has_it(tmp_path):
    a = write(tmp_path / "paper.jsonl", paper_records())
    b = write(tmp_path / "net.jsonl", network_records())
    out = tmp_path / "all"
    r = run_report(str(a), str(b), "--out", str(out))
    assert r.exit_code == 0, r.output
    for name in GENERAL + PAPER:
        assert (out / f"{name}.png").read_bytes().startswith(PNG_MAGIC), name
    assert "skipped" not in r.output
    page = (out / "report.html").read_text()
    assert_self_contained(page)
    assert page.count('src="data:image/png;base64,') == len(GENERAL + PAPER)
    assert "Failed runs" in page and "party 1 exited with -9" in page
    rows = {
        (r["config"], r["protocol"], r["population"], r["network"], r["query"]): r
        for r in csv.DictReader((out / "cells.csv").open())
    }
    failed = rows[("net", "shamir", "300", "loopback", "q")]
    assert failed["correct"] == "False" and failed["failures"] == "1" and failed["wall_median_s"] == ""
    assert rows[("paper", "shamir", "20", "loopback", "exams-16")]["bytes_sent_median"] == "80000.0"


def test_paper_figures_follow_the_paper_configs():
    cells = cells_of(paper_records() + paper_slots_records())
    fig = report.fig_paper_time_vs_population([c for c in cells if c.config == "paper"])
    assert fig.png and "8 series" in fig.omitted[0]  # conditions-N / exams-N: one population each
    assert not any(q in fig.omitted[0] for q in ("age", "smoker", "gender"))  # 5, 20 and 100
    fig = report.fig_paper_bytes_per_criterion(cells)
    assert fig.png and _title(cells) == "n=100 patients"  # the largest population all criteria share
    points = sorted(p for c in cells if (p := report._slots_point(c)))
    assert ("conditions", 16) in points and ("exams", 4) in points and ("exams", 16) in points
    assert report.fig_paper_bytes_vs_slots(cells_of(paper_slots_records())).png
    none = report.figures(cells_of(network_records()))
    assert {f.name for f in none if f.skipped} == {
        "paper_time_vs_population",
        "paper_bytes_per_criterion",
        "paper_bytes_vs_slots",
    }


def _title(cells) -> str:
    kept, where = report._largest_common(
        [c for c in cells if c.config == "paper" and not report._SLOTS_QUERY.match(c.query)],
        lambda c: c.query,
    )
    return where


def test_security_model_ratios_are_to_the_fastest_semi_honest_protocol():
    cells = cells_of(network_records())
    by = {(c.engine_label, c.network, c.population): c for c in cells}
    assert by[("mpyc/loop/3p", "wan", 100)].wall / by[("mpyc/shamir/3p", "wan", 100)].wall == pytest.approx(
        3.0, rel=0.05
    )
    fig = report.fig_security_model(cells)
    assert fig.png and fig.skipped is None


def test_figures_the_data_does_not_support_are_skipped_with_a_reason(tmp_path):
    one = [record("ci", "shamir", 100, i, 1.0 + i / 10) for i in range(3)]
    out = tmp_path / "one"
    r = run_report(str(write(tmp_path / "one.jsonl", one)), "--out", str(out))
    assert r.exit_code == 0, r.output
    assert sorted(p.name for p in out.iterdir()) == ["bytes_per_party.png", "cells.csv", "report.html"]
    page = (out / "report.html").read_text()
    for why in (
        "no protocol was run at two or more populations",
        "single network profile",
        "nothing to compare",
        "no records of config &#39;paper&#39;",
    ):
        assert why in page


def test_bad_input_exits_2_with_one_clear_message(tmp_path):
    for args, says in (
        ([str(tmp_path / "nope.jsonl")], "cannot read"),
        ([str(write(tmp_path / "empty.jsonl", []))], "no records"),
    ):
        r = run_report(*args, "--out", str(tmp_path / "r"))
        assert r.exit_code == 2 and "Traceback" not in r.output
        lines = [line for line in r.output.splitlines() if line.strip()]
        assert len(lines) == 1 and lines[0].startswith("error: ") and says in lines[0], r.output
    good = write(tmp_path / "good.jsonl", network_records())
    (tmp_path / "file").write_text("x")
    r = run_report(str(good), "--out", str(tmp_path / "file"))
    assert r.exit_code == 2 and ("is a file" in r.output or "not a directory" in r.output), r.output
