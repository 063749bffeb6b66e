"""The sweeps' metadata of a set of runs: what every run shares, once, and what differs.

Each record carries its sweep's `meta` (versions, commit, CPU, cores, config hash, CPU
calibration, ...). The report shows the fields every run has alike once, and a row per
distinct combination of the others, with its configs and run count. The load average
differs from run to run by nature: it is summed up as a range and a count of runs that
ended above the cores.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Mapping

PER_RUN = ("load_avg",)  # meta fields that change with every run


@dataclass(frozen=True)
class Metadata:
    common: list[tuple[str, str]]  # (field, value) alike in every run
    differing: list[str]  # the other fields
    rows: list[dict[str, Any]]  # one per distinct combination: fields, `configs`, `runs`
    load: str  # the 1-minute load averages at the ends of the runs, in words


def _text(key: str, v: object) -> str:
    if isinstance(v, dict):
        return ", ".join(f"{a} {b}" for a, b in v.items())
    if key == "calibration_s" and isinstance(v, float):
        return f"{v:.3f} s"
    return "-" if v is None else str(v)


def _load(records: list[Mapping[str, Any]]) -> str:
    loads = [(r["load_avg"][0], (r.get("meta") or {}).get("cores")) for r in records if r.get("load_avg")]
    if not loads:
        return "not recorded"
    over = sum(1 for load, cores in loads if isinstance(cores, int) and load > cores)
    lo, hi = min(x for x, _ in loads), max(x for x, _ in loads)
    return f"{lo:.2f} to {hi:.2f} (1 min) at the end of {len(loads)} run(s), {over} above the cores"


def collect(records: list[Mapping[str, Any]]) -> Metadata:
    """What the runs' metadata share and where they differ."""
    metas = [r.get("meta") or {} for r in records]
    keys = list(dict.fromkeys(k for m in metas for k in m if k not in PER_RUN))
    values = {k: {json.dumps(m.get(k), sort_keys=True) for m in metas} for k in keys}
    common = [(k, _text(k, metas[0].get(k))) for k in keys if len(values[k]) == 1]
    differing = [k for k in keys if len(values[k]) > 1]
    rows: dict[str, dict[str, Any]] = {}
    for r, m in zip(records, metas):
        shown = {k: _text(k, m.get(k)) for k in differing}
        row = rows.setdefault(json.dumps(shown), {**shown, "configs": set(), "runs": 0})
        row["configs"].add(r["config"])
        row["runs"] += 1
    out = [{**row, "configs": ", ".join(sorted(row["configs"]))} for row in rows.values()]
    return Metadata(common, differing, out if differing else [], _load(records))
