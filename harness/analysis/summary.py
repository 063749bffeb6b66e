"""The cell table of `cohortbench show`, `run` and the report: one row per cell (see `stats`).

`table` is the terminal table: by default ten columns that fit 100 characters (the
security model abbreviated, generated populations by their size, see LEGEND); `wide`
adds every other column. `rows` is the same table for scripts, every field by name
(`show --csv` / `--json`, the report's `cells.csv`).
"""

from __future__ import annotations

import csv
from typing import IO, Any

from rich.table import Table
from rich.text import Text

from harness.analysis import stats
from harness.analysis.records import Record
from harness.analysis.stats import Cell, format_value

SECURITY = {"semi-honest": "semi", "malicious": "mal", "none": "none"}
MAJORITY = {"honest": "HM", "dishonest": "DM"}
LEGEND = (
    "security: semi-honest (semi) or malicious (mal), honest (HM) or dishonest (DM) majority; "
    "population: generated patients unless a source is named; engine s: the engine's own time "
    "(slowest party, median); --wide: every column"
)
ANOMALY = "*"  # marks a time that fell as the network's delay rose
COLUMNS = (
    "config",
    "cell",
    "engine",
    "protocol",
    "parties",
    "security",
    "majority",
    "population",
    "population_source",
    "network",
    "deployment",
    "criteria",
    "researcher",
    "delay_ms",
    "bandwidth_mbit",
    "padding",
    "query",
    "options",
    "runs",
    "failures",
    "quality",
    "cv",
    "engine_s",
    "wall_median_s",
    "wall_q1_s",
    "wall_q3_s",
    "wall_iqr_s",
    "wall_min_s",
    "wall_max_s",
    "bytes_sent_median",
    "bytes_sent_min",
    "bytes_sent_max",
    "bytes_deterministic",
    "bytes_by_party_median",
    "rounds_median",
    "cohort_size",
    "correct",
    "peak_rss_kib_max",
    "secure",
    "local_nodes",
    "local_s",
    "input_s",
    "input_bytes_by_party",
    "anomaly",
)


def ordered(records: list[Record]) -> list[Cell]:
    """The cells in the tables' order (see `Cell.order`)."""
    return sorted(stats.cells(records), key=lambda c: c.order)


def anomaly(c: Cell, all_cells: list[Cell]) -> str | None:
    """Why the cell's time is suspect beyond its quality: it fell as the delay rose."""
    slower = stats.slower_at_lower_delay(c, all_cells)
    if slower is None:
        return None
    return (
        f"{format_value(c.time, ' s')} on {c.network}, faster than "
        f"{format_value(slower.time, ' s')} on {slower.network} (less delay): "
        "time fell as delay rose, so the machine was probably busy"
    )


def row(c: Cell, all_cells: list[Cell]) -> dict[str, Any]:
    """Every field of a cell, by the names of COLUMNS."""
    f, n = c.first, c.first.network or {}
    q, b = c.wall_q, c.figure("bytes_sent")
    return {
        "config": c.config,
        "cell": c.key,
        "engine": f.engine,
        "protocol": f.protocol,
        "parties": f.parties,
        "security": c.security[0],
        "majority": c.security[1],
        "population": c.population,
        "population_source": f.population_source,
        "network": c.network,
        "deployment": c.deployment,
        "criteria": f.criteria,
        "researcher": f.researcher,
        "delay_ms": n.get("delay_ms"),
        "bandwidth_mbit": n.get("bandwidth_mbit"),
        "padding": c.padding,
        "query": c.query,
        "options": c.options,
        "runs": len(c.runs),
        "failures": c.failures,
        "quality": c.quality,
        "cv": c.cv,
        "engine_s": c.engine_s,
        "wall_median_s": c.wall,
        "wall_q1_s": q[0] if q else None,
        "wall_q3_s": q[1] if q else None,
        "wall_iqr_s": c.wall_iqr,
        "wall_min_s": min(c.walls) if c.walls else None,
        "wall_max_s": max(c.walls) if c.walls else None,
        "bytes_sent_median": c.bytes_sent,
        "bytes_sent_min": min(b) if b else None,
        "bytes_sent_max": max(b) if b else None,
        "bytes_deterministic": c.bytes_deterministic,
        "bytes_by_party_median": c.bytes_by_party,
        "rounds_median": c.median_of("rounds"),
        "cohort_size": c.cohort,
        "correct": c.correct,
        "peak_rss_kib_max": c.peak_rss_kib,
        "secure": c.secure,
        "local_nodes": f.local_nodes,
        "local_s": c.slowest_site("local_s"),
        "input_s": c.slowest_site("input_s"),
        "input_bytes_by_party": f.input_bytes_by_party,
        "anomaly": anomaly(c, all_cells),
    }


