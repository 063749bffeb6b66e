"""One run of one cell: spawn the engine's parties, measure, and check against the oracle."""
from __future__ import annotations

import os
import re
import shutil
import time
from contextlib import contextmanager
from dataclasses import replace
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from backends.mp_spdz import compile as mp_compile
from backends.mp_spdz import launch as mp_launch
from backends.mp_spdz import program as mp_program
from backends.mp_spdz import protocols as mp_protocols
from backends.mp_spdz import throwtrace
from backends.mpyc import launch as mpyc_launch
from backends.mpyc.job import Job, write_inputs
from circuits.cost import DataBounds
from circuits.ir import Output, Query, to_plain
from circuits.oracle import Cohort, cohort
from circuits.population import Population
from backends.mpyc.certs import make_mpyc_certs
from harness.run.config import EngineSpec
from harness.net.networks import Network, PROFILES
from harness.run.parties import free_ports, run_group
from harness.net.relay import Relay, routes_for_full_mesh
from harness.run.diagnosis import diagnose

REPO = Path(__file__).resolve().parent.parent.parent
PLAIN = {"security": "none", "majority": "none"}
LOOPBACK = Network("loopback", PROFILES["loopback"])


@contextmanager
def relayed(network: Network, parties: int, ports: list[int], every_direction: bool = False):
    """Each party's view of the others' ports, through a relay unless `network` is direct.

    MPyC's party i connects to every j > i, so those routes suffice; with
    `every_direction` (an engine whose connect direction we do not rely on) party i
    reaches every j through the relay, and routes no one uses stay idle.  The
    network's faults, if any, are handed to the relay.
    """
    if not network.relayed:
        yield [list(ports) for _ in range(parties)], None
        return
    routes = ([(i, j, ports[j]) for i in range(parties) for j in range(parties) if i != j]
              if every_direction else routes_for_full_mesh(parties, ports))
    with Relay(routes, network.shape, parties=parties, faults=network.fault_map()) as relay:
        views = [[relay.port_for(i, j) if (i, j) in relay.ports else ports[j]
                  for j in range(parties)] for i in range(parties)]
        yield views, relay


def _relay_figures(relay: Relay) -> dict:
    stats = relay.stats().to_json()
    out = {"rounds": stats["rounds"], "messages": sum(map(sum, stats["messages_by_link"])),
           "bytes_by_link": stats["bytes_by_link"], "relay_bytes": stats["bytes_total"]}
    if stats["faults_fired"]:
        out["faults_fired"] = stats["faults_fired"]
    return out


_ANSWER = re.compile(r"^(?:ELIGIBLE|COUNT) ", re.M)  # what the MP-SPDZ program prints


def _printed_answer(log: Path) -> bool:
    try:
        return bool(_ANSWER.search(log.read_text(errors="replace")))
    except OSError:
        return False


def _failure_figures(group, relay: Relay | None) -> dict:
    """What a failed run still tells: who failed first and why, and the faults' events."""
    d = diagnose(group.logs, group.returncodes, group.timed_out, group.first_failed)
    out = {"failing_party": d.failing_party, "failing_party_message": d.message,
           "detected_by": d.detected_by}
    if relay is not None:
        events = relay.stats().faults_fired
        if events:
            out["faults_fired"] = {f"{s}->{t}": e for (s, t), e in sorted(events.items())}
    return out


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


def check(query: Query, expected: Cohort, answer: object) -> tuple[int | None, bool, str | None]:
    """Compare a revealed answer with the oracle's."""
    if query.output is Output.COUNT:
        ok = answer == expected.count
        size = answer if isinstance(answer, int) else None
    else:
        bits = np.asarray(answer if answer is not None else [], dtype=np.int64)
        ok = bits.shape == expected.eligible.shape and bool(np.all(bits == expected.eligible))
        size = int(bits.sum()) if bits.size else None
    if ok:
        return size, True, None
    return size, False, (f"MISMATCH: the secure answer ({size}) differs from the plaintext "
                         f"oracle ({expected.count} eligible)")


def _answer(query: Query, expected: Cohort, answers: list, wall_s: float,
            figures: dict) -> Outcome:
    """The outcome of a run whose parties all finished: party 0's answer against the
    oracle's, and for a count every party's against party 0's."""
    size, correct, error = check(query, expected, answers[0])
    revealed = correct or answers[0] is not None
    if correct and query.output is Output.COUNT and len(set(map(str, answers))) != 1:
        correct, error = False, f"MISMATCH: parties revealed different counts {answers}"
    return Outcome(wall_s, figures, size, correct, error, correct if revealed else None)


def run_plain(query: Query, pop: Population) -> Outcome:
    t0 = time.perf_counter()
    result = cohort(query, pop)
    wall = time.perf_counter() - t0
    return Outcome(wall, {"engine_s": [wall]}, result.count, True, None, True)


