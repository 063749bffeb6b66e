"""`cohortbench report`: HTML (self-contained), CSV and the PNG figures the data supports."""

from __future__ import annotations

import csv
import json
from html.parser import HTMLParser
from pathlib import Path

import pytest
from click.testing import CliRunner

from harness.analysis import headline, report, summary
from harness.analysis.records import Record
import cell_records
import test_compare

ROOT = Path(__file__).resolve().parents[1]
real_results = test_compare.real_results  # one real tiny sweep serves both files
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
GENERAL = ("time_vs_population", "time_vs_network", "bytes_per_party", "security_model")
HEADLINE = "headline"  # what each security model costs, per network: drawn above the others
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
    # two populations, MPyC beside the plaintext engine at each: these two are supported
    for name in ("time_vs_population", "bytes_per_party"):
        png = out / f"{name}.png"
        assert png.read_bytes().startswith(PNG_MAGIC), name
        assert f"wrote {png}" in r.output
    assert not (out / "time_vs_network.png").exists()  # loopback only: skipped, with a note
    assert "skipped time_vs_network: every cell ran on a single network profile" in r.output
    # MPyC is the one security model (the plaintext engine is none): nothing to compare
    assert not (out / "security_model.png").exists() and not (out / "headline.png").exists()
    for name in PAPER:
        assert not (out / f"{name}.png").exists()

    page = (out / "report.html").read_text()
    links = assert_self_contained(page)
    assert sum(u.startswith("data:image/png;base64,") for u in links.urls) == 2
    assert "These results hold one security model (semi-honest, honest majority)" in page
    assert "Wall time vs network profile</b>: skipped" in page
    commits = {json.loads(line)["meta"]["commit"] for line in real_results.read_text().splitlines()}
    assert commits and all(f"<td>{c}</td>" in page for c in commits)  # run metadata: the real value
    assert "mpyc/shamir" in page and "plain/" in page  # the summary table

    rows = list(csv.DictReader((out / "cells.csv").open()))
    assert len(rows) == 4 and set(rows[0]) == set(summary.COLUMNS)
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
        assert row["quality"] in ("contended", "ok", "noisy")  # two runs each
        if row["engine"] == "mpyc":
            assert float(row["bytes_sent_median"]) > 0 and len(row["bytes_by_party_median"].split(";")) == 3
            assert 0 < float(row["engine_s"]) < float(row["wall_median_s"])
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
    security: tuple[str, str] | None = None,
) -> dict:
    security = security or (("semi-honest", "honest") if engine == "mpyc" else ("none", "none"))
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
    for net in nets:  # a malicious protocol beside them: the security models' cost
        out += [
            record(
                "net",
                "ps-rep-ring",
                100,
                i,
                2.0 * (1 + net[1] / 10),
                network=net,
                engine="mp-spdz",
                security=("malicious", "honest"),
                bytes_sent=4000,
            )
            for i in range(3)
        ]
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
    for name in (HEADLINE, *GENERAL, *PAPER):
        assert (out / f"{name}.png").read_bytes().startswith(PNG_MAGIC), name
    assert "skipped" not in r.output
    page = (out / "report.html").read_text()
    assert_self_contained(page)
    assert page.count('src="data:image/png;base64,') == 1 + len(GENERAL + PAPER)
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
    # results that never asked for the paper's figures do not mention them
    none = report.figures(cells_of(network_records()))
    assert not {f.name for f in none} & set(PAPER)


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
    ):
        assert why in page
    assert "paper" not in page.lower()  # config ci never asked for the paper's figures


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


# ---------------------------------------------------------------- the answer first


def report_page(tmp_path: Path, records: list) -> tuple[Path, str]:
    """The report of records built by tests/cell_records.py, and its page."""
    tmp_path.mkdir(exist_ok=True)
    path = tmp_path / "results.jsonl"
    path.write_text("".join(json.dumps(r.to_json()) + "\n" for r in records))
    out = tmp_path / "report"
    r = run_report(str(path), "--out", str(out))
    assert r.exit_code == 0, r.output
    return out, (out / "report.html").read_text()