def rows(all_cells: list[Cell]) -> list[dict[str, Any]]:
    return [row(c, all_cells) for c in all_cells]


def write_csv(fh: IO[str], table_rows: list[dict[str, Any]]) -> None:
    """The rows as CSV: None is empty, bytes per party `;`-separated."""
    w = csv.DictWriter(fh, COLUMNS)
    w.writeheader()
    for r in table_rows:
        w.writerow({k: _csv_value(v) for k, v in r.items()})


def _csv_value(v: object) -> object:
    if v is None:
        return ""
    if isinstance(v, list):
        return ";".join("" if x is None else f"{x:.0f}" for x in v)  # a list per party
    return v


def _fastest_semi_honest(c: Cell, all_cells: list[Cell]) -> Cell | None:
    """The fastest semi-honest engine on the same population, network, query and deployment."""
    same = [
        o
        for o in all_cells
        if o.first.security == "semi-honest"
        and o.time
        and o.config == c.config
        and o.first.population_source == c.first.population_source
        and o.network == c.network
        and o.query == c.query
        and o.deployment == c.deployment
    ]
    return min(same, key=lambda o: o.time or 0.0, default=None)


def rounds_text(c: Cell) -> str:
    """The cell's lock-step count; else the engine's own (MP-SPDZ), shown as ~N."""
    rounds, engine_rounds = c.median_of("rounds"), c.median_of("engine_rounds")
    return (
        f"{rounds:.0f}"
        if rounds is not None
        else f"~{engine_rounds:.0f}"
        if engine_rounds is not None
        else "-"
    )


def _correct(c: Cell) -> str:
    return "[yellow]skipped[/]" if c.skipped else "[green]yes[/]" if c.correct else "[red]NO[/]"


def _quality(c: Cell) -> str:
    q = c.quality
    return f"[green]{q}[/]" if q == "ok" else f"[yellow]{q}[/]" if q else "-"


def security_label(c: Cell) -> str:
    """The security model in a few letters, e.g. `mal/DM` (see LEGEND)."""
    sec, maj = c.security
    return "/".join(x for x in (SECURITY.get(sec, sec), MAJORITY.get(maj, "")) if x)


def _population(c: Cell) -> str:
    return str(c.population) if c.population_name == "synthetic" else c.population_label


def _narrow_row(c: Cell, all_cells: list[Cell]) -> list[str]:
    f = c.first
    mark = ANOMALY if stats.slower_at_lower_delay(c, all_cells) else ""
    return [
        f"{f.engine}/{f.protocol}" + (" tls" if f.tls else ""),
        security_label(c),
        str(f.parties),
        _population(c),
        c.network,
        format_value(c.engine_s, " s") + mark,
        format_value(c.bytes_sent, "B", 1),
        rounds_text(c),
        _correct(c),
        _quality(c),
    ]


def site_cells(c: Cell, short: bool = False) -> list[str]:
    """Under sites: what was secure, the slowest site's local evaluation and input phase
    (`short`: small times in ms, for a narrow column)."""
    if c.secure is None:
        return ["-", "-", "-"]
    fmt = _short_seconds if short else (lambda x: format_value(x, " s"))
    return [c.secure, fmt(c.slowest_site("local_s")), fmt(c.slowest_site("input_s"))]


def _short_seconds(x: float | None) -> str:
    if x is None:
        return "-"
    return f"{x * 1e3:.2g} ms" if x < 0.1 else f"{x:.2g} s"


def _wide_row(c: Cell, all_cells: list[Cell]) -> list[str]:
    f = c.first
    r = stats.ratios(c, all_cells)
    fastest = _fastest_semi_honest(c, all_cells)
    vs_fastest = (c.time / fastest.time) if fastest and c.time and fastest.time else None
    mark = ANOMALY if stats.slower_at_lower_delay(c, all_cells) else ""
    return [
        f"{f.engine}/{f.protocol}" + (" tls" if f.tls else ""),
        f"{f.security}/{f.majority}",
        str(f.parties),
        c.population_label,
        c.network,
        format_value(c.wall, " s"),
        stats.format_spread(c),
        format_value(c.engine_s, " s") + mark,
        format_value(c.bytes_sent, "B"),
        format_value(c.median_of("relay_bytes"), "B"),
        rounds_text(c),
        str(c.cohort) if c.cohort is not None else "-",
        _correct(c),
        f"{len(c.ok)}/{len(c.runs)}",
        stats.format_ratio(r.speedup, 1, "x"),
        stats.format_ratio(r.bytes_ratio, 2),
        stats.format_ratio(vs_fastest, 1, "x"),
        _quality(c),
    ]


