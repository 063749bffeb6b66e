"""Each run in a network namespace of its own: nothing a party listens on is reachable
from the host (see harness/net/isolation.py)."""

from __future__ import annotations

import os
import socket
import threading
import time

import psutil
import pytest

from harness.net import isolation
from harness.run.config import load_experiment
from harness.run.sweep import run_sweep
from tests.test_harness import config, party_processes

WHY_NOT = isolation.probe()
needs_netns = pytest.mark.skipif(WHY_NOT is not None, reason=f"no network namespaces here: {WHY_NOT}")


@needs_netns
def test_a_port_bound_to_every_interface_inside_is_unreachable_from_the_host():
    def inside() -> tuple[str, socket.socket]:
        server = socket.socket()
        server.bind(("0.0.0.0", 0))  # what MPyC and MP-SPDZ do
        server.listen()
        with socket.create_connection(("127.0.0.1", server.getsockname()[1]), timeout=2):
            pass  # the namespace's own loopback is up
        return isolation.namespace_of_current_thread(), server

    ns, server = isolation.call(inside)
    with server:
        assert ns != isolation.namespace_of_current_thread()
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", server.getsockname()[1]), timeout=2)


def test_errors_inside_reach_the_caller():
    if WHY_NOT is not None:
        with pytest.raises(OSError):
            isolation.call(lambda: None)
        return
    with pytest.raises(ZeroDivisionError):
        isolation.call(lambda: 1 // 0)


def test_modes():
    assert isolation.resolve("none") == (False, None)
    with pytest.raises(ValueError, match="use one of auto, netns, none"):
        isolation.resolve("vlan")
    isolated, note = isolation.resolve("auto")
    assert isolated == (WHY_NOT is None) and (note is None) == isolated


@needs_netns
def test_mpyc_parties_run_in_a_namespace_of_their_own(tmp_path):
    cfg = config(tmp_path, "  - {engine: mpyc, protocol: shamir}", populations="[synthetic:300]")
    host = isolation.namespace_of_current_thread()
    seen: dict[int, str] = {}
    leaked: list = []
    stop = threading.Event()

    def watch() -> None:
        while not stop.is_set():
            for p in party_processes():
                try:
                    seen[p.pid] = os.readlink(f"/proc/{p.pid}/ns/net")
                except OSError:
                    continue
            # The host's TCP table: no socket of a party may be in it.
            leaked.extend(c for c in psutil.net_connections("tcp") if c.pid in seen)
            time.sleep(0.05)

    t = threading.Thread(target=watch)
    t.start()
    try:
        [r] = run_sweep(load_experiment(cfg), tmp_path / "r.jsonl", False, lambda m: None)
    finally:
        stop.set()
        t.join()
    assert r["error"] is None and r["correct"] and r["isolation"] == "netns"
    assert r["meta"]["isolation"] == "netns"
    # one namespace per run: the rounds calibration's and the repeat's, 3 parties each
    assert len(seen) == 6 and len(set(seen.values())) == 2
    assert host not in seen.values()
    assert leaked == []


def test_isolation_none_runs_on_the_host(tmp_path):
    cfg = config(
        tmp_path,
        "  - {engine: mpyc, protocol: shamir}",
        populations="[synthetic:10]",
        extra="isolation: none",
    )
    [r] = run_sweep(load_experiment(cfg), tmp_path / "r.jsonl", False, lambda m: None)
    assert r["error"] is None and r["isolation"] == "host"


def test_doctor_reports_isolation_and_the_plaintext_build():
    from harness import doctor

    found = {f.item: f for f in doctor.diagnose()}
    assert found["isolation"].ok  # never a failure: auto falls back to the host's loopback
    assert ("namespace per run" in found["isolation"].detail) == (WHY_NOT is None)
    assert "plaintext links" in found
