"""The report (`cohortbench report RESULTS.jsonl... --out DIR`): plots, one HTML page, a CSV.

Writes into DIR:

* `report.html`: one self-contained page (no external resources: CSS inline, plots
  embedded as base64 PNG) with the run metadata, the summary table per cell, every
  figure the data supports, the figures it does not (and why), and failed runs;
* `cells.csv`: one row per cell (median, quartiles and IQR of the wall time, bytes,
  bytes per party, rounds, cohort size, correctness, run counts);
* one PNG per supported figure:
  - `time_vs_population.png`: median wall time against the population, per protocol,
    log-log, IQR error bars (series with at least two populations);
  - `time_vs_network.png`: median wall time per network profile, per protocol
    (series run on at least two networks);
  - `bytes_per_party.png`: bytes each party sent, per protocol, at the protocol's
    largest population;
  - `security_model.png`: median time relative to the fastest semi-honest protocol at
    the same population, network and query, bars grouped by security and majority
    (contexts with at least two protocols);
  - the paper-reproduction figures (configs/paper.yaml and configs/paper-slots.yaml):
    `paper_time_vs_population.png` (Figure 7: config `paper`, 5 to 100 patients, one panel
    per protocol, one line per criterion), `paper_bytes_per_criterion.png` (Figure 8:
    config `paper`, one bar per query name, e.g. age, smoker, gender) and
    `paper_bytes_vs_slots.png` (Figure 9: config `paper-slots`, bytes against the
    condition/exam slots per patient for its condition/exams queries; queries named
    `conditions-N` / `exams-N` in any config count too, with that N).

A figure the data does not support is skipped, and the page says why.

Statistics are computed from the raw measured samples (warmups are not counted) of
the runs that finished and agreed with the oracle; cells are identified by config
name and cell hash, so several results files (or resumed sweeps) can be combined.
"""

from __future__ import annotations

import base64
import csv
import datetime as dt
import io
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import click
from rich.console import Console

from circuits.errors import InputError
from harness.analysis.compare import load
from harness.analysis import tamper
from harness.analysis import stats
from harness.analysis.records import Record, measured
from harness.analysis.stats import Cell, format_value

PAPER, PAPER_SLOTS = "paper", "paper-slots"  # the paper-reproduction configs
PAPER_POPULATIONS = (5, 100)
_SLOTS_QUERY = re.compile(r"^(conditions|exams)-(\d+)$")
MB = 1e6


# ---------------------------------------------------------------- cells


def cells(records: list[Record]) -> list[Cell]:
    """The cells, in the report's order: config, query, population, network, protocol."""
    return sorted(
        stats.cells(records), key=lambda c: (c.config, c.query, c.population, c.network_order, c.engine_label)
    )


def _network_label(c: Cell) -> str:
    n = c.first.network or {}
    bw = n.get("bandwidth_mbit")
    return f"{c.network}\n{n.get('delay_ms') or 0:g} ms, " + (
        f"{bw:g} Mbit/s" if bw is not None else "unlimited"
    )


# ---------------------------------------------------------------- labels


def _series_labels(keys: list[dict[str, str]]) -> list[str]:
    """Labels naming only the settings that differ between series (always the protocol)."""
    if not keys:
        return []
    vary = [k for k in keys[0] if k == "protocol" or len({str(key.get(k)) for key in keys}) > 1]
    labels = [" ".join(str(key[k]) for k in vary) for key in keys]
    return labels


def _series_key(c: Cell, *exclude: str) -> dict[str, str]:
    key = {
        "config": c.config,
        "protocol": c.engine_label,
        "query": c.query,
        "padding": c.padding,
        "population": f"n={c.population}",
        "network": c.network,
    }
    for k in exclude:
        key.pop(k, None)
    return key


# ---------------------------------------------------------------- figures


@dataclass
class Figure:
    name: str  # file stem
    title: str
    caption: str
    png: bytes | None = None
    skipped: str | None = None  # why the data does not support it
    omitted: list[str] = field(default_factory=list)  # series left out of a drawn figure


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.rcParams.update(
        {
            "figure.dpi": 110,
            "axes.grid": True,
            "grid.alpha": 0.3,
            "axes.titlesize": 11,
            "legend.fontsize": 8,
            "font.size": 9,
        }
    )
    return plt


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buf, format="png", bbox_inches="tight")
    _plt().close(fig)
    return buf.getvalue()


