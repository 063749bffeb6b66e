"""Faults that the relay injects on one directed link: flip, replace, drop, delay.

A :class:`Fault` names *where* in a directed link's byte stream it strikes and
*what* it does there.  The stream of a link ``(src, dst)`` is every byte the
relay reads from ``src`` for ``dst``, over all connections that carry that
link, in the relay's read order, counted from the relay's start (0-based);
a *chunk* is one socket read (the relay's ``messages``), also 0-based.

Where (at least one of):

* ``offset: n``: byte ``n`` of the link's stream;
* ``chunk: k``: the start of the k-th chunk; with ``offset: n`` too, ``n``
  bytes after the start of the k-th chunk (which may lie in a later chunk);
* ``fraction: f`` (0 <= f < 1, alone): byte ``floor(f * L)``, where ``L`` is
  the length of the link's stream in a clean run of the same cell (the harness
  makes that calibration run first, see :meth:`Fault.at_fraction_of`).  Late
  fractions aim at the end of a run, where dishonest-majority protocols, whose
  streams are mostly preprocessing, open their results and check their MACs.

What (``mode``):

* ``flip``: flip bit ``bit`` (0 = least significant, default 0) of that byte;
* ``replace``: overwrite the bytes from there on with ``data`` (hex in YAML,
  e.g. ``"00ff"``), across chunk boundaries if need be;
* ``drop``: forward the stream up to (not including) that byte, then close the
  connection that carries it, both ways (``offset: 5000``: close after 5000
  bytes of the link);
* ``delay``: hold the chunk that holds that byte for ``seconds`` more; the
  chunks after it wait behind it (byte order is kept).

Every fault fires at most once.  A fired fault is recorded (:meth:`FaultState.event`):
when (seconds since the relay started), at which stream offset and in which chunk.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

MODES = ("flip", "replace", "drop", "delay")
_KEYS = {"mode", "offset", "chunk", "fraction", "bit", "data", "seconds"}
_ONLY = {"bit": "flip", "data": "replace", "seconds": "delay"}  # keys of one mode
_HEX = re.compile(r"^(?:[0-9a-fA-F]{2})+$")


def _whole(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


@dataclass(frozen=True)
class Fault:
    """One fault on one directed link (see the module docstring)."""

    mode: str
    offset: int | None = None  # byte of the link's stream (or after the start of `chunk`)
    chunk: int | None = None  # the k-th chunk (socket read) of the link
    fraction: float | None = None  # of the link's stream in a clean run (resolved to offset)
    bit: int = 0  # flip: which bit of the byte, 0 = least significant
    data: bytes = b""  # replace: the bytes written over the stream
    seconds: float = 0.0  # delay: how long the chunk is held

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"fault mode {self.mode!r} is unknown; use one of {', '.join(MODES)}")
        for name in ("offset", "chunk"):
            value = getattr(self, name)
            if value is not None and not _whole(value):
                raise ValueError(f"fault {name} must be a whole number >= 0, not {value!r}")
        f = self.fraction
        if f is not None:
            if isinstance(f, bool) or not isinstance(f, (int, float)) or not 0 <= f < 1:
                raise ValueError(f"fault fraction must be a number from 0 to below 1, not {f!r}")
            if self.chunk is not None:
                raise ValueError("give fraction: alone, without chunk:")
        elif self.offset is None and self.chunk is None:
            raise ValueError(
                f"a {self.mode} fault needs offset: (a byte of the link's stream), "
                "chunk: (the k-th socket read of the link), both, or fraction: "
                "(of the stream of a clean run)"
            )
        if not (_whole(self.bit) and self.bit <= 7):
            raise ValueError(f"fault bit must be 0 to 7 (0 = least significant), not {self.bit!r}")
        if not isinstance(self.data, bytes):
            raise ValueError(f"fault data must be bytes, not {type(self.data).__name__}")
        if self.mode == "replace" and not self.data:
            raise ValueError("a replace fault needs data: the bytes to write, in hex (e.g. '00ff')")
        if self.mode != "replace" and self.data:
            raise ValueError(f"data applies to replace faults only, not {self.mode}")
        s = self.seconds
        if isinstance(s, bool) or not isinstance(s, (int, float)) or not math.isfinite(s) or s < 0:
            raise ValueError(f"fault seconds must be a finite number >= 0, not {s!r}")
        if self.mode == "delay" and s <= 0:
            raise ValueError("a delay fault needs seconds: how long to hold the chunk (> 0)")
        if self.mode != "delay" and s:
            raise ValueError(f"seconds applies to delay faults only, not {self.mode}")
        if self.mode != "flip" and self.bit:
            raise ValueError(f"bit applies to flip faults only, not {self.mode}")

    def record(self) -> dict:
        """JSON-ready, as it would be written in YAML."""
        out: dict[str, Any] = {"mode": self.mode}
        if self.fraction is not None:
            out["fraction"] = self.fraction
        if self.offset is not None:
            out["offset"] = self.offset
        if self.chunk is not None:
            out["chunk"] = self.chunk
        if self.mode == "flip":
            out["bit"] = self.bit
        elif self.mode == "replace":
            out["data"] = self.data.hex()
        elif self.mode == "delay":
            out["seconds"] = self.seconds
        return out

    @property
    def label(self) -> str:
        """Short, for network names: flip@5000, drop@chunk3, delay@chunk3+10, flip@0.95."""
        return f"{self.mode}@{where(self.record())}"

    @property
    def needs_calibration(self) -> bool:
        """A fraction not yet resolved to an offset."""
        return self.fraction is not None and self.offset is None

    def at_fraction_of(self, stream_bytes: int) -> Fault:
        """This fault with its fraction resolved against a clean run's stream length."""
        return replace(self, offset=math.floor(self.fraction * stream_bytes))


