"""Party processes: launch a cell's parties in one process group, wait, and clean up.

A timeout or a party that dies kills the whole group; nothing outlives a cell.  Where
a run's parties run is a `Launcher`'s choice: `HERE`, this machine (the default), or a
cluster's nodes (`harness.run.cluster`), which starts each party with `spawn` and
watches them with `supervise` as `run_group` does.
"""

from __future__ import annotations

import ctypes
import os
import random
import signal
import socket
import subprocess
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, ContextManager, Iterator, Protocol, Sequence

import psutil

from backends.engine import LOOPBACK, Party
from harness.net.faults import Fault
from harness.net.relay import Link, LinkShape, RelayStats, Route


@dataclass(frozen=True)
class GroupResult:
    returncodes: tuple[int | None, ...]
    wall_s: float  # first spawn to last exit
    timed_out: bool
    logs: tuple[Path, ...]
    # The parties already seen exited non-zero at the first poll (every 5 ms) that saw any
    # failure: who failed first, before the harness killed the rest of the group.
    first_failed: tuple[int, ...] = ()

    @property
    def ok(self) -> bool:
        return not self.timed_out and all(rc == 0 for rc in self.returncodes)

    def failure(self) -> str | None:
        if self.timed_out:
            return "timed out; all parties killed"
        bad = [(i, rc) for i, rc in enumerate(self.returncodes) if rc != 0]
        if bad:
            return "; ".join(f"party {i} exited with {rc}" for i, rc in bad)
        return None

    def log_tail(self, lines: int = 15) -> str:
        out = []
        for i, path in enumerate(self.logs):
            text = path.read_text(errors="replace").splitlines() if path.exists() else []
            out.append(f"--- party {i} ---\n" + "\n".join(text[-lines:]))
        return "\n".join(out)


_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    """In the child before exec: SIGKILL me when the harness dies (Linux), so that a
    killed sweep leaves no party behind."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    except (OSError, AttributeError):
        pass


_LOWEST_PORT = 10_000
_PORT_RANGE = Path("/proc/sys/net/ipv4/ip_local_port_range")


def _ephemeral_ports() -> tuple[int, int]:
    """The kernel's range for the source ports of outgoing connections (Linux default)."""
    try:
        low, high = map(int, _PORT_RANGE.read_text().split())
        return low, high
    except (OSError, ValueError):
        return 32768, 60999


def free_ports(n: int) -> list[int]:
    """n distinct TCP ports free on every interface, for parties to listen on.

    They lie outside the kernel's ephemeral range: an outgoing connection (the relay
    retrying to reach a party that is not listening yet) can then never take one as
    its source port, or even connect to itself on it (TCP self-connect), before the
    party binds it."""
    low, high = _ephemeral_ports()
    pool = [p for p in range(_LOWEST_PORT, 65536) if not low <= p <= high]
    random.Random().shuffle(pool)
    chosen: list[int] = []
    for port in pool:
        with socket.socket() as s:
            try:
                s.bind(("0.0.0.0", port))
            except OSError:
                continue
        chosen.append(port)
        if len(chosen) == n:
            return chosen
    raise RuntimeError(f"fewer than {n} free TCP ports outside the ephemeral range {low}-{high}")


class Running(Protocol):
    """A started party, as `supervise` watches it: its exit code once it has exited."""

    def poll(self) -> int | None: ...


def spawn(party: Party, log: Path, pgid: int) -> subprocess.Popen:
    """Start one party, its output in `log`, in process group `pgid` (0: a group of its
    own), SIGKILLed when its parent dies.  Its environment is this process's plus the
    party's own variables."""
    with log.open("wb") as f:
        return subprocess.Popen(
            party.argv,
            stdout=f,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env={**os.environ, **party.env},
            cwd=party.cwd,
            process_group=pgid,
            preexec_fn=_die_with_parent,
        )