def _legend(ax, n: int) -> None:
    if n > 8:
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0)
    elif n:
        ax.legend(loc="best")


def _log_axis(axis, which: str, ticks: list[float] | None = None) -> None:
    """A log axis labelled with plain numbers (2, 5, 10, 20 ...) instead of 2x10^0."""
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    ax = axis.axes
    (ax.set_xscale if which == "x" else ax.set_yscale)("log")
    plain = FuncFormatter(lambda v, _: f"{v:g}")
    if ticks and len(ticks) <= 12:
        axis.set_ticks(ticks)
    else:
        axis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    axis.set_major_formatter(plain)
    axis.set_minor_formatter(NullFormatter())


def _errorbars(c_list: list[Cell]) -> tuple[list[float], list[list[float]]]:
    y, err = [], [[], []]
    for c in c_list:
        lo, hi = c.wall_q or (c.wall, c.wall)  # one run: no bar
        y.append(c.wall)
        err[0].append(max(c.wall - lo, 0.0))
        err[1].append(max(hi - c.wall, 0.0))
    return y, err


def _time_series(
    data: list[Cell], x_of: Callable[[Cell], object], exclude: str, omitted: list[str]
) -> tuple[list[str], list[list[Cell]]]:
    """Group timed cells into series (all settings but `exclude` equal); keep those with >= 2 x."""
    groups: dict[tuple, list[Cell]] = {}
    keys: dict[tuple, dict] = {}
    for c in data:
        if c.wall is None:
            continue
        k = _series_key(c, exclude)
        groups.setdefault(tuple(k.items()), []).append(c)
        keys[tuple(k.items())] = k
    kept = [(keys[k], v) for k, v in groups.items() if len({x_of(c) for c in v}) >= 2]
    dropped = [(keys[k], v) for k, v in groups.items() if len({x_of(c) for c in v}) < 2]
    if kept and dropped:  # name what was left out, in the same terms as the kept labels
        names = _series_labels([k for k, _ in kept] + [k for k, _ in dropped])[len(kept) :]
        notes = [f"{n} (only {x_of(v[0])})" for n, (_, v) in zip(names, dropped)]
        omitted.extend(notes if len(notes) <= 6 else [f"{len(notes)} series, e.g. " + "; ".join(notes[:3])])
    return _series_labels([k for k, _ in kept]), [v for _, v in kept]


def _time_figure(
    f: Figure,
    data: list[Cell],
    x_of: Callable[[Cell], object],
    axis: str,
    why_not: str,
    draw: Callable[[list[str], list[list[Cell]]], object],
) -> Figure:
    """A time-against-`axis` figure drawn by `draw(labels, series)`, or skipped for `why_not`."""
    labels, series = _time_series(data, x_of, axis, f.omitted)
    if not series:
        f.skipped = why_not
    else:
        f.png = _png(draw(labels, series))
    return f


def _draw_time_vs_population(labels: list[str], series: list[list[Cell]]):
    fig, ax = _time_lines(
        labels,
        series,
        lambda c: c.population,
        lambda c: c.population,
        "population (patients)",
        "Wall time vs population (median, IQR)",
    )
    _log_axis(ax.xaxis, "x", sorted({c.population for s in series for c in s}))
    return fig


def _draw_time_vs_network(labels: list[str], series: list[list[Cell]]):
    profiles = sorted({(c.network_order, _network_label(c)) for s in series for c in s})
    xpos = {label: i for i, (_, label) in enumerate(profiles)}
    fig, ax = _time_lines(
        labels,
        series,
        lambda c: c.network_order,
        lambda c: xpos[_network_label(c)],
        "network profile (one-way delay, bandwidth)",
        "Wall time vs network profile (median, IQR)",
    )
    ax.set_xticks(range(len(profiles)), [label for _, label in profiles])
    return fig


@dataclass(frozen=True)
class TimeAxis:
    """One of the time-against-a-setting figures: what it is called, what it plots, how."""

    name: str
    title: str
    caption: str
    x_of: Callable[[Cell], object]
    axis: str
    why_not: str  # when no protocol has two points on this axis
    draw: Callable[[list[str], list[list[Cell]]], object]


