"""The report (`cohortbench report RESULTS.jsonl... --out DIR`): plots, one HTML page, a CSV.

Writes into DIR:

* `report.html`: one self-contained page (no external resources: CSS inline, plots
  embedded as base64 PNG) that opens with the answer (what each security model costs on
  each network, see `headline`; or, with one security model, the config to run), then
  the run metadata collapsed (shared fields once, then only what differs, see
  `metadata`), the summary table per cell with its quality, the anomalies, every figure
  the data supports, the figures it does not (and why), and failed runs;
* `cells.csv`: the cell table of `show --csv` (`summary.COLUMNS`: medians, quartiles,
  engine time, bytes, rounds, quality, anomaly, ...);
* one PNG per supported figure:
  - `headline.png`: per network, each security model's engine time and bytes as
    multiples of the fastest semi-honest protocol's (same query, population, parties);
  - `time_vs_population.png`: median wall time against the population, per protocol,
    log-log, IQR error bars (series with at least two populations);
  - `time_vs_network.png`: median wall time per network profile, per protocol
    (series run on at least two networks);
  - `bytes_per_party.png`: bytes each party sent, per protocol, at the protocol's
    largest population;
  - `security_model.png`: every protocol's engine time relative to the fastest
    semi-honest protocol at the same query, population, parties and network, bars
    grouped by security and majority (contexts with a second security model);
  - the paper-reproduction figures (configs/paper.yaml and configs/paper-slots.yaml):
    `paper_time_vs_population.png` (Figure 7: config `paper`, 5 to 100 patients, one panel
    per protocol, one line per criterion), `paper_bytes_per_criterion.png` (Figure 8:
    config `paper`, one bar per query name, e.g. age, smoker, gender) and
    `paper_bytes_vs_slots.png` (Figure 9: config `paper-slots`, bytes against the
    condition/exam slots per patient for its condition/exams queries; queries named
    `conditions-N` / `exams-N` in any config count too, with that N).

A figure the data does not support is skipped, and the page says why; a paper figure
is mentioned only when the results hold its config.

Statistics are computed from the raw measured samples (warmups are not counted) of
the runs that finished and agreed with the oracle; cells are identified by config
name and cell hash, so several results files (or resumed sweeps) can be combined.
"""

from __future__ import annotations

import base64
import datetime as dt
import io
import itertools
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import click
from rich.console import Console

from circuits.errors import InputError
from harness.analysis import accuracy, dp_cost, headline, latency, metadata, stats, summary, tamper
from harness.analysis.compare import load
from harness.analysis.records import Record, measured
from harness.analysis.stats import Cell, format_value

PAPER, PAPER_SLOTS = "paper", "paper-slots"  # the paper-reproduction configs
PAPER_POPULATIONS = (5, 100)
_SLOTS_QUERY = re.compile(r"^(conditions|exams)-(\d+)$")
MB = 1e6


# ---------------------------------------------------------------- cells


def cells(records: list[Record]) -> list[Cell]:
    """The cells, in the report's order: config, query, population, network, protocol."""
    return summary.ordered(records)


def _network_label(c: Cell) -> str:
    n = c.first.network or {}
    bw = n.get("bandwidth_mbit")
    return f"{c.network}\n{n.get('delay_ms') or 0:g} ms, " + (
        f"{bw:g} Mbit/s" if bw is not None else "unlimited"
    )


# ---------------------------------------------------------------- labels


def _varying(keys: list[dict[str, str]]) -> list[str]:
    """The settings that differ between series (always the protocol)."""
    if not keys:
        return []
    return [k for k in keys[0] if k == "protocol" or len({str(key.get(k)) for key in keys}) > 1]


def _series_labels(keys: list[dict[str, str]]) -> list[str]:
    """Labels naming only the settings that differ between series (always the protocol)."""
    vary = _varying(keys)
    return [" ".join(str(key[k]) for k in vary) for key in keys]


def _two_lines(label: str) -> str:
    """An `engine/protocol/...` label broken after the engine (and before private criteria),
    for a narrow tick."""
    return label.replace("/", "/\n", 1).replace(" private", "\nprivate")


