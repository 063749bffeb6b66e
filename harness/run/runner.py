"""One run of one cell: the engine's parties started, connected, measured and checked against the oracle.

The runner knows engines only through `backends.engine`: it asks the cell for
its parties, runs them as one process group (through the relay when the
network is shaped or faulty), lets the cell read their figures and answers,
and compares party 0's answer with the oracle's (and, for a count, every
party's with party 0's).
"""

from __future__ import annotations

import shutil
from contextlib import contextmanager
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Callable, ContextManager, Iterator

import numpy as np

from backends import registry
from backends import engine as interface
from backends.engine import Cell, Engine, Finished, Links, OutputError, Spec, Unavailable
from circuits.holdings import PATIENT_HELD, Holdings
from circuits.ir import Output, Query
from circuits.oracle import Cohort, cohort
from circuits.population import Population
from circuits.noise import SCALES_BOUND
from circuits.stats import Ones, Stats, combine
from harness.net.networks import PROFILES, Network
from harness.net.relay import Relay, Route, routes_for_full_mesh
from harness.run.diagnosis import diagnose
from harness.run.parties import HERE, GroupResult, Launcher, PartiesLost, Placed, RelayLike, Relays
from harness.run.waiting import PartiesWaiting

LOOPBACK = Network("loopback", PROFILES["loopback"])


@dataclass(frozen=True)
class Outcome:
    """What a run measured; `error` is None when it finished and matched the oracle.
    `result_correct`: the revealed answer equals the oracle's (None: nothing revealed)."""

    wall_s: float | None
    figures: dict
    cohort_size: int | None
    correct: bool
    error: str | None
    result_correct: bool | None = None
    unavailable: bool = False  # the engine cannot run the cell (`error` says why): not a failure


def check(
    query: Query, expected: Cohort, answer: object, holdings: Holdings = PATIENT_HELD
) -> tuple[int | None, bool, str | None]:
    """Compare a revealed answer with the oracle's."""
    if query.output is Output.COUNT_BY_SITE:
        ok = answer == expected.count_by_site(holdings)
        size = sum(answer) if isinstance(answer, list) else None
    elif query.stats is not None:
        ok = answer == list(expected.sums)
        size = _stats_count(query.stats, answer, holdings.sites) if ok else None
    elif query.output is Output.COUNT:
        ok = answer == expected.count
        size = answer if isinstance(answer, int) else None
    else:
        bits = np.asarray(answer if answer is not None else [], dtype=np.int64)
        ok = bits.shape == expected.eligible.shape and bool(np.all(bits == expected.eligible))
        size = int(bits.sum()) if bits.size else None
    if ok:
        return size, True, None
    return (
        size,
        False,
        (
            f"MISMATCH: the secure answer ({size}) differs from the plaintext "
            f"oracle ({expected.count} eligible)"
        ),
    )


def _stats_count(stats: Stats, sums: list[int], sites: int) -> int | None:
    """The cohort size among a stats query's revealed sums (None: it reveals none)."""
    released = stats.released(sites)
    return sum(s for c, s in zip(released, sums) if c == Ones()) if Ones() in released else None


def _noisy_check(
    stats: Stats, expected: Cohort, answer: object, plan: dict | None, sites: int
) -> tuple[int | None, bool, str | None]:
    """A noisy release against the exact sums: each within SCALES_BOUND scales per party of
    its exact value (a plausibility check: the noise-free sums are compared exactly only
    by the tests' debug path, never in a release)."""
    columns = stats.released(sites)
    if plan is None or not isinstance(answer, list) or len(answer) != len(columns):
        return None, False, f"MISMATCH: the release {_brief(answer)} is not {len(columns)} noised sums"
    far = [
        name
        for c, name, got, exact in zip(columns, stats.sum_names(sites), answer, expected.sums)
        if abs(got - exact) > SCALES_BOUND * plan["parties"] * plan["scale"][c.name]
    ]
    if far:
        return None, False, f"MISMATCH: the released {', '.join(far)} lie beyond any plausible noise"
    return None, True, None


def noise_of(stats: Stats, expected: Cohort, answer: list[int], sites: int = 1) -> dict[str, int]:
    """Each released sum minus its exact value: the noise the run added."""
    return {n: got - exact for n, got, exact in zip(stats.sum_names(sites), answer, expected.sums)}


def _answer(
    query: Query, expected: Cohort, answers: list, wall_s: float, figures: dict, holdings: Holdings
) -> Outcome:
    """The outcome of a run whose parties all finished: party 0's answer against the
    oracle's, and for a count every party's against party 0's."""
    sites = holdings.sites
    if query.stats is not None and query.stats.dp is not None:
        size, correct, error = _noisy_check(query.stats, expected, answers[0], figures.get("dp"), sites)
    else:
        size, correct, error = check(query, expected, answers[0], holdings)
    revealed = correct or answers[0] is not None
    to_all = query.output in (Output.COUNT, Output.STATS)
    if correct and to_all and len(set(map(str, answers))) != 1:
        correct, error = False, f"MISMATCH: parties revealed different answers {answers}"
    if correct and query.stats is not None:
        figures = {**figures, "stats": combine(query.stats, answers[0], sites)}
        if query.stats.dp is not None:
            figures["dp_error"] = noise_of(query.stats, expected, answers[0], sites)
    return Outcome(wall_s, figures, size, correct, error, correct if revealed else None)


