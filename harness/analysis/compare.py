"""Performance-regression check: compare a new results file with a baseline (`cohortbench compare`).

Cells are matched by their settings: the record's `cell` hash (engine, population,
network, padding, query, reference date) together with the config name.  A cell
present on only one side is reported as `missing` and fails the check: changing the
CI grid means refreshing the baseline in the same commit.

Each matched cell is judged on the measured (non-warmup) runs, one rule per figure:

* correctness: every new run must have finished without error and agreed with the
  plaintext oracle, and the cohort size must equal the baseline's exactly; any
  failure or mismatch is a regression.
* counted figures (`bytes_sent`, `rounds` when recorded, `messages` when recorded):
  if the baseline's repeats all agree the figure is deterministic and must match
  exactly; otherwise the tolerance is the baseline's own spread (the largest
  relative deviation of a repeat from the median) x 3, at least 0.1%.
* time (`wall_s`): the ratio of medians new/baseline.  It is a regression only when
  the ratio exceeds 1 + fail AND a one-sided Mann-Whitney U test on the raw samples
  says the new ones are larger (p < alpha).  When the sample sizes cannot give
  p < alpha at all (fewer than 3 a side, or 3 against 3, whose smallest exact p is
  0.05), the ratio alone is judged against a wider threshold, 1 + fail x 2, and the
  table says so.  A ratio above 1 + warn is a warning.
* calibration: when every record of both files carries `meta.calibration_s` (the
  time of `calibrate()`'s fixed CPU workload, measured in the same sweep), each time
  is divided by its sweep's calibration first, so a slower machine is not a
  regression.
* placement: times of a cell whose parties ran in different places on the two sides
  (here, or a cluster's nodes with a placement and a concurrency: `where`) are not
  compared, a warning that says so, unless `--across-placements`; exact figures still are.

Exit status: 0 no regression (warnings and improvements allowed), 1 a regression or
a missing cell, 2 bad input (unreadable file, no records, malformed record).
"""

from __future__ import annotations

import json
import math
import statistics
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import click
from rich.console import Console
from rich.table import Table

from circuits.errors import InputError
from harness.analysis import records as results, stats
from harness.analysis.records import Record
from harness.analysis.stats import format_value

OK, IMPROVED, WARN, MISSING, REGRESSION = "ok", "improved", "warn", "missing", "REGRESSION"
_SEVERITY = {OK: 0, IMPROVED: 1, WARN: 2, MISSING: 3, REGRESSION: 4}
_STYLE = {OK: "green", IMPROVED: "cyan", WARN: "yellow", MISSING: "magenta", REGRESSION: "bold red"}
COUNTED = ("bytes_sent", "rounds", "messages")  # compared exactly when deterministic


@dataclass(frozen=True)
class Thresholds:
    warn: float = 0.10  # time ratio above 1 + warn: a warning
    fail: float = 0.50  # time ratio above 1 + fail (and significant): a regression
    alpha: float = 0.05  # significance level of the Mann-Whitney U test
    spread_factor: float = 3.0  # non-deterministic counts: tolerance = spread x this ...
    min_tolerance: float = 0.001  # ... and at least this
    few_samples_factor: float = 2.0  # without a usable test the time threshold is fail x this
    times_fail: bool = True  # False: a time regression is only a warning (exact figures still fail)
    across_placements: bool = False  # compare times of runs whose parties ran elsewhere

    @property
    def wide_fail(self) -> float:
        return self.fail * self.few_samples_factor


@dataclass
class Check:
    """One figure of one cell: both sides' summaries, their ratio and the verdict."""

    metric: str
    verdict: str
    rule: str  # how it was judged, and why the verdict
    baseline: float | None = None
    new: float | None = None
    ratio: float | None = None
    p_value: float | None = None