def _series_key(c: Cell, *exclude: str) -> dict[str, str]:
    key = {
        "config": c.config,
        "protocol": c.engine_label,
        "query": c.query,
        "padding": c.padding,
        "population": c.population_label,
        "network": c.network,
        "deployment": c.deployment,
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
    outside = [a for ax in fig.axes for a in (ax.get_legend(),) if a is not None and not a.get_in_layout()]
    extra = [*fig.get_default_bbox_extra_artists(), *outside] if outside else None
    fig.savefig(buf, format="png", bbox_inches="tight", bbox_extra_artists=extra)
    _plt().close(fig)
    return buf.getvalue()


def _legend(ax, n: int) -> None:
    """Past 8 entries, beside the axes and left out of the layout, so that the saved image
    grows to hold it and the plot keeps its size."""
    if n > 8:
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0).set_in_layout(False)
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
        ax.autoscale_view()  # the log scale's own limits: bars start at 0, off a log axis
        lo, hi = sorted(abs(v) or 1.0 for v in axis.get_view_interval())
        wide = hi / lo > 1e3  # over 3 decades 1, 2, 5 would crowd: powers of 10 only
        axis.set_major_locator(LogLocator(base=10, subs=(1.0,) if wide else (1.0, 2.0, 5.0)))
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
    fig, axes = _time_lines(
        labels,
        series,
        lambda c: c.population,
        lambda c: c.population,
        "population (patients)",
        "Wall time vs population (median, IQR)",
    )
    for ax in axes:
        _log_axis(ax.xaxis, "x", sorted({c.population for s in series for c in s}))
    return fig


def _draw_time_vs_network(labels: list[str], series: list[list[Cell]]):
    profiles = sorted({(c.network_order, _network_label(c)) for s in series for c in s})
    xpos = {label: i for i, (_, label) in enumerate(profiles)}
    fig, axes = _time_lines(
        labels,
        series,
        lambda c: c.network_order,
        lambda c: xpos[_network_label(c)],
        "network profile (one-way delay, bandwidth)",
        "Wall time vs network profile (median, IQR)",
    )
    for ax in axes:
        ax.set_xticks(range(len(profiles)), [label for _, label in profiles])
        ax.set_xlim(-0.35, len(profiles) - 0.65)  # room for the outer ticks' two-line labels
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


MAX_LINES = 8  # the lines one panel holds readably; past it, one panel per protocol


def _panels(
    labels: list[str], series: list[list[Cell]], split: bool
) -> list[tuple[str, list[tuple[str, list[Cell]]]]]:
    """The series in one panel (title ""), or with `split` one panel per protocol, each
    line labelled without its protocol."""
    if not split:
        return [("", list(zip(labels, series)))]
    panels: dict[str, list[tuple[str, list[Cell]]]] = {}
    for label, s in zip(labels, series):
        proto = s[0].engine_label
        panels.setdefault(proto, []).append((label.replace(proto, "").strip() or proto, s))
    return sorted(panels.items())


