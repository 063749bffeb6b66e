"""What the kernel can shape, and a cross-check of the relay's bandwidth against `tc tbf`.

The probes (`netns`, the `netem` and `tbf` qdiscs) find out at run time, each in a
throwaway network namespace, so nothing on the host changes.  The cross-check builds
two namespaces joined by a veth pair (created inside the first namespace, so no
interface of the host is ever touched), puts a `tbf` on the sender's end, and
compares a bulk transfer through it with one through :class:`harness.net.relay.Relay`
at the same rate.  The namespaces use 198.18.0.0/30 (RFC 2544's benchmarking range);
their traffic cannot leave them.  Namespaces are deleted in `finally` blocks (which
deletes their veth ends too).

Needs root, `ip` (iproute2) with `netns` and `tc`.  Run it with
`python -m harness.net.kernel_shaping [RATE_MBIT ...]`; what it found on the
development machine is in the README (Networks).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass

from harness.net.relay import LinkShape, Relay

SENDER_IP, RECEIVER_IP = "198.18.0.1", "198.18.0.2"

# Receiver: listen, print the port, read one connection to EOF, answer a JSON report.
SINK = r"""
import json, socket, sys, time
srv = socket.socket()
srv.bind((sys.argv[1], 0))
srv.listen(1)
print(srv.getsockname()[1], flush=True)
c, _ = srv.accept()
n = 0
first = last = None
first_size = 0
buf = bytearray(1 << 20)
while True:
    k = c.recv_into(buf)
    if not k:
        break
    now = time.perf_counter()
    if first is None:
        first, first_size = now, k
    last = now
    n += k
c.sendall(json.dumps({"bytes": n, "first": first, "last": last, "first_size": first_size}).encode())
c.close()
"""

# Sender: connect to argv[1]:argv[2], send argv[3] bytes, half-close, print the sink's report.
SENDER = r"""
import socket, sys
s = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=120)
left = int(sys.argv[3])
block = b"\x3c" * (1 << 20)
while left:
    k = min(left, len(block))
    s.sendall(block if k == len(block) else block[:k])
    left -= k
s.shutdown(socket.SHUT_WR)
out = b""
while True:
    d = s.recv(4096)
    if not d:
        break
    out += d
print(out.decode(), flush=True)
"""


@dataclass(frozen=True)
class Probe:
    """Whether a kernel feature works here, and what was seen."""

    available: bool
    detail: str


@dataclass(frozen=True)
class CrossCheck:
    """One bulk transfer at `rate_mbit` through tbf and through the relay (receiver's rate)."""

    rate_mbit: float
    bytes: int
    tbf_mbit: float
    relay_mbit: float


def _run(cmd: list[str], timeout: float = 30) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)


def _netns_name(tag: str) -> str:
    return f"cbench-{tag}-{os.getpid()}-{uuid.uuid4().hex[:6]}"


@contextmanager
def _namespace(tag: str) -> Iterator[str]:
    """A fresh network namespace with `lo` up, deleted on exit."""
    name = _netns_name(tag)
    r = _run(["ip", "netns", "add", name])
    if r.returncode != 0:
        raise OSError(f"ip netns add failed: {(r.stderr or r.stdout).strip()}")
    try:
        _check(["ip", "-n", name, "link", "set", "lo", "up"])
        yield name
    finally:
        _run(["ip", "netns", "del", name])


def _check(cmd: list[str]) -> None:
    r = _run(cmd)
    if r.returncode != 0:
        raise OSError(f"{' '.join(cmd)}: {(r.stderr or r.stdout).strip()}")


def probe_netns() -> Probe:
    """Can we create (and delete) a network namespace?"""
    if shutil.which("ip") is None:
        return Probe(False, "`ip` (iproute2) is not installed")
    if os.geteuid() != 0:
        return Probe(False, "network namespaces need root")
    try:
        with _namespace("probe"):
            pass
    except (OSError, subprocess.TimeoutExpired) as e:
        return Probe(False, str(e))
    return Probe(True, "ip netns works")


def probe_qdisc(kind: str, *args: str) -> Probe:
    """Does `tc qdisc add dev lo root KIND ARGS` work (tried in a throwaway namespace)?"""
    ns = probe_netns()
    if not ns.available:
        return ns
    if shutil.which("tc") is None:
        return Probe(False, "`tc` (iproute2) is not installed")
    try:
        with _namespace("probe") as name:
            r = _run(["tc", "-n", name, "qdisc", "add", "dev", "lo", "root", kind, *args])
    except (OSError, subprocess.TimeoutExpired) as e:
        return Probe(False, str(e))
    if r.returncode != 0:
        return Probe(False, f"tc qdisc {kind}: {(r.stderr or r.stdout).strip()}")
    return Probe(True, f"tc qdisc {kind} works")


