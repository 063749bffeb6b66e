"""Hosts made of network namespaces, for the cluster's tests: a Ray node in each.

`Hosts.make` creates a switch namespace holding a bridge, and one namespace per host,
joined to the bridge by a veth pair whose host end is shaped with `tc tbf` (netem is
absent from some kernels; tbf is not).  Host k has the address 10.203.0.(10 + k); the
head runs in host 0 (no CPU for parties), a worker node with 1 CPU and the custom
resource `hK` in every other host.  Nothing lives in this machine's own namespace: the
driver runs in host 0 (`Hosts.argv`), and every address is one of these namespaces'.
`close` kills every process of every namespace and deletes them.  It needs root, `ip`
and `tc`, and Ray's `ray` next to this Python; `unavailable` says which is missing.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

RAY = Path(sys.executable).with_name("ray")
SUBNET = "10.203.0"
PORT = 6379


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, text=True)


def unavailable() -> str | None:
    """Why namespaced hosts cannot be made here (None: they can)."""
    if os.geteuid() != 0:
        return "network namespaces as hosts need root"
    for tool in ("ip", "tc"):
        if shutil.which(tool) is None:
            return f"network namespaces as hosts need `{tool}` (iproute2)"
    if not RAY.exists():
        return "Ray is not installed: pip install -e '.[cluster]' (make install-cluster)"
    return None


@dataclass
class Hosts:
    """The namespaces, host 0 first; `rate_mbit`: each host's egress, shaped by tbf."""

    names: list[str]
    switch: str
    rate_mbit: int

    @property
    def head(self) -> str:
        return f"{self.ip(0)}:{PORT}"

    def ip(self, k: int) -> str:
        return f"{SUBNET}.{10 + k}"

    def argv(self, k: int, *argv: object) -> list[str]:
        """A command run in host k."""
        return ["ip", "netns", "exec", self.names[k], *map(str, argv)]

    def sent_bytes(self, k: int) -> int:
        """What host k's shaped link has carried out of it (its tbf qdisc's count)."""
        out = subprocess.run(
            self.argv(k, "tc", "-s", "-j", "qdisc", "show", "dev", "eth0"), capture_output=True, text=True
        ).stdout
        return sum(q.get("bytes", 0) for q in json.loads(out) if q.get("kind") == "tbf")

    @classmethod
    def make(cls, hosts: int, rate_mbit: int) -> Hosts:
        tag = f"cb{os.getpid() % 100000}"
        made = cls([f"{tag}h{k}" for k in range(hosts)], f"{tag}sw", rate_mbit)
        try:
            made._wire(tag)
            made._start_ray()
        except BaseException:
            made.close()
            raise
        return made

    def _wire(self, tag: str) -> None:
        _ip("netns", "add", self.switch)
        _ip("-n", self.switch, "link", "add", "br0", "type", "bridge")
        _ip("-n", self.switch, "link", "set", "br0", "up")
        for k, ns in enumerate(self.names):
            outer, inner = f"{tag}p{k}", f"{tag}v{k}"
            _ip("netns", "add", ns)
            _ip(
                "link", "add", inner, "netns", ns, "type", "veth", "peer", "name", outer, "netns", self.switch
            )
            _ip("-n", ns, "link", "set", inner, "name", "eth0")
            _ip("-n", ns, "addr", "add", f"{self.ip(k)}/24", "dev", "eth0")
            for dev in ("eth0", "lo"):
                _ip("-n", ns, "link", "set", dev, "up")
            _ip("-n", self.switch, "link", "set", outer, "master", "br0", "up")
            subprocess.run(
                self.argv(
                    k, "tc", "qdisc", "add", "dev", "eth0", "root", "tbf", "rate", f"{self.rate_mbit}mbit"
                )
                + ["burst", "64kb", "latency", "50ms"],
                check=True,
                capture_output=True,
            )

    def _start_ray(self) -> None:
        common = ["--disable-usage-stats", "--node-ip-address"]
        head = ["start", "--head", "--port", PORT, "--num-cpus", 0, "--include-dashboard", "false"]
        subprocess.run(self.argv(0, RAY, *head, *common, self.ip(0)), check=True, capture_output=True)
        for k in range(1, len(self.names)):
            joins = [
                "start",
                "--address",
                self.head,
                "--num-cpus",
                1,
                "--resources",
                json.dumps({f"h{k}": 1}),
            ]
            subprocess.run(self.argv(k, RAY, *joins, *common, self.ip(k)), check=True, capture_output=True)

    def close(self) -> None:
        """Every process in the namespaces killed, then the namespaces deleted."""
        for ns in self.names:
            _kill_all(ns)
        for ns in [*self.names, self.switch]:
            subprocess.run(["ip", "netns", "delete", ns], capture_output=True)


def _kill_all(ns: str, grace_s: float = 5.0) -> None:
    """SIGTERM to every process in namespace `ns`, SIGKILL to those left after `grace_s`."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        deadline = time.monotonic() + grace_s
        while True:
            pids = subprocess.run(["ip", "netns", "pids", ns], capture_output=True, text=True).stdout.split()
            if not pids or time.monotonic() > deadline:
                break
            for pid in pids:
                try:
                    os.kill(int(pid), sig)
                except ProcessLookupError:
                    pass
            time.sleep(0.2)