def _time_lines(
    labels: list[str], series: list[list[Cell]], order: Callable, x: Callable, xlabel: str, title: str
):
    """One median-with-IQR line of wall time per series, on a log time axis; past
    MAX_LINES series, small multiples: one panel per protocol, up to 3 a row, sharing
    the time axis.  The figure and its panels."""
    panels = _panels(labels, series, len(series) > MAX_LINES)
    cols = min(len(panels), 3)
    rows = -(-len(panels) // cols)
    plt = _plt()
    size = (7.5, 4.8) if cols == 1 else (4.6 * cols, 3.9 * rows)
    fig, grid = plt.subplots(rows, cols, figsize=size, squeeze=False, sharey=True)
    axes = list(grid.flat[: len(panels)])
    for ax in grid.flat[len(panels) :]:
        ax.set_visible(False)
    for ax, (name, lines) in zip(axes, panels):
        for label, s in lines:
            s = sorted(s, key=order)
            y, err = _errorbars(s)
            ax.errorbar([x(c) for c in s], y, yerr=err, marker="o", capsize=3, label=label)
        ax.set_xlabel(xlabel)
        ax.set_ylabel("wall time per run (s)")
        ax.set_title(name or title)
        _log_axis(ax.yaxis, "y")
        _legend(ax, len(lines))
    if len(panels) > 1:
        fig.suptitle(title, fontsize=11)
    return fig, axes


# The captions of the report's figures.
_BYTES_PER_PARTY_CAPTION = (
    "Data each party sent in one run (median over repeats), per protocol, at that "
    "protocol's largest population in the data."
)
_SECURITY_MODEL_CAPTION = (
    "Every protocol's median engine time (the engine's own, else wall) relative to the "
    "fastest semi-honest protocol run at the same query, population, padding, number of "
    "parties and network (1 = that protocol), where a second security model ran beside it; "
    "bars grouped by security model and majority, one bar colour per context."
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
    f.png = _png(_draw_bytes_per_party(chosen))
    return f


def _draw_bytes_per_party(chosen: list[Cell]):
    """Grouped bars, one per party; past 8 cells, horizontal, one readable label a row."""
    keys = [_series_key(c) for c in chosen]
    vary = _varying(keys)
    most = max(len(c.bytes_by_party or ()) for c in chosen)
    width = 0.8 / most
    flat = len(chosen) > 8
    plt = _plt()
    size = (12.0, 1.2 + 0.28 * len(chosen)) if flat else (max(6.0, 0.75 * len(chosen) + 3), 4.8)
    fig, ax = plt.subplots(figsize=size)
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for p in range(most):
        at = [
            i + (p - (len(c.bytes_by_party or ()) - 1) / 2) * width
            for i, c in enumerate(chosen)
            if p < len(c.bytes_by_party or ())
        ]
        mb = [(c.bytes_by_party or ())[p] / MB for c in chosen if p < len(c.bytes_by_party or ())]
        (ax.barh if flat else ax.bar)(at, mb, width, label=f"party {p}", color=colours[p % len(colours)])
    value_axis = ax.xaxis if flat else ax.yaxis
    if flat:
        ax.set_yticks(range(len(chosen)), [", ".join(key[k] for k in vary) for key in keys], fontsize=7)
        ax.invert_yaxis()  # the first cell on top
    else:
        ax.set_xticks(range(len(chosen)), ["\n".join(_two_lines(key[k]) for k in vary) for key in keys])
    sent = [b for c in chosen for b in c.bytes_by_party or () if b]
    if sent and max(sent) / min(sent) > 100:  # e.g. mascot's gigabytes beside replicated-ring's megabytes
        _log_axis(value_axis, "x" if flat else "y")
    log = ", log scale)" if (ax.get_xscale() if flat else ax.get_yscale()) == "log" else ")"
    value_axis.set_label_text("data sent per run (MB, 10^6 bytes" + log)
    (ax.yaxis if flat else ax.xaxis).set_label_text(
        (", " if flat else " / ").join(vary)
    )  # as the ticks name them
    ax.set_title("Bytes sent per party")
    _legend(ax, most)
    return fig


@dataclass(frozen=True)
class _Bar:
    """One bar of the security-model figure."""

    security: tuple[str, str]
    protocol: str
    context: str  # config, parties, population and network
    ratio: float  # median time / the fastest semi-honest protocol's in the context


def _security_bars(data: list[Cell]) -> tuple[list[_Bar], dict[str, tuple]]:
    """The bars of the contexts (same query, population, parties and network) that hold a
    semi-honest protocol and a second security model, and each context label's sort key."""
    contexts: dict[tuple, list[Cell]] = {}
    for c in data:
        if c.time and c.security[0] != headline.NO_SECURITY:
            key = (c.config, c.first.population_source, c.network, c.query, c.padding, c.first.parties)
            contexts.setdefault(key, []).append(c)
    bars: list[_Bar] = []
    order: dict[str, tuple] = {}
    for ctx, cs in contexts.items():
        semi = [c.time for c in cs if c.security[0] == headline.SEMI_HONEST and c.time]
        if len(headline.models(cs)) < 2 or not semi:
            continue
        fastest = min(semi)
        for c in cs:
            label = f"{ctx[0]} {c.first.parties}p {c.population_label} {c.network}"
            order[label] = (ctx[0], c.population, c.network_order, ctx[3], ctx[4], ctx[5])
            bars.append(_Bar(c.security, c.engine_label, label, (c.time or 0.0) / fastest))
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
    ax.set_xticks(range(len(slots)), [_two_lines(p) for _, p in slots])
    for g in groups:
        idx = [i for i, (gg, _) in enumerate(slots) if gg == g]
        ax.annotate(
            f"security: {g[0]}\nmajority: {g[1]}",
            xy=((min(idx) + max(idx)) / 2, 0),
            xycoords=("data", "axes fraction"),
            xytext=(0, -36),
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
            "no query, population, parties and network hold a semi-honest protocol and a "
            "second security model, so there is nothing to compare"
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
    ax.set_ylabel("engine time / fastest semi-honest protocol's (x)")
    ax.set_xlabel("protocol, grouped by security model", labelpad=30)
    ax.set_title("Cost of the security model (same query, population, parties, network)")
    _legend(ax, len(ctx_names))
    f.png = _png(fig)
    return f


_HEADLINE_CAPTION = (
    "What each security model costs on each network: its fastest protocol's engine time "
    "and bytes as multiples of the fastest semi-honest protocol's (named after 'vs') at "
    "the same query, population, number of parties and deployment (the line at 1)."
)


# What a headline context holds fixed besides the network and parties, each in words.
_CONTEXT: dict[str, Callable[[Cell], str]] = {
    "population": lambda c: c.population_label,
    "query": lambda c: c.query,
    "deployment": lambda c: c.deployment,
    "criteria": lambda c: c.criteria,
}


def _context_varying(costs: list[headline.Cost]) -> list[str]:
    """The parts of the context that differ between `costs`."""
    return [name for name, of in _CONTEXT.items() if len({of(k.cell) for k in costs}) > 1]


def _times(ratio: float) -> str:
    """A bar's ratio: two significant digits, whole numbers from 100 (no 4.3e+03)."""
    return "-" if not ratio else f"{ratio:,.0f}x" if ratio >= 100 else f"{ratio:.2g}x"


def _headline_label(k: headline.Cost, vary: list[str]) -> str:
    """One bar pair's label: the model, its protocol against the baseline, and what varies."""
    sec, maj = k.model
    tls = " tls" if k.cell.first.tls else ""
    model = f"{sec}, {maj}: {k.cell.engine_label}{tls} vs {k.baseline.engine_label}"
    return "\n".join([model, ", ".join(_CONTEXT[v](k.cell) for v in vary)]).strip()


def fig_headline(costs: list[headline.Cost]) -> Figure:
    """Per network (one panel each, stacked), each security model's time and bytes ratios
    (see `headline`) as horizontal bars; the baselines are the line at 1."""
    f = Figure("headline", "What security costs, per network", _HEADLINE_CAPTION)
    shown = [k for k in costs if k.cell is not k.baseline]
    nets = list(dict.fromkeys(k.cell.network for k in shown))
    if not nets:
        f.skipped = "no two security models to compare"
        return f
    vary = _context_varying(shown)
    plt = _plt()
    heights = [sum(k.cell.network == n for k in shown) for n in nets]
    fig, axes = plt.subplots(
        len(nets),
        1,
        figsize=(12.0, 1.3 + sum(0.5 * h + 0.7 for h in heights)),
        squeeze=False,
        sharex=True,
        gridspec_kw={"height_ratios": heights},
    )
    ratios = [r for k in shown for r in (k.time_ratio, k.bytes_ratio) if r]
    for ax, net in zip(axes[:, 0], nets):
        mine = [k for k in shown if k.cell.network == net][::-1]  # the first at the top
        ys = range(len(mine))
        for dy, what, values in (
            (0.2, "engine time", [k.time_ratio or 0.0 for k in mine]),
            (-0.2, "bytes", [k.bytes_ratio or 0.0 for k in mine]),
        ):
            bars = ax.barh([y + dy for y in ys], values, 0.4, label=what)
            ax.bar_label(bars, [_times(v) for v in values], fontsize=7, padding=2)
        ax.axvline(1.0, color="black", linewidth=0.8)
        ax.set_yticks(list(ys), [_headline_label(k, vary) for k in mine], fontsize=8)
        ax.set_title(f"{net}: {_network_label(mine[0].cell).split(chr(10))[1]}", fontsize=10)
        ax.margins(x=0.12)
    if ratios and max(ratios) / min(ratios) > 20:
        _log_axis(axes[0][0].xaxis, "x")
    axes[-1][0].set_xlabel("x the fastest semi-honest protocol (1 = the line)")
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="upper right", ncols=2, fontsize=8)
    fig.suptitle("What security costs, per network", fontsize=11, x=0.01, ha="left")
    f.png = _png(fig)
    return f


def _draw_paper_time_vs_population(labels: list[str], series: list[list[Cell]]):
    """One panel per protocol, one line per criterion."""
    lo, hi = PAPER_POPULATIONS
    panels = _panels(labels, series, True)
    plt = _plt()
    fig, axes = plt.subplots(
        1, len(panels), figsize=(5.0 * len(panels) + 1.5, 4.6), squeeze=False, sharey=False
    )
    for ax, (proto, mine) in zip(axes[0], panels):
        for label, s in mine:
            s = sorted(s, key=lambda c: c.population)
            y, err = _errorbars(s)
            ax.errorbar([c.population for c in s], y, yerr=err, marker="o", capsize=3, label=label)
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


_DEPLOYMENT_CAPTION = (
    "Engine time (slowest party, median over repeats) of each engine and protocol under each "
    "deployment, on the lan and wan profiles: who holds the data, and whether the sites evaluate "
    "their own parts in the clear (local: auto) or not (local: off). The largest population each "
    "setting ran at."
)


def fig_cost_by_deployment(data: list[Cell]) -> Figure:
    """Engine time by deployment, per engine/protocol, one panel per network (lan, wan)."""
    f = Figure("cost_by_deployment", "Cost by deployment", _DEPLOYMENT_CAPTION)
    nets = [n for n in ("lan", "wan") if any(c.network == n and c.engine_s for c in data)]
    if not nets:
        f.skipped = "no run with an engine time on the lan or wan profile"
        return f
    largest: dict[tuple, Cell] = {}
    for c in data:
        k = (c.network, c.engine_label, c.deployment)
        if c.network in nets and c.engine_s and (k not in largest or c.population > largest[k].population):
            largest[k] = c
    engines = sorted({k[1] for k in largest})
    deployments = sorted({k[2] for k in largest}, key=lambda d: (d != "patient", d))
    plt = _plt()
    panel_width = max(6.0, 0.8 * len(engines) + 2.0)  # room for every engine's tick label
    fig, axes = plt.subplots(1, len(nets), figsize=(panel_width * len(nets), 4.8), squeeze=False)
    width = 0.8 / len(deployments)
    colours = plt.get_cmap("tab20").colors  # one colour per deployment, up to 20
    for ax, net in zip(axes[0], nets):
        for j, d in enumerate(deployments):
            xs = [i + (j - (len(deployments) - 1) / 2) * width for i, e in enumerate(engines)]
            ys = [(largest[(net, e, d)].engine_s or 0) if (net, e, d) in largest else 0 for e in engines]
            ax.bar(xs, ys, width, label=d, color=colours[j % len(colours)])
        ax.set_xticks(range(len(engines)), [_two_lines(e) for e in engines], fontsize=8)
        if len(engines) > 4:  # long protocol names side by side overlap
            ax.tick_params(axis="x", labelrotation=30)
            plt.setp(ax.get_xticklabels(), ha="right", rotation_mode="anchor")
        ax.set_title(net)
        ax.set_yscale("log")  # local evaluation is orders of magnitude below the whole tree
        ax.set_ylabel("engine time (s, log scale)")
        _legend(ax, len(deployments))
    f.png = _png(fig)
    return f


_ACCURACY_SAMPLES = 200  # noises a point needs to be drawn (fewer: its 95% error is mostly chance)
_ACCURACY_CAPTION = (
    "The 95% error of the released sums (the smallest a with |noise| < a in 95% of the sums "
    "of the smallest noise scale, pooled over sums and repeats) against epsilon, per engine and "
    "mechanism, beside OpenDP's stated accuracy of the noise the release carries (every party's "
    "share added) at alpha = 0.05: black crosses, dashed. Points of fewer than 200 noises "
    "are left out."
)


def fig_accuracy(data: list[Cell]) -> Figure:
    """The count's DP error against epsilon, with OpenDP's accuracy (benchmark runs only)."""
    f = Figure("dp_accuracy", "DP accuracy", _ACCURACY_CAPTION)
    found = [p for p in accuracy.points([r for c in data for r in c.runs]) if p.samples >= _ACCURACY_SAMPLES]
    if not found:
        f.skipped = f"no DP benchmark (budget: unlimited) with {_ACCURACY_SAMPLES} noises of one scale"
        return f
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7.5, 4.8))
    for (engine, mechanism), group in itertools.groupby(found, key=lambda p: (p.engine, p.mechanism)):
        smallest = {}
        for p in group:  # per epsilon, the release of sensitivity 1 (the smallest scale)
            if p.epsilon not in smallest or p.scale < smallest[p.epsilon].scale:
                smallest[p.epsilon] = p
        pts = sorted(smallest.values(), key=lambda p: p.epsilon)
        (line,) = ax.plot(
            [p.epsilon for p in pts], [p.empirical for p in pts], "o-", label=f"{engine} {mechanism}"
        )
        stated = [(p.epsilon, p.stated) for p in pts if p.stated is not None]
        if stated:
            ax.plot(*zip(*stated), "x--", color="black", lw=1, ms=8, label=f"OpenDP's accuracy, {engine}")
    _log_axis(ax.xaxis, "x")
    _log_axis(ax.yaxis, "y")
    ax.set_xlabel("epsilon (log scale)")
    ax.set_ylabel("95% error of a sum of sensitivity 1 (log scale)")
    _legend(ax, len(ax.lines))
    f.png = _png(fig)
    return f


