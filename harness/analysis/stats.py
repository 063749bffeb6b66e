"""Cells and their statistics: runs grouped by (config, cell hash), medians, spreads, speed-ups.

Statistics use a cell's measured runs (warmups are not counted) that finished and agreed
with the plaintext oracle (`ok`). A spread needs two samples: one run has none (None, not 0).
A speed-up is against the cell the config's `compare_to` names (see `baseline`).

A cell's `quality` says how far its time can be trusted, the first that applies of:
`contended` (a run ended with a 1-minute load average above the machine's cores, or the
cell has more parties than cores: the parties waited for a CPU), `single-run` (one ok
run: no spread), `noisy` (coefficient of variation of the time over 10%), else `ok`;
None without an ok run. `slower_at_lower_delay` flags the other anomaly: time falling
as the network's delay rises.
"""

from __future__ import annotations

import json
import math
import statistics
from pathlib import PurePath
from dataclasses import dataclass
from functools import cached_property
from typing import Iterable

from harness.analysis.records import Record, measured

NOISY_CV = 0.10  # a coefficient of variation above this is `noisy`
DELAY_SLACK = 0.05  # a time falling by more than this fraction as delay rises is an anomaly
QUALITIES = ("contended", "single-run", "noisy", "ok")  # in order of precedence


def median(xs: list[float]) -> float | None:
    return statistics.median(xs) if xs else None


def quartiles(xs: list[float]) -> tuple[float, float] | None:
    """First and third quartiles; None below two samples (one run has no spread)."""
    if len(xs) < 2:
        return None
    q = statistics.quantiles(xs, n=4, method="inclusive")
    return q[0], q[2]


def deployment_label(d: str | dict) -> str:
    """A record's `deployment` in a few words (the run's `deployment.label`)."""
    if isinstance(d, str):
        return d
    how = f" {d.get('assign', 'round-robin')}" if d.get("partition") == "rows" else ""
    local = "" if d.get("local", "auto") == "auto" else " local:off"
    return f"{d.get('partition')}{how} {d.get('sites')}s{local}"


