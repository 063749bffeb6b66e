"""Parties on a Ray cluster's nodes: each run's parties in a placement group, one actor each.

`RayCluster.place` reserves one bundle per party (`PartyPlacement`: STRICT_SPREAD by
default, one party per node; a party pinned to the nodes that carry a custom resource),
starts a `NodeParty` actor in each bundle and learns its node's id and IP: the engines'
address lists are built from those IPs, and each node picks its parties' free ports.
The group and its actors serve every run of as many parties, until a run needs another
number of parties or the sweep ends (`close`).
A `NodeParty` starts its party with `parties.spawn` (a process group of its own, killed
with its parent), and the harness watches them with `parties.supervise`, as it watches
local parties.  After the run every actor kills its party's group and returns its log.
When the harness dies, Ray kills the actors it owns, and their parties die with them
(parent-death signal).

Ray is an optional extra (`pip install -e '.[cluster]'`), imported only here and only
when a config names a cluster.  The run directory (inputs, results) must be at the same
path on every node: this machine's, or a shared file system.
"""

from __future__ import annotations

import asyncio
import copy
import ipaddress
import logging
import os
import shutil
import socket
import tempfile
import time
from collections import defaultdict
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

from backends.engine import Party, Unavailable
from harness.net.faults import Fault
from harness.net.relay import Link, LinkShape, Relay, RelayStats, Route
from harness.run.parties import GroupResult, PartiesLost, Placed, Started, free_ports, kill_group, spawn
from harness.run.parties import supervise

Shape = Callable[[int, int], LinkShape]
STRATEGIES = ("STRICT_SPREAD", "SPREAD", "PACK", "STRICT_PACK")
PLACE_TIMEOUT_S = 60.0  # a placement group not placed by then cannot be on this cluster
STOP_TIMEOUT_S = 10.0  # for a party's actor to answer after its run (else its node is lost)
# Ray rewrites a loopback address (the cluster's, and the driver's own) to this machine's
# interface address unless told that this is not a multi-host cluster; nodes started on
# 127.0.0.1 listen there only, so a driver of such a cluster must not rewrite it.
_NO_REWRITE = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"


@dataclass(frozen=True)
class PartyPlacement:
    """How a run's parties are spread over the nodes: Ray's placement strategy, and the
    custom resources a pinned party's node must carry (party index -> resources)."""

    strategy: str = "STRICT_SPREAD"
    pins: dict[int, dict[str, float]] = field(default_factory=dict)

    def bundles(self, parties: int) -> list[dict[str, float]]:
        """One bundle per party: a logical CPU, plus its pin's resources."""
        return [{"CPU": 1.0, **self.pins.get(i, {})} for i in range(parties)]

    def record(self) -> dict[str, Any]:
        return {
            "strategy": self.strategy,
            "parties": {str(i): {"resources": r} for i, r in sorted(self.pins.items())},
        }


CONNECT_TIMEOUT_S = 5.0  # to find a head at a cluster's address before Ray waits on it for minutes


def _links(routes: list[Route]) -> set[Link]:
    """The directed links that routes carry (both directions of each)."""
    return {link for s, d, _ in routes for link in ((s, d), (d, s))}


def _host_port(address: str) -> tuple[str, int]:
    host, port = address.removeprefix("ray://").rsplit(":", 1)
    return host.strip("[]"), int(port)


def found_auto() -> str | None:
    """The address `auto` names, as Ray finds it (RAY_ADDRESS, else the one the last
    `ray start` here wrote in Ray's temp directory), read without importing Ray, which
    reads the loopback setting when imported (None: none found)."""
    if os.environ.get("RAY_ADDRESS"):
        return os.environ["RAY_ADDRESS"]
    tmp = os.environ.get("RAY_TMPDIR") or os.environ.get("TMPDIR") or "/tmp"
    written = Path(tmp) / "ray" / "ray_current_cluster"
    if not written.exists():
        return None
    return written.read_text().strip() or None