BY_POPULATION = TimeAxis(
    "time_vs_population",
    "Wall time vs population",
    "Median wall time per run against the number of patients, one line per protocol "
    "(log-log); error bars span the interquartile range of the repeats.",
    lambda c: c.population,
    "population",
    "no protocol was run at two or more populations (with the other settings equal)",
    _draw_time_vs_population,
)
BY_NETWORK = TimeAxis(
    "time_vs_network",
    "Wall time vs network profile",
    "Median wall time per run on each emulated network profile (ordered by delay, then "
    "bandwidth), one line per protocol and population; IQR error bars.",
    lambda c: c.network,
    "network",
    "every cell ran on a single network profile",
    _draw_time_vs_network,
)


def fig_time(axis: TimeAxis, data: list[Cell]) -> Figure:
    return _time_figure(
        Figure(axis.name, axis.title, axis.caption), data, axis.x_of, axis.axis, axis.why_not, axis.draw
    )


def _time_lines(
    labels: list[str], series: list[list[Cell]], order: Callable, x: Callable, xlabel: str, title: str
):
    """One median-with-IQR line of wall time per series, on a log time axis."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7.5, 4.8))
    ax.set_xlabel(xlabel)
    ax.set_title(title)
    for label, s in zip(labels, series):
        s = sorted(s, key=order)
        y, err = _errorbars(s)
        ax.errorbar([x(c) for c in s], y, yerr=err, marker="o", capsize=3, label=label)
    _log_axis(ax.yaxis, "y")
    ax.set_ylabel("wall time per run (s)")
    _legend(ax, len(series))
    return fig, ax


# The captions of the report's figures.
_BYTES_PER_PARTY_CAPTION = (
    "Data each party sent in one run (median over repeats), per protocol, at that "
    "protocol's largest population in the data."
)
_SECURITY_MODEL_CAPTION = (
    "Median wall time relative to the fastest semi-honest protocol run at the same "
    "population, network, query and padding (1 = that protocol); bars grouped by "
    "security model and majority, one bar colour per population and network."
)
_PAPER_TIME_VS_POPULATION_CAPTION = (
    "The paper's Figure 7: median wall time per run against the number of patients, "
    "one panel per protocol, one line per criterion (query); IQR error bars."
)
_PAPER_BYTES_PER_CRITERION_CAPTION = (
    "The paper's Figure 8: total data sent by all parties in one run, one bar per "
    "criterion (config 'paper', grouped by query name) and protocol."
)
_PAPER_BYTES_VS_SLOTS_CAPTION = (
    "The paper's Figure 9: total data sent in one run against the number of condition "
    "or exam slots per patient (config 'paper-slots': the padding, for the condition and "
    "exams queries; or queries named conditions-N / exams-N), one line per protocol."
)


def fig_bytes_per_party(data: list[Cell]) -> Figure:
    f = Figure("bytes_per_party", "Bytes sent per party", _BYTES_PER_PARTY_CAPTION)
    largest: dict[tuple, Cell] = {}
    for c in data:
        if c.bytes_by_party is None:
            continue
        k = tuple(_series_key(c, "population").items())
        if k not in largest or c.population > largest[k].population:
            largest[k] = c
    if not largest:
        f.skipped = "no run recorded bytes per party (the plain engine does not communicate)"
        return f
    chosen = sorted(largest.values(), key=lambda c: (c.config, c.engine_label, c.network_order))
    labels = _series_labels([_series_key(c) for c in chosen])
    width = 0.8 / max(len(c.bytes_by_party) for c in chosen)
    plt = _plt()
    fig, ax = plt.subplots(figsize=(max(6.0, 1.3 * len(chosen) + 3), 4.8))
    most = max(len(c.bytes_by_party) for c in chosen)
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for p in range(most):
        xs = [
            i + (p - (len(c.bytes_by_party) - 1) / 2) * width
            for i, c in enumerate(chosen)
            if p < len(c.bytes_by_party)
        ]
        ys = [c.bytes_by_party[p] / MB for c in chosen if p < len(c.bytes_by_party)]
        ax.bar(xs, ys, width, label=f"party {p}", color=colours[p % len(colours)])
    ax.set_xticks(range(len(chosen)), [label.replace(" ", "\n", 1) for label in labels])
    ax.set_ylabel("data sent per run (MB, 10^6 bytes)")
    ax.set_xlabel("protocol (population)")
    ax.set_title("Bytes sent per party")
    _legend(ax, most)
    f.png = _png(fig)
    return f


@dataclass(frozen=True)
class _Bar:
    """One bar of the security-model figure."""

    security: tuple[str, str]
    protocol: str
    context: str  # config, population and network
    ratio: float  # median wall / the fastest semi-honest protocol's in the context


def _security_bars(data: list[Cell]) -> tuple[list[_Bar], dict[str, tuple]]:
    """The bars, and each context label's sort key (numeric population, network order)."""
    contexts: dict[tuple, list[Cell]] = {}
    for c in data:
        if c.wall:
            contexts.setdefault(
                (c.config, c.first.population_source, c.network, c.query, c.padding), []
            ).append(c)
    bars: list[_Bar] = []
    order: dict[str, tuple] = {}
    for ctx, cs in contexts.items():
        semi = [c.wall for c in cs if c.security[0] == "semi-honest" and c.wall]
        if len(cs) < 2 or not semi:
            continue
        fastest = min(semi)
        for c in cs:
            label = f"{ctx[0]} n={c.population} {c.network}"
            order[label] = (ctx[0], c.population, c.network_order, ctx[3], ctx[4])
            bars.append(_Bar(c.security, c.engine_label, label, (c.wall or 0.0) / fastest))
    return bars, order


