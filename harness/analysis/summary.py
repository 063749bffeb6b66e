"""The summary table of `cohortbench show` and `run`: one row per cell (see `stats`)."""

from __future__ import annotations

from rich.table import Table

from harness.analysis import stats
from harness.analysis.records import Record
from harness.analysis.stats import Cell, format_value


def _fastest_semi_honest(c: Cell, all_cells: list[Cell]) -> Cell | None:
    """The fastest semi-honest engine on the same population, network and query."""
    same = [
        o
        for o in all_cells
        if o.first.security == "semi-honest"
        and o.time
        and o.config == c.config
        and o.first.population_source == c.first.population_source
        and o.network == c.network
        and o.query == c.query
    ]
    return min(same, key=lambda o: o.time or 0.0, default=None)


def _rounds(c: Cell) -> str:
    """The relay's count; else the engine's own (MP-SPDZ), shown as ~N."""
    rounds, engine_rounds = c.median_of("rounds"), c.median_of("engine_rounds")
    return (
        f"{rounds:.0f}"
        if rounds is not None
        else f"~{engine_rounds:.0f}"
        if engine_rounds is not None
        else "-"
    )


def _row(c: Cell, all_cells: list[Cell]) -> list[str]:
    f = c.first
    r = stats.ratios(c, all_cells)
    fastest = _fastest_semi_honest(c, all_cells)
    vs_fastest = (c.time / fastest.time) if fastest and c.time and fastest.time else None
    return [
        f"{f.engine}/{f.protocol}" + (" tls" if f.tls else ""),
        f"{f.security}/{f.majority}",
        str(f.parties),
        str(f.population),
        c.network,
        format_value(c.wall, " s"),
        stats.format_spread(c),
        format_value(c.engine_s, " s"),
        format_value(c.bytes_sent, "B"),
        format_value(c.median_of("relay_bytes"), "B"),
        _rounds(c),
        str(c.cohort) if c.cohort is not None else "-",
        "[yellow]skipped[/]" if c.skipped else "[green]yes[/]" if c.correct else "[red]NO[/]",
        f"{len(c.ok)}/{len(c.runs)}",
        stats.format_ratio(r.speedup, 1, "x"),
        stats.format_ratio(r.bytes_ratio, 2),
        stats.format_ratio(vs_fastest, 1, "x"),
    ]


def table(records: list[Record]) -> Table:
    all_cells = stats.cells(records)
    t = Table(title=f"cohortbench: {', '.join(sorted({c.config for c in all_cells}))}")
    for name in (
        "engine/protocol|security|parties|population|network|median wall|IQR|engine s|"
        "bytes|relay bytes|rounds|cohort|correct|runs|speed-up|bytes ratio|vs fastest SH"
    ).split("|"):
        t.add_column(name, justify="left" if name in ("engine/protocol", "security", "network") else "right")
    for c in sorted(all_cells, key=lambda c: (c.config, c.population, c.network, c.first.protocol or "")):
        t.add_row(*_row(c, all_cells))
    return t