NARROW = "protocol|security|parties|population|network|engine s|bytes|rounds|correct|quality"
WIDE = (
    "engine/protocol|security|parties|population|network|median wall|IQR|engine s|"
    "bytes|relay bytes|rounds|cohort|correct|runs|speed-up|bytes ratio|vs fastest SH|quality"
)
_LEFT = {
    "protocol",
    "engine/protocol",
    "security",
    "population",
    "network",
    "deployment",
    "correct",
    "quality",
}
# Ways to narrow the table, tried in turn until it fits: a header abbreviated (see LEGEND)
# or on two lines, then the widest cells of a column broken before their last word (TLS,
# a population's size).
_SHORT_HEADER = {"parties": "m", "engine s": "engine\ns"}
_BREAK_CELL = ("protocol", "population", "deployment")


def footnotes(all_cells: list[Cell]) -> list[str]:
    """A line per anomaly (see `anomaly`), marked as in the table."""
    return [
        f"{ANOMALY} {c.engine_label} {c.population_label}: {why}"
        for c in all_cells
        if (why := anomaly(c, all_cells))
    ]


def _cell_width(text: str) -> int:
    return max(Text.from_markup(line).cell_len for line in text.split("\n"))


def _width(head: list[str], body: list[list[str]]) -> int:
    """The table's width without borders: one space between columns."""
    cols = [[h, *(r[i] for r in body)] for i, h in enumerate(head)]
    return sum(max(_cell_width(x) for x in col) for col in cols) + len(head) - 1


def _break(body: list[list[str]], column: int, wider_than: int) -> list[list[str]]:
    """Cells of `column` wider than `wider_than`, broken before their last word."""
    return [
        [*r[:column], "\n".join(r[column].rsplit(" ", 1)), *r[column + 1 :]]
        if _cell_width(r[column]) > wider_than
        else r
        for r in body
    ]


def _fit(head: list[str], body: list[list[str]], width: int) -> tuple[list[str], list[list[str]]]:
    """The narrow table's header and rows, narrowed (see _SHORT_HEADER) until `width` holds it."""
    for long, short in _SHORT_HEADER.items():
        if _width(head, body) <= width:
            return head, body
        head = [short if h == long else h for h in head]
    for name in (n for n in _BREAK_CELL if n in head):
        excess = _width(head, body) - width
        if excess <= 0:
            break
        i = head.index(name)
        body = _break(body, i, max(_cell_width(x) for x in [head[i], *(r[i] for r in body)]) - excess)
    return head, body


def table(records: list[Record], wide: bool = False, width: int = 100) -> Table:
    """The cell table: ten columns fitted to `width` characters, or `wide`, every column."""
    all_cells = ordered(records)
    title = f"cohortbench: {', '.join(sorted({c.config for c in all_cells}))}"
    body = [(_wide_row if wide else _narrow_row)(c, all_cells) for c in all_cells]
    head = (WIDE if wide else NARROW).split("|")
    if any(c.deployment != "patient" for c in all_cells):  # a column after network
        at = head.index("network") + 1
        head.insert(at, "deployment")
        body = [[*r[:at], c.deployment, *r[at:]] for r, c in zip(body, all_cells)]
        if wide:  # and what was secure, what the sites did in the clear and input
            head += ["secure", "local s", "input s"]
            body = [[*r, *site_cells(c)] for r, c in zip(body, all_cells)]
    if any(c.criteria != "public" for c in all_cells):  # a column after network (and deployment)
        at = head.index("network") + 1 + ("deployment" in head)
        head.insert(at, "criteria")
        body = [[*r[:at], c.criteria, *r[at:]] for r, c in zip(body, all_cells)]
    if wide:
        t = Table(title=title)
    else:  # no borders: one space between columns
        head, body = _fit(head, body, width)
        t = Table(title=title, box=None, padding=(0, 1), collapse_padding=True, pad_edge=False)
    for name in head:
        t.add_column(name, justify="left" if name in _LEFT else "right", header_style="bold", no_wrap=True)
    for r in body:
        t.add_row(*r)
    legend = [] if wide else [LEGEND + ("; m: parties" if "m" in head else "")]
    t.caption = "\n".join([*footnotes(all_cells), *legend]) or None
    t.caption_justify = "left"
    return t
