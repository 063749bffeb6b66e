"""Results files and their records: one JSON line per run, appended and flushed as soon as it finishes.

`Record` is the schema of a line, version `SCHEMA_VERSION`; a line without
`schema_version` is version 1, which has the same keys as version 2; before version 3
`rounds` was the relay's chain on the run's own network, read now as `observed_rounds`
(`rounds` null); version 4 adds `hosts` and `placement` (null before: parties on this
machine). A line without `deployment` (before deployments) is `patient`,
one without `criteria` `public`. Keys this code does not know
are kept and written back; a line of a newer version is refused. `--resume` keeps
finished runs; a half-written last line (a killed sweep) is detected, reported and
discarded.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import types
import typing
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, TypedDict, TypeVar

from circuits.errors import InputError

SCHEMA_VERSION = 4
_FIX = "results files are written by `cohortbench run`"


class QueryRef(TypedDict):
    name: str
    ir_hash: str
    output: str  # "eligible" or "count"


class PaddingRef(TypedDict):
    conditions: int | str  # slots per patient, or "exact"
    exams: int | str


class NetworkRef(TypedDict, total=False):
    name: str
    relayed: bool
    delay_ms: float
    jitter_ms: float
    bandwidth_mbit: float | None
    links: dict[str, dict[str, Any]]  # "i->j" -> link shape overrides
    faults: dict[str, dict[str, Any]]  # "i->j" -> one fault
    real: bool  # on a cluster: the parties' nodes had distinct addresses (real links between them)
    relay: str  # where the relay ran: "here" (beside the harness) or "nodes" (one per node)


@dataclass(frozen=True, kw_only=True)
class Record(Mapping[str, Any]):
    """One run. Read it by attribute; `record[key]` and `record.get(key)` read its JSON form."""

    schema_version: int = field(default=SCHEMA_VERSION, init=False)  # of the schema; none written: 1
    config: str  # the experiment's `name`
    cell: str  # hash of the cell's settings (engine, data, padding, network, query, as_of)
    engine: str | None = None  # `mpyc`, `mp-spdz` or `plain`
    protocol: str | None = None  # e.g. `shamir`, `paper-loop`, `semi`; `oracle` for plain
    security: str | None = None  # `semi-honest`, `malicious` or `none`
    majority: str | None = None  # `honest`, `dishonest` or `none`
    parties: int | None = None  # number of parties
    population: int | None = None  # patients in the run
    population_source: str | None = None  # as the config wrote it, e.g. `synthetic:100`
    padding: PaddingRef | None = None  # condition and exam slots per patient, or `exact`
    slots: list[int] | None = None  # the slots actually encoded (conditions, exams)
    query: QueryRef | None = None  # `name`, `ir_hash`, `output`
    network: NetworkRef | None = None  # `name`, `relayed`, `delay_ms`, ..., `faults`, `real`, `relay`
    bit_length: int | None = None  # secure integer bit length
    repeat: int  # repeat number, from 0
    warmup: bool  # a warmup run: recorded, not counted
    wall_s: float | None  # harness side, first spawn to last exit
    engine_s: list[float] | None = None  # the engine's own elapsed time, per party
    compute_s: list[float] | None = None  # MPyC: from inputs to revealed output, per party
    bytes_sent: float | None = None  # all parties, the engine's count (MPyC: payload + 12 B a message)
    bytes_by_party: list[int] | None = None  # the engine's count, per party
    rounds: float | None = None  # synchronous rounds: the cell's lock-step calibration (any network)
    observed_rounds: float | None = None  # the relay's causal chain on this run's network (relayed)
    messages: float | None = None  # the relay's message count (relayed networks)
    bytes_by_link: list[list[int]] | None = None  # the relay's m x m byte matrix, row = sender
    relay_bytes: int | None = None  # the relay's byte total (relayed networks)
    relay_scheduling: str | None = None  # the relay thread: `realtime` (SCHED_RR) or `normal`
    engine_rounds: int | None = None  # MP-SPDZ: the VM's `~N rounds`, max over parties
    global_bytes: int | None = None  # MP-SPDZ: `Global data sent`
    online_s: list[float | None] | None = None  # MP-SPDZ: online phase seconds, per party
    offline_s: list[float | None] | None = None  # MP-SPDZ: offline phase seconds, per party
    tls: bool | None = None  # links encrypted (the engine's `ssl`, else its default)
    isolation: str | None = None  # `netns` or `host`: where the parties ran
    hosts: list[dict[str, Any]] | None = None  # on a cluster: each party's node, `{node_id, ip}` (null: here)
    placement: dict[str, Any] | None = None  # on a cluster: `strategy`, the `parties` pinned to `resources`
    concurrency: int = 1  # the sweep's runs at once (on a cluster's disjoint nodes)
    overlapped: list[str] = field(default_factory=list)  # the runs ("CELL/repeat-N") at once with this one
    compile_s: float | None = None  # MP-SPDZ: compile time
    compile_cached: bool | None = None  # MP-SPDZ: program taken from the compile cache
    compile_options: str | None = None  # MP-SPDZ: compile options
    compiler_expected: dict[str, Any] | None = None  # MP-SPDZ: the compiler's cost estimate
    peak_rss_kib_by_party: list[int] | None = None  # peak resident memory, per party
    cohort_size: int | None  # the revealed cohort size
    correct: bool  # finished and agreed with the plaintext oracle
    error: str | None  # null, or the failure with the parties' log tails
    fault: dict[str, dict[str, Any]] | None = None  # the network's faults, e.g. `{"1->0": {mode: flip, ...}}`
    fault_fired: bool | None = None  # some fault struck (null without a fault)
    fault_events: dict[str, dict[str, Any]] | None = None  # per faulted link: fired, time_s, offset, ...
    fault_calibration: dict[str, int] | None = None  # faults at a `fraction`: each link's clean stream
    tamper_detected: bool | None = None  # the protocol or TLS caught the fault
    tamper_detected_by: str | None = None  # `protocol`, `tls` or `none`
    result_correct: bool | None = None  # the revealed answer equals the oracle's; null: none revealed
    failing_party: int | None = None  # the party that failed on its own account
    failing_party_message: str | None = None  # its first error line
    logs: str | None = None  # the run's log directory
    compare_to: dict[str, Any] | None = None  # the config's `compare_to`
    time: str | None = None  # when the run finished (UTC, ISO 8601)
    load_avg: list[float] | None = None  # load averages (1, 5, 15 min) at the end of the run
    meta: dict[str, Any] | None = None  # the sweep's: versions, commit, CPU, cores, config hash, ...
    skipped: bool = False  # skipped by the sweep's `budget_s` (written only when true)
    unavailable: bool = False  # the engine cannot run the cell, `error` says why (written only when true)
    deployment: str | dict[str, Any] = "patient"  # who held the data: `patient`, or the sites mapping
    local: str | None = None  # under sites: `auto` (local subtrees in the clear) or `off`
    site_sizes: list[int] | None = None  # patients each site holds records of
    assign_fallback: int | None = None  # assign: provider: patients with no provider, placed round-robin
    secure: str | None = None  # under sites, what was secure: `none`, `sum` (of site counts) or `tree`
    local_nodes: int | None = None  # under sites: query nodes the sites evaluated in the clear
    local_s: list[float | None] | None = None  # per site: its local evaluation in the clear
    input_s: list[float | None] | None = None  # per site: the secure part's input phase (null: none)
    input_bytes_by_party: list[int | None] | None = None  # per site: bytes it sent in that phase
    count_by_site: list[int] | None = None  # output count_by_site: the cohort size at each site
    stats: dict[str, Any] | None = None  # output stats: each aggregate's canonical name -> its released value
    dp: dict[str, Any] | None = None  # stats with dp: mechanism, epsilon, delta, spent, noise scales
    budget: str | dict[str, Any] | None = None  # dp: the source's privacy budget, or `unlimited`
    budget_spent: dict[str, Any] | None = None  # dp: the source's total spent after this run (ledger)
    dp_error: dict[str, Any] | None = None  # dp, budget unlimited only: each released sum's noise
    criteria: str = "public"  # the criteria's constants: `public`, or `private` (a researcher's input)
    researcher: int | None = None  # private: the party that input them
    setup_s: float | None = None  # MHE: the key generation's time (the slowest party's; 0: reused)
    setup_bytes: int | None = None  # MHE: bytes all parties sent in it (engine's count; 0: reused)
    keys: str | None = None  # MHE: `generated` by this run, or `reused` from the cell's first run
    topology: str | None = None  # MHE: how the parties' messages travel, `star` (to party 0)
    scheme_params: dict[str, Any] | None = None  # MHE: ring dimension, modulus bits, depth, plaintext modulus
    unknown: dict[str, Any] = field(default_factory=dict, repr=False, metadata={"json": False})

    @classmethod
    def from_json(cls, data: object, source: str = "record", where: str = "") -> Record:
        """A record from one parsed JSON line, type-checked; InputError(source, where) if bad."""
        if not isinstance(data, dict):
            raise InputError(source, where, f"not a result record (a JSON {type(data).__name__})", _FIX)
        version = data.get("schema_version", 1)
        _check_version(version, source, where)
        if version < 3 and "observed_rounds" not in data:
            data = {**data, "observed_rounds": data.get("rounds"), "rounds": None}
        known: dict[str, Any] = {}
        for f in _json_fields():
            if f.name not in data:
                if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                    raise InputError(source, where, f"malformed record: no {f.name!r}", _FIX)
                continue
            if not _conforms(data[f.name], _HINTS[f.name]):
                raise InputError(source, where, f"malformed record: {f.name} is {data[f.name]!r}", _FIX)
            known[f.name] = data[f.name]
        known.pop("schema_version", None)
        unknown = {k: v for k, v in data.items() if k not in _NAMES}
        return cls(**known, unknown=unknown)

    def to_json(self) -> dict[str, Any]:
        """The JSON object of this record: its fields in order, then the unknown keys."""
        out = {name: getattr(self, name) for name in _NAMES}
        for flag in ("skipped", "unavailable"):
            if not out[flag]:
                del out[flag]
        return out | self.unknown

    def __getitem__(self, key: str) -> Any:
        if key in _NAMES:
            return getattr(self, key)
        return self.unknown[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self.to_json())

    def __len__(self) -> int:
        return len(self.to_json())


def _json_fields() -> list[dataclasses.Field]:
    return [f for f in dataclasses.fields(Record) if f.metadata.get("json", True)]


_NAMES = tuple(f.name for f in _json_fields())
_HINTS = typing.get_type_hints(Record)


def _check_version(version: object, source: str, where: str) -> None:
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise InputError(source, where, f"malformed record: schema_version is {version!r}", _FIX)
    if version > SCHEMA_VERSION:
        raise InputError(
            source,
            where,
            f"schema version {version} is newer than this cohortbench reads (up to {SCHEMA_VERSION})",
            "upgrade cohortbench to read this file",
        )


def _conforms(value: object, hint: Any) -> bool:
    """Whether a JSON value has the annotated type (a float may be written as an int)."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint is Any:
        return True
    if origin in (typing.Union, types.UnionType):
        return any(_conforms(value, a) for a in args)
    if hint is type(None):
        return value is None
    if isinstance(value, bool):
        return hint is bool
    if hint is float:
        return isinstance(value, (int, float)) and math.isfinite(value)
    if origin is list:
        return isinstance(value, list) and all(_conforms(v, args[0]) for v in value)
    if origin is dict:
        return isinstance(value, dict) and all(_conforms(v, args[1]) for v in value.values())
    if typing.is_typeddict(hint):
        return isinstance(value, dict)
    return isinstance(value, hint)