def _draw_security_bars(
    ax, bars: list[_Bar], slots: list[tuple[tuple[str, str], str]], ctx_names: list[str], colours: list[str]
) -> None:
    """One bar colour per context, side by side in each (security, protocol) slot."""
    width = 0.8 / len(ctx_names)
    for j, ctx in enumerate(ctx_names):
        xs, ys = [], []
        for i, (g, p) in enumerate(slots):
            for b in bars:
                if b.security == g and b.protocol == p and b.context == ctx:
                    xs.append(i + (j - (len(ctx_names) - 1) / 2) * width)
                    ys.append(b.ratio)
        ax.bar(xs, ys, width, label=ctx, color=colours[j % len(colours)])


def _label_security_groups(
    ax, slots: list[tuple[tuple[str, str], str]], groups: list[tuple[str, str]]
) -> None:
    """Each security group's name under its bars, a dashed line between groups."""
    ax.set_xticks(range(len(slots)), [p for _, p in slots])
    for g in groups:
        idx = [i for i, (gg, _) in enumerate(slots) if gg == g]
        ax.annotate(
            f"security: {g[0]}\nmajority: {g[1]}",
            xy=((min(idx) + max(idx)) / 2, 0),
            xycoords=("data", "axes fraction"),
            xytext=(0, -32),
            textcoords="offset points",
            ha="center",
            va="top",
            fontsize=8,
            fontweight="bold",
        )
    for i in range(1, len(slots)):
        if slots[i][0] != slots[i - 1][0]:
            ax.axvline(i - 0.5, color="grey", linewidth=0.8, linestyle="--")


def fig_security_model(data: list[Cell]) -> Figure:
    f = Figure("security_model", "Cost of the security model", _SECURITY_MODEL_CAPTION)
    bars, order = _security_bars(data)
    if not bars:
        f.skipped = (
            "no population/network has two or more protocols including a semi-honest one, "
            "so there is nothing to compare"
        )
        return f
    groups = sorted({b.security for b in bars}, key=lambda s: (s[0] != "none", s))
    ctx_names = sorted({b.context for b in bars}, key=order.__getitem__)
    slots = [(g, p) for g in groups for p in sorted({b.protocol for b in bars if b.security == g})]
    plt = _plt()
    fig, ax = plt.subplots(figsize=(max(6.0, 1.1 * len(slots) + 3), 4.8))
    _draw_security_bars(ax, bars, slots, ctx_names, plt.rcParams["axes.prop_cycle"].by_key()["color"])
    ax.axhline(1.0, color="black", linewidth=0.8)
    ratios = [b.ratio for b in bars]
    if max(ratios) / min(ratios) > 20:  # e.g. the plaintext engine beside MPC: only a log axis shows both
        _log_axis(ax.yaxis, "y")
    else:
        ax.set_ylim(bottom=0)
    _label_security_groups(ax, slots, groups)
    ax.set_ylabel("median time / fastest semi-honest protocol (x)")
    ax.set_title("Cost of the security model (same population and network)")
    _legend(ax, len(ctx_names))
    f.png = _png(fig)
    return f


