"""A sweep: every cell of an experiment's grid, every repeat, one record each as it finishes."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import queue
import threading
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Sequence

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.progress import TimeRemainingColumn

from backends.engine import Spec
from circuits import locality
from circuits.errors import InputError
from harness.net import isolation
from harness.run import meta
from harness.analysis import records as results
from harness.analysis.records import Record
from harness.run.config import Experiment
from harness.net.networks import Network
from harness.run.calibrations import Calibrations, Enter
from harness.run.cluster import PartyPlacement, RayCluster
from harness.run import deployment
from harness.run.deployment import DeploymentSpec, Placement
from harness.run.runner import CellRunner, Outcome
from harness.run.parties import HERE, Launcher
from harness.privacy.budget import Accountant, accountant
from harness.data.sources import Source
from circuits.ir import Query
from circuits.population import Padding, Population


@dataclass(frozen=True)
class Cell:
    engine: Spec
    source: Source
    padding: Padding
    network: Network
    query: Query
    deployment: DeploymentSpec = "patient"

    def deployment_key(self) -> list:
        """The deployment, in the key only when not `patient` (earlier keys stay)."""
        return [] if isinstance(self.deployment, str) else [self.deployment.record()]

    def key(self, exp: Experiment) -> str:
        text = json.dumps(
            [
                self.engine.model_dump(mode="json", exclude_defaults=True),
                self.source.text,
                self.network.record(),
                self.padding.label(),
                self.query.name,
                self.query.ir_hash,
                str(exp.config.as_of),
            ]
            + self.deployment_key()
        )
        return hashlib.sha256(text.encode()).hexdigest()[:12]

    def label(self) -> str:
        where = "" if isinstance(self.deployment, str) else f" {deployment.label(self.deployment)}"
        return (
            f"{self.engine.label} {self.query.name} {self.source.text} {self.padding.label()} "
            f"{self.network.name}{where}"
        )

    def short_label(self, exp: Experiment) -> str:
        """engine/protocol, parties (and who inputs private criteria), population, network,
        and the query and padding when the grid has several: short enough for a progress line."""
        e, src = self.engine, self.source
        population = src.text if src.path is None else src.path.name
        parties = f"{e.parties}p" + (f" private(r={e.researcher})" if e.private else "")
        parts = [f"{e.engine}/{e.protocol}", parties, population, self.network.name]
        if len(exp.queries) > 1:
            parts.append(self.query.name)
        if len(exp.paddings) > 1:
            parts.append(self.padding.label())
        if len(exp.config.deployments) > 1:
            parts.append(deployment.label(self.deployment))
        return " ".join(parts)


def cells(exp: Experiment) -> list[Cell]:
    """Population and padding outermost (each encoded once), then network, query,
    deployment, engine."""
    engines_at = exp.engines_at or tuple(tuple(exp.config.engines) for _ in exp.config.deployments)
    return [
        Cell(e, s, p, n, q, d)
        for s in exp.sources
        for p in exp.paddings
        for n in exp.networks
        for q in exp.queries
        for d, engines in zip(exp.config.deployments, engines_at)
        for e in engines
        if e.populations is None or s.text in e.populations
    ]


class Budget:
    """Per-cell time budget: a setting whose run exceeded it at one population is skipped,
    and recorded as skipped, at every larger population of the sweep."""

    def __init__(self, seconds: float | None):
        self.seconds = seconds
        self.over: dict[str, tuple[int, float]] = {}  # setting -> (population, wall_s)

    @staticmethod
    def _setting(cell: Cell) -> str:
        return json.dumps(
            [
                cell.engine.model_dump(mode="json", exclude_defaults=True),
                cell.network.record(),
                cell.query.ir_hash,
                cell.padding.label(),
            ]
            + cell.deployment_key()
        )

    def seen(self, cell: Cell, population: int, wall_s: float | None) -> None:
        if self.seconds is not None and wall_s is not None and wall_s > self.seconds:
            self.over.setdefault(self._setting(cell), (population, wall_s))

    def replay(self, exp: Experiment, records: Iterable[Record]) -> None:
        """What earlier runs of this grid (a results file resumed) showed of the budget."""
        grid = {c.key(exp): c for c in cells(exp)}
        for r in records:
            cell = grid.get(r["cell"])
            if cell is not None and not r.get("skipped") and r["population"] is not None:
                self.seen(cell, r["population"], r["wall_s"])

    def exceeded(self, cell: Cell) -> str | None:
        hit = self.over.get(self._setting(cell))
        if hit is None or cell.source.size is None or cell.source.size <= hit[0]:
            return None
        return (
            f"skipped: this setting took {hit[1]:.1f} s at population {hit[0]}, over the "
            f"budget of {self.seconds:g} s per run (budget_s)"
        )


def runs(exp: Experiment) -> list[tuple[Cell, int, bool]]:
    """Every run as (cell, repeat, warmup): cell by cell, or with `interleave` repeat by
    repeat across cells, so that slow drifts of the machine hit every cell alike."""
    grid = cells(exp)
    phases = ((True, exp.config.warmup), (False, exp.config.repeats))
    if exp.config.interleave:
        return [(c, rep, warm) for warm, reps in phases for rep in range(reps) for c in grid]
    return [(c, rep, warm) for c in grid for warm, reps in phases for rep in range(reps)]


def _kept(out: Path, resume: bool, warn: Callable[[str], None]) -> list[Record]:
    """The records already in `out` (resumed), after dropping a torn last line."""
    if not (out.exists() and out.stat().st_size):
        return []
    if not resume:
        raise InputError(
            str(out), "", "results file exists", "pass --resume to continue it, or choose another --out"
        )
    kept = results.read(out, warn)
    results.rewrite(out, kept)
    return kept


def _config_hash(record: Record) -> str | None:
    return (record.meta or {}).get("config_hash")


def resumed_over(exp: Experiment, out: Path, kept: list[Record], force: bool) -> list[str]:
    """The config hashes of the records in `out` that another config wrote (and that this
    config has not already been forced over): refused unless `force`."""
    allowed = {exp.config_hash}
    for r in kept:
        if _config_hash(r) == exp.config_hash:
            allowed.update((r.meta or {}).get("resumed_over") or ())
    others = {_config_hash(r) or "none": r.config for r in kept if _config_hash(r) not in allowed}
    if others and not force:
        theirs = ", ".join(f"{name!r} (config hash {h})" for h, name in sorted(others.items()))
        raise InputError(
            str(out),
            "",
            f"written by another config: {theirs}, not by {exp.path} ({exp.config.name!r}, "
            f"config hash {exp.config_hash})",
            "choose another --out, or pass --resume --force to add this config's runs to it "
            "anyway (recorded in their meta.resumed_over)",
        )
    previously = {h for r in kept for h in (r.meta or {}).get("resumed_over") or ()}
    return sorted((set(others) | previously) - {exp.config_hash})


def _isolation(exp: Experiment, warn: Callable[[str], None]) -> tuple[Enter, str]:
    """How each run is entered (in a namespace of its own, or here) and what to record.
    On a cluster the parties run on its nodes: here, the run is entered as it is."""
    if exp.cluster is not None:
        return _here, "host"
    try:
        isolated, note = isolation.resolve(exp.config.isolation)
    except ValueError as e:
        raise InputError(
            str(exp.path), "isolation", str(e), "run as root, or set isolation: auto (or none)"
        ) from None
    if note:
        warn(note)
    return (isolation.call, "netns") if isolated else (_here, "host")


class Sweep:
    """The state of one sweep: the data loaded, the cells prepared, the records written."""

    def __init__(
        self,
        exp: Experiment,
        out: Path,
        enter: Enter,
        sweep_meta: dict,
        warn: Callable[[str], None],
        accountant: Accountant | None = None,
        slots: Sequence[Launcher] = (HERE,),
    ):
        """`slots`: where runs place their parties, one run at once in each."""
        self.exp, self.enter, self.meta, self.warn = exp, enter, sweep_meta, warn
        self.slots, self.launcher = list(slots), slots[0]
        self.lock = threading.RLock()  # the sweep's state, shared by the runs at once
        self.spans = Spans()
        self.accountant = accountant or Accountant(None, None)  # None: no DP query
        self.runs_dir = out.with_suffix(".runs")
        self.writer = results.Writer(out)
        self.written: list[Record] = []
        self.budget = Budget(exp.config.budget_s)
        self.populations: dict[tuple, Population] = {}
        self.runners: dict[str, CellRunner] = {}  # by cell key
        self.placements: dict[tuple, Placement] = {}
        self.calibrations = Calibrations(exp.config.timeout_s, enter, warn)

    def population(self, cell: Cell) -> Population:
        key = (cell.source.text, cell.padding)
        if key not in self.populations:
            self.populations[key] = self.exp.population(cell.source, cell.padding, self.warn)
        return self.populations[key]

    def placement(self, cell: Cell, pop: Population) -> Placement:
        """Who holds what of the cell's population (assigned once per source and deployment)."""
        key = (cell.source.text, cell.padding, json.dumps(deployment.record(cell.deployment)))
        if key not in self.placements:
            self.placements[key] = Placement.of(
                cell.deployment, cell.source, pop, self.exp.config.as_of, self.warn
            )
        return self.placements[key]

    def runner(self, cell: Cell, pop: Population) -> CellRunner:
        key = cell.key(self.exp)
        if key not in self.runners:
            holdings = self.placement(cell, pop).holdings

            def charge(name: str, cell: Cell = cell, key: str = key) -> None:
                self.accountant.charge(
                    cell.source.text, cell.query, cell=key, run=name, config=self.exp.config.name
                )

            self.runners[key] = CellRunner(
                cell.engine, cell.query, pop, self.runs_dir / key, holdings, charge, self.launcher
            )
        return self.runners[key]

    def run(self, cell: Cell, rep: int, warm: bool, launcher: Launcher | None = None) -> Record:
        """One run of a cell (or its record as skipped, past the budget), written at once;
        `launcher`: the slot it runs in (the first one by default)."""
        launcher = launcher or self.launcher
        name = run_name(rep, warm)
        with self.lock:
            over = self.budget.exceeded(cell)
            if over is not None:
                outcome = Outcome(None, {}, None, False, over)
                return self._write(
                    _record(
                        self.exp,
                        cell,
                        None,
                        rep,
                        warm,
                        outcome,
                        self.meta,
                        None,
                        skipped=True,
                        at_once=(len(self.slots), []),
                    )
                )
            pop = self.population(cell)
            runner = self.runner(cell, pop)
            network = self.calibrations.network(cell, runner, launcher)
        span = f"{cell.key(self.exp)}/{name}"
        self.spans.begin(span)
        if isinstance(network, Outcome):
            outcome = network
        else:
            outcome = self.enter(lambda: runner.run(name, self.exp.config.timeout_s, network, launcher))
        overlapped = self.spans.end(span)
        with self.lock:
            return self._recorded(cell, pop, runner, rep, warm, outcome, overlapped)

    def _recorded(
        self,
        cell: Cell,
        pop: Population,
        runner: CellRunner,
        rep: int,
        warm: bool,
        outcome: Outcome,
        overlapped: list[str],
    ) -> Record:
        """The run's record, written, and its error said."""
        name = run_name(rep, warm)
        streams = self.calibrations.streams(cell) if cell.network.needs_calibration else None
        rounds = self.calibrations.rounds(cell, runner) if self.exp.config.rounds_calibration else None
        record = _record(
            self.exp,
            cell,
            pop,
            rep,
            warm,
            outcome,
            self.meta,
            self.runs_dir / cell.key(self.exp) / name,
            fault_calibration=streams,
            rounds=rounds,
            placement=self.placement(cell, pop),
            privacy=self.accountant.fields(cell.source.text, cell.query, outcome.figures.get("dp_error")),
            at_once=(len(self.slots), overlapped),
        )
        self.budget.seen(cell, len(pop), outcome.wall_s)
        self._write(record)
        if outcome.error:
            tampered = "tampered (an expected outcome): " if expected_failure(record) else ""
            self.warn(f"{cell.label()} {name}: {tampered}{outcome.error.splitlines()[0]}")
        return record

    def _write(self, record: Record) -> Record:
        self.writer.append(record)
        self.written.append(record)
        return record

    def close(self) -> None:
        self.writer.close()
        for runner in self.runners.values():
            runner.close()
        for slot in self.slots:
            slot.close()