def figures(all_cells: list[Cell]) -> list[Figure]:
    """Every figure, drawn or skipped with the reason (a paper figure only when the results
    hold its config, or drawn from queries named conditions-N / exams-N)."""
    paper = [c for c in all_cells if c.config in (PAPER, PAPER_SLOTS)]
    general = [c for c in all_cells if c.config not in (PAPER, PAPER_SLOTS)] or all_cells
    out = [
        fig_time(BY_POPULATION, general),
        fig_time(BY_NETWORK, general),
        fig_bytes_per_party(general),
        fig_security_model(general),
    ]
    configs = {c.config for c in all_cells}
    paper_figs = [
        (PAPER, fig_paper_time_vs_population([c for c in paper if c.config == PAPER])),
        (PAPER, fig_paper_bytes_per_criterion(paper)),
        (PAPER_SLOTS, fig_paper_bytes_vs_slots(all_cells)),
    ]
    # a paper figure the results' configs never asked for is not mentioned, nor deployments
    # when the results hold one
    by_deployment = [fig_cost_by_deployment(general)] if len({c.deployment for c in general}) > 1 else []
    dp_accuracy = [fig_accuracy(general)] if any(r.dp_error for c in general for r in c.runs) else []
    return out + by_deployment + dp_accuracy + [f for config, f in paper_figs if f.png or config in configs]