def where(record: dict) -> str:
    """A fault's place from its record: 5000, chunk3+10, 0.95 (a fraction) or 0.95=5000
    (a fraction resolved to an offset)."""
    if record.get("fraction") is not None:
        resolved = record.get("offset")
        return f"{record['fraction']:g}" + ("" if resolved is None else f"={resolved}")
    if record.get("chunk") is None:
        return str(record.get("offset"))
    return f"chunk{record['chunk']}" + (f"+{record['offset']}" if record.get("offset") else "")


def parse_fault(spec: Any) -> Fault:
    """A fault from its YAML mapping, e.g. {mode: flip, offset: 5000}; ValueError says what is wrong."""
    if not isinstance(spec, Mapping):
        raise ValueError(
            "a fault is a mapping such as {mode: flip, offset: 5000}; keys: " + ", ".join(sorted(_KEYS))
        )
    unknown = set(spec) - _KEYS
    if unknown:
        raise ValueError(f"unknown fault key(s) {sorted(map(str, unknown))}; use " + ", ".join(sorted(_KEYS)))
    if "mode" not in spec:
        raise ValueError(f"a fault needs mode: one of {', '.join(MODES)}")
    mode = spec["mode"]
    if mode not in MODES:
        raise ValueError(f"fault mode {mode!r} is unknown; use one of {', '.join(MODES)}")
    for key, only in _ONLY.items():
        if key in spec and mode != only:
            raise ValueError(f"{key} applies to {only} faults only, not {mode}")
    data = spec.get("data", "")
    if mode == "replace":
        if "data" not in spec:
            raise ValueError("a replace fault needs data: the bytes to write, in hex (e.g. '00ff')")
        if not isinstance(data, str) or not _HEX.match(data.replace(" ", "")):
            raise ValueError(f"fault data must be hex bytes in a quoted string, e.g. '00ff', not {data!r}")
        data = bytes.fromhex(data.replace(" ", ""))
    else:
        data = b""
    if "fraction" in spec and "offset" in spec:
        raise ValueError(
            "give fraction: alone, without offset: (the harness resolves it to an offset from a clean run)"
        )
    return Fault(
        mode,
        spec.get("offset"),
        spec.get("chunk"),
        spec.get("fraction"),
        spec.get("bit", 0),
        data,
        spec.get("seconds", 0.0),
    )


class FaultState:
    """A fault at work on one directed link: where the link's stream is, and whether it fired.

    `apply` is called by the relay for every chunk read on the link, in read order
    (in the relay's loop thread only)."""

    __slots__ = (
        "fault",
        "pos",
        "chunks",
        "target",
        "done",
        "fired_s",
        "fired_offset",
        "fired_chunk",
        "changed",
    )

    def __init__(self, fault: Fault) -> None:
        self.fault = fault
        self.pos = 0  # bytes of the stream read so far
        self.chunks = 0  # chunks read so far
        self.target: int | None = fault.offset if fault.chunk is None else None
        self.done = False
        self.fired_s: float | None = None
        self.fired_offset: int | None = None
        self.fired_chunk: int | None = None
        self.changed = 0  # bytes flipped/replaced, delivered before a drop, or held

    @property
    def fired(self) -> bool:
        return self.fired_s is not None

    def _fire(self, now_s: float, offset: int, chunk: int) -> None:
        if self.fired_s is None:
            self.fired_s, self.fired_offset, self.fired_chunk = now_s, offset, chunk

    def skip(self, n: int) -> None:
        """Bytes read on the link but not forwarded (their destination is gone)."""
        self.pos += n
        self.chunks += 1

    def apply(self, data: bytes, now_s: float) -> tuple[bytes, float, bool]:
        """The chunk as it must be forwarded, how long to hold it, and whether to close
        the connection after it."""
        n = len(data)
        start, k = self.pos, self.chunks
        self.pos += n
        self.chunks += 1
        if self.done:
            return data, 0.0, False
        target = self.target
        f = self.fault
        if target is None:
            if k != f.chunk:
                return data, 0.0, False
            target = self.target = start + (f.offset or 0)
        mode = f.mode
        if mode == "drop":
            if start + n < target:
                return data, 0.0, False
            keep = target - start
            self._fire(now_s, target, k)
            self.done = True
            self.changed = target
            return data[:keep], 0.0, True
        end = start + n
        if target >= end:
            return data, 0.0, False
        if mode == "flip":
            i = target - start
            out = bytearray(data)
            out[i] ^= 1 << f.bit
            self._fire(now_s, target, k)
            self.done, self.changed = True, 1
            return bytes(out), 0.0, False
        if mode == "delay":
            self._fire(now_s, target, k)
            self.done, self.changed = True, n
            return data, float(f.seconds), False
        # replace: [target, target + len(data)) may span chunks
        stop = target + len(f.data)
        lo, hi = max(target, start), min(stop, end)
        out = bytearray(data)
        out[lo - start : hi - start] = f.data[lo - target : hi - target]
        self._fire(now_s, target, k)
        self.changed += hi - lo
        if end >= stop:
            self.done = True
        return bytes(out), 0.0, False

    def event(self) -> dict:
        """JSON-ready: whether and when it fired (seconds since the relay started)."""
        return {
            "fault": self.fault.record(),
            "fired": self.fired,
            "time_s": self.fired_s,
            "offset": self.fired_offset,
            "chunk": self.fired_chunk,
            "bytes": self.changed,
            "stream_bytes": self.pos,
        }