class Spans:
    """When each run of a sweep ran, to tell which runs overlapped in time."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.spans: dict[str, tuple[float, float | None]] = {}

    def begin(self, run: str) -> None:
        with self.lock:
            self.spans[run] = (time.monotonic(), None)

    def end(self, run: str) -> list[str]:
        """The runs that ran while this one did (begun before it ended, not ended before it began)."""
        with self.lock:
            start, now = self.spans[run][0], time.monotonic()
            self.spans[run] = (start, now)
            return sorted(
                other
                for other, (s, e) in self.spans.items()
                if other != run and s < now and (e is None or e > start)
            )


def run_name(rep: int, warm: bool) -> str:
    return f"{'warmup' if warm else 'repeat'}-{rep}"


def to_do(exp: Experiment, records: Iterable[Record]) -> list[tuple[Cell, int, bool]]:
    """The runs of the grid that `records` (a results file) do not hold yet."""
    done = {results.run_key(r) for r in records}
    return [(c, rep, warm) for c, rep, warm in runs(exp) if (c.key(exp), rep, warm) not in done]


def kept_runs(exp: Experiment, out: Path) -> int:
    """How many of the grid's runs `out` holds."""
    if not out.exists():
        return 0
    return len(runs(exp)) - len(to_do(exp, results.read(out, lambda message: None)))


