"""Network settings of a cell: named profiles, explicit numbers, per-link overrides.

`loopback` runs the parties directly on 127.0.0.1.  Every other network routes
each party's connections through the user-space relay (`harness.net.relay`), which
injects one-way delay, jitter and bandwidth per directed link and counts bytes,
messages and rounds.  `relay` is the relay with no shaping (its own overhead).

A network may also carry faults (`harness.net.faults`), per directed link, e.g.
`{profile: relay, faults: {"1->0": {mode: flip, offset: 5000}}}` ("i-j": the
same fault on both directions, each counting its own stream); a network with
faults is always relayed.  `Network.rounds_calibration()` is the network of a
cell's rounds calibration: the relay in lock-step mode (`harness.net.relay`), which counts
synchronous rounds whatever the emulated network.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from typing import Any

from harness.net.faults import Fault, parse_fault
from harness.net.relay import LinkShape

PROFILES: dict[str, LinkShape | None] = {
    "loopback": None,
    "relay": LinkShape(),
    "lan": LinkShape(delay_ms=0.1, bandwidth_mbit=10_000),
    "metro": LinkShape(delay_ms=5, bandwidth_mbit=1_000),
    "wan": LinkShape(delay_ms=25, bandwidth_mbit=100),
    "intercontinental": LinkShape(delay_ms=75, bandwidth_mbit=50),
}

_LINK = re.compile(r"^\s*(\d+)\s*(->|-)\s*(\d+)\s*$")


@dataclass(frozen=True)
class Network:
    """A default shape for every directed link (None: direct loopback) and overrides."""

    name: str
    default: LinkShape | None
    links: tuple[tuple[tuple[int, int], LinkShape], ...] = field(default=())
    faults: tuple[tuple[tuple[int, int], Fault], ...] = field(default=())
    lockstep: bool = False  # the relay runs the parties in synchronous rounds

    @property
    def relayed(self) -> bool:
        return self.default is not None or bool(self.faults)

    def fault_map(self) -> dict[tuple[int, int], Fault]:
        """{(src, dst): Fault} for the relay."""
        return dict(self.faults)

    @property
    def fault_parties(self) -> int:
        """How many parties the faults need (the highest party they name + 1; 0 without)."""
        return max((max(link) + 1 for link, _ in self.faults), default=0)

    @property
    def needs_calibration(self) -> bool:
        """A fault is placed at a fraction of its link's stream: a clean run must measure
        the stream's length first (`without_faults`, then `calibrated`)."""
        return any(f.needs_calibration for _, f in self.faults)

    def without_faults(self) -> Network:
        """The same links, relayed, and no fault: the calibration run's network."""
        return replace(
            self, name=f"{self.name} (calibration)", default=self.default or LinkShape(), faults=()
        )

    @staticmethod
    def rounds_calibration() -> Network:
        """The relay in lock-step mode, no shaping, no fault: the rounds calibration's network."""
        return Network("lock-step (rounds calibration)", LinkShape(), lockstep=True)

    def calibrated(self, bytes_by_link: list[list[int]]) -> Network:
        """Faults at a fraction resolved to offsets in streams of these lengths
        ([src][dst], a clean run's relay counts)."""
        return replace(
            self,
            faults=tuple(
                (link, f.at_fraction_of(bytes_by_link[link[0]][link[1]]) if f.needs_calibration else f)
                for link, f in self.faults
            ),
        )

    def shape(self, src: int, dst: int) -> LinkShape:
        for link, shape in self.links:
            if link == (src, dst):
                return shape
        return self.default or LinkShape()

    def record(self) -> dict:
        d = self.default or LinkShape()
        out: dict[str, Any] = {
            "name": self.name,
            "relayed": self.relayed,
            "delay_ms": d.delay_ms,
            "jitter_ms": d.jitter_ms,
            "bandwidth_mbit": d.bandwidth_mbit,
        }
        if self.links:
            out["links"] = {f"{s}->{t}": vars(shape) for (s, t), shape in self.links}
        if self.faults:
            out["faults"] = {f"{s}->{t}": fault.record() for (s, t), fault in self.faults}
        return out


def _shape(spec: dict, base: LinkShape) -> LinkShape:
    unknown = set(spec) - {"delay_ms", "jitter_ms", "bandwidth_mbit"}
    if unknown:
        raise ValueError(f"unknown key(s) {sorted(unknown)}; use delay_ms, jitter_ms, bandwidth_mbit")
    return LinkShape(**{**vars(base), **spec})


