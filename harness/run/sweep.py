"""A sweep: every cell of an experiment's grid, every repeat, one record each as it finishes."""
from __future__ import annotations

import datetime as dt
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from backends.mp_spdz import protocols as mp_protocols
from backends.mpyc import launch as mpyc_launch
from circuits.errors import InputError
from harness.net import isolation
from harness.run import meta
from harness.analysis import records as results
from harness.data import sources
from harness.run.config import EngineSpec, Experiment
from harness.net.networks import Network
from harness.run.runner import PLAIN, MpSpdzCell, MpycCell, Outcome, run_plain
from harness.data.sources import Source
from circuits.ir import Query
from circuits.population import Padding, Population


@dataclass(frozen=True)
class Cell:
    engine: EngineSpec
    source: Source
    padding: Padding
    network: Network
    query: Query

    def key(self, exp: Experiment) -> str:
        text = json.dumps([self.engine.model_dump(mode="json", exclude_defaults=True), self.source.text,
                           self.network.record(),
                           self.padding.label(), self.query.name, self.query.ir_hash,
                           str(exp.config.as_of)])
        return hashlib.sha256(text.encode()).hexdigest()[:12]

    def label(self) -> str:
        return f"{self.engine.label} {self.query.name} {self.source.text} {self.padding.label()} {self.network.name}"


def cells(exp: Experiment) -> list[Cell]:
    """Population and padding outermost (each encoded once), then network, query, engine."""
    return [Cell(e, s, p, n, q) for s in exp.sources for p in exp.paddings
            for n in exp.networks for q in exp.queries for e in exp.config.engines
            if e.populations is None or s.text in e.populations]


class Budget:
    """Per-cell time budget: a setting whose run exceeded it at one population is skipped,
    and recorded as skipped, at every larger population of the sweep."""

    def __init__(self, seconds: float | None):
        self.seconds = seconds
        self.over: dict[str, tuple[int, float]] = {}  # setting -> (population, wall_s)

    @staticmethod
    def _setting(cell: Cell) -> str:
        return json.dumps([cell.engine.model_dump(mode="json", exclude_defaults=True), cell.network.record(),
                           cell.query.ir_hash, cell.padding.label()])

    def observe(self, cell: Cell, population: int, outcome: Outcome) -> None:
        if self.seconds is not None and outcome.wall_s is not None and outcome.wall_s > self.seconds:
            self.over.setdefault(self._setting(cell), (population, outcome.wall_s))

    def exceeded(self, cell: Cell) -> str | None:
        hit = self.over.get(self._setting(cell))
        if hit is None or cell.source.size is None or cell.source.size <= hit[0]:
            return None
        return (f"skipped: this setting took {hit[1]:.1f} s at population {hit[0]}, over the "
                f"budget of {self.seconds:g} s per run (budget_s)")


def runs(exp: Experiment) -> list[tuple[Cell, int, bool]]:
    """Every run as (cell, repeat, warmup): cell by cell, or with `interleave` repeat by
    repeat across cells, so that slow drifts of the machine hit every cell alike."""
    grid = cells(exp)
    phases = ((True, exp.config.warmup), (False, exp.config.repeats))
    if exp.config.interleave:
        return [(c, rep, warm) for warm, reps in phases for rep in range(reps) for c in grid]
    return [(c, rep, warm) for c in grid for warm, reps in phases for rep in range(reps)]