@dataclass(frozen=True)
class Cell:
    """One cell (config + cell hash): its settings and statistics over its measured runs."""

    runs: tuple[Record, ...]

    # settings
    @property
    def first(self) -> Record:
        return self.runs[0]

    @property
    def config(self) -> str:
        return self.first.config

    @property
    def key(self) -> str:
        return self.first.cell

    @property
    def engine_label(self) -> str:
        f = self.first
        private = "" if self.criteria == "public" else f" {self.criteria}"
        return f"{f.engine}/{f.protocol}/{f.parties}p{private}"

    @property
    def population(self) -> int:
        return int(self.first.population or 0)

    @property
    def generated(self) -> bool:
        return (self.first.population_source or "").startswith("synthetic:")

    @property
    def population_name(self) -> str:
        """Where the patients came from: `synthetic` (with its seed), else the file's name."""
        source = self.first.population_source or "?"
        if self.generated:
            seed = source.split(":")[2:]
            return "synthetic" + (f" seed {seed[0]}" if seed and seed[0] != "0" else "")
        return PurePath(source).name or source

    @property
    def population_label(self) -> str:
        """The source and its size, e.g. `synthea-r4 (60)`, `synthetic (200)`."""
        return f"{self.population_name} ({self.population})"

    @property
    def network(self) -> str:
        return (self.first.network or {}).get("name", "?")

    @property
    def deployment(self) -> str:
        """Who held the data: `patient`, or e.g. `rows provider 3s`, `columns 3s local:off`."""
        return deployment_label(self.first.deployment)

    @property
    def criteria(self) -> str:
        """`public`, or `private r=<the researcher's party>` (`r=extra`: a party beyond
        the sites, holding no data)."""
        if self.first.criteria != "private":
            return "public"
        d, r = self.first.deployment, self.first.researcher
        sites = d.get("sites") if isinstance(d, dict) else None
        return f"private r={'extra' if sites and r is not None and r >= sites else r}"

    @property
    def query(self) -> str:
        return (self.first.query or {}).get("name", "?")

    @property
    def padding(self) -> str:
        p = self.first.padding or {}
        return f"C={p.get('conditions', '?')},E={p.get('exams', '?')}"

    @property
    def security(self) -> tuple[str, str]:
        return str(self.first.security or "?"), str(self.first.majority or "?")

    @property
    def options(self) -> str:
        """The engine settings that change cost: compile options, bit length, TLS."""
        f = self.first
        parts = [f.compile_options, f"l={f.bit_length}" if f.bit_length else None, "tls" if f.tls else None]
        return " ".join(p for p in parts if p) or "-"

    @property
    def network_order(self) -> tuple:
        n = self.first.network or {}
        bw = n.get("bandwidth_mbit")
        return (n.get("delay_ms") or 0.0, -(bw if bw is not None else float("inf")), self.network)

    # statistics
    @cached_property
    def ok(self) -> list[Record]:
        return [r for r in self.runs if r.error is None and r.correct]

    @property
    def failures(self) -> int:
        return len(self.runs) - len(self.ok)

    def figure(self, key: str) -> list[float]:
        """One figure of every ok run that recorded it."""
        return [float(r[key]) for r in self.ok if r[key] is not None]

    @cached_property
    def walls(self) -> list[float]:
        return self.figure("wall_s")

    @property
    def wall(self) -> float | None:
        return median(self.walls)

    @property
    def wall_q(self) -> tuple[float, float] | None:
        return quartiles(self.walls)

    @property
    def wall_iqr(self) -> float | None:
        q = self.wall_q
        return q[1] - q[0] if q else None

    @cached_property
    def engine_times(self) -> list[float] | None:
        """The engine's own time (slowest party) of each ok run; None unless every ok run has it."""
        if not self.ok or not all(r.engine_s for r in self.ok):
            return None
        return [max(r.engine_s or [0.0]) for r in self.ok]

    @property
    def engine_s(self) -> float | None:
        """The engine's own time (slowest party), median; None unless every ok run has it."""
        return median(self.engine_times or [])

    @property
    def times(self) -> list[float]:
        """Each ok run's engine time where the engine reports one, else its wall time."""
        return self.engine_times if self.engine_times is not None else self.walls

    @property
    def time(self) -> float | None:
        """The engine's own time where it reports one (no process start-up), else wall."""
        return median(self.times)

    @property
    def cv(self) -> float | None:
        """Coefficient of variation of the time (sample standard deviation / mean)."""
        t = self.times
        if len(t) < 2 or not statistics.fmean(t):
            return None
        return statistics.stdev(t) / statistics.fmean(t)

    @property
    def contended(self) -> bool:
        """More parties than cores, or a run that ended with load average above the cores."""
        for r in self.runs:
            cores = (r.meta or {}).get("cores")
            if not isinstance(cores, int):
                continue
            if (r.parties or 0) > cores or (r.load_avg and r.load_avg[0] > cores):
                return True
        return False

    @property
    def quality(self) -> str | None:
        """One of QUALITIES (see the module's docstring); None without an ok run."""
        if not self.ok:
            return None
        if self.contended:
            return "contended"
        if len(self.ok) == 1:
            return "single-run"
        return "noisy" if (self.cv or 0.0) > NOISY_CV else "ok"

    @property
    def bytes_sent(self) -> float | None:
        return median(self.figure("bytes_sent"))

    @property
    def bytes_deterministic(self) -> bool | None:
        b = self.figure("bytes_sent")
        return len(set(b)) == 1 if len(b) > 1 else None

    @property
    def bytes_by_party(self) -> list[float] | None:
        per = [r.bytes_by_party for r in self.ok if r.bytes_by_party]
        if not per or len({len(p) for p in per}) != 1:
            return None
        return [statistics.median(col) for col in zip(*per)]

    def median_of(self, key: str) -> float | None:
        return median(self.figure(key))

    def slowest_site(self, key: str) -> float | None:
        """A per-site figure (`local_s`, `input_s`): its slowest site, median over ok runs."""
        per_run = [max(v for v in r[key] if v is not None) for r in self.ok if r[key] and any(r[key])]
        return median([float(x) for x in per_run])

    @property
    def secure(self) -> str | None:
        """Under sites, what was secure (none, sum or tree); None under patient."""
        return self.first.secure

    @property
    def cohort(self) -> int | None:
        sizes = sorted({r.cohort_size for r in self.ok if r.cohort_size is not None})
        return sizes[0] if len(sizes) == 1 else None

    @property
    def correct(self) -> bool:
        return len(self.ok) == len(self.runs)

    @property
    def skipped(self) -> bool:
        """Every run skipped by the sweep's budget_s."""
        return all(r.skipped for r in self.runs)

    @property
    def peak_rss_kib(self) -> float | None:
        peaks = [max(r.peak_rss_kib_by_party) for r in self.ok if r.peak_rss_kib_by_party]
        return max(peaks) if peaks else None

    @property
    def order(self) -> tuple:
        """The tables' order: config, query, population, network, protocol."""
        return (
            self.config,
            self.query,
            self.population_name,
            self.population,
            self.network_order,
            self.engine_label,
        )