def parse_network(spec: str | dict, profiles: dict[str, LinkShape | None]) -> Network:
    """A profile name, or {profile?, name?, delay_ms?, jitter_ms?, bandwidth_mbit?, links?, faults?}.

    `links` maps "i-j" (both directions) or "i->j" (one direction) to overrides,
    e.g. one party far away: {profile: lan, links: {"0-2": {delay_ms: 75}}}.
    `faults` maps links the same way to one fault each (see `harness.net.faults`),
    e.g. {profile: relay, faults: {"1->0": {mode: flip, offset: 5000}}}.
    """
    if isinstance(spec, str):
        if spec not in profiles:
            raise ValueError(
                f"unknown network {spec!r}; use one of {', '.join(profiles)} "
                "or {delay_ms:, bandwidth_mbit:, jitter_ms:}"
            )
        return Network(spec, profiles[spec])
    if not isinstance(spec, dict):
        raise ValueError(
            "a network is a profile name or a mapping of delay_ms, jitter_ms, "
            "bandwidth_mbit, profile, name, links"
        )
    spec = dict(spec)
    base_name = spec.pop("profile", None)
    if base_name is not None and (not isinstance(base_name, str) or base_name not in profiles):
        raise ValueError(f"unknown profile {base_name!r}; use one of {', '.join(profiles)}")
    base = profiles.get(base_name) if base_name else LinkShape()
    links_spec = spec.pop("links", {}) or {}
    faults_spec = spec.pop("faults", {}) or {}
    if not isinstance(links_spec, dict):
        raise ValueError("links must map '0-2' or '0->2' to {delay_ms:, jitter_ms:, bandwidth_mbit:}")
    name = spec.pop("name", None)
    if name is not None and not isinstance(name, str):
        raise ValueError("a network's name must be a string")
    default = _shape(spec, base or LinkShape())
    links = []
    for key, override in links_spec.items():
        m = _LINK.match(str(key))
        if not m or not isinstance(override, dict):
            raise ValueError(
                f"links: {key!r} must look like '0-2' or '0->2' and map to "
                "{delay_ms:, jitter_ms:, bandwidth_mbit:}"
            )
        s, arrow, t = int(m.group(1)), m.group(2), int(m.group(3))
        shape = _shape(override, default)
        links.append(((s, t), shape))
        if arrow == "-":
            links.append(((t, s), shape))
    faults, fault_names = _faults(faults_spec)
    if name is None:
        name = base_name or (
            f"{default.delay_ms:g}ms" + (f"-{default.bandwidth_mbit:g}Mbit" if default.bandwidth_mbit else "")
        )
        if links:
            name += "+links"
        name += "".join(f"+{label}" for label in fault_names)
    return Network(name, default, tuple(links), tuple(faults))


def _faults(spec: Any) -> tuple[list[tuple[tuple[int, int], Fault]], list[str]]:
    """{"1->0": {mode: flip, offset: 5000}, "0-2": {...}}: one fault per directed link."""
    if not isinstance(spec, dict):
        raise ValueError(
            "faults must map '1->0' (one direction) or '0-1' (both) to a fault "
            "such as {mode: flip, offset: 5000}"
        )
    out: list[tuple[tuple[int, int], Fault]] = []
    names = []
    seen: dict[tuple[int, int], str] = {}
    for key, fault_spec in spec.items():
        m = _LINK.match(str(key))
        if not m:
            raise ValueError(
                f"faults: {key!r} must look like '1->0' (one direction) or '0-1' (both directions)"
            )
        s, arrow, t = int(m.group(1)), m.group(2), int(m.group(3))
        if s == t:
            raise ValueError(f"faults: {key!r} names one party twice; a link joins two parties")
        try:
            fault = parse_fault(fault_spec)
        except ValueError as e:
            raise ValueError(f"faults: {key!r}: {e}") from None
        for link in [(s, t), (t, s)] if arrow == "-" else [(s, t)]:
            if link in seen:
                raise ValueError(
                    f"faults: the link {link[0]}->{link[1]} is given a fault twice "
                    f"({seen[link]!r} and {key!r}); one fault per directed link"
                )
            seen[link] = str(key)
            out.append((link, fault))
        names.append(f"{fault.label}({s}{arrow}{t})")
    return out, names