def _draw_paper_time_vs_population(labels: list[str], series: list[list[Cell]]):
    """One panel per protocol, one line per criterion."""
    lo, hi = PAPER_POPULATIONS
    protocols = sorted({s[0].engine_label for s in series})
    plt = _plt()
    fig, axes = plt.subplots(
        1, len(protocols), figsize=(5.0 * len(protocols) + 1.5, 4.6), squeeze=False, sharey=False
    )
    for ax, proto in zip(axes[0], protocols):
        mine = [(label, s) for label, s in zip(labels, series) if s[0].engine_label == proto]
        for label, s in mine:
            s = sorted(s, key=lambda c: c.population)
            y, err = _errorbars(s)
            short = label.replace(proto, "").strip() or proto
            ax.errorbar([c.population for c in s], y, yerr=err, marker="o", capsize=3, label=short)
        ax.set_xlim(0, max(c.population for _, s in mine for c in s) * 1.05)
        ax.set_ylim(bottom=0)
        ax.set_xlabel("population (patients)")
        ax.set_ylabel("wall time per run (s)")
        ax.set_title(proto)
        _legend(ax, len(mine))
    fig.suptitle(f"Wall time vs population, {lo}-{hi} patients (median, IQR)", fontsize=11)
    return fig


def fig_paper_time_vs_population(data: list[Cell]) -> Figure:
    lo, hi = PAPER_POPULATIONS
    f = Figure(
        "paper_time_vs_population",
        f"Paper: wall time vs population ({lo}-{hi})",
        _PAPER_TIME_VS_POPULATION_CAPTION,
    )
    return _time_figure(
        f,
        [c for c in data if lo <= c.population <= hi],
        lambda c: c.population,
        "population",
        f"no protocol of config 'paper' was run at two or more populations in {lo}-{hi}",
        _draw_paper_time_vs_population,
    )


def _largest_common(chosen: list[Cell], group: Callable[[Cell], object]) -> tuple[list[Cell], str]:
    """Keep, per group, the cells at the largest population every group has (else each its largest)."""
    pops: dict[object, set[int]] = {}
    for c in chosen:
        pops.setdefault(group(c), set()).add(c.population)
    common = set.intersection(*pops.values()) if pops else set()
    kept = [c for c in chosen if c.population == (max(common) if common else max(pops[group(c)]))]
    first_net = {}
    for c in sorted(kept, key=lambda c: c.network_order):  # one network: the fastest profile
        first_net.setdefault((group(c), c.engine_label), c.network)
    kept = [c for c in kept if c.network == first_net[(group(c), c.engine_label)]]
    where = f"n={max(common)} patients" if common else "each at its largest population"
    return kept, where


def fig_paper_bytes_per_criterion(data: list[Cell]) -> Figure:
    f = Figure(
        "paper_bytes_per_criterion", "Paper: bytes per criterion type", _PAPER_BYTES_PER_CRITERION_CAPTION
    )
    chosen = [
        c for c in data if c.config == PAPER and c.bytes_sent is not None and not _SLOTS_QUERY.match(c.query)
    ]
    if not chosen:
        f.skipped = "no records of config 'paper' with a byte count"
        return f
    kept, where = _largest_common(chosen, lambda c: c.query)
    cellmap = {(c.query, c.engine_label): c for c in kept}
    queries = sorted({q for q, _ in cellmap})
    protocols = sorted({p for _, p in cellmap})
    plt = _plt()
    fig, ax = plt.subplots(figsize=(max(6.0, 0.6 * len(queries) * len(protocols) + 3), 4.8))
    width = 0.8 / len(protocols)
    for j, p in enumerate(protocols):
        xs = [i + (j - (len(protocols) - 1) / 2) * width for i, q in enumerate(queries) if (q, p) in cellmap]
        ys = [cellmap[(q, p)].bytes_sent / MB for q in queries if (q, p) in cellmap]
        bars = ax.bar(xs, ys, width, label=p)
        ax.bar_label(bars, [format_value(y * MB, "B") for y in ys], fontsize=7, padding=2)
    ax.set_xticks(range(len(queries)), queries)
    _log_axis(ax.yaxis, "y")
    ax.margins(y=0.15)
    ax.set_xlabel("criterion (query name)")
    ax.set_ylabel("data sent per run, all parties (MB, log scale)")
    ax.set_title(f"Bytes per criterion type ({where})")
    _legend(ax, len(protocols))
    f.png = _png(fig)
    return f