def cells(records: Iterable[Record]) -> list[Cell]:
    """The measured runs grouped by (config, cell hash), in order of first appearance."""
    groups: dict[tuple[str, str], list[Record]] = {}
    for r in measured(records):
        groups.setdefault((r.config, r.cell), []).append(r)
    return [Cell(tuple(runs)) for runs in groups.values()]


# A cell's settings, by the `compare_to` key that frees each: a baseline equals its cell in
# every setting but those its `compare_to` names (naming `protocol` frees the engine too).
_SETTINGS: dict[str, tuple[str, ...]] = {
    "protocol": ("engine", "protocol", "bit_length", "compile_options", "tls"),
    "parties": ("parties",),
    "network": ("network",),
    "population_source": ("population_source",),
    "padding": ("padding",),
    "query": ("query",),
    "deployment": ("deployment",),
    "criteria": ("criteria", "researcher"),
}


def _value(c: Cell, key: str) -> object:
    """A setting as `compare_to` writes it: a network or query by its name."""
    if key == "network":
        return c.network
    if key == "query":
        return c.query
    v = c.first.get(key)
    return json.dumps(v, sort_keys=True) if isinstance(v, dict) else v


def baseline(c: Cell, all_cells: list[Cell]) -> Cell | None:
    """The cell `compare_to` names (e.g. {protocol: paper-loop}, {network: loopback},
    {parties: 3}) in the same config, equal to `c` in every setting it does not name."""
    want = c.first.compare_to
    if not want:
        return None
    fixed = [k for name, keys in _SETTINGS.items() if not set(keys) & set(want) for k in keys]
    for o in all_cells:
        if (
            o.config == c.config
            and all(_value(o, k) == _value(c, k) for k in fixed)
            and all(_value(o, k) == v for k, v in want.items())
        ):
            return o
    return None


def _uniform_link(c: Cell) -> tuple[float, float] | None:
    """(one-way delay, bandwidth) of every link; None with link overrides, jitter or faults."""
    n = c.first.network or {}
    if n.get("links") or n.get("faults") or n.get("jitter_ms"):
        return None
    bw = n.get("bandwidth_mbit")
    return float(n.get("delay_ms") or 0.0), float(bw) if bw is not None else math.inf


def _worse_link(a: tuple[float, float] | None, b: tuple[float, float] | None) -> bool:
    """Link `a` has more delay than `b` and no more bandwidth."""
    return a is not None and b is not None and a[0] > b[0] and a[1] <= b[1]


def slower_at_lower_delay(c: Cell, all_cells: list[Cell]) -> Cell | None:
    """An anomaly: the slowest cell of the same setting and population on a network of less
    delay (and no less bandwidth) that took longer than `c`, by over DELAY_SLACK; else None."""
    if c.time is None or c.secure == "none":  # nothing secure: the network does not reach it
        return None
    same = [k for keys in _SETTINGS.values() for k in keys if k != "network"]
    slower = [
        o
        for o in all_cells
        if o.config == c.config
        and o.time is not None
        and c.time < o.time * (1 - DELAY_SLACK)
        and _worse_link(_uniform_link(c), _uniform_link(o))
        and all(_value(o, k) == _value(c, k) for k in same)
    ]
    return max(slower, key=lambda o: o.time or 0.0, default=None)


@dataclass(frozen=True)
class Ratios:
    speedup: float | None  # baseline's median wall / this cell's
    bytes_ratio: float | None  # this cell's median bytes / baseline's


def ratios(c: Cell, all_cells: list[Cell]) -> Ratios:
    base = baseline(c, all_cells)
    if base is None:
        return Ratios(None, None)
    speed = base.wall / c.wall if base.wall and c.wall else None
    ratio = c.bytes_sent / base.bytes_sent if base.bytes_sent and c.bytes_sent else None
    return Ratios(speed, ratio)


def format_value(x: float | None, unit: str = "", byte_digits: int = 2) -> str:
    """A figure for a table: bytes in kB/MB/GB with `byte_digits` decimals, else 3 digits."""
    if x is None:
        return "-"
    if unit == "B":
        for scale, suffix in ((1e9, "GB"), (1e6, "MB"), (1e3, "kB")):
            if abs(x) >= scale:
                return f"{x / scale:.{byte_digits}f} {suffix}"
        return f"{x:.0f} B"
    return f"{x:.3g}{unit}"


def format_spread(c: Cell, unit: str = " s") -> str:
    """The IQR of a cell's wall times; a single run has no spread: an en dash."""
    if len(c.walls) == 1:
        return "\u2013"
    return format_value(c.wall_iqr, unit)


def format_ratio(x: float | None, digits: int, suffix: str = "") -> str:
    return f"{x:.{digits}f}{suffix}" if x else "-"