def supervise(
    parties: Sequence[Running], timeout_s: float, start: float
) -> tuple[bool, tuple[int, ...], float]:
    """Wait (polling every 5 ms) until every party has exited, one has failed (the others
    would wait for it forever) or `timeout_s` has passed since `start`: whether it timed
    out, the parties seen failed at the first poll that saw any failure, and when it ended."""
    while True:
        codes = [p.poll() for p in parties]
        failed = tuple(i for i, c in enumerate(codes) if c not in (None, 0))
        if failed or all(c is not None for c in codes):
            return False, failed, time.perf_counter()
        if time.perf_counter() - start > timeout_s:
            return True, (), time.perf_counter()
        time.sleep(0.005)


def run_group(
    parties: Sequence[Party], logdir: Path, timeout_s: float, started: Callable[[int], None] | None = None
) -> GroupResult:
    """Run one process per party in a new process group; kill the group on failure.
    `started` is told each party's pid as it starts."""
    logdir.mkdir(parents=True, exist_ok=True)
    logs = tuple(logdir / f"party-{i}.log" for i in range(len(parties)))
    procs: list[subprocess.Popen] = []
    pgid = 0
    timed_out = False
    first_failed: tuple[int, ...] = ()
    start = last_exit = time.perf_counter()
    try:
        for party, log in zip(parties, logs):
            p = spawn(party, log, pgid)
            pgid = pgid or p.pid
            procs.append(p)
            if started is not None:
                started(p.pid)
        timed_out, first_failed, last_exit = supervise(procs, timeout_s, start)
    finally:
        kill_group(pgid, procs)
    return GroupResult(tuple(p.returncode for p in procs), last_exit - start, timed_out, logs, first_failed)


def kill_group(pgid: int, procs: list[subprocess.Popen]) -> None:
    """SIGKILL the group and any stray descendants, then reap every process."""
    strays = []
    for p in procs:
        try:
            strays.extend(psutil.Process(p.pid).children(recursive=True))
        except psutil.NoSuchProcess:
            pass
    if pgid:
        try:
            os.killpg(pgid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
    for s in strays:
        try:
            s.kill()
        except psutil.NoSuchProcess:
            pass
    for p in procs:
        p.wait()


Started = Callable[[int], None]  # told each party's pid as it starts


class PartiesLost(RuntimeError):
    """A run's parties could not be watched to their end: the host of one was lost."""


@dataclass(frozen=True)
class Placed:
    """Where one run's parties run: each one's node address, a free port there for each,
    how to run them (`run_group`'s signature), the nodes, as records give them, and how
    to relay their links on their nodes (None: a relay here reaches them)."""

    addresses: tuple[str, ...]
    ports: tuple[int, ...]
    run: Callable[[Sequence[Party], Path, float, Started | None], GroupResult]
    hosts: list[dict[str, Any]] | None = None  # per party: its node's id and IP (null: here)
    relays: Relays | None = None


class RelayLike(Protocol):
    """What a run reads of its relay (`harness.net.relay.Relay`, or relays on nodes)."""

    scheduling: str | None

    @property
    def ports(self) -> dict[Link, int]: ...

    def stats(self) -> RelayStats: ...


# (routes, shape (src, dst) -> LinkShape, parties, faults) -> the started relays, stopped on exit
Relays = Callable[
    [list[Route], Callable[[int, int], LinkShape], int, dict[Link, Fault]], ContextManager[RelayLike]
]


class Launcher(Protocol):
    """Places each run's parties (for as long as the run lasts)."""

    def place(self, parties: int) -> ContextManager[Placed]: ...

    def close(self) -> None:
        """After the sweep's last run."""
        ...


class Here:
    """Every party a process of this machine, on loopback, in one process group."""

    @contextmanager
    def place(self, parties: int) -> Iterator[Placed]:
        yield Placed((LOOPBACK,) * parties, tuple(free_ports(parties)), run_group)

    def close(self) -> None:
        pass


HERE = Here()
