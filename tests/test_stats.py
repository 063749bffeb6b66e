"""One definition of the speed-up baseline: `show` and the HTML report print the same ratios."""

from __future__ import annotations

import re

import pytest
from rich.console import Console

from harness.analysis import report, stats, summary
from harness.analysis.records import Record


def run(protocol: str, parties: int, network: str, wall: float, repeat: int, compare_to: dict) -> Record:
    """A realistic record of one MPyC run (the fields `_record` writes that the ratios read)."""
    relayed = network != "loopback"
    return Record.from_json(
        {
            "config": "t",
            "cell": f"{protocol}-{parties}-{network}",
            "engine": "mpyc",
            "protocol": protocol,
            "security": "semi-honest",
            "majority": "honest",
            "parties": parties,
            "population": 100,
            "population_source": "synthetic:100",
            "padding": {"conditions": 8, "exams": 16},
            "slots": [8, 16],
            "query": {"name": "five-criteria", "ir_hash": "d8a6", "output": "eligible"},
            "network": {
                "name": network,
                "relayed": relayed,
                "delay_ms": 0.0,
                "jitter_ms": 0.0,
                "bandwidth_mbit": None,
            },
            "repeat": repeat,
            "warmup": False,
            "wall_s": wall,
            "engine_s": [wall * 0.9] * parties,
            "bytes_sent": int(1000 * wall),
            "bytes_by_party": [int(1000 * wall / parties)] * parties,
            "cohort_size": 3,
            "correct": True,
            "error": None,
            "compare_to": compare_to,
            "meta": {"commit": "abc"},
        }
    )


GRID = [
    ("shamir", 3, "loopback", 1.0),
    ("paper-loop", 3, "loopback", 4.0),
    ("shamir", 5, "loopback", 2.0),
    ("shamir", 3, "relay", 1.5),
    ("paper-loop", 3, "relay", 5.0),
    ("shamir", 5, "relay", 3.0),
]


def records(compare_to: dict) -> list[Record]:
    return [run(p, m, n, w * (1 + i / 100), i, compare_to) for p, m, n, w in GRID for i in range(3)]


def show_speedups(recs: list[Record]) -> dict[tuple[str, str], str]:
    """(protocol with parties, network) -> the speed-up column of `cohortbench show`."""
    console = Console(width=400, record=True)
    console.print(summary.table(recs, wide=True))
    out = {}
    for line in console.export_text().splitlines():
        cols = [c.strip() for c in re.split(r"[│┃]", line)]
        if len(cols) > 15 and cols[1].startswith("mpyc/"):
            out[(f"{cols[1]}/{cols[3]}p", cols[5])] = cols[15]
    return out


def report_speedups(recs: list[Record]) -> dict[tuple[str, str], str]:
    table = report._summary(report.cells(recs))
    i, proto, parties, net = (
        table.head.index(k) for k in ("speed-up", "engine/protocol", "parties", "network")
    )
    return {(f"{r[proto]['text']}/{r[parties]['text']}p", r[net]["text"]): r[i]["text"] for r in table.rows}


@pytest.mark.parametrize(
    "compare_to,expected",
    [
        ({"network": "loopback"}, {("mpyc/shamir/3p", "relay"): "0.7x", ("mpyc/shamir/5p", "relay"): "0.7x"}),
        (
            {"protocol": "paper-loop"},
            {("mpyc/shamir/3p", "loopback"): "4.0x", ("mpyc/shamir/3p", "relay"): "3.3x"},
        ),
        ({"parties": 3}, {("mpyc/shamir/5p", "loopback"): "0.5x", ("mpyc/shamir/5p", "relay"): "0.5x"}),
    ],
)
def test_show_and_report_print_the_same_speedups(compare_to, expected):
    recs = records(compare_to)
    shown, reported = show_speedups(recs), report_speedups(recs)
    assert len(shown) == len(GRID) and shown == reported
    assert {k: shown[k] for k in expected} == expected


def test_baseline_differs_only_in_what_compare_to_names():
    cells = stats.cells(records({"parties": 3}))
    by = {(c.engine_label, c.network): c for c in cells}
    base = stats.baseline(by[("mpyc/paper-loop/3p", "relay")], cells)
    assert base is by[("mpyc/paper-loop/3p", "relay")]  # itself: 3 parties, same protocol and network
    assert stats.baseline(by[("mpyc/shamir/5p", "relay")], cells) is by[("mpyc/shamir/3p", "relay")]


def test_a_single_run_has_no_spread():
    one = stats.cells([run("shamir", 3, "loopback", 1.0, 0, {})])[0]
    assert one.wall == 1.0 and one.wall_q is None and one.wall_iqr is None
    assert stats.format_spread(one) == "\u2013"  # an en dash: no spread, not 0 s
    two = stats.cells([run("shamir", 3, "loopback", w, i, {}) for i, w in enumerate((1.0, 2.0))])[0]
    assert two.wall_iqr == pytest.approx(0.5)