def _slots_point(c: Cell) -> tuple[str, int] | None:
    """(kind, N) of a bytes-vs-slots point: a query named conditions-N / exams-N, or a
    condition / exams query of config 'paper-slots', whose N is the padding's slot count."""
    m = _SLOTS_QUERY.match(c.query)
    if m:
        return m[1], int(m[2])
    if c.config != PAPER_SLOTS:
        return None
    kind = {"condition": "conditions", "conditions": "conditions", "exam": "exams", "exams": "exams"}.get(
        c.query
    )
    n = (c.first.get("padding") or {}).get(kind) if kind else None
    return (kind, n) if isinstance(n, int) and not isinstance(n, bool) else None


def fig_paper_bytes_vs_slots(data: list[Cell]) -> Figure:
    f = Figure(
        "paper_bytes_vs_slots", "Paper: bytes vs number of conditions / exams", _PAPER_BYTES_VS_SLOTS_CAPTION
    )
    chosen = [c for c in data if c.bytes_sent is not None and _slots_point(c)]
    if not chosen:
        f.skipped = (
            "no records of config 'paper-slots' (or queries named conditions-N / exams-N) with a byte count"
        )
        return f
    kept, where = _largest_common(chosen, lambda c: _slots_point(c)[0])
    kinds = [k for k in ("conditions", "exams") if any(_slots_point(c)[0] == k for c in kept)]
    plt = _plt()
    fig, axes = plt.subplots(1, len(kinds), figsize=(5.2 * len(kinds) + 1, 4.5), squeeze=False)
    for ax, kind in zip(axes[0], kinds):
        mine = [c for c in kept if _slots_point(c)[0] == kind]
        protocols = sorted({c.engine_label for c in mine})
        for p in protocols:
            pts = sorted((_slots_point(c)[1], c.bytes_sent / MB) for c in mine if c.engine_label == p)
            ax.plot([x for x, _ in pts], [y for _, y in pts], marker="o", label=p)
        ns = sorted({_slots_point(c)[1] for c in mine})
        if len(ns) >= 3 and ns[-1] / max(ns[0], 1) >= 16:
            ax.set_xscale("log", base=2)
        ax.set_xticks(ns, [str(n) for n in ns])
        ax.set_xlabel(f"{kind} per patient, N (slots)")
        ax.set_ylabel("data sent per run, all parties (MB)")
        ax.set_ylim(bottom=0)
        ax.set_title(f"Bytes vs {kind} ({where})")
        _legend(ax, len(protocols))
    f.png = _png(fig)
    return f


def figures(all_cells: list[Cell]) -> list[Figure]:
    """Every figure, drawn or skipped with the reason."""
    paper = [c for c in all_cells if c.config in (PAPER, PAPER_SLOTS)]
    general = [c for c in all_cells if c.config not in (PAPER, PAPER_SLOTS)] or all_cells
    out = [
        fig_time(BY_POPULATION, general),
        fig_time(BY_NETWORK, general),
        fig_bytes_per_party(general),
        fig_security_model(general),
    ]
    paper_figs = [
        fig_paper_time_vs_population([c for c in paper if c.config == PAPER]),
        fig_paper_bytes_per_criterion(paper),
        fig_paper_bytes_vs_slots(all_cells),
    ]
    if not paper:
        for f in paper_figs[:2]:
            f.skipped = "no records of config 'paper' in the data"
    return out + paper_figs


# ---------------------------------------------------------------- CSV, HTML

CSV_COLUMNS = (
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
    "delay_ms",
    "bandwidth_mbit",
    "padding",
    "query",
    "options",
    "runs",
    "failures",
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
)