# ---------------------------------------------------------------- tables, HTML

# the settings of the summary table: a column every cell shares is said once, above it
_SETTING_COLUMNS = (
    "config",
    "engine/protocol",
    "security",
    "parties",
    "population",
    "network",
    "deployment",
    "criteria",
    "padding",
    "query",
    "options",
)
_SITE_COLUMN = "secure, local, input"  # shown only when some cell is not `patient`


def _cell(text: str, cls: str = "num") -> dict:
    return {"text": text, "cls": cls}


def _quality(c: Cell) -> dict:
    q = c.quality
    return _cell(q or "-", "good" if q == "ok" else "warn" if q else "")


def _summary_row(c: Cell, all_cells: list[Cell]) -> dict[str, dict]:
    f = c.first
    r = stats.ratios(c, all_cells)
    det = c.bytes_deterministic
    mark = summary.ANOMALY if stats.slower_at_lower_delay(c, all_cells) else ""
    return {
        "config": _cell(c.config, ""),
        "engine/protocol": _cell(f"{f.engine}/{f.protocol}" + (" tls" if f.tls else ""), ""),
        "security": _cell(", ".join(c.security), ""),
        "parties": _cell(str(f.parties)),
        "population": _cell(c.population_label, ""),
        "network": _cell(c.network, ""),
        "deployment": _cell(c.deployment, ""),
        "criteria": _cell(c.criteria, ""),
        "padding": _cell(c.padding, ""),
        "query": _cell(c.query, ""),
        "options": _cell(c.options, ""),
        "engine s": _cell(format_value(c.engine_s, " s") + mark),
        "median wall": _cell(format_value(c.wall, " s")),
        "IQR": _cell(stats.format_spread(c)),
        "bytes": _cell(format_value(c.bytes_sent, "B")),
        "bytes det.": _cell("-" if det is None else "yes" if det else "no"),
        "rounds": _cell(summary.rounds_text(c)),
        "cohort": _cell("-" if c.cohort is None else str(c.cohort)),
        "correct": _cell("yes" if c.correct else "NO", "good" if c.correct else "bad"),
        "runs": _cell(f"{len(c.ok)}/{len(c.runs)}", "num" if len(c.ok) == len(c.runs) else "num bad"),
        "speed-up": _cell(stats.format_ratio(r.speedup, 1, "x")),
        "bytes ratio": _cell(stats.format_ratio(r.bytes_ratio, 2)),
        "quality": _quality(c),
        _SITE_COLUMN: _cell(", ".join(summary.site_cells(c, short=True)) if c.secure else "-", ""),
    }


