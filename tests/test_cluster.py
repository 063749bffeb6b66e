"""Parties on a Ray cluster's nodes (`harness.run.cluster`): a local cluster of 3 nodes on
127.0.0.1, each with 1 CPU and a custom resource of its own (`site_0` .. `site_2`).

Every sweep runs as `cohortbench run` in a process of its own (the driver), as a user
runs it; the cluster's head and nodes belong to this test process.  The tests on the
cluster skip where Ray (the `cluster` extra) is not installed; those of the config and
of the relay's refusal run everywhere.
"""

from __future__ import annotations

import ipaddress
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil
import pytest

from backends.engine import Unavailable
from harness.net.networks import PROFILES, Network
from harness.run.runner import LOOPBACK, relayed
from tests.mp_spdz_vms import need_vm


REPO = Path(__file__).resolve().parent.parent
QUERY = REPO / "configs" / "queries" / "five-criteria.yaml"
SITES = ("site_0", "site_1", "site_2")


@pytest.fixture(scope="module")
def cluster():
    """A head and two more nodes, all on loopback; node ids by their custom resource."""
    cluster_utils = pytest.importorskip(
        "ray.cluster_utils", reason="Ray is not installed: pip install -e '.[cluster]' (make install-cluster)"
    )
    c = cluster_utils.Cluster(
        initialize_head=True,
        head_node_args={"num_cpus": 1, "resources": {SITES[0]: 1}, "node_ip_address": "127.0.0.1"},
    )
    nodes = {SITES[0]: c.head_node.node_id}
    for site in SITES[1:]:
        nodes[site] = c.add_node(num_cpus=1, resources={site: 1}, node_ip_address="127.0.0.1").node_id
    c.wait_for_nodes()
    yield c.address, nodes
    c.shutdown()


def _config(tmp_path: Path, engine: str, **keys: object) -> Path:
    lines = [
        "name: cluster",
        f"query: {QUERY}",
        "populations: [synthetic:20]",
        f"engines: [{engine}]",
        "repeats: 1",
        "warmup: 0",
        "rounds_calibration: false",
        "timeout_s: 120",
        *(f"{k}: {json.dumps(v)}" for k, v in keys.items()),
    ]
    path = tmp_path / "cluster.yaml"
    path.write_text("\n".join(lines) + "\n")
    return path


def _cohortbench(*args: object, **kw: object) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "harness.cli", *map(str, args)],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **kw,  # type: ignore[call-overload]
    )


def _run(*args: object) -> tuple[int, str, str]:
    p = _cohortbench("run", *args)
    out, err = p.communicate(timeout=300)
    return p.returncode, out, err


