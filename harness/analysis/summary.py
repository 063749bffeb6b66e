"""Summary tables: statistics computed from the raw samples, ratios against a baseline row."""
from __future__ import annotations

import statistics
from dataclasses import dataclass

from rich.table import Table

from harness.analysis.records import measured


@dataclass(frozen=True)
class Row:
    first: dict  # one record of the cell, for its settings
    samples: list[float]  # wall_s of the successful measured runs
    bytes_sent: float | None  # engine's own count, median over runs
    relay_bytes: float | None  # the relay's count (relayed networks)
    rounds: float | None  # the relay's count; else the engine's own (MP-SPDZ), shown as ~N
    engine_rounds: float | None
    engine_s: float | None  # the engine's own time (slowest party), median over runs
    runs: int
    failures: int
    correct: bool
    skipped: bool  # every run skipped by the sweep's budget_s

    @property
    def median(self) -> float | None:
        return statistics.median(self.samples) if self.samples else None

    @property
    def time(self) -> float | None:
        """The engine's own time where it reports one (no process start-up), else wall."""
        return self.engine_s if self.engine_s is not None else self.median

    @property
    def iqr(self) -> float | None:
        if len(self.samples) < 2:
            return 0.0 if self.samples else None
        q = statistics.quantiles(self.samples, n=4, method="inclusive")
        return q[2] - q[0]


def rows(records: list[dict]) -> list[Row]:
    cells: dict[tuple, list[dict]] = {}
    for r in measured(records):
        cells.setdefault((r["config"], r["cell"]), []).append(r)
    out = []
    for runs in cells.values():
        ok = [r for r in runs if r["error"] is None]
        out.append(Row(runs[0], [r["wall_s"] for r in ok], _median(ok, "bytes_sent"),
                       _median(ok, "relay_bytes"), _median(ok, "rounds"),
                       _median(ok, "engine_rounds"),
                       statistics.median(max(r["engine_s"]) for r in ok) if ok and all(
                           r.get("engine_s") for r in ok) else None,
                       len(runs), len(runs) - len(ok), all(r["correct"] for r in runs),
                       all(r.get("skipped") for r in runs)))
    return out


def _median(records: list[dict], key: str) -> float | None:
    values = [r[key] for r in records if r.get(key) is not None]
    return statistics.median(values) if values else None


def _field(record: dict, key: str) -> object:
    return record["network"]["name"] if key == "network" else record.get(key)


def _baseline(row: Row, all_rows: list[Row]) -> Row | None:
    """The row named by `compare_to` (e.g. {protocol: paper-loop} or {network: relay}) in
    the same config, population and query, and the same network and party count unless
    it names them."""
    want = row.first.get("compare_to")
    if not want:
        return None
    same = ["config", "population_source"] + [k for k in ("network", "parties") if k not in want]
    for other in all_rows:
        f = other.first
        if (all(_field(f, k) == _field(row.first, k) for k in same)
                and f["query"]["name"] == row.first["query"]["name"]
                and all(_field(f, k) == v for k, v in want.items())):
            return other
    return None


def _fastest_semi_honest(row: Row, all_rows: list[Row]) -> Row | None:
    """The fastest semi-honest engine on the same population, network and query."""
    same = [o for o in all_rows
            if o.first["security"] == "semi-honest" and o.time
            and all(_field(o.first, k) == _field(row.first, k)
                    for k in ("config", "population_source", "network"))
            and o.first["query"]["name"] == row.first["query"]["name"]]
    return min(same, key=lambda o: o.time, default=None)


def format_value(x: float | None, unit: str = "") -> str:
    if x is None:
        return "-"
    if unit == "B":
        for scale, suffix in ((1e9, "GB"), (1e6, "MB"), (1e3, "kB")):
            if x >= scale:
                return f"{x / scale:.2f} {suffix}"
        return f"{x:.0f} B"
    return f"{x:.3g}{unit}"


def table(records: list[dict]) -> Table:
    all_rows = rows(records)
    t = Table(title=f"cohortbench: {', '.join(sorted({r.first['config'] for r in all_rows}))}")
    for name in ("engine/protocol", "security", "parties", "population", "network", "median wall",
                 "IQR", "engine s", "bytes", "relay bytes", "rounds", "cohort", "correct", "runs", "speed-up", "bytes ratio", "vs fastest SH"):
        t.add_column(name, justify="left" if name in ("engine/protocol", "security", "network") else "right")
    for row in sorted(all_rows, key=lambda r: (r.first["config"], r.first["population"],
                                               r.first["network"]["name"], r.first["protocol"])):
        f = row.first
        base = _baseline(row, all_rows)
        speed = (base.median / row.median) if base and base.median and row.median else None
        ratio = (row.bytes_sent / base.bytes_sent) if base and base.bytes_sent and row.bytes_sent else None
        fastest = _fastest_semi_honest(row, all_rows)
        vs_fastest = (row.time / fastest.time) if fastest and row.time and fastest.time else None
        rounds = (f"{row.rounds:.0f}" if row.rounds is not None else
                  f"~{row.engine_rounds:.0f}" if row.engine_rounds is not None else "-")
        t.add_row(f"{f['engine']}/{f['protocol']}" + (" tls" if f.get("tls") else ""), f"{f['security']}/{f['majority']}",
                  str(f["parties"]), str(f["population"]), f["network"]["name"],
                  format_value(row.median, " s"), format_value(row.iqr, " s"),
                  format_value(row.engine_s, " s"), format_value(row.bytes_sent, "B"),
                  format_value(row.relay_bytes, "B"), rounds,
                  str(f["cohort_size"]) if f["cohort_size"] is not None else "-",
                  "[yellow]skipped[/]" if row.skipped else
                  "[green]yes[/]" if row.correct else "[red]NO[/]",
                  f"{row.runs - row.failures}/{row.runs}",
                  f"{speed:.1f}x" if speed else "-", f"{ratio:.2f}" if ratio else "-",
                  f"{vs_fastest:.1f}x" if vs_fastest else "-")
    return t
