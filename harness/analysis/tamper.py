"""Tamper experiments: the summary table of what became of the runs whose fault fired.

Each record of a tampered run carries `tamper_detected_by` (see
`harness.run.diagnosis`); `outcome` turns a record into one of OUTCOMES.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass

from rich.table import Table

from harness.net.faults import where
from harness.analysis.records import measured

OUTCOMES = ("protocol", "tls", "correct", "wrong", "failed")
CODES = {"protocol": "P", "tls": "T", "correct": "C", "wrong": "W", "failed": "F", None: "-"}


def outcome(record: dict) -> str:
    """One of OUTCOMES for a record of a tampered run."""
    if record.get("error") is None:
        return "correct"
    if record.get("result_correct") is False:
        return "wrong"
    by = record.get("tamper_detected_by")
    if by in ("protocol", "tls"):
        return by
    return "failed"


@dataclass(frozen=True)
class Row:
    first: dict  # one record of the group, for its settings
    counts: dict[str, int]  # outcome -> runs, over the runs whose fault fired
    not_fired: int
    by_fault: str  # each fault's runs as letters (see CODES), e.g. "1->0 flip@3300: TTT, @3900: TTT"
    message: str | None  # the most frequent failing party message of the fired, failed runs
    message_runs: int

    @property
    def tampered(self) -> int:
        return sum(self.counts.values())


def rows(records: list[dict]) -> list[Row]:
    """One row per (config, engine, protocol, parties, tls): outcome counts over the runs whose
    fault fired, the runs whose fault did not fire, the faults, the usual failure."""
    groups: dict[tuple, list[dict]] = {}
    for r in measured(records):
        if not r.get("fault") or r.get("skipped"):
            continue
        key = (r["config"], r["engine"], r["protocol"], r["parties"], bool(r.get("tls")))
        groups.setdefault(key, []).append(r)
    out = []
    for runs in groups.values():
        fired = [r for r in runs if r.get("fault_fired")]
        counts = {k: 0 for k in OUTCOMES}
        for r in fired:
            counts[outcome(r)] += 1
        by_fault: dict[str, list[str]] = {}
        for r in sorted(runs, key=lambda r: r.get("repeat", 0)):
            label = ", ".join(f"{link} {f['mode']}@{where(f)}" for link, f in sorted(r["fault"].items()))
            by_fault.setdefault(label, []).append(CODES[outcome(r) if r.get("fault_fired") else None])
        parts, previous = [], None
        for label in sorted(by_fault, key=_natural):
            head, _, at = label.rpartition("@")
            shown = f"@{at}" if head == previous and "," not in label else label
            parts.append(f"{shown}: {''.join(by_fault[label])}")
            previous = head
        messages = Counter(
            r["failing_party_message"]
            for r in fired
            if r.get("error") is not None and r.get("failing_party_message")
        )
        message, n = messages.most_common(1)[0] if messages else (None, 0)
        out.append(Row(runs[0], counts, len(runs) - len(fired), ", ".join(parts), message, n))
    return out


def _natural(text: str) -> list:
    return [(0, int(t), "") if t.isdigit() else (1, 0, t) for t in re.split(r"(\d+)", text)]


def _pct(n: int, total: int) -> str:
    return f"{100 * n / total:.0f}% ({n})" if total else "-"


TABLE_HEAD = (
    "engine/protocol",
    "security",
    "tampered",
    "detected: protocol",
    "detected: TLS",
    "right answer",
    "WRONG answer",
    "failed otherwise",
    "not fired",
    "per fault",
    "most frequent failure",
)
LEGEND = (
    "per fault, one letter a run: P detected by the protocol, T by TLS, C completed "
    "correct, W completed WRONG, F failed otherwise, - not fired"
)


def summary(records: list[dict]) -> list[list[str]]:
    """The tamper table's rows as plain text (TABLE_HEAD columns); empty without faults."""
    out = []
    for row in sorted(
        rows(records),
        key=lambda r: (
            r.first["config"],
            r.first["security"],
            r.first["majority"],
            r.first["engine"],
            r.first["protocol"],
            bool(r.first.get("tls")),
        ),
    ):
        f, c, n = row.first, row.counts, row.tampered
        message = (
            "-"
            if row.message is None
            else (
                f"{row.message if len(row.message) <= 70 else row.message[:67] + '...'} ({row.message_runs})"
            )
        )
        out.append(
            [
                f"{f['engine']}/{f['protocol']} {f['parties']}p" + (" TLS" if f.get("tls") else " plain"),
                f"{f['security']}/{f['majority']}",
                str(n),
                _pct(c["protocol"], n),
                _pct(c["tls"], n),
                _pct(c["correct"], n),
                _pct(c["wrong"], n),
                _pct(c["failed"], n),
                str(row.not_fired),
                row.by_fault,
                message,
            ]
        )
    return out


def table(records: list[dict]) -> Table | None:
    """The tamper table, or None when no record carries a fault."""
    found = summary(records)
    if not found:
        return None
    t = Table(title="tampering: what became of the runs whose fault fired", caption=LEGEND)
    left = ("engine/protocol", "security", "per fault", "most frequent failure")
    for name in TABLE_HEAD:
        t.add_column(name, justify="left" if name in left else "right")
    wrong = TABLE_HEAD.index("WRONG answer")
    for cells in found:
        if not cells[wrong].startswith("0%") and cells[wrong] != "-":
            cells = cells[:wrong] + [f"[red]{cells[wrong]}[/]"] + cells[wrong + 1 :]
        t.add_row(*cells)
    return t