def on_loopback(address: str) -> bool:
    """A cluster address (`host:port`, `ray://host:port`) whose host is this machine's loopback."""
    host = _host_port(address)[0]
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class NodeRelay:
    """The relay of the links into one node's parties, on that node (a Ray actor)."""

    def __init__(self) -> None:
        self.relay: Relay | None = None

    def start(
        self, routes: list[Route], shape: Shape, parties: int, faults: dict[Link, Fault], host: str
    ) -> tuple[dict[Link, int], str | None]:
        """Listen at `host`, one port per route; those ports and the relay's scheduling."""
        self.relay = Relay(routes, shape, parties=parties, faults=faults, host=host).start()
        return self.relay.ports, self.relay.scheduling

    def stop(self) -> RelayStats | None:
        relay, self.relay = self.relay, None
        if relay is None:
            return None
        relay.stop()
        return relay.stats()


@dataclass
class _NodeRelays:
    """A run's relays, one per node its parties connect to, read as one relay."""

    ray: Any
    actors: list[Any]
    parties: int
    ports: dict[Link, int]
    scheduling: str | None
    final: RelayStats | None = None

    def stats(self) -> RelayStats:
        """The relays' counts, merged once they stopped (a run reads them after)."""
        if self.final is None:
            raise RuntimeError("the nodes' relays are read once stopped")
        return self.final

    def stop(self) -> None:
        parts = self.ray.get([a.stop.remote() for a in self.actors], timeout=STOP_TIMEOUT_S)
        self.final = RelayStats.merged(filter(None, parts), self.parties)


class NodeParty:
    """A party's process on a node, one run after another (a Ray actor; its methods run
    on one event loop)."""

    def __init__(self) -> None:
        self.proc: Any = None
        self.log: Path | None = None

    def where(self) -> tuple[str, str]:
        import ray

        return ray.get_runtime_context().get_node_id(), ray.util.get_node_ip_address()

    def ports(self, n: int) -> list[int]:
        return free_ports(n)

    def lacks(self, party: Party) -> str | None:
        """What of `party`'s command this node does not have: its program or its directory
        (None: it can start)."""
        if shutil.which(party.argv[0], path=party.env.get("PATH", os.environ.get("PATH"))) is None:
            return f"the program {party.argv[0]}"
        if not Path(party.cwd).is_dir():
            return f"the directory {party.cwd}"
        return None

    def start(self, party: Party) -> int:
        fd, name = tempfile.mkstemp(prefix="cohortbench-party-", suffix=".log")
        os.close(fd)
        self.log = Path(name)
        self.proc = spawn(party, self.log, 0)
        return self.proc.pid

    async def wait(self) -> int:
        proc = self.proc  # `stop` may let go of it meanwhile: it reaps it first
        while proc.poll() is None:
            await asyncio.sleep(0.005)
        return proc.returncode

    def stop(self) -> bytes:
        """Kill the party's group (if it still runs) and hand back its log."""
        if self.proc is not None:
            kill_group(self.proc.pid, [self.proc])
            self.proc = None
        if self.log is None:
            return b""
        try:
            return self.log.read_bytes()
        finally:
            self.log.unlink(missing_ok=True)
            self.log = None


@dataclass(frozen=True)
class _Group:
    """A placement group and its actors, one per party, kept from run to run."""

    parties: int
    group: Any
    actors: list[Any]
    where: list[tuple[str, str]]  # per party: its node's id and IP
    relays: dict[str, Any] = field(default_factory=dict)  # node id -> its NodeRelay, once needed


@dataclass
class _Waiting:
    """A party on a node, as `supervise` polls it: its `wait` call's result, once there."""

    ref: Any
    code: int | None = None

    def poll(self) -> int | None:
        import ray

        if self.code is None and ray.wait([self.ref], timeout=0)[0]:
            self.code = ray.get(self.ref)
        return self.code