def test_the_report_opens_with_what_security_costs(tmp_path):
    out, page = report_page(tmp_path, cell_records.security_models())
    answer = page.index("What security costs, per network")
    assert answer < page.index("<details>") < page.index("<h2>Summary</h2>") < page.index("<h2>Figures</h2>")
    assert (out / "headline.png").read_bytes().startswith(PNG_MAGIC)
    assert (out / "security_model.png").read_bytes().startswith(PNG_MAGIC)
    costs = headline.costs(report.cells([*cell_records.security_models()]))
    got = {(k.cell.network, k.cell.first.parties, k.model): k for k in costs}
    assert len(got) == 8  # 2 networks x (2 models at 2 parties + 2 at 3 parties)
    mal = got[("lan", 3, ("malicious", "honest"))]
    assert mal.cell.first.protocol == "ps-rep-ring" and mal.baseline.first.protocol == "replicated-ring"
    assert mal.time_ratio == pytest.approx(4.0, rel=0.01) and mal.bytes_ratio == pytest.approx(4.5)
    dm = got[("wan", 2, ("malicious", "dishonest"))]
    assert dm.cell.first.protocol == "spdz2k" and dm.baseline.first.protocol == "semi2k"
    assert dm.time_ratio == pytest.approx(20.0, rel=0.01)
    head = page[answer : page.index("<details>")]
    assert "mp-spdz/ps-rep-ring/3p tls" in head and "<b>4.00x</b>" in head and "<b>4.50x</b>" in head
    assert "every row: population synthetic (1000); query five-criteria" in head


def test_one_security_model_says_so_and_names_the_config_to_run(tmp_path):
    _, page = report_page(tmp_path, cell_records.latency())
    config = headline.COMPARISON
    assert "These results hold one security model (semi-honest, honest majority)" in page
    assert f"<code>cohortbench run {config} --out results/security-models.jsonl</code>" in page
    text = (ROOT / config).read_text()  # that config does compare security models
    assert "malicious-shamir" in text and "semi2k" in text and "mascot" in text
    assert (ROOT / headline.QUICK_COMPARISON).is_file()


def test_the_security_model_chart_compares_security_models_only():
    # MPyC at 3, 5 and 7 parties, shamir and paper-loop: one security model
    mpyc = [r for r in cell_records.synthea() if r.engine == "mpyc"]
    assert report.fig_security_model(report.cells(mpyc)).skipped
    # a malicious protocol at 3 parties beside semi-honest ones at 2 only: no common context
    mixed = [r for r in cell_records.security_models() if r.protocol in ("semi2k", "ps-rep-ring")]
    assert report.fig_security_model(report.cells(mixed)).skipped
    assert headline.missing(report.cells(mixed)).startswith("These results hold 2 security models, but never")


def test_metadata_collapsed_with_only_what_differs(tmp_path):
    a = cell_records.latency(repeats=1)[:4]
    b = [
        cell_records.record("other", "shamir", "lan", i, 1.0, meta={"commit": "def456", "config_hash": "x"})
        for i in range(2)
    ]
    _, page = report_page(tmp_path, a + b)
    details = page[page.index("<details>") : page.index("</details>")]
    assert "3 field(s) differ between runs" not in details  # commit and config_hash only
    assert "2 field(s) differ between runs" in details
    assert details.count("Test CPU") == 1  # a field every run shares: said once
    differ = details[details.index("Where the runs differ") :]
    assert "<th>commit</th>" in differ and "<th>config_hash</th>" in differ and "cpu" not in differ
    assert "abc123" in differ and "def456" in differ


def test_population_labels_name_their_source(tmp_path):
    _, page = report_page(tmp_path, cell_records.synthea())
    assert "synthea-r4 (60)" in page and "n=60" not in page
    _, page = report_page(tmp_path / "gen", cell_records.security_models())
    assert "synthetic (1000)" in page and "n=1000" not in page