def warn_contention(exp: Experiment, todo: list[tuple[Cell, int, bool]], warn: Callable[[str], None]) -> None:
    """Engines with more parties than this machine has cores: their times include waiting."""
    cores = meta.cores()
    over = sorted({c.engine.label for c, _, _ in todo if c.engine.parties > cores})
    if over:
        warn(
            f"{', '.join(over)}: more parties than the {cores} core(s) here, so the parties "
            "take turns on a core and their times include that wait (contended)"
        )


def run_sweep(
    exp: Experiment, out: Path, resume: bool, warn: Callable[[str], None], console=None, force: bool = False
) -> list[Record]:
    """Run every missing run of the grid, appending records to `out`; returns this sweep's records.
    `force`: resume even into a file that another config wrote (recorded)."""
    kept = _kept(out, resume, warn)
    over = resumed_over(exp, out, kept, force)
    enter, isolated = _isolation(exp, warn)
    todo = to_do(exp, kept)
    if kept:
        warn(f"resuming: {len(runs(exp)) - len(todo)} run(s) already in {out}, {len(todo)} to go")
    warn_contention(exp, todo, warn)
    sweep_meta = {**meta.collect(exp.config_hash), "isolation": isolated}
    sweep_meta |= {"overrides": exp.overrides} if exp.overrides else {}
    sweep_meta |= {"resumed_over": over} if over else {}
    launcher = connect(exp) if exp.cluster is not None and todo else HERE
    slots = _slots(exp, launcher, todo, warn)
    sweep = Sweep(exp, out, enter, sweep_meta, warn, privacy_budget(exp, todo, out, warn), slots)
    sweep.budget.replay(exp, kept)
    progress = Progress(
        TextColumn("{task.description}"),
        BarColumn(bar_width=20),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("eta"),
        TimeRemainingColumn(),
        console=console,
        transient=False,
    )
    try:
        with progress:
            task = progress.add_task(exp.config.name, total=len(todo))

            def done(cell: Cell, rep: int, warm: bool, record: Record) -> None:
                label = f"{cell.short_label(exp)} {run_name(rep, warm)}"
                progress.console.print(f"{label}: {finished(record)}", soft_wrap=True)
                progress.advance(task)

            if len(slots) == 1:
                for cell, rep, warm in todo:
                    progress.update(task, description=f"{cell.short_label(exp)} {run_name(rep, warm)}")
                    done(cell, rep, warm, sweep.run(cell, rep, warm))
            else:
                progress.update(task, description=f"{exp.config.name}: {len(slots)} runs at once")
                _at_once(sweep, todo, done)
    finally:
        sweep.close()
    return sweep.written