def netem_available() -> Probe:
    return probe_qdisc("netem", "delay", "1ms")


def tbf_available() -> Probe:
    return probe_qdisc("tbf", "rate", "10mbit", "burst", "32kb", "latency", "50ms")


@contextmanager
def veth_pair() -> Iterator[tuple[str, str]]:
    """Two namespaces (sender, receiver) joined by veth `va` <-> `vb`; both deleted on exit."""
    with _namespace("snd") as a, _namespace("rcv") as b:
        _check(["ip", "-n", a, "link", "add", "va", "type", "veth", "peer", "name", "vb", "netns", b])
        _check(["ip", "-n", a, "addr", "add", f"{SENDER_IP}/30", "dev", "va"])
        _check(["ip", "-n", b, "addr", "add", f"{RECEIVER_IP}/30", "dev", "vb"])
        _check(["ip", "-n", a, "link", "set", "va", "up"])
        _check(["ip", "-n", b, "link", "set", "vb", "up"])
        yield a, b


def set_tbf(namespace: str, dev: str, rate_mbit: float) -> None:
    """Rate-limit `dev`'s egress; burst >= 4 ms at the rate (and >= 32 KiB), queue 100 ms."""
    burst = max(32 * 1024, int(rate_mbit * 1e6 / 8 * 0.004))
    _check(
        [
            "tc",
            "-n",
            namespace,
            "qdisc",
            "replace",
            "dev",
            dev,
            "root",
            "tbf",
            "rate",
            f"{rate_mbit}mbit",
            "burst",
            str(burst),
            "latency",
            "100ms",
        ]
    )


def _rate(report: dict) -> float:
    return (report["bytes"] - report["first_size"]) * 8 / (report["last"] - report["first"]) / 1e6


def _transfer(
    sink_prefix: list[str],
    sender_prefix: list[str],
    host: str,
    nbytes: int,
    connect_host: str | None = None,
    port_map: Callable[[int], int] | None = None,
) -> dict:
    """Start the sink, run the sender against it; the sink's report."""
    sink = subprocess.Popen(
        [*sink_prefix, sys.executable, "-c", SINK, host], stdout=subprocess.PIPE, text=True
    )
    assert sink.stdout is not None
    try:
        port = int(sink.stdout.readline())
        target = port_map(port) if port_map else port
        out = subprocess.run(
            [*sender_prefix, sys.executable, "-c", SENDER, connect_host or host, str(target), str(nbytes)],
            capture_output=True,
            text=True,
            timeout=300,
        )
        if out.returncode != 0:
            raise RuntimeError(f"sender failed: {out.stderr.strip()}")
        report = json.loads(out.stdout)
        if report["bytes"] != nbytes:
            raise RuntimeError(f"sink got {report['bytes']} of {nbytes} bytes")
        return report
    finally:
        sink.kill()
        sink.wait()
        sink.stdout.close()


def tbf_bulk(rate_mbit: float, nbytes: int) -> float:
    """Receiver's rate (Mbit/s) for nbytes from one namespace to the other through tbf."""
    with veth_pair() as (a, b):
        set_tbf(a, "va", rate_mbit)
        report = _transfer(["ip", "netns", "exec", b], ["ip", "netns", "exec", a], RECEIVER_IP, nbytes)
    return _rate(report)


def relay_bulk(rate_mbit: float, nbytes: int) -> float:
    """Receiver's rate (Mbit/s) for nbytes on loopback through the relay at rate_mbit."""
    relay: Relay | None = None

    def through_relay(port: int) -> int:
        nonlocal relay
        relay = Relay([(0, 1, port)], {(0, 1): LinkShape(bandwidth_mbit=rate_mbit)}).start()
        return relay.port_for(0, 1)

    try:
        report = _transfer([], [], "127.0.0.1", nbytes, port_map=through_relay)
    finally:
        if relay is not None:
            relay.stop()
    return _rate(report)


def cross_check(rates_mbit: tuple[float, ...] = (10, 100), seconds: float = 2.5) -> list[CrossCheck]:
    """At each rate, a transfer of `seconds` worth of bytes through tbf and through the relay."""
    out = []
    for rate in rates_mbit:
        nbytes = int(rate * 1e6 / 8 * seconds)
        out.append(CrossCheck(rate, nbytes, tbf_bulk(rate, nbytes), relay_bulk(rate, nbytes)))
    return out


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    rates = tuple(float(a) for a in args) or (10.0, 100.0)
    probes = {"netns": probe_netns(), "netem": netem_available(), "tbf": tbf_available()}
    print(json.dumps({k: asdict(v) for k, v in probes.items()}, indent=1))
    if not (probes["netns"].available and probes["tbf"].available):
        print("no tbf cross-check: " + "; ".join(p.detail for p in probes.values() if not p.available))
        return 0
    for c in cross_check(rates):
        print(json.dumps(asdict(c)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