def _site_answers(
    query: Query, expected: Cohort, holdings: Holdings, answers: list, wall_s: float, figures: dict
) -> Outcome:
    """Sites as parties: every party's answer is exactly what the deployment reveals to it
    (`Cohort.learnt`): a wrong answer or one more than it may learn fails the run."""
    learnt = expected.learnt(query.output, holdings, len(answers))
    wrong = [p for p, (got, may) in enumerate(zip(answers, learnt)) if got != may]
    if query.output is Output.COUNT_BY_SITE:
        figures = {**figures, "count_by_site": answers[0]}
    if not wrong:
        return Outcome(wall_s, figures, expected.count, True, None, True)
    p = wrong[0]
    error = (
        f"MISMATCH: party {p} learnt {_brief(answers[p])}, but the deployment reveals to it "
        f"{_brief(learnt[p])} (oracle: {expected.count} eligible)"
    )
    return Outcome(wall_s, figures, None, False, error, False)


def _brief(answer: object) -> str:
    if isinstance(answer, list) and len(answer) > 8:
        return f"{len(answer)} values ({sum(map(int, answer))} ones)"
    return "nothing" if answer is None else str(answer)


@contextmanager
def relayed(
    network: Network,
    listen: list[int],
    every_direction: bool,
    waiting: PartiesWaiting | None = None,
    addresses: tuple[str, ...] = (),
    on_nodes: Relays | None = None,
) -> Iterator[tuple[Links, RelayLike | None]]:
    """Each party's view of the others' addresses and ports, through a relay unless
    `network` is direct.

    `addresses[j]`: party j's node (none given: every party on loopback).  Without
    `every_direction` party i connects only to every j > i, so those routes suffice;
    with it, party i reaches every j through the relay, and routes no one uses stay
    idle.  The network's faults, if any, are handed to the relay; a lock-step network's
    relay waits for every party to wait (`waiting`) before each delivery.  The relay runs
    here and reaches the parties on loopback, or, where a party's node is elsewhere, runs
    on the parties' nodes (`on_nodes`, one relay per node, each listening at its node's
    address): Unavailable without them, or in lock-step, whose barrier must see every party."""
    parties = len(listen)
    nodes = addresses or (interface.LOOPBACK,) * parties
    hosts = tuple(tuple(nodes) for _ in range(parties))
    if not network.relayed or parties < 2:
        yield Links(tuple(listen), tuple(tuple(listen) for _ in range(parties)), hosts), None
        return
    routes = (
        [(i, j, listen[j]) for i in range(parties) for j in range(parties) if i != j]
        if every_direction
        else routes_for_full_mesh(parties, listen)
    )
    with _relay(network, routes, parties, waiting, nodes, on_nodes) as relay:
        through = relay.ports
        views = tuple(tuple(through.get((i, j), listen[j]) for j in range(parties)) for i in range(parties))
        yield Links(tuple(listen), views, hosts), relay


def _relay(
    network: Network,
    routes: list[Route],
    parties: int,
    waiting: PartiesWaiting | None,
    nodes: tuple[str, ...],
    on_nodes: Relays | None,
) -> ContextManager[RelayLike]:
    """The run's relay: here, or on the parties' nodes where any is elsewhere."""
    away = sorted({a for a in nodes if a != interface.LOOPBACK})
    if not away:
        return Relay(routes, network.shape, parties=parties, faults=network.fault_map(), lockstep=waiting)
    where = ", ".join(away)
    if on_nodes is None:
        raise Unavailable(
            f"network {network.name} goes through the relay, which runs beside the harness and "
            f"reaches parties on loopback only, but parties run on {where}: use a direct "
            "network (loopback) across hosts"
        )
    if waiting is not None:
        raise Unavailable(
            f"network {network.name} runs the parties in lock-step, whose barrier must see every "
            f"party, but parties run on {where}, each node with a relay of its own"
        )
    return on_nodes(routes, network.shape, parties, network.fault_map())


def _relay_figures(relay: RelayLike) -> dict:
    stats = relay.stats().to_json()
    out = {
        "rounds": stats["rounds"],
        "messages": sum(map(sum, stats["messages_by_link"])),
        "bytes_by_link": stats["bytes_by_link"],
        "relay_bytes": stats["bytes_total"],
        "relay_scheduling": relay.scheduling,
        "relay_at": "here" if isinstance(relay, Relay) else "nodes",
    }
    if stats["faults_fired"]:
        out["faults_fired"] = stats["faults_fired"]
    return out