def test_the_summary_prints_quality_and_flags_anomalies(tmp_path):
    recs = [cell_records.record("t", "shamir", "lan", i, 5.0 + i / 100, load=3.0, cores=2) for i in range(2)]
    recs += [cell_records.record("t", "shamir", "wan", i, 3.9 + i / 100) for i in range(3)]
    out, page = report_page(tmp_path, recs)
    summary_html = page[page.index("<h2>Summary</h2>") : page.index("<h2>Figures</h2>")]
    assert "<th>quality</th>" in summary_html and ">contended<" in summary_html and ">ok<" in summary_html
    assert "3.91 s*" in summary_html and "Anomalies" in summary_html
    assert "time fell as delay rose" in summary_html and "a negative slope" in summary_html
    rows = {r["network"]: r for r in csv.DictReader((out / "cells.csv").open())}
    assert rows["lan"]["quality"] == "contended" and rows["wan"]["anomaly"].startswith("3.91 s on wan")
    assert float(rows["wan"]["engine_s"]) == pytest.approx(3.91)


def _stats_records() -> list[Record]:
    """A stats config's records: the same aggregates exact and with dp, on lan."""
    out = []
    for dp, t, b in ((None, 1.0, 2.0e6), ({"mechanism": "discrete-gaussian", "epsilon": 1.0}, 1.2, 2.01e6)):
        name = "cohort-stats-dp" if dp else "cohort-stats"
        for i in range(3):
            r = cell_records.record("stats", "shamir", "lan", i, t, bytes_sent=b).to_json()
            r.update(cell=f"{r['cell']}-{name}", query={**r["query"], "name": name, "output": "stats"})
            r.update(compare_to={"query": "cohort-stats"}, dp=dp, rounds=15.0 if dp else 14.0)
            out.append(Record.from_json(r))
    return out


def test_the_report_shows_what_differential_privacy_costs(tmp_path):
    """A DP cell beside its exact twin (the config's compare_to): times, bytes, rounds, ratios."""
    _, page = report_page(tmp_path, _stats_records())
    table = page[page.index("<h2>Cost of differential privacy</h2>") :]
    table = table[: table.index("</table>")]
    cells = [c.split(">", 1)[1] for c in table.split("<td")[1:]]
    cells = [c[: c.index("</td>")] for c in cells]
    assert cells[:3] == ["mpyc/shamir/3p", "synthetic (1000)", "lan"]
    assert cells[5] == "14" and cells[8] == "15"
    assert cells[9] == "1.20" and cells[10] == "1.005"
    assert "Cost of differential privacy" not in report_page(tmp_path / "no-dp", cell_records.latency())[1]


def _private(researcher: int, protocol: str = "bfv") -> dict:
    r = record("c", protocol, 1000, 0, 1.0, engine="mhe", security=("semi-honest", "dishonest"))
    r |= {"criteria": "private", "researcher": researcher, "deployment": {"sites": 3, "partition": "rows"}}
    return r


def test_a_researcher_beyond_the_sites_is_labelled_extra():
    site, extra = cells_of([_private(0)]), cells_of([_private(3, "bfv-flood")])
    assert site[0].criteria == "private r=0"
    assert extra[0].criteria == "private r=extra"
    one_holder = cells_of([_private(1) | {"deployment": "patient"}])
    assert one_holder[0].criteria == "private r=1"  # a one-holder deployment is a bare name


def test_more_lines_than_a_panel_holds_become_one_panel_per_protocol():
    nets = ("lan", "wan", "wan-2", "wan-3")
    data = cells_of(
        [
            record("c", p, n, 0, 1.0, network=(net, 0.1, None))
            for p in "abc"
            for n in (10, 100)
            for net in nets
        ]
    )
    labels, series = report._time_series(data, lambda c: c.population, "population", [])
    panels = report._panels(labels, series, len(series) > report.MAX_LINES)
    assert [name for name, _ in panels] == ["mpyc/a/3p", "mpyc/b/3p", "mpyc/c/3p"]
    assert all(len(lines) == 4 and "mpyc/a" not in lines[0][0] for _, lines in panels)


def test_the_headline_never_sets_private_criteria_against_public_ones():
    mpc = record("c", "shamir", 1000, 0, 0.1) | {"deployment": {"sites": 3, "partition": "rows"}}
    private = cells_of([mpc, _private(0)])
    assert headline.costs(private) == []
    public = cells_of([mpc, _private(0) | {"criteria": "public", "researcher": None}])
    assert {k.model for k in headline.costs(public)} == {
        ("semi-honest", "honest"),
        ("semi-honest", "dishonest"),
    }