def _slots(
    exp: Experiment, launcher: Launcher, todo: list[tuple[Cell, int, bool]], warn: Callable[[str], None]
) -> list[Launcher]:
    """Where the sweep's runs place their parties: `concurrency` slots on a cluster (fewer,
    said once, where it cannot hold that many runs of its largest cell at once)."""
    wanted = exp.config.concurrency
    if wanted == 1 or not isinstance(launcher, RayCluster) or not todo:
        return [launcher]
    most = max(c.engine.parties for c, _, _ in todo)
    room = max(1, min(wanted, launcher.room(most)))
    if room < wanted:
        warn(
            f"concurrency: {wanted} asks for {wanted} runs at once of up to {most} parties, but the "
            f"cluster holds {room} ({launcher.nodes()} node(s), {launcher.placement.strategy}): "
            f"{room} at once"
        )
    return [launcher, *(launcher.slot() for _ in range(room - 1))]


def _at_once(
    sweep: Sweep, todo: list[tuple[Cell, int, bool]], done: Callable[[Cell, int, bool, Record], None]
) -> None:
    """The runs in a pool of threads, one per slot, each run taking a free slot; `done`
    for each as it finishes.  Interrupted, the runs not begun are dropped."""
    free: queue.SimpleQueue[Launcher] = queue.SimpleQueue()
    for slot in sweep.slots:
        free.put(slot)

    def one(cell: Cell, rep: int, warm: bool) -> Record:
        slot = free.get()
        try:
            return sweep.run(cell, rep, warm, slot)
        finally:
            free.put(slot)

    pool = ThreadPoolExecutor(len(sweep.slots), thread_name_prefix="cohortbench-run")
    try:
        futures = {pool.submit(one, *run): run for run in todo}
        for future in as_completed(futures):
            done(*futures[future], future.result())
    finally:
        pool.shutdown(wait=False, cancel_futures=True)


