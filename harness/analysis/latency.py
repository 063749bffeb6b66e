"""Rounds seen two ways: the lock-step count of synchronous rounds, and the slope of time against latency.

If a protocol's critical path is R one-way flights, adding a one-way delay d
to every link adds about R x d to its run time, so R ~ (T(d) - T(0)) / d.
Fitting T against d over a config's delays (least squares over the medians)
gives that slope, to set beside each cell's `rounds` (its lock-step count).
A negative slope (time falling as delay rises) is no property of a protocol: it is
marked `!` as an anomaly (`Slope.negative`, NEGATIVE), never hidden.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass

from rich.table import Table

from harness.analysis.records import measured
from harness.analysis.stats import deployment_label


@dataclass(frozen=True)
class Slope:
    label: str
    delays_ms: tuple[float, ...]
    flights: float  # fitted dT/dd, in one-way flights
    rounds: float | None  # the cell's median `rounds` at the largest delay (lock-step)

    @property
    def ratio(self) -> float | None:
        return self.flights / self.rounds if self.rounds else None

    @property
    def negative(self) -> bool:
        return self.flights < 0


NEGATIVE = (
    "a negative slope: time fell as delay rose, which no protocol does; "
    "the machine was probably busy (see the cells' quality), rerun on a quiet one"
)


def _engine_time(r: dict) -> float:
    """The engine's own time (slowest party): excludes process start-up."""
    return max(r["engine_s"]) if r.get("engine_s") else r["wall_s"]


def slopes(records: list[dict]) -> list[Slope]:
    """One fit per cell setting measured at two or more uniform delays (no link overrides)."""
    groups: dict[tuple, dict[float, list[dict]]] = {}
    for r in measured(records):
        net = r["network"]
        if r["error"] is not None or net.get("links") or net.get("jitter_ms") or net.get("faults"):
            continue
        if r["parties"] < 2 or r.get("secure") == "none":  # no links: the network does not reach it
            continue
        key = (
            r["config"],
            r["engine"],
            r["protocol"],
            r["parties"],
            r["population_source"],
            r["query"]["name"],
            str(r["padding"]),
            deployment_label(r.get("deployment") or "patient"),
        )
        groups.setdefault(key, {}).setdefault(float(net["delay_ms"]), []).append(r)
    out = []
    for key, by_delay in groups.items():
        if len(by_delay) < 2:
            continue
        xs = sorted(by_delay)
        ys = [statistics.median(_engine_time(r) for r in by_delay[d]) for d in xs]
        mx, my = statistics.fmean(xs), statistics.fmean(ys)
        var = sum((x - mx) ** 2 for x in xs)
        slope_s_per_ms = sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / var
        top = [r["rounds"] for r in by_delay[xs[-1]] if r.get("rounds") is not None]
        out.append(
            Slope(
                f"{key[2]} {key[3]}p {key[4]} {key[5]}" + ("" if key[7] == "patient" else f" {key[7]}"),
                tuple(xs),
                slope_s_per_ms * 1000.0,
                statistics.median(top) if top else None,
            )
        )
    return out


def table(records: list[dict]) -> Table | None:
    found = slopes(records)
    if not found:
        return None
    t = Table(title="rounds: latency slope (T(d) - T(0)) / d vs the lock-step count")
    for name in ("cell", "delays (ms)", "slope (flights)", "rounds", "slope / rounds"):
        t.add_column(name, justify="left" if name == "cell" else "right")
    for s in found:
        t.add_row(
            s.label,
            ", ".join(f"{d:g}" for d in s.delays_ms),
            f"{s.flights:.1f}" + (" !" if s.negative else ""),
            f"{s.rounds:.0f}" if s.rounds is not None else "-",
            f"{s.ratio:.2f}" if s.ratio is not None else "-",
        )
    if any(s.negative for s in found):
        t.caption, t.caption_justify = f"! {NEGATIVE}", "left"
    return t