def run_sweep(exp: Experiment, out: Path, resume: bool, warn: Callable[[str], None],
              console=None) -> list[dict]:
    """Run every missing run of the grid, appending records to `out`; returns this sweep's records."""
    done: set = set()
    if out.exists() and out.stat().st_size:
        if not resume:
            raise InputError(str(out), "", "results file exists",
                             "pass --resume to continue it, or choose another --out")
        kept = results.read(out, warn)
        results.rewrite(out, kept)
        done = {results.run_key(r) for r in kept}
    runs_dir = out.with_suffix(".runs")
    try:
        isolated, note = isolation.resolve(exp.config.isolation)
    except ValueError as e:
        raise InputError(str(exp.path), "isolation", str(e),
                         "run as root, or set isolation: auto (or none)") from None
    if note:
        warn(note)
    sweep_meta = {**meta.collect(exp.config_hash), "isolation": "netns" if isolated else "host"}
    enter = isolation.call if isolated else _here
    plan = runs(exp)
    todo = [(c, rep, warm) for c, rep, warm in plan if (c.key(exp), rep, warm) not in done]
    if done:
        warn(f"resuming: {len(plan) - len(todo)} run(s) already in {out}, {len(todo)} to go")
    writer = results.Writer(out)
    written: list[dict] = []
    budget = Budget(exp.config.budget_s)
    populations: dict[tuple, Population] = {}
    runners: dict[str, MpycCell | MpSpdzCell] = {}  # by cell key
    calibrations = Calibrations(exp.config.timeout_s, enter)
    progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                        TimeElapsedColumn(), console=console, transient=False)
    try:
        with progress:
            task = progress.add_task(exp.config.name, total=len(todo))
            for cell, rep, warm in todo:
                name = f"{'warmup' if warm else 'repeat'}-{rep}"
                progress.update(task, description=f"{cell.label()} {name}")
                over = budget.exceeded(cell)
                if over is not None:
                    record = _record(exp, cell, None, rep, warm, Outcome(None, {}, None, False, over),
                                     sweep_meta, None)
                    record["skipped"] = True
                    writer.append(record)
                    written.append(record)
                    progress.advance(task)
                    continue
                data_key = (cell.source.text, cell.padding)
                if data_key not in populations:
                    populations[data_key] = sources.load(
                        cell.source, cell.padding, exp.config.as_of, exp.config.truncate, warn)
                pop = populations[data_key]
                logs = None
                if cell.engine.engine == "plain":
                    outcome = run_plain(cell.query, pop)
                else:
                    key = cell.key(exp)
                    if key not in runners:
                        kind = MpycCell if cell.engine.engine == "mpyc" else MpSpdzCell
                        runners[key] = kind(cell.engine, cell.query, pop, runs_dir / key)
                    runner = runners[key]
                    network = calibrations.network(cell, runner)
                    if isinstance(network, Outcome):
                        outcome = network
                    else:
                        outcome = enter(lambda: runner.run(name, exp.config.timeout_s, network))
                    logs = runs_dir / key / name
                record = _record(exp, cell, pop, rep, warm, outcome, sweep_meta, logs)
                if cell.network.needs_calibration:
                    record["fault_calibration"] = calibrations.streams(cell)
                budget.observe(cell, len(pop), outcome)
                writer.append(record)
                written.append(record)
                if outcome.error:
                    tampered = "tampered (an expected outcome): " if expected_failure(record) else ""
                    warn(f"{cell.label()} {name}: {tampered}{outcome.error.splitlines()[0]}")
                progress.advance(task)
    finally:
        writer.close()
        for runner in runners.values():
            runner.close()
    return written


def _here(fn: Callable[[], Outcome]) -> Outcome:
    return fn()


class Calibrations:
    """Clean runs that place faults given as a `fraction` of their link's stream: one per
    setting (engine, data, query, links), shared by its networks that differ only in
    their faults."""

    def __init__(self, timeout_s: float, enter: Callable[[Callable[[], Outcome]], Outcome]):
        self.timeout_s, self.enter = timeout_s, enter
        self.found: dict[tuple, Outcome] = {}

    @staticmethod
    def _key(cell: Cell) -> tuple:
        return (json.dumps(cell.engine.model_dump(mode="json", exclude_defaults=True)),
                cell.source.text, cell.padding, cell.query.ir_hash, cell.network.default,
                cell.network.links)

    def network(self, cell: Cell, runner: MpycCell | MpSpdzCell) -> Network | Outcome:
        """The cell's network with its faults placed, or the failed calibration's outcome."""
        if not cell.network.needs_calibration:
            return cell.network
        key = self._key(cell)
        if key not in self.found:
            clean = cell.network.without_faults()
            name = f"calibration-{len(self.found)}"
            self.found[key] = self.enter(lambda: runner.run(name, self.timeout_s, clean))
        done = self.found[key]
        if done.error is not None:
            return Outcome(None, {}, None, False, "the clean calibration run that places this "
                           f"cell's faults failed: {done.error}")
        return cell.network.calibrated(done.figures["bytes_by_link"])

    def streams(self, cell: Cell) -> dict[str, int] | None:
        """The calibration's stream length of each faulted link, e.g. {"1->0": 52113}."""
        done = self.found.get(self._key(cell))
        if done is None or done.error is not None:
            return None
        return {f"{s}->{t}": done.figures["bytes_by_link"][s][t] for (s, t), _ in cell.network.faults}