def connect(exp: Experiment) -> Launcher:
    """The config's cluster, its parties placed as `placement:` says; exit 2 without Ray."""
    try:
        return RayCluster(str(exp.cluster), exp.placement or PartyPlacement())
    except ImportError:
        raise InputError(
            str(exp.path),
            "cluster",
            "a cluster needs Ray, which is not installed here",
            "pip install -e '.[cluster]' (or make install-cluster), or drop cluster",
        ) from None
    except ConnectionError as e:
        raise InputError(
            str(exp.path),
            "cluster",
            f"no Ray cluster at {exp.config.cluster}: {e}",
            "start it, or fix the address",
        ) from None


def privacy_budget(
    exp: Experiment, todo: list[tuple[Cell, int, bool]], out: Path, warn: Callable[[str], None]
) -> Accountant:
    """The sweep's accountant, once every run of a DP query it plans (calibrations
    included) fits the budget; InputError (exit 2) before any party starts otherwise."""
    todo_cells = [c for c, _, _ in todo]
    planned = todo_cells + Calibrations.planned(todo_cells, exp.config.rounds_calibration)
    budget = exp.config.budget
    given = budget if budget is None or isinstance(budget, str) else budget.model_dump()
    return accountant(given, [(c.source.text, c.query) for c in planned], out, str(exp.path), warn)


def finished(r: Record) -> str:
    """A finished run in a few words: engine time, bytes, and whether it was correct."""
    if r.skipped:
        return "skipped (budget_s)"
    if r.unavailable:
        return "unavailable"
    engine = f"engine {max(r.engine_s):.2f} s" if r.engine_s else f"wall {r.wall_s or 0:.2f} s"
    sent = f"{r.bytes_sent / 1e6:.2f} MB" if r.bytes_sent is not None else "bytes not counted"
    verdict = "correct" if r.correct else ("tampered" if expected_failure(r) else "NOT correct")
    return f"{engine}, {sent}, {verdict}"


def _here(fn: Callable[[], Outcome]) -> Outcome:
    return fn()


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
        "tamper_detected": detected_by in ("protocol", "tls") if faults else None,
        "tamper_detected_by": detected_by,
        "result_correct": o.result_correct,
        "failing_party": f.get("failing_party"),
        "failing_party_message": f.get("failing_party_message"),
    }


def expected_failure(record: Record) -> bool:
    """A failed run of a tamper experiment: its network had a fault and the fault fired
    (a run that fails before its fault fires is a real failure)."""
    return bool(record.get("fault")) and bool(record.get("fault_fired"))