def _failure_figures(engine: Engine, group: GroupResult, relay: RelayLike | None) -> dict:
    """What a failed run still tells: who failed first and why, and the faults' events."""
    d = diagnose(
        group.logs, group.returncodes, group.timed_out, group.first_failed, engine.aborts, engine.tls_errors
    )
    out = {"failing_party": d.failing_party, "failing_party_message": d.message, "detected_by": d.detected_by}
    if relay is not None:
        events = relay.stats().faults_fired
        if events:
            out["faults_fired"] = {f"{s}->{t}": e for (s, t), e in sorted(events.items())}
    return out


class CellRunner:
    """A cell prepared once by its engine (inputs written, program compiled); each `run`
    is one repeat in its own directory.  A cell this machine cannot run fails every run."""

    def __init__(
        self,
        spec: Spec,
        query: Query,
        pop: Population,
        workdir: Path,
        holdings: Holdings = PATIENT_HELD,
        before: Callable[[str], object] = lambda name: None,
        launcher: Launcher = HERE,
    ):
        """`before(name)`: called as each run starts, before its parties (the privacy ledger's
        charge); `launcher`: where each run's parties run."""
        self.spec, self.query, self.workdir, self.holdings = spec, query, workdir.resolve(), holdings
        self.before, self.launcher = before, launcher
        self.engine = registry.get(spec.engine)
        self.expected = cohort(query, pop, holdings)
        self.cell: Cell | None = None
        self.unavailable: str | None = holdings.output_problem(query.output.value)
        if self.unavailable:
            return
        try:
            self.cell = self.engine.cell(spec, query, pop, self.workdir, holdings)
        except Unavailable as e:
            self.unavailable = str(e)

    def run(
        self, name: str, timeout_s: float, network: Network = LOOPBACK, launcher: Launcher | None = None
    ) -> Outcome:
        """One run; `launcher`: where its parties run, if not where the runner's do."""
        if self.cell is None:
            return Outcome(None, {}, None, False, self.unavailable, unavailable=True)
        run_dir = self.workdir / name
        if run_dir.exists():
            shutil.rmtree(run_dir)
        run_dir.mkdir(parents=True)
        self.before(name)
        try:
            return self._run(self.cell, run_dir, timeout_s, network, launcher or self.launcher)
        except Unavailable as e:
            return Outcome(None, {}, None, False, str(e), unavailable=True)
        except PartiesLost as e:
            return Outcome(None, {}, None, False, str(e))
        finally:
            self.cell.finish(run_dir)

    def _run(
        self, cell: Cell, run_dir: Path, timeout_s: float, network: Network, launcher: Launcher
    ) -> Outcome:
        with launcher.place(self.spec.parties) as placed:
            outcome = self._placed(cell, run_dir, timeout_s, network, placed)
        return replace(outcome, figures={**outcome.figures, "hosts": placed.hosts})

    def _placed(
        self, cell: Cell, run_dir: Path, timeout_s: float, network: Network, placed: Placed
    ) -> Outcome:
        waiting = PartiesWaiting(self.spec.parties) if network.lockstep else None
        every = self.engine.connects_every_direction
        ports, addresses = list(placed.ports), placed.addresses
        with relayed(network, ports, every, waiting, addresses, placed.relays) as (links, relay):
            parties = cell.plan(run_dir, links, traced=bool(network.faults))
            group = placed.run(parties, run_dir, timeout_s, waiting.add if waiting else None)
        failure = group.failure()
        if failure:
            return self._failed(group, relay, failure)
        try:
            figures = cell.read(Finished(run_dir, group.logs, group.returncodes, group.timed_out))
        except OutputError as e:
            return self._failed(group, relay, str(e), False if e.revealed else None)
        measured = {k: v for k, v in asdict(figures).items() if k != "answers"}
        measured.update(bytes_sent=figures.bytes_sent, **asdict(cell.preparation))
        if relay is not None:
            measured.update(_relay_figures(relay))
        sites_learn = self.holdings is not PATIENT_HELD and self.query.stats is None
        if sites_learn and self.spec.parties >= self.holdings.sites:  # + a researcher
            return _site_answers(
                self.query, self.expected, self.holdings, figures.answers, group.wall_s, measured
            )
        return _answer(self.query, self.expected, figures.answers, group.wall_s, measured, self.holdings)

    def _failed(
        self, group: GroupResult, relay: RelayLike | None, why: str, result_correct: bool | None = None
    ) -> Outcome:
        """A run that revealed no right answer: why, the parties' logs' tails, the diagnosis."""
        figures = _failure_figures(self.engine, group, relay)
        return Outcome(group.wall_s, figures, None, False, f"{why}\n{group.log_tail()}", result_correct)

    def close(self) -> None:
        if self.cell is not None:
            self.cell.close()