class MpycCell:
    """A cell's inputs written once; each `run` is one repeat in its own directory."""

    def __init__(self, spec: EngineSpec, query: Query, pop: Population, workdir: Path):
        self.spec, self.query, self.pop, self.workdir = spec, query, pop, workdir.resolve()
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.data_path, self.counts_path = write_inputs(pop, self.workdir)
        self.expected = cohort(query, pop)
        if spec.ssl:
            make_mpyc_certs(workdir, spec.parties)

    def run(self, name: str, timeout_s: float, network: Network = LOOPBACK) -> Outcome:
        rundir = self.workdir / name
        rundir.mkdir(parents=True, exist_ok=True)
        job = Job(self.spec.protocol, {"root": to_plain(self.query.root),
                                       "output": self.query.output.value},
                  self.spec.bit_length, len(self.pop), self.pop.slots, DataBounds.of(self.pop),
                  self.pop.padding.exact, self.data_path, self.counts_path, str(rundir),
                  self.spec.batch_size)
        job_path = rundir / "job.json"
        job.write(job_path)
        env = dict(os.environ, COHORTBENCH_JOB=str(job_path),
                   PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])))
        m = self.spec.parties
        ports = free_ports(m)
        with relayed(network, m, ports) as (views, relay):
            group = run_group(mpyc_launch.commands(views, bool(self.spec.ssl)), env, rundir,
                              timeout_s, cwd=self.workdir)
        failure = group.failure()
        if failure:
            return Outcome(group.wall_s, _failure_figures(group, relay), None, False,
                           f"{failure}\n{group.log_tail()}")
        try:
            reports = [mpyc_launch.read_report(i, group.logs[i], rundir) for i in range(m)]
        except ValueError as e:
            return Outcome(group.wall_s, _failure_figures(group, relay), None, False,
                           f"{e}\n{group.log_tail()}")
        figures = {
            "engine_s": [r.elapsed_s for r in reports], "compute_s": [r.compute_s for r in reports],
            "bytes_by_party": [r.bytes_sent for r in reports],
            "bytes_sent": sum(r.bytes_sent for r in reports),
            "peak_rss_kib_by_party": [r.peak_rss_kib for r in reports],
            "bit_length": reports[0].bit_length,
        }
        if relay is not None:
            figures.update(_relay_figures(relay))
        return _answer(self.query, self.expected, [r.result for r in reports], group.wall_s,
                       figures)

    def close(self) -> None:
        """Remove the private inputs; logs and results stay."""
        for path in (self.data_path, self.counts_path):
            if path:
                Path(path).unlink(missing_ok=True)


class MpSpdzCell:
    """A cell's program compiled once (cached across sweeps); each `run` is one repeat."""

    def __init__(self, spec: EngineSpec, query: Query, pop: Population, workdir: Path):
        self.spec, self.query, self.pop, self.workdir = spec, query, pop, workdir.resolve()
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.protocol = mp_protocols.get(spec.protocol)
        self.expected = cohort(query, pop)
        options = mp_compile.default_options(self.protocol)
        options = replace(options, **{k: v for k, v in (("lowering", spec.lowering),
                                                        ("edabit", spec.edabit)) if v is not None})
        self.compiled = mp_compile.compile_program(query, mp_program.Shape.of(pop), self.protocol,
                                                   spec.parties, options)

    def run(self, name: str, timeout_s: float, network: Network = LOOPBACK) -> Outcome:
        rundir = self.workdir / name
        if rundir.exists():
            shutil.rmtree(rundir)
        m = self.spec.parties
        ports = free_ports(m)
        with relayed(network, m, ports, every_direction=True) as (views, relay):
            addresses = [[f"127.0.0.1:{port}" for port in view] for view in views]
            plan = mp_launch.prepare_run(rundir, self.compiled, self.pop, ports,
                                         tls=self.spec.ssl, addresses=addresses)
            # Tampering: trace the VMs' exceptions, so that an integrity abort whose message
            # MP-SPDZ never prints (see throwtrace.c) is still recognised.
            env = dict(os.environ, **(throwtrace.env() if network.faults else {}))
            group = run_group(plan.argv(), env, rundir, timeout_s)
        mp_launch.clean_run(plan)
        try:
            reports = [mp_launch.read_report(i, group.logs[i], self.query, len(self.pop),
                                             group.returncodes[i], group.timed_out)
                       for i in range(m)]
        except ValueError as e:
            # Every VM finished and party 0 printed an answer that is not one (e.g. values
            # that are not bits, after tampering): a wrong answer was revealed.
            revealed = group.ok and _printed_answer(group.logs[0])
            return Outcome(group.wall_s, _failure_figures(group, relay), None, False,
                           f"{e}\n{group.log_tail()}", False if revealed else None)
        figures = mp_launch.figures(reports)
        figures["engine_rounds"] = figures.pop("rounds")
        figures.update(compile_s=self.compiled.compile_s, compile_cached=self.compiled.cached,
                       compiler_expected=self.compiled.expected,
                       compile_options=self.compiled.options.label)
        if relay is not None:
            figures.update(_relay_figures(relay))
        return _answer(self.query, self.expected, [r.result for r in reports], group.wall_s,
                       figures)

    def close(self) -> None:
        """Nothing private stays: each run removes its input file."""