def csv_rows(all_cells: list[Cell]) -> list[dict]:
    rows = []
    for c in all_cells:
        f, n = c.first, c.first.get("network") or {}
        q, b = c.wall_q, c.figure("bytes_sent")
        rows.append(
            {
                "config": c.config,
                "cell": f["cell"],
                "engine": f.get("engine"),
                "protocol": f.get("protocol"),
                "parties": f.get("parties"),
                "security": c.security[0],
                "majority": c.security[1],
                "population": c.population,
                "population_source": f.get("population_source"),
                "network": c.network,
                "delay_ms": n.get("delay_ms"),
                "bandwidth_mbit": n.get("bandwidth_mbit"),
                "padding": c.padding,
                "query": c.query,
                "options": c.options,
                "runs": len(c.runs),
                "failures": len(c.runs) - len(c.ok),
                "wall_median_s": c.wall,
                "wall_q1_s": q[0] if q else None,
                "wall_q3_s": q[1] if q else None,
                "wall_iqr_s": q[1] - q[0] if q else None,
                "wall_min_s": min(c.walls) if c.walls else None,
                "wall_max_s": max(c.walls) if c.walls else None,
                "bytes_sent_median": c.bytes_sent,
                "bytes_sent_min": min(b) if b else None,
                "bytes_sent_max": max(b) if b else None,
                "bytes_deterministic": c.bytes_deterministic,
                "bytes_by_party_median": ";".join(f"{x:.0f}" for x in c.bytes_by_party or []),
                "rounds_median": c.median_of("rounds"),
                "cohort_size": c.cohort,
                "correct": c.correct,
                "peak_rss_kib_max": c.peak_rss_kib,
            }
        )
    return rows


def write_csv(path: Path, rows: list[dict]) -> None:
    with path.open("w", newline="") as fh:
        w = csv.DictWriter(fh, CSV_COLUMNS)
        w.writeheader()
        for r in rows:
            w.writerow({k: ("" if v is None else v) for k, v in r.items()})


META_KEYS = (
    "config",
    "commit",
    "cohortbench",
    "engines",
    "python",
    "cpu",
    "cores",
    "hostname",
    "config_hash",
    "calibration_s",
    "load_avg",
    "runs",
)


def _metas(records: list[dict]) -> list[dict]:
    """Distinct sweep metadata, with the configs and load averages seen under it."""
    out: dict[str, dict] = {}
    for r in records:
        m = r.get("meta") or {}
        key = repr(sorted(m.items(), key=lambda kv: kv[0]))
        row = out.setdefault(key, {k: "" for k in META_KEYS} | {"_configs": set(), "_loads": [], "_n": 0})
        for k in META_KEYS:
            if k in m:
                v = m[k]
                row[k] = (
                    ", ".join(f"{a} {b}" for a, b in v.items())
                    if isinstance(v, dict)
                    else f"{v:.3f} s"
                    if k == "calibration_s" and isinstance(v, float)
                    else v
                )
        row["_configs"].add(r["config"])
        if r.get("load_avg"):
            row["_loads"].append(r["load_avg"][0])
        row["_n"] += 1
    rows = []
    for row in out.values():
        row["config"] = ", ".join(sorted(row.pop("_configs")))
        loads = row.pop("_loads")
        row["load_avg"] = f"{min(loads):.2f}-{max(loads):.2f} (1 min)" if loads else ""
        row["runs"] = row.pop("_n")
        rows.append(row)
    return rows


def _summary(all_cells: list[Cell]) -> tuple[list[str], list[list[dict]]]:
    head = (
        "config|engine/protocol|security|parties|population|network|padding|query|options|"
        "median wall|IQR|bytes|bytes det.|rounds|cohort|correct|runs|speed-up|bytes ratio"
    ).split("|")
    rows = []
    for c in all_cells:
        f = c.first
        r = stats.ratios(c, all_cells)
        det = c.bytes_deterministic

        def num(text: str, cls: str = "num") -> dict:
            return {"text": text, "cls": cls}

        rows.append(
            [
                num(c.config, ""),
                num(f"{f.get('engine')}/{f.get('protocol')}", ""),
                num(", ".join(c.security), ""),
                num(str(f.get("parties"))),
                num(str(c.population)),
                num(c.network, ""),
                num(c.padding, ""),
                num(c.query, ""),
                num(c.options, ""),
                num(format_value(c.wall, " s")),
                num(stats.format_spread(c)),
                num(format_value(c.bytes_sent, "B")),
                num("-" if det is None else "yes" if det else "no"),
                num(format_value(c.median_of("rounds"))),
                num("-" if c.cohort is None else str(c.cohort)),
                num("yes" if c.correct else "NO", "good" if c.correct else "bad"),
                num(f"{len(c.ok)}/{len(c.runs)}", "num" if len(c.ok) == len(c.runs) else "num bad"),
                num(stats.format_ratio(r.speedup, 1, "x")),
                num(stats.format_ratio(r.bytes_ratio, 2)),
            ]
        )
    return head, rows