class RayCluster:
    """A connection to a Ray cluster, placing every run's parties on its nodes."""

    def __init__(self, address: str, placement: PartyPlacement) -> None:
        """ConnectionError when nothing answers at `address` (`auto`: the address Ray would
        find; none found, Ray looks for a cluster and raises it)."""
        if address == "auto":
            address = found_auto() or address
        if address != "auto":
            try:
                socket.create_connection(_host_port(address), CONNECT_TIMEOUT_S).close()
            except OSError as e:
                raise ConnectionError(f"nothing answers at {address} ({e.strerror or e})") from None
            if on_loopback(address):
                os.environ.setdefault(_NO_REWRITE, "0")
        import ray

        ray.init(address=address, logging_level=logging.WARNING, log_to_driver=False)
        self.ray, self.placement = ray, placement
        self.actor = ray.remote(num_cpus=1)(NodeParty)
        self.relay_actor = ray.remote(num_cpus=0)(NodeRelay)
        self.kept: _Group | None = None

    def nodes(self) -> int:
        return sum(1 for n in self.ray.nodes() if n["Alive"])

    def room(self, parties: int) -> int:
        """How many runs of `parties` parties the cluster holds at once: one per `parties`
        nodes under STRICT_SPREAD (their nodes disjoint), else one per `parties` CPUs."""
        if self.placement.strategy == "STRICT_SPREAD":
            return self.nodes() // parties
        return int(self.ray.cluster_resources().get("CPU", 0)) // parties

    def slot(self) -> RayCluster:
        """Another placer on the same connection, with placement groups of its own: runs
        at once, one per slot, hold disjoint reservations."""
        other = copy.copy(self)
        other.kept = None
        return other

    @contextmanager
    def place(self, parties: int) -> Iterator[Placed]:
        """The run's parties on the actors of the placement group kept for runs of as many
        parties (made now, the previous one removed, if there is none)."""
        if self.kept is None or self.kept.parties != parties:
            self.close()
            self.kept = self._group(parties)
        kept = self.kept
        try:
            yield Placed(
                tuple(ip for _, ip in kept.where),
                self._ports(kept.actors, [node for node, _ in kept.where]),
                lambda ps, logdir, timeout_s, started: self._run(kept.actors, ps, logdir, timeout_s, started),
                [{"node_id": node, "ip": ip} for node, ip in kept.where],
                lambda routes, shape, n, faults: self._relayed(kept, routes, shape, n, faults),
            )
        except BaseException:
            self.close()  # the actors' state is not known
            raise

    def _group(self, parties: int) -> _Group:
        from ray.util.placement_group import placement_group, remove_placement_group
        from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

        ray, p = self.ray, self.placement
        group = placement_group(p.bundles(parties), strategy=p.strategy)
        ready, _ = ray.wait([group.ready()], timeout=PLACE_TIMEOUT_S)
        if not ready:
            remove_placement_group(group)
            raise Unavailable(
                f"the cluster ({self.nodes()} node(s) alive) cannot place {parties} parties as "
                f"{p.strategy} with bundles {p.bundles(parties)} within {PLACE_TIMEOUT_S:.0f} s: "
                "add nodes (or the pinned resources), or change placement"
            )
        bundles = [
            PlacementGroupSchedulingStrategy(group, placement_group_bundle_index=i) for i in range(parties)
        ]
        actors = [self.actor.options(scheduling_strategy=b).remote() for b in bundles]
        return _Group(parties, group, actors, ray.get([a.where.remote() for a in actors]))

    def close(self) -> None:
        """Remove the kept actors and their placement group."""
        if self.kept is None:
            return
        from ray.util.placement_group import remove_placement_group

        for a in [*self.kept.actors, *self.kept.relays.values()]:
            self.ray.kill(a)
        remove_placement_group(self.kept.group)
        self.kept = None

    @contextmanager
    def _relayed(
        self, kept: _Group, routes: list[Route], shape: Shape, parties: int, faults: dict[Link, Fault]
    ) -> Iterator[_NodeRelays]:
        """One relay per node that a route leads to, on that node, listening at its address;
        every relay stopped on exit, its counts kept."""
        into: dict[int, list[Route]] = defaultdict(list)  # the bundle of a node's first party
        first = {node: next(i for i, (n, _) in enumerate(kept.where) if n == node) for node, _ in kept.where}
        for route in routes:
            into[first[kept.where[route[1]][0]]].append(route)
        actors = [self._relay_actor(kept, bundle) for bundle in into]
        started = self.ray.get(
            [
                a.start.remote(
                    rs, shape, parties, {k: f for k, f in faults.items() if k in _links(rs)}, kept.where[b][1]
                )
                for a, (b, rs) in zip(actors, into.items())
            ]
        )
        relays = _NodeRelays(
            self.ray,
            actors,
            parties,
            {link: port for ports, _ in started for link, port in ports.items()},
            "/".join(sorted({s or "?" for _, s in started})),
        )
        try:
            yield relays
        finally:
            relays.stop()

    def _relay_actor(self, kept: _Group, bundle: int) -> Any:
        """The node's relay actor, in its first party's bundle (no CPU of its own), kept."""
        from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

        node = kept.where[bundle][0]
        if node not in kept.relays:
            where = PlacementGroupSchedulingStrategy(kept.group, placement_group_bundle_index=bundle)
            kept.relays[node] = self.relay_actor.options(scheduling_strategy=where).remote()
        return kept.relays[node]

    def _ports(self, actors: list[Any], nodes: list[str]) -> tuple[int, ...]:
        """A free port for every party, chosen on its node (distinct among a node's parties)."""
        on: dict[str, list[int]] = defaultdict(list)
        for i, node in enumerate(nodes):
            on[node].append(i)
        ports = [0] * len(actors)
        for node, members in on.items():
            for i, port in zip(members, self.ray.get(actors[members[0]].ports.remote(len(members)))):
                ports[i] = port
        return tuple(ports)

    def _run(
        self,
        actors: list[Any],
        parties: Sequence[Party],
        logdir: Path,
        timeout_s: float,
        started: Started | None,
    ) -> GroupResult:
        """`run_group` on the nodes: every party started, watched until all exit, one fails
        or the time is up, then every party's group killed and its log brought here."""
        from ray.exceptions import RayError

        ray = self.ray
        logdir.mkdir(parents=True, exist_ok=True)
        logs = tuple(logdir / f"party-{i}.log" for i in range(len(parties)))
        self._check(actors, parties)
        start = time.perf_counter()
        try:
            try:
                pids = ray.get([a.start.remote(party) for a, party in zip(actors, parties)])
                if started is not None:
                    for pid in pids:
                        started(pid)
                waiting = [_Waiting(a.wait.remote()) for a in actors]
                timed_out, first_failed, last_exit = supervise(waiting, timeout_s, start)
            finally:
                for log, actor in zip(logs, actors):
                    log.write_bytes(self._stopped(actor))
            codes = tuple(ray.get(w.ref) for w in waiting)
        except RayError as e:
            lost = [i for i, a in enumerate(actors) if not self._alive(a)]
            raise PartiesLost(
                f"the node of part{'ies' if len(lost) != 1 else 'y'} {', '.join(map(str, lost)) or '?'} "
                f"was lost mid-run ({type(e).__name__})"
            ) from None
        return GroupResult(codes, last_exit - start, timed_out, logs, first_failed)

    def _check(self, actors: list[Any], parties: Sequence[Party]) -> None:
        """Unavailable, naming the node, where a party's node lacks its program or directory
        (an engine installed here but not there, e.g. MP-SPDZ at MP_SPDZ_HOME)."""
        lacking = self.ray.get([a.lacks.remote(party) for a, party in zip(actors, parties)])
        nodes = self.kept.where if self.kept is not None else [("?", "?")] * len(actors)
        for i, (what, (node, ip)) in enumerate(zip(lacking, nodes)):
            if what is not None:
                raise Unavailable(
                    f"party {i}'s node {ip} ({node[:12]}) lacks {what}: install the engine there at "
                    "the same path as here, or pin the party to nodes that have it (placement)"
                )

    def _stopped(self, actor: Any) -> bytes:
        """The actor's party killed and its log; a note where the actor's node is gone."""
        from ray.exceptions import RayError

        try:
            return self.ray.get(actor.stop.remote(), timeout=STOP_TIMEOUT_S)
        except RayError:
            return b"(no log: this party's node was lost)\n"

    def _alive(self, actor: Any) -> bool:
        from ray.exceptions import RayError

        try:
            self.ray.get(actor.where.remote(), timeout=STOP_TIMEOUT_S)
            return True
        except RayError:
            return False