def _tamper_fields(cell: Cell, o: Outcome) -> dict:
    """The fault of the cell's network and what came of it (null fields without a fault)."""
    f = o.figures
    faults = cell.network.record().get("faults")
    events = f.get("faults_fired") or {}
    detected_by = None
    if faults:
        detected_by = f.get("detected_by", "none") if o.error is not None else "none"
    return {
        "fault": faults,
        "fault_fired": any(e["fired"] for e in events.values()) if faults else None,
        "fault_events": events or None,
        "fault_calibration": None,  # set by the sweep for faults at a fraction of the stream
        "tamper_detected": detected_by in ("protocol", "tls") if faults else None,
        "tamper_detected_by": detected_by,
        "result_correct": o.result_correct,
        "failing_party": f.get("failing_party"),
        "failing_party_message": f.get("failing_party_message"),
    }


def expected_failure(record: dict) -> bool:
    """A failed run of a tamper experiment: its network had a fault and the fault fired
    (a run that fails before its fault fires is a real failure)."""
    return bool(record.get("fault")) and bool(record.get("fault_fired"))


def _tls(engine: EngineSpec) -> bool:
    """Whether the cell's links were encrypted: its `ssl`, else the engine's default."""
    if engine.ssl is not None:
        return engine.ssl
    return engine.engine == "mp-spdz" and mp_protocols.get(engine.protocol).tls


def _record(exp: Experiment, cell: Cell, pop, rep: int, warm: bool, o: Outcome, sweep_meta: dict,
            logs: Path | None) -> dict:
    f = o.figures
    load = meta.load_average()
    security = {"mpyc": mpyc_launch.SECURITY, "plain": PLAIN}.get(cell.engine.engine)
    if security is None:
        p = mp_protocols.get(cell.engine.protocol)
        security = {"security": p.security, "majority": p.majority}
    return {
        "config": exp.config.name, "cell": cell.key(exp), "engine": cell.engine.engine,
        "protocol": cell.engine.protocol, **security, "parties": cell.engine.parties,
        "population": len(pop) if pop is not None else cell.source.size,
        "population_source": cell.source.text,
        "padding": {"conditions": cell.padding.conditions, "exams": cell.padding.exams},
        "slots": list(pop.slots) if pop is not None else None,
        "query": {"name": cell.query.name, "ir_hash": cell.query.ir_hash,
                  "output": cell.query.output.value},
        "network": cell.network.record(), "bit_length": f.get("bit_length"),
        "repeat": rep, "warmup": warm, "wall_s": o.wall_s, "engine_s": f.get("engine_s"),
        "compute_s": f.get("compute_s"), "bytes_sent": f.get("bytes_sent"),
        "bytes_by_party": f.get("bytes_by_party"), "rounds": f.get("rounds"),
        "messages": f.get("messages"), "bytes_by_link": f.get("bytes_by_link"),
        "relay_bytes": f.get("relay_bytes"), "engine_rounds": f.get("engine_rounds"),
        "global_bytes": f.get("global_bytes"), "online_s": f.get("online_s"),
        "offline_s": f.get("offline_s"), "tls": _tls(cell.engine),
        "isolation": sweep_meta.get("isolation"),
        "compile_s": f.get("compile_s"), "compile_cached": f.get("compile_cached"),
        "compile_options": f.get("compile_options"), "compiler_expected": f.get("compiler_expected"),
        "peak_rss_kib_by_party": f.get("peak_rss_kib_by_party"),
        "cohort_size": o.cohort_size, "correct": o.correct, "error": o.error,
        **_tamper_fields(cell, o),
        "logs": str(logs) if logs else None, "compare_to": exp.config.compare_to,
        "time": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "load_avg": load, "meta": {**sweep_meta, "load_avg": load},
    }