def read(path: Path, on_bad_line: Callable[[str], None] | None = None) -> list[Record]:
    """All records; a corrupt line is an error, except a truncated last one (reported)."""
    try:
        lines = path.read_text().splitlines(keepends=True)
    except OSError as e:
        raise InputError(str(path), "", f"cannot read: {e.strerror}", "check the path") from None
    except UnicodeDecodeError:
        raise InputError(
            str(path), "", "not a text file", "results files are JSON lines written by `cohortbench run`"
        ) from None
    records = []
    for i, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            data = json.loads(line)
        except json.JSONDecodeError:
            if i == len(lines) and not line.endswith("\n") and on_bad_line is not None:
                on_bad_line(f"{path}: line {i} is half-written (the sweep was killed); discarded")
                continue
            raise _not_json(path, i, first=not records) from None
        records.append(Record.from_json(data, str(path), f"line {i}"))
    return records


def _not_json(path: Path, line: int, first: bool) -> InputError:
    """The error for a line that is not JSON; on the first line, suggest writing a results file."""
    if not first:
        return InputError(str(path), f"line {line}", "not a JSON record", _FIX)
    if path.suffix in (".yaml", ".yml"):
        return InputError(
            str(path),
            f"line {line}",
            "not a JSON record: this is a config, not a results file",
            f"run it first: cohortbench run {path} --out FILE, then give FILE",
        )
    return InputError(
        str(path),
        f"line {line}",
        "not a JSON record",
        "results files are JSON lines written by `cohortbench run CONFIG --out FILE`",
    )