@dataclass(frozen=True)
class Summary:
    common: list[tuple[str, str]]  # (column, value) shared by every cell
    head: list[str]
    rows: list[list[dict]]  # per cell, per column of `head`: {text, cls}


def _summary(all_cells: list[Cell]) -> Summary:
    """The summary table; a setting every cell shares is said once, not in a column."""
    full = [_summary_row(c, all_cells) for c in all_cells]
    columns = list(full[0]) if full else []
    if all(c.deployment == "patient" for c in all_cells):
        columns = [k for k in columns if k != _SITE_COLUMN]
    shared = [k for k in _SETTING_COLUMNS if len(full) > 1 and len({r[k]["text"] for r in full}) == 1]
    head = [k for k in columns if k not in shared]
    return Summary([(k, full[0][k]["text"]) for k in shared], head, [[r[k] for k in head] for r in full])


def _anomalies(records: list[Record], all_cells: list[Cell]) -> list[str]:
    """Figures no protocol explains, flagged: time falling as delay rises, negative slopes."""
    slopes = [
        f"{s.label}: {s.flights:.1f} flights over delays {', '.join(f'{d:g}' for d in s.delays_ms)} ms, "
        + latency.NEGATIVE
        for s in latency.slopes(records)
        if s.negative
    ]
    return summary.footnotes(all_cells) + slopes