@dataclass
class CellResult:
    config: str
    cell: str
    label: str
    verdict: str
    runs: tuple[int, int]  # measured runs in baseline and new
    checks: list[Check] = field(default_factory=list)
    note: str = ""

    def check(self, metric: str) -> Check | None:
        return next((c for c in self.checks if c.metric == metric), None)


@dataclass
class Comparison:
    cells: list[CellResult]
    thresholds: Thresholds
    normalised: bool  # times divided by meta.calibration_s
    calibration: tuple[float | None, float | None]  # median calibration_s of baseline, new
    notes: list[str] = field(default_factory=list)

    def count(self, verdict: str) -> int:
        return sum(c.verdict == verdict for c in self.cells)

    @property
    def exit_code(self) -> int:
        return 1 if any(c.verdict in (REGRESSION, MISSING) for c in self.cells) else 0

    def to_json(self) -> dict:
        return _finite(
            {
                "exit_code": self.exit_code,
                "thresholds": asdict(self.thresholds),
                "normalised": self.normalised,
                "calibration_s": list(self.calibration),
                "summary": {v: self.count(v) for v in _SEVERITY},
                "notes": self.notes,
                "cells": [asdict(c) for c in self.cells],
            }
        )


def _finite(x):
    """JSON has no Infinity: a ratio against a zero baseline is written as the string "inf"."""
    if isinstance(x, float) and not math.isfinite(x):
        return str(x)
    if isinstance(x, dict):
        return {k: _finite(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_finite(v) for v in x]
    return x


# ---------------------------------------------------------------- input


def load(path: Path, warn: Callable[[str], None] | None = None) -> list[Record]:
    """Every record of a results file (type-checked by `records.read`), some of them measured."""
    records = results.read(path, warn)
    if not records:
        raise InputError(str(path), "", "no records", "run `cohortbench run CONFIG --out FILE` first")
    if all(r.warmup for r in records):
        raise InputError(
            str(path), "", "only warmup runs, nothing measured", "use a config with repeats >= 1"
        )
    return records


# ---------------------------------------------------------------- comparison


def _calibration(r: Record) -> float | None:
    c = (r.meta or {}).get("calibration_s")
    return float(c) if isinstance(c, (int, float)) and not isinstance(c, bool) and c > 0 else None


def _group(records: list[Record]) -> dict[tuple[str, str], stats.Cell]:
    return {(c.config, c.key): c for c in stats.cells(records)}


def _label(r: Record, with_query: bool) -> str:
    net = (r.network or {}).get("name", "?")
    text = (
        f"{r.config} {r.engine or '?'}/{r.protocol or '?'}/{r.parties or '?'}p "
        f"{r.population_source or r.population or '?'} {net}"
    )
    if with_query:
        text += f" [{(r.query or {}).get('name', '?')}]"
    return text


def _pct(x: float) -> str:
    return f"{x * 100:+.2f}%" if abs(x) < 0.1 else f"{x * 100:+.1f}%"


def _check_correct(base: list[Record], new: list[Record]) -> Check:
    bad = [r for r in new if r["error"] is not None or not r["correct"]]
    if bad:
        first = (bad[0]["error"] or "wrong answer").strip().splitlines()[0][:120]
        return Check(
            "correct",
            REGRESSION,
            f"{len(bad)} of {len(new)} new run(s) failed: {first}",
            1.0,
            1 - len(bad) / len(new),
        )
    base_bad = sum(1 for r in base if r.error is not None or not r.correct)
    if base_bad:
        return Check(
            "correct",
            IMPROVED,
            f"all new runs correct ({base_bad} baseline run(s) failed)",
            1 - base_bad / len(base),
            1.0,
        )
    return Check("correct", OK, "all runs correct", 1.0, 1.0)


def _check_cohort(base: list[Record], new: list[Record]) -> Check | None:
    b = sorted({r["cohort_size"] for r in base if r["cohort_size"] is not None})
    n = sorted({r["cohort_size"] for r in new if r["cohort_size"] is not None})
    if not n:
        return None  # no successful new run: the correctness check already failed
    if not b:
        return Check("cohort_size", OK, "no baseline cohort to compare with", None, n[0])
    if b != n:
        return Check("cohort_size", REGRESSION, f"cohort size {b} -> {n}", b[0], n[0])
    return Check("cohort_size", OK, "cohort size equal", b[0], n[0])


def _check_counted(metric: str, base: list[Record], new: list[Record], t: Thresholds) -> Check | None:
    b = [float(r[metric]) for r in base if r.get(metric) is not None]
    n = [float(r[metric]) for r in new if r.get(metric) is not None]
    if not b:
        return None  # not recorded in the baseline (rounds: null until it is measured)
    if not n:
        return (
            Check(
                metric,
                WARN,
                f"{metric} recorded in the baseline but not in the new runs",
                statistics.median(b),
            )
            if new
            else None
        )
    bm, nm = statistics.median(b), statistics.median(n)
    ratio = nm / bm if bm else (1.0 if nm == bm else math.inf)
    if len(set(b)) == 1:
        tag = "deterministic" if len(b) > 1 else "1 baseline sample, assumed deterministic"
        worst = max(n)
        if all(v == b[0] for v in n):
            return Check(metric, OK, f"exact ({tag})", bm, nm, ratio)
        if worst > b[0]:
            return Check(
                metric,
                REGRESSION,
                f"{metric} changed: exact rule ({tag}), new max {worst:.0f} vs {b[0]:.0f}"
                + (f" ({_pct(worst / b[0] - 1)})" if b[0] else ""),
                bm,
                nm,
                ratio,
            )
        return Check(metric, IMPROVED, f"{metric} down: exact rule ({tag})", bm, nm, ratio)
    spread = max(abs(v - bm) for v in b) / bm if bm else 0.0
    tol = max(spread * t.spread_factor, t.min_tolerance)
    rule = f"tolerance ±{tol * 100:.2g}% ({t.spread_factor:g}x baseline spread {spread * 100:.2g}%)"
    if ratio - 1 > tol:
        return Check(metric, REGRESSION, f"{metric} {_pct(ratio - 1)} beyond {rule}", bm, nm, ratio)
    if 1 - ratio > tol:
        return Check(metric, IMPROVED, f"{metric} {_pct(ratio - 1)} beyond {rule}", bm, nm, ratio)
    return Check(metric, OK, rule, bm, nm, ratio)


def _min_p(n1: int, n2: int) -> float:
    """The smallest one-sided p-value an exact Mann-Whitney U test can give at these sizes."""
    return 1 / math.comb(n1 + n2, n1) if n1 and n2 else 1.0


def _mwu(x: list[float], y: list[float], alternative: str) -> float:
    from scipy.stats import mannwhitneyu  # scipy is slow to import; only when needed

    p = float(mannwhitneyu(x, y, alternative=alternative).pvalue)
    return 1.0 if math.isnan(p) else p


def _check_time(base: list[Record], new: list[Record], t: Thresholds, normalised: bool) -> Check | None:
    def samples(runs: list[Record]) -> list[float]:
        return [
            r["wall_s"] / _calibration(r) if normalised else float(r["wall_s"])
            for r in runs
            if r["wall_s"] is not None
        ]

    b, n = samples(base), samples(new)
    if not b or not n:
        return None
    bm, nm = statistics.median(b), statistics.median(n)
    ratio = nm / bm if bm > 0 else math.inf
    unit = "calibrated" if normalised else "s"
    if _min_p(len(b), len(n)) < t.alpha:
        up = ratio >= 1
        p = _mwu(n, b, "greater" if up else "less")
        rule = f"median ratio {ratio:.2f}, U test p={p:.2g} ({len(b)} vs {len(n)} samples)"
        if up and ratio > 1 + t.fail and p < t.alpha:
            verdict = REGRESSION
        elif not up and ratio < 1 / (1 + t.warn) and p < t.alpha:
            verdict = IMPROVED
        elif ratio > 1 + t.warn:
            verdict = WARN
            if ratio > 1 + t.fail:
                rule += f": above x{1 + t.fail:.2f} but not significant"
        else:
            verdict = OK
        return _time_verdict(Check("wall_s", verdict, rule + f" [{unit}]", bm, nm, ratio, p), t)
    wide = 1 + t.wide_fail
    rule = (
        f"median ratio {ratio:.2f}; {len(b)} vs {len(n)} samples: too few for the U test "
        f"(best p={_min_p(len(b), len(n)):.2g}), ratio alone vs x{wide:.2f}"
    )
    if ratio > wide:
        verdict = REGRESSION
    elif ratio > 1 + t.warn:
        verdict = WARN
    elif ratio < 1 / wide:
        verdict = IMPROVED
    else:
        verdict = OK
    return _time_verdict(Check("wall_s", verdict, rule + f" [{unit}]", bm, nm, ratio), t)


def where(r: Record) -> str:
    """Where a run's parties ran, as far as times depend on it: here, or on a cluster's
    nodes with its placement, and with how many runs at once."""
    if not r.hosts:
        return "here"
    placed = json.dumps(r.placement, sort_keys=True) if r.placement else "STRICT_SPREAD"
    return f"on a cluster, {placed}" + (f", {r.concurrency} runs at once" if r.concurrency > 1 else "")


def _placed_alike(base: list[Record], new: list[Record], t: Thresholds) -> bool:
    return t.across_placements or {where(r) for r in base} == {where(r) for r in new}


def _elsewhere(base: list[Record], new: list[Record]) -> Check:
    """The time check refused: the two sides' parties ran in different places."""
    b, n = (", ".join(sorted({where(r) for r in runs})) for runs in (base, new))
    rule = f"not compared: the parties ran {b} in the baseline, {n} in the new sweep (--across-placements)"
    return Check("wall_s", WARN, rule)


def _time_verdict(check: Check, t: Thresholds) -> Check:
    """With --times warn, a time regression is reported as a warning, not a failure."""
    if check.verdict == REGRESSION and not t.times_fail:
        check.verdict, check.rule = WARN, check.rule + " (--times warn: not a failure)"
    return check


def compare(baseline: list[Record], new: list[Record], thresholds: Thresholds | None = None) -> Comparison:
    """Match cells by (config, cell hash) and judge each figure of each matched cell."""
    t = thresholds or Thresholds()
    b_cells, n_cells = _group(baseline), _group(new)
    b_cal = [c for r in results.measured(baseline) if (c := _calibration(r))]
    n_cal = [c for r in results.measured(new) if (c := _calibration(r))]
    normalised = len(b_cal) == sum(1 for _ in results.measured(baseline)) and len(n_cal) == sum(
        1 for _ in results.measured(new)
    )
    notes = []
    if normalised:
        notes.append(
            f"times normalised by meta.calibration_s (baseline median "
            f"{statistics.median(b_cal):.3f} s, new {statistics.median(n_cal):.3f} s)"
        )
    else:
        side = " and ".join(
            s
            for s, cal, recs in (("baseline", b_cal, baseline), ("new", n_cal, new))
            if len(cal) < sum(1 for _ in results.measured(recs))
        )
        notes.append(f"times in raw seconds: meta.calibration_s missing in {side}")
    queries = {c.query for c in (*b_cells.values(), *n_cells.values())}
    out = []
    for key in sorted(b_cells.keys() | n_cells.keys(), key=lambda k: _sort_key(b_cells, n_cells, k)):
        b_cell, n_cell = b_cells.get(key), n_cells.get(key)
        b = list(b_cell.runs) if b_cell else []
        n = list(n_cell.runs) if n_cell else []
        label = _label((b or n)[0], len(queries) > 1)
        if not b or not n:
            out.append(
                CellResult(
                    key[0],
                    key[1],
                    label,
                    MISSING,
                    (len(b), len(n)),
                    note="only in the baseline: not run by the new sweep"
                    if b
                    else "only in the new sweep: not in the baseline (refresh it)",
                )
            )
            continue
        b_ok, n_ok = b_cell.ok, n_cell.ok
        checks = [
            _check_correct(b, n),
            _check_cohort(b_ok, n_ok),
            *(_check_counted(m, b_ok, n_ok, t) for m in COUNTED),
            _check_time(b_ok, n_ok, t, normalised)
            if _placed_alike(b_ok, n_ok, t)
            else _elsewhere(b_ok, n_ok),
        ]
        checks = [c for c in checks if c is not None]
        verdict = max((c.verdict for c in checks), key=_SEVERITY.__getitem__)
        out.append(CellResult(key[0], key[1], label, verdict, (len(b), len(n)), checks))
    return Comparison(
        out,
        t,
        normalised,
        (statistics.median(b_cal) if b_cal else None, statistics.median(n_cal) if n_cal else None),
        notes,
    )


def _sort_key(b_cells: dict, n_cells: dict, key: tuple[str, str]) -> tuple:
    r = (b_cells.get(key) or n_cells[key]).first
    return (
        r["config"],
        str(r.get("engine")),
        str(r.get("protocol")),
        r.get("parties") or 0,
        r.get("population") or 0,
        str((r.get("network") or {}).get("name")),
        r["cell"],
    )


# ---------------------------------------------------------------- output


def _num(x: float | None, unit: str = "") -> str:
    return format_value(x, unit, byte_digits=3)


def _ratio(c: Check | None) -> str:
    if c is None or c.ratio is None:
        return "-"
    text = f"{c.ratio:.4f}" if c.metric in COUNTED else f"{c.ratio:.2f}"
    return f"[{_STYLE[c.verdict]}]{text}[/]" if c.verdict != OK else text


def table(cmp: Comparison) -> Table:
    t = Table(title="cohortbench compare: new / baseline", title_justify="left")
    unit = " (calibrated)" if cmp.normalised else ""
    for name in (
        "cell",
        "runs b/n",
        f"wall b{unit}",
        f"wall n{unit}",
        "wall ratio",
        "p",
        "bytes ratio",
        "rounds ratio",
        "cohort",
        "correct",
        "verdict",
        "why",
    ):
        t.add_column(name, justify="left" if name in ("cell", "verdict", "why") else "right", overflow="fold")
    s = "" if cmp.normalised else " s"
    for c in cmp.cells:
        style = _STYLE[c.verdict]
        if c.verdict == MISSING:
            t.add_row(c.label, f"{c.runs[0]}/{c.runs[1]}", *["-"] * 8, f"[{style}]{c.verdict}[/]", c.note)
            continue
        wall, cohort, correct = c.check("wall_s"), c.check("cohort_size"), c.check("correct")
        why = [x.rule for x in c.checks if x.verdict != OK]
        if wall is not None and wall.verdict == OK:
            why.append(wall.rule.split("; ", 1)[-1] if "too few" in wall.rule else "")
        t.add_row(
            c.label,
            f"{c.runs[0]}/{c.runs[1]}",
            _num(wall.baseline if wall else None, s),
            _num(wall.new if wall else None, s),
            _ratio(wall),
            f"{wall.p_value:.2g}" if wall and wall.p_value is not None else "-",
            _ratio(c.check("bytes_sent")),
            _ratio(c.check("rounds")),
            "-"
            if cohort is None
            else (f"{cohort.new}" if cohort.verdict == OK else f"[red]{cohort.baseline}->{cohort.new}[/]"),
            "[green]yes[/]" if correct.verdict in (OK, IMPROVED) else "[red]NO[/]",
            f"[{style}]{c.verdict}[/]",
            "; ".join(w for w in why if w),
        )
    return t


def provenance(path: Path, records: list[Record]) -> str:
    """Where a results file came from: its commit(s), when it ran, how many runs."""
    commits = sorted(
        {
            (c[:12] + ("-dirty" if c.endswith("-dirty") else ""))
            for r in records
            for c in [str((r.get("meta") or {}).get("commit") or "?")]
        }
    )
    times = sorted(r["time"] for r in records if isinstance(r.get("time"), str))
    when = f"{times[0]} .. {times[-1]}" if times else "time unknown"
    return (
        f"{path} ({sum(1 for _ in results.measured(records))} measured runs; "
        f"commit {', '.join(commits)}; {when})"
    )


def summary_line(cmp: Comparison) -> str:
    counts = ", ".join(
        f"{cmp.count(v)} {v}" for v in (OK, IMPROVED, WARN, MISSING, REGRESSION) if cmp.count(v)
    )
    verdict = "[bold red]FAIL[/]" if cmp.exit_code else "[green]PASS[/]"
    return f"{verdict}: {len(cmp.cells)} cell(s): {counts or 'none'}"


def _threshold(flag: str, dest: str, default: float, help: str) -> Callable:
    """A time-ratio threshold option."""
    return click.option(
        flag, dest, type=click.FloatRange(min=0), default=default, show_default=True, help=help
    )


@click.command("compare")
@click.argument("baseline_path", metavar="BASELINE.jsonl", type=click.Path(path_type=Path))
@click.argument("new_path", metavar="NEW.jsonl", type=click.Path(path_type=Path))
@_threshold("--warn", "warn_at", 0.10, "Time ratio above 1+WARN is a warning.")
@_threshold(
    "--fail",
    "fail_at",
    0.50,
    "Time ratio above 1+FAIL, significant by a Mann-Whitney U test, is a regression.",
)
@click.option(
    "--times",
    type=click.Choice(["fail", "warn"]),
    default="fail",
    show_default=True,
    help="warn: a time regression is reported but exits 0 (for a shared CI machine).",
)
@click.option(
    "--across-placements",
    is_flag=True,
    help="Compare times of runs whose parties ran elsewhere (here, cluster, placement, concurrency).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the comparison as JSON instead of a table.")
def command(
    baseline_path: Path,
    new_path: Path,
    warn_at: float,
    fail_at: float,
    times: str,
    across_placements: bool,
    as_json: bool,
) -> None:
    """Compare NEW.jsonl with BASELINE.jsonl: exit 0 no regression, 1 regression, 2 bad input."""
    err = Console(emoji=False, stderr=True, highlight=False)
    out = Console(emoji=False, highlight=False, width=None if sys.stdout.isatty() else 220)

    def warn(message: str) -> None:
        err.print(f"[yellow]warning:[/] {message}", soft_wrap=True)

    try:
        if fail_at < warn_at:
            raise InputError(
                "--fail",
                "",
                f"{fail_at} is below --warn {warn_at}",
                "the fail threshold must be at least the warning threshold",
            )
        base, new = load(baseline_path, warn), load(new_path, warn)
    except InputError as e:
        err.print(f"[red]error:[/] {e}", soft_wrap=True)
        sys.exit(2)
    thresholds = Thresholds(warn_at, fail_at, times_fail=times == "fail", across_placements=across_placements)
    cmp = compare(base, new, thresholds)
    if as_json:
        print(json.dumps(cmp.to_json(), indent=2, default=str, allow_nan=False))
    else:
        out.print(f"baseline: {provenance(baseline_path, base)}", soft_wrap=True)
        out.print(f"new:      {provenance(new_path, new)}", soft_wrap=True)
        out.print(table(cmp))
        for note in cmp.notes:
            out.print(f"note: {note}")
        out.print(summary_line(cmp))
    sys.exit(cmp.exit_code)