def _line(record: Record | dict) -> str:
    r = record if isinstance(record, Record) else Record.from_json(record)
    return json.dumps(r.to_json()) + "\n"


def rewrite(path: Path, records: Iterable[Record | dict]) -> None:
    """Replace the file with exactly these records (drops a half-written line)."""
    tmp = path.with_suffix(path.suffix + ".tmp")
    with tmp.open("w") as f:
        for r in records:
            f.write(_line(r))
    tmp.replace(path)


class Writer:
    """Appends records durably: each line is flushed and fsynced before the next run."""

    def __init__(self, path: Path):
        path.parent.mkdir(parents=True, exist_ok=True)
        self._f = path.open("a")

    def append(self, record: Record | dict) -> None:
        """Write one record; a plain dict is checked and converted with `Record.from_json`."""
        self._f.write(_line(record))
        self._f.flush()
        os.fsync(self._f.fileno())

    def close(self) -> None:
        self._f.close()


def run_key(record: Mapping[str, Any]) -> tuple[str, int, bool]:
    return record["cell"], record["repeat"], record["warmup"]


R = TypeVar("R", bound=Mapping[str, Any])


def measured(records: Iterable[R]) -> Iterator[R]:
    """Records that count for statistics (warmups are kept in the file, not counted)."""
    return (r for r in records if not r.get("warmup"))