def _records(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


MPYC = "{engine: mpyc, protocol: shamir, parties: 3}"


def test_strict_spread_puts_each_party_on_its_own_node_direct_and_through_the_relay(cluster, tmp_path):
    address, nodes = cluster
    out = tmp_path / "spread.jsonl"
    config = _config(tmp_path, MPYC, networks=["loopback", "relay"])
    code, _, err = _run(config, "--out", out, "--cluster", address)
    assert code == 0, err
    records = _records(out)
    assert [r["network"]["name"] for r in records] == ["loopback", "relay"]
    for r in records:
        assert r["correct"] and r["error"] is None  # against the oracle
        assert r["placement"] == {"strategy": "STRICT_SPREAD", "parties": {}}
        assert {h["node_id"] for h in r["hosts"]} == set(nodes.values())  # one party per node
        assert {h["ip"] for h in r["hosts"]} == {"127.0.0.1"}
        assert r["isolation"] == "host" and r["meta"]["overrides"] == {"cluster": address}
    assert records[1]["messages"] > 0 and records[1]["relay_bytes"] > 0  # the relay carried it


def test_pinned_parties_run_on_the_nodes_that_carry_their_resource(cluster, tmp_path):
    address, nodes = cluster
    pins = {0: "site_2", 1: "site_0", 2: "site_1"}
    placement = {str(i): {"resources": {site: 1}} for i, site in pins.items()}
    out = tmp_path / "pinned.jsonl"
    config = _config(tmp_path, MPYC, networks=["relay"], cluster=address, placement=placement)
    code, _, err = _run(config, "--out", out)
    assert code == 0, err
    [r] = _records(out)
    assert r["correct"]
    assert [h["node_id"] for h in r["hosts"]] == [nodes[pins[i]] for i in range(3)]
    assert r["placement"]["parties"] == {str(i): {"resources": {site: 1.0}} for i, site in pins.items()}


def test_a_run_past_its_timeout_is_killed_on_the_nodes_and_the_sweep_goes_on(cluster, tmp_path):
    address, _ = cluster
    out = tmp_path / "late.jsonl"
    config = _config(tmp_path, MPYC, populations=["synthetic:100"], timeout_s=0.5, repeats=2)
    code, _, err = _run(config, "--out", out, "--cluster", address)
    assert code == 1, err
    records = _records(out)
    assert len(records) == 2
    for r in records:
        assert not r["correct"] and r["error"].startswith("timed out; all parties killed"), r["error"]
        assert "--- party 2 ---" in r["error"]  # each party's log, brought back from its node
    assert _parties() == []


@pytest.mark.parametrize(
    "keys, location",
    [
        ({"cluster": "head-without-port"}, "cluster"),
        ({"cluster": "127.0.0.1:6379", "placement": {"strategy": "EVERYWHERE"}}, "placement.strategy"),
        ({"cluster": "127.0.0.1:6379", "placement": {"3": {"resources": {"site_a": 1}}}}, "placement.3"),
        ({"cluster": "127.0.0.1:6379", "placement": {"0": {"resources": {"site_a": 0}}}}, "placement.0"),
        ({"placement": {"0": {"resources": {"site_a": 1}}}}, "placement"),
        ({"cluster": "127.0.0.1:6379", "isolation": "netns"}, "isolation"),
    ],
)
def test_a_bad_cluster_or_placement_is_one_clear_error(tmp_path, keys, location):
    config = _config(tmp_path, MPYC, **keys)
    code, _, err = _run(config, "--out", tmp_path / "never.jsonl", "--dry-run")
    assert code == 2
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert err.startswith(f"error: {config}: {location}"), err


def test_a_cluster_address_where_nothing_answers_is_one_clear_error(tmp_path):
    config = _config(tmp_path, MPYC)
    code, _, err = _run(config, "--out", tmp_path / "never.jsonl", "--cluster", "127.0.0.1:1")
    assert code == 2 and "Traceback" not in err
    assert err.splitlines()[-1].startswith(f"error: {config}: cluster: no Ray cluster at 127.0.0.1:1"), err
    assert not (tmp_path / "never.jsonl").exists()


def test_cluster_local_runs_every_party_here(tmp_path):
    out = tmp_path / "local.jsonl"
    config = _config(tmp_path, MPYC, cluster="127.0.0.1:1", placement={"strategy": "PACK"})
    code, _, err = _run(config, "--out", out, "--cluster", "local")
    assert code == 0, err
    [r] = _records(out)
    assert r["correct"] and r["hosts"] is None and r["placement"] is None


def test_the_relay_refuses_parties_on_other_hosts():
    with pytest.raises(Unavailable, match="reaches parties on loopback only, but parties run on 10.0.0.2"):
        with relayed(
            Network("relay", PROFILES["relay"]), [10001, 10002], False, None, ("127.0.0.1", "10.0.0.2")
        ):
            pass


def test_direct_links_reach_each_party_at_its_node():
    with relayed(LOOPBACK, [10001, 10002], False, None, ("10.0.0.1", "10.0.0.2")) as (links, relay):
        assert relay is None
        assert [links.address(0, 1), links.address(1, 0), links.host(1, 1)] == [
            "10.0.0.2:10002",
            "10.0.0.1:10001",
            "10.0.0.2",
        ]


def _ours() -> list[psutil.Process]:
    """Every process this test started: the cluster's head and nodes (gcs_server,
    raylets, their workers and the parties those start) and the driver."""
    return psutil.Process().children(recursive=True)


def _is_party(p: psutil.Process) -> bool:
    try:
        return "backends.mpyc.party" in " ".join(p.cmdline())
    except psutil.Error:
        return False


def _parties() -> list[psutil.Process]:
    return [p for p in _ours() if _is_party(p)]


def _loopback(ip: str) -> bool:
    address = ipaddress.ip_address(ip.split("%")[0])
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address.is_loopback


def test_nothing_listens_beyond_loopback_during_a_run(cluster, tmp_path):
    """While a run goes on, no process of the cluster, the driver or the parties listens on
    an address other than loopback (MPyC's parties are bound to their `-P` address; the
    test checks that they ran while it looked)."""
    address, _ = cluster
    config = _config(tmp_path, MPYC, networks=["relay"], populations=["synthetic:100"])
    driver = _cohortbench("run", config, "--out", tmp_path / "r.jsonl", "--cluster", address)
    beyond: dict[tuple[str, int], str] = {}
    parties_seen: set[int] = set()
    while driver.poll() is None:
        ours = {p.pid: p for p in _ours()}
        parties_seen |= {pid for pid, p in ours.items() if _is_party(p)}
        for c in psutil.net_connections(kind="tcp"):
            if c.status == psutil.CONN_LISTEN and c.pid in ours and not _loopback(c.laddr.ip):
                beyond[(c.laddr.ip, c.laddr.port)] = ours[c.pid].name()
        time.sleep(0.05)
    _, err = driver.communicate()
    assert driver.returncode == 0, err
    assert len(parties_seen) >= 3, "the run's parties were not seen"
    assert beyond == {}


def test_a_driver_killed_with_sigkill_leaves_no_party_process_and_resume_finishes(cluster, tmp_path):
    address, _ = cluster
    config = _config(tmp_path, MPYC, populations=["synthetic:100"])
    out = tmp_path / "k.jsonl"
    driver = _cohortbench("run", config, "--out", out, "--cluster", address)
    deadline = time.monotonic() + 120
    while len(_parties()) < 3 and time.monotonic() < deadline and driver.poll() is None:
        time.sleep(0.02)
    assert len(_parties()) == 3, "the run's parties never all started"
    os.kill(driver.pid, signal.SIGKILL)
    driver.communicate()
    deadline = time.monotonic() + 60
    while _parties() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert _parties() == [], "party processes outlived the killed driver"
    code, _, err = _run(config, "--out", out, "--cluster", address, "--resume")
    assert code == 0, err
    [r] = _records(out)
    assert r["correct"] and len(r["hosts"]) == 3


def test_mp_spdz_parties_pinned_on_three_nodes_answer_as_the_oracle(cluster, tmp_path):
    need_vm("shamir")
    address, nodes = cluster
    pins = {0: "site_1", 1: "site_2", 2: "site_0"}
    placement = {str(i): {"resources": {site: 1}} for i, site in pins.items()}
    out = tmp_path / "mp-spdz.jsonl"
    engine = "{engine: mp-spdz, protocol: shamir, parties: 3}"
    config = _config(tmp_path, engine, networks=["loopback", "relay"], placement=placement)
    code, _, err = _run(config, "--out", out, "--cluster", address)
    assert code == 0, err
    records = _records(out)
    assert [r["network"]["name"] for r in records] == ["loopback", "relay"]
    for r in records:
        assert r["correct"], r["error"]
        assert [h["node_id"] for h in r["hosts"]] == [nodes[pins[i]] for i in range(3)]
    assert records[1]["relay_bytes"] > 0


def test_a_node_lost_mid_run_fails_that_run_with_a_clear_error(tmp_path):
    """A cluster of its own (a node is removed): the node of party 2 goes while the parties
    talk; that run is recorded as failed with one message, no traceback, no party left."""
    cluster_utils = pytest.importorskip(
        "ray.cluster_utils", reason="Ray is not installed: pip install -e '.[cluster]' (make install-cluster)"
    )
    c = cluster_utils.Cluster(
        initialize_head=True,
        head_node_args={"num_cpus": 1, "resources": {SITES[0]: 1}, "node_ip_address": "127.0.0.1"},
    )
    try:
        nodes = [c.add_node(num_cpus=1, resources={s: 1}, node_ip_address="127.0.0.1") for s in SITES[1:]]
        c.wait_for_nodes()
        placement = {str(i): {"resources": {site: 1}} for i, site in enumerate(SITES)}
        config = _config(
            tmp_path, MPYC, populations=["synthetic:100"], networks=["intercontinental"], placement=placement
        )
        out = tmp_path / "lost.jsonl"
        driver = _cohortbench("run", config, "--out", out, "--cluster", c.address)
        deadline = time.monotonic() + 120
        while len(_parties()) < 3 and time.monotonic() < deadline and driver.poll() is None:
            time.sleep(0.02)
        assert len(_parties()) == 3, "the run's parties never all started"
        c.remove_node(nodes[-1])  # party 2's node
        _, err = driver.communicate(timeout=300)
        assert driver.returncode == 1 and "Traceback" not in err, err
        [r] = _records(out)
        assert not r["correct"] and "the node of party 2 was lost mid-run" in r["error"], r["error"]
        deadline = time.monotonic() + 30
        while _parties() and time.monotonic() < deadline:
            time.sleep(0.2)
        assert _parties() == [], "party processes outlived the run"
    finally:
        c.shutdown()


def test_a_node_names_what_of_a_partys_command_it_lacks(tmp_path):
    """The per-node check before a run starts (`NodeParty.lacks`): the program or the
    directory a party needs, None where the node has both."""
    from backends.engine import Party
    from harness.run.cluster import NodeParty

    node = NodeParty()
    assert node.lacks(Party((sys.executable, "-c", "pass"), tmp_path)) is None
    assert (
        node.lacks(Party(("/opt/nowhere/shamir-party.x",), tmp_path))
        == "the program /opt/nowhere/shamir-party.x"
    )
    assert node.lacks(Party((sys.executable,), tmp_path / "gone")) == f"the directory {tmp_path / 'gone'}"


def test_runs_at_once_go_to_disjoint_nodes_and_say_which_overlapped(tmp_path):
    """A cluster of its own, 6 nodes of 1 CPU: two runs of 3 parties at once, each on 3
    nodes no other run held meanwhile; every answer checked, the overlaps recorded."""
    cluster_utils = pytest.importorskip(
        "ray.cluster_utils", reason="Ray is not installed: pip install -e '.[cluster]' (make install-cluster)"
    )
    c = cluster_utils.Cluster(
        initialize_head=True, head_node_args={"num_cpus": 1, "node_ip_address": "127.0.0.1"}
    )
    try:
        for _ in range(5):
            c.add_node(num_cpus=1, node_ip_address="127.0.0.1")
        c.wait_for_nodes()
        config = _config(tmp_path, MPYC, populations=["synthetic:100", "synthetic:200"], repeats=3)
        out = tmp_path / "at-once.jsonl"
        code, _, err = _run(config, "--out", out, "--cluster", c.address, "--concurrency", "3")
        assert code == 0, err
        assert "concurrency: 3 asks for 3 runs at once of up to 3 parties, but the cluster holds 2" in err
        records = _records(out)
        assert len(records) == 6 and all(r["correct"] and r["concurrency"] == 2 for r in records)
        by_run = {f"{r['cell']}/repeat-{r['repeat']}": r for r in records}
        assert any(r["overlapped"] for r in records), "no two runs were at once"
        for name, r in by_run.items():
            for other in r["overlapped"]:
                assert name in by_run[other]["overlapped"]  # overlap is mutual
                mine = {h["node_id"] for h in r["hosts"]}
                assert mine.isdisjoint(h["node_id"] for h in by_run[other]["hosts"])
    finally:
        c.shutdown()


def test_concurrency_without_a_cluster_is_one_clear_error(tmp_path):
    config = _config(tmp_path, MPYC, concurrency=2)
    code, _, err = _run(config, "--out", tmp_path / "never.jsonl", "--dry-run")
    assert code == 2 and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert err.startswith(f"error: {config}: concurrency: concurrency: 2 runs cells at once"), err


def test_auto_finds_a_loopback_cluster_that_ray_start_began(tmp_path):
    """`--cluster auto` on a head that `ray start` began on 127.0.0.1 (its address file in
    a temp directory of this test's, RAY_TMPDIR): the driver connects without waiting on
    the interface address, and the run is correct."""
    pytest.importorskip(
        "ray", reason="Ray is not installed: pip install -e '.[cluster]' (make install-cluster)"
    )
    tmp = Path(tempfile.mkdtemp(prefix="cbray", dir="/tmp"))  # short: Ray's socket paths
    env = {
        **os.environ,
        "RAY_TMPDIR": str(tmp),
        "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",
    }  # as the driver sets
    ray = Path(sys.executable).with_name("ray")
    head = ["start", "--head", "--node-ip-address", "127.0.0.1", "--port", "0", "--num-cpus", "3"]
    try:
        subprocess.run(
            [ray, *head, "--include-dashboard", "false", "--disable-usage-stats"],
            env=env,
            check=True,
            capture_output=True,
        )
        out = tmp_path / "auto.jsonl"
        config = _config(tmp_path, MPYC, placement={"strategy": "STRICT_PACK"})
        p = _cohortbench("run", config, "--out", out, "--cluster", "auto", env=env)
        _, err = p.communicate(timeout=300)
        assert p.returncode == 0, err
        [r] = _records(out)
        assert r["correct"] and {h["ip"] for h in r["hosts"]} == {"127.0.0.1"}
    finally:
        _kill_started_in(tmp)
        shutil.rmtree(tmp, ignore_errors=True)


def _kill_started_in(tmp: Path) -> None:
    """Every process of the Ray instance whose session lives under `tmp` (not `ray stop`,
    which would stop every Ray instance of this machine)."""
    mine = []
    for p in psutil.process_iter(["cmdline"]):
        if str(tmp) in " ".join(p.info["cmdline"] or []):
            mine.append(p)
    for p in mine:
        try:
            p.kill()
        except psutil.Error:
            pass
    psutil.wait_procs(mine, timeout=10)