def _headline_table(costs: list[headline.Cost]) -> dict:
    """The headline's rows; the population, query and deployment said once when every row
    shares them."""
    vary = _context_varying(costs)
    common = [f"{k} {of(costs[0].cell)}" for k, of in _CONTEXT.items() if k not in vary] if costs else []
    rows = []
    for i, k in enumerate(costs):
        net = k.cell.network
        first = i == 0 or costs[i - 1].cell.network != net
        rows.append(
            {
                "network": net,
                "span": sum(1 for o in costs if o.cell.network == net) if first else 0,
                "context": ", ".join([str(k.cell.first.parties), *(_CONTEXT[v](k.cell) for v in vary)]),
                "model": f"{k.model[0]}, {k.model[1]} majority",
                "protocol": k.cell.engine_label + (" tls" if k.cell.first.tls else ""),
                "time": format_value(k.cell.time, " s"),
                "time_ratio": stats.format_ratio(k.time_ratio, 2, "x"),
                "bytes": format_value(k.cell.bytes_sent, "B"),
                "bytes_ratio": stats.format_ratio(k.bytes_ratio, 2, "x"),
                "quality": _quality(k.cell),
                "baseline": k.cell is k.baseline,
            }
        )
    return {"common": "; ".join(common), "context": ", ".join(["parties", *vary]), "rows": rows}


