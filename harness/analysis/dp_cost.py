"""The cost of differential privacy: each cell of a DP query beside its exact twin.

A DP cell's twin is the cell its config's `compare_to` names (e.g. `{query:
cohort-stats}`, the same aggregates without `dp`), equal to it in every other setting;
a DP cell without such a twin is left out.  Times are the cells' medians of engine
time, bytes the medians sent, rounds the cells' counts; ratios are DP over exact.
"""

from __future__ import annotations

from harness.analysis import stats, summary
from harness.analysis.stats import Cell, format_value

TABLE_HEAD = (
    "engine",
    "population",
    "network",
    "exact s",
    "exact bytes",
    "exact rounds",
    "DP s",
    "DP bytes",
    "DP rounds",
    "DP/exact time",
    "DP/exact bytes",
)


def pairs(all_cells: list[Cell]) -> list[tuple[Cell, Cell]]:
    """(exact, DP) for every DP cell whose `compare_to` twin has no dp."""
    out = []
    for c in all_cells:
        if not c.first.get("dp"):
            continue
        base = stats.baseline(c, all_cells)
        if base is not None and not base.first.get("dp"):
            out.append((base, c))
    return sorted(out, key=lambda p: (p[1].population, p[1].network_order, p[1].engine_label))


def _ratio(a: float | None, b: float | None, digits: int = 2) -> str:
    return "-" if a is None or not b else f"{a / b:.{digits}f}"


def rows(all_cells: list[Cell]) -> list[list[str]]:
    """The table's rows, in TABLE_HEAD's order."""
    return [
        [
            dp.engine_label,
            dp.population_label,
            dp.network,
            format_value(exact.engine_s, " s"),
            format_value(exact.bytes_sent, "B"),
            summary.rounds_text(exact),
            format_value(dp.engine_s, " s"),
            format_value(dp.bytes_sent, "B"),
            summary.rounds_text(dp),
            _ratio(dp.engine_s, exact.engine_s),
            _ratio(dp.bytes_sent, exact.bytes_sent, 3),
        ]
        for exact, dp in pairs(all_cells)
    ]