def _record(
    exp: Experiment,
    cell: Cell,
    pop: Population | None,
    rep: int,
    warm: bool,
    o: Outcome,
    sweep_meta: dict,
    logs: Path | None,
    skipped: bool = False,
    fault_calibration: dict[str, int] | None = None,
    rounds: float | None = None,
    placement: Placement | None = None,
    privacy: dict | None = None,
    at_once: tuple[int, list[str]] = (1, []),
) -> Record:
    """`at_once`: the sweep's runs at once, and the runs that overlapped this one in time."""
    f = o.figures
    load = meta.load_average()
    facts = cell.engine.facts
    return Record(
        **{
            "config": exp.config.name,
            "cell": cell.key(exp),
            "engine": cell.engine.engine,
            "protocol": cell.engine.protocol,
            "security": facts.security,
            "majority": facts.majority,
            "parties": cell.engine.parties,
            "population": len(pop) if pop is not None else cell.source.size,
            "population_source": cell.source.text,
            "padding": {"conditions": cell.padding.conditions, "exams": cell.padding.exams},
            "slots": list(pop.slots) if pop is not None else None,
            "query": {
                "name": cell.query.name,
                "ir_hash": cell.query.ir_hash,
                "output": cell.query.output.value,
            },
            "network": _network(cell, f),
            "bit_length": f.get("bit_length"),
            "repeat": rep,
            "warmup": warm,
            "wall_s": o.wall_s,
            "engine_s": f.get("engine_s"),
            "compute_s": f.get("compute_s"),
            "bytes_sent": f.get("bytes_sent"),
            "bytes_by_party": f.get("bytes_by_party"),
            "rounds": rounds,
            "observed_rounds": f.get("rounds"),
            "messages": f.get("messages"),
            "bytes_by_link": f.get("bytes_by_link"),
            "relay_bytes": f.get("relay_bytes"),
            "relay_scheduling": f.get("relay_scheduling"),
            "engine_rounds": f.get("engine_rounds"),
            "global_bytes": f.get("global_bytes"),
            "online_s": f.get("online_s"),
            "offline_s": f.get("offline_s"),
            "tls": cell.engine.tls,
            "criteria": cell.engine.criteria,
            "researcher": cell.engine.researcher_party,
            "isolation": sweep_meta.get("isolation"),
            "hosts": f.get("hosts"),
            "placement": exp.placement.record() if exp.placement is not None else None,
            "concurrency": at_once[0],
            "overlapped": at_once[1],
            "compile_s": f.get("compile_s"),
            "compile_cached": f.get("compile_cached"),
            "compile_options": f.get("compile_options"),
            "compiler_expected": f.get("compiler_expected"),
            "peak_rss_kib_by_party": f.get("peak_rss_kib_by_party"),
            "cohort_size": o.cohort_size,
            "correct": o.correct,
            "error": o.error,
            **_tamper_fields(cell, o),
            "logs": str(logs) if logs else None,
            "compare_to": exp.config.compare_to,
            "time": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            "load_avg": load,
            "meta": {**sweep_meta, "load_avg": load},
            "fault_calibration": fault_calibration,
            "skipped": skipped,
            "unavailable": o.unavailable,
            **_deployment_fields(cell, placement),
            **(privacy or {}),
            **{
                k: f.get(k)
                for k in (
                    "local_s",
                    "input_s",
                    "input_bytes_by_party",
                    "count_by_site",
                    "stats",
                    "dp",
                    "setup_s",
                    "setup_bytes",
                    "keys",
                    "topology",
                    "scheme_params",
                )
            },
        }
    )


def _network(cell: Cell, f: dict) -> dict:
    """The cell's network as configured, and what the run's links were: `real` between
    distinct hosts (a relayed network's shaping adds to theirs), `relay` where it ran."""
    out = cell.network.record()
    if f.get("hosts"):
        out["real"] = len({h["ip"] for h in f["hosts"]}) > 1
    if f.get("relay_at"):
        out["relay"] = f["relay_at"]
    return out


def _deployment_fields(cell: Cell, placement: Placement | None) -> dict:
    """Who held the data: the deployment as given (defaults filled in), its local mode,
    the patients at each site, and how many the provider fallback placed."""
    dep = cell.deployment
    as_sites = placement is not None and not isinstance(dep, str) and cell.engine.facts.max_parties > 1
    plan = (
        locality.split(cell.query, placement.holdings, cell.engine.private)
        if as_sites and placement
        else None
    )
    return {
        "deployment": deployment.record(dep),
        "local": None if isinstance(dep, str) else dep.local,
        "site_sizes": list(placement.site_sizes) if placement is not None else None,
        "assign_fallback": placement.fallback if placement is not None else None,
        "secure": plan.mode if plan else None,
        "local_nodes": plan.local_nodes if plan else None,
    }