def _file_info(path: Path, records: list[dict]) -> dict:
    times = sorted(r["time"] for r in records if isinstance(r.get("time"), str))
    m = list(measured(records))
    return {
        "name": str(path),
        "records": len(records),
        "measured": len(m),
        "warmup": len(records) - len(m),
        "failed": sum(
            1 for r in m if (r.get("error") is not None or not r.get("correct")) and not r.get("unavailable")
        ),
        "first": times[0] if times else "-",
        "last": times[-1] if times else "-",
    }


def _figure(f: Figure) -> dict:
    return {
        "name": f.name,
        "title": f.title,
        "caption": f.caption,
        "png": f.png,
        "skipped": f.skipped,
        "omitted": f.omitted,
        "b64": base64.b64encode(f.png).decode() if f.png else "",
    }


def html(
    inputs: list[tuple[Path, list[Record]]], all_cells: list[Cell], headline_fig: Figure, figs: list[Figure]
) -> str:
    """The page: the headline answer, the metadata (collapsed), the summary, the figures."""
    import jinja2

    records = [r for _, recs in inputs for r in recs]
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("harness.analysis", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
    )
    table = _summary(all_cells)
    costs = headline.costs(all_cells)
    meta = metadata.collect(records)
    errors = []
    for c in all_cells:
        for r in c.runs:
            if r.get("error") is not None or not r.get("correct"):
                label = f"{c.config} {c.engine_label} {c.population_label} {c.network} {c.query}"
                errors.append(
                    {
                        "label": label,
                        "repeat": r.get("repeat"),
                        "error": (r.get("error") or "wrong answer")[:1500],
                    }
                )
    unavailable = sum(1 for c in all_cells for r in c.runs if r.unavailable)
    return env.get_template("report.html").render(
        configs=sorted({c.config for c in all_cells}),
        generated=dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        files=[_file_info(p, recs) for p, recs in inputs],
        measured=sum(len(c.runs) for c in all_cells),
        failures=sum(len(c.runs) - len(c.ok) for c in all_cells) - unavailable,
        unavailable=unavailable,
        cells=all_cells,
        headline_table=_headline_table(costs),
        headline_missing=headline.missing(all_cells),
        run_comparison=headline.RUN_COMPARISON,
        quick_comparison=headline.QUICK_COMPARISON,
        headline=_figure(headline_fig),
        meta=meta,
        summary=table,
        anomalies=_anomalies(records, all_cells),
        figures=[_figure(f) for f in figs],
        tamper_head=tamper.TABLE_HEAD,
        tamper_rows=tamper.summary(records),
        tamper_legend=tamper.LEGEND,
        dp_cost_head=dp_cost.TABLE_HEAD,
        dp_cost_rows=dp_cost.rows(all_cells),
        errors=errors,
    )


def build(inputs: list[tuple[Path, list[Record]]], out_dir: Path) -> tuple[list[Path], list[Figure]]:
    """Write the report of these (path, records) into out_dir; returns the files and figures."""
    out_dir.mkdir(parents=True, exist_ok=True)
    all_cells = cells([r for _, recs in inputs for r in recs])
    top = fig_headline(headline.costs(all_cells))
    figs = figures(all_cells)
    written = []
    for f in [top, *figs]:
        if f.png:
            p = out_dir / f"{f.name}.png"
            p.write_bytes(f.png)
            written.append(p)
    csv_path = out_dir / "cells.csv"
    with csv_path.open("w", newline="") as fh:
        summary.write_csv(fh, summary.rows(all_cells))
    html_path = out_dir / "report.html"
    html_path.write_text(html(inputs, all_cells, top, figs))
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
    err = Console(emoji=False, stderr=True, highlight=False)
    out = Console(emoji=False, highlight=False)

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