def _file_info(path: Path, records: list[dict]) -> dict:
    times = sorted(r["time"] for r in records if isinstance(r.get("time"), str))
    m = list(measured(records))
    return {
        "name": str(path),
        "records": len(records),
        "measured": len(m),
        "warmup": len(records) - len(m),
        "failed": sum(1 for r in m if r.get("error") is not None or not r.get("correct")),
        "first": times[0] if times else "-",
        "last": times[-1] if times else "-",
    }


def html(inputs: list[tuple[Path, list[dict]]], all_cells: list[Cell], figs: list[Figure]) -> str:
    import jinja2

    records = [r for _, recs in inputs for r in recs]
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("harness.analysis", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
    )
    head, rows = _summary(all_cells)
    errors = []
    for c in all_cells:
        for r in c.runs:
            if r.get("error") is not None or not r.get("correct"):
                label = f"{c.config} {c.engine_label} n={c.population} {c.network} {c.query}"
                errors.append(
                    {
                        "label": label,
                        "repeat": r.get("repeat"),
                        "error": (r.get("error") or "wrong answer")[:1500],
                    }
                )
    return env.get_template("report.html").render(
        configs=sorted({c.config for c in all_cells}),
        generated=dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        files=[_file_info(p, recs) for p, recs in inputs],
        measured=sum(len(c.runs) for c in all_cells),
        failures=sum(len(c.runs) - len(c.ok) for c in all_cells),
        cells=all_cells,
        meta_keys=META_KEYS,
        metas=_metas(records),
        summary_head=head,
        summary=rows,
        figures=[
            {
                "name": f.name,
                "title": f.title,
                "caption": f.caption,
                "png": f.png,
                "skipped": f.skipped,
                "omitted": f.omitted,
                "b64": base64.b64encode(f.png).decode() if f.png else "",
            }
            for f in figs
        ],
        tamper_head=tamper.TABLE_HEAD,
        tamper_rows=tamper.summary(records),
        tamper_legend=tamper.LEGEND,
        errors=errors,
    )


def build(inputs: list[tuple[Path, list[dict]]], out_dir: Path) -> tuple[list[Path], list[Figure]]:
    """Write the report of these (path, records) into out_dir; returns the files and figures."""
    out_dir.mkdir(parents=True, exist_ok=True)
    all_cells = cells([r for _, recs in inputs for r in recs])
    figs = figures(all_cells)
    written = []
    for f in figs:
        if f.png:
            p = out_dir / f"{f.name}.png"
            p.write_bytes(f.png)
            written.append(p)
    csv_path = out_dir / "cells.csv"
    write_csv(csv_path, csv_rows(all_cells))
    html_path = out_dir / "report.html"
    html_path.write_text(html(inputs, all_cells, figs))
    return [html_path, csv_path, *written], figs


@click.command("report")
@click.argument(
    "results_paths", metavar="RESULTS.jsonl...", nargs=-1, required=True, type=click.Path(path_type=Path)
)
@click.option(
    "--out",
    "out_dir",
    required=True,
    type=click.Path(path_type=Path, file_okay=False),
    help="Directory for report.html, cells.csv and the PNG plots (created if needed).",
)
def command(results_paths: tuple[Path, ...], out_dir: Path) -> None:
    """Write plots, a self-contained HTML page and a per-cell CSV from RESULTS files."""
    err = Console(stderr=True, highlight=False)
    out = Console(highlight=False)

    def warn(message: str) -> None:
        err.print(f"[yellow]warning:[/] {message}", soft_wrap=True)

    try:
        inputs = [(p, load(p, warn)) for p in results_paths]
        if out_dir.exists() and not out_dir.is_dir():
            raise InputError(str(out_dir), "", "exists and is not a directory", "choose another --out")
        files, figs = build(inputs, out_dir)
    except InputError as e:
        err.print(f"[red]error:[/] {e}", soft_wrap=True)
        sys.exit(2)
    except OSError as e:
        err.print(f"[red]error:[/] {out_dir}: cannot write: {e.strerror}", soft_wrap=True)
        sys.exit(2)
    for f in figs:
        if f.skipped:
            out.print(f"[dim]skipped {f.name}: {f.skipped}[/]", soft_wrap=True)
    for p in files:
        out.print(f"wrote {p}", soft_wrap=True)
