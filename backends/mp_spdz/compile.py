"""MP-SPDZ's compiler run on a translated query, with a cache outside the MP-SPDZ tree.

`compile_program(query, shape, protocol, parties, options)` translates the
query (`program.translate`), runs `MP_SPDZ_HOME/compile.py` on it in a cache
entry of its own and returns a `Compiled` naming the directory whose
`Programs/` the VMs read.  Nothing is written under MP_SPDZ_HOME: the compiler
writes `Programs/{Bytecode,Schedules,...}` and `Player-Data/` relative to its
working directory (the cache entry), and runs with PYTHONDONTWRITEBYTECODE=1
so that no `__pycache__` appears in MP-SPDZ's `Compiler/` package.

Flags (see `compile_flags`):

* `-E <protocol>`: optimise for the protocol; sets the protocol's own options
  (probabilistic truncation and local share splitting for replicated-ring and
  ps-rep-ring, splitting for semi2k with PLAYERS parties) and makes the
  compiler print its expected communication, which is recorded.
* Domain: `-R 64` for the ring protocols.  For the field protocols `-F k`,
  where k is the widest comparison operand of the program in bits (signed):
  the compiler then asks for a prime of k + 40 bits (40 = its statistical
  security for masking in comparisons) and the VM rounds that up to a multiple
  of 64, at least 128 (the README gives the widths of the measured queries).
  The binary lowering compares nothing in the field (only its final bits are
  summed): k = bits of the population size + 1.
* `-b 100000`: a loop-unrolling budget large enough that no vector operation
  is split into chunks.
* Options (`CompileOptions`): `-Y` edaBits for the masks of comparisons and
  conversions; `-Z n` / `program.use_split(False)` local share splitting on or
  off (rings only; None keeps what `-E` chose).

The cache key covers everything the output depends on: the generated source
(which embeds the IR, output mode, population size, slots, code bounds and
lowering), the flags, the party count (semi2k's splitting and the cost
estimate use it) and the compiler version (MP-SPDZ commit plus a hash of its
compiler sources).  Concurrent compiles of the same key are safe: each
compiles in a private directory that is renamed into place.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from backends.mp_spdz import program
from backends.mp_spdz.protocols import FIELD, PROTOCOLS, RING, Protocol, compiler_script, compiler_version
from backends.mp_spdz.protocols import get
from circuits.ir import SECRET_LEAVES, ExamCount, HasCondition, Query, SecretCondition, SecretExam, leaves
from circuits.ir import to_plain

CACHE_ENV = "COHORTBENCH_MP_SPDZ_CACHE"
META = "compile.json"
_EXPECTED = re.compile(r"Expected communication is ([0-9.e+-]+) MB online and ([0-9.e+-]+) MB offline")
_REQUIRES = re.compile(r"^\s+(\d+)\s+(.+?)\s*$")


@dataclass(frozen=True)
class CompileOptions:
    """How a query is compiled; every field is part of the cache key."""

    lowering: str = program.BINARY  # binary | arithmetic (see program.py)
    edabit: bool = False  # -Y: edaBits for comparison masks and conversions
    split: bool | None = None  # rings: local share splitting (None: as -E sets it)
    budget: int = 100_000  # -b: loop-unrolling budget, so vectors are never chunked
    field_bits: int | None = None  # -F for field protocols (None: derived, see field_bits)

    def __post_init__(self) -> None:
        if self.lowering not in program.LOWERINGS:
            raise ValueError(
                f"unknown lowering {self.lowering!r}; use one of " + ", ".join(program.LOWERINGS)
            )
        if self.budget < 1:
            raise ValueError("budget must be >= 1")

    @property
    def label(self) -> str:
        parts = [self.lowering]
        if self.edabit:
            parts.append("edabit")
        if self.split is not None:
            parts.append("split" if self.split else "no-split")
        if self.field_bits:
            parts.append(f"F{self.field_bits}")
        return "+".join(parts)


# The cheapest correct options measured per protocol (1,000 synthetic patients, padding
# 8/16, the five-criteria query; backends/mp_spdz/README.md has the table).  The binary
# lowering wins everywhere, by 7x to 35x in bytes over the arithmetic one with its best
# options; with it, edaBits and share splitting change nothing (identical bytes), because
# only one bit per patient is converted from the binary domain, by a daBit.
DEFAULTS: dict[str, CompileOptions] = {name: CompileOptions() for name in PROTOCOLS}


def default_options(protocol: Protocol | str) -> CompileOptions:
    """The measured-cheapest options for `protocol` (see DEFAULTS)."""
    return DEFAULTS[(get(protocol) if isinstance(protocol, str) else protocol).name]


@dataclass(frozen=True)
class Compiled:
    """A compiled program in the cache: the VMs run `name` with `directory/Programs`."""

    directory: Path
    name: str
    protocol: str
    parties: int
    query: Query
    shape: program.Shape
    options: CompileOptions
    flags: tuple[str, ...]
    key: str
    compiler_version: str
    compile_s: float  # seconds the compiler took (when the entry was made)
    cached: bool  # taken from the cache by this call
    expected: dict = field(default_factory=dict)  # the compiler's own cost estimate

    @property
    def programs(self) -> Path:
        return self.directory / "Programs"

    @property
    def source(self) -> Path:
        return self.directory / f"{self.name}.mpc"


def default_cache_dir() -> Path:
    """$COHORTBENCH_MP_SPDZ_CACHE, else $XDG_CACHE_HOME/cohortbench/mp-spdz (~/.cache/...)."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV])
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "cohortbench" / "mp-spdz"


def field_bits(query: Query, shape: program.Shape, lowering: str, noise: int = 0) -> int:
    """-F for field protocols: the widest comparison operand (signed bits) of the program,
    and a stats query's revealed sums (signed, with `noise`, a bound on their noise)."""
    sums = [] if query.stats is None else [program.sum_bound(query.stats, shape, noise).bit_length() + 1]
    if lowering == program.BINARY:
        return max([shape.patients.bit_length() + 1, *sums])  # only the final count or sums are arithmetic
    cols = {c.name: c for c in program.columns(query, shape)}
    widths = [c.bits + 1 for c in cols.values()]  # x - c of two `bits`-bit values
    c_slots, e_slots = shape.slots
    for leaf in leaves(query.root):
        if isinstance(leaf, ExamCount):  # the number of matching exams
            widths.append(e_slots.bit_length() + 1)
        if isinstance(leaf, HasCondition):  # the number of matching (slot, code) pairs
            widths.append((c_slots * len(leaf.codes)).bit_length() + 1)
        if isinstance(leaf, SECRET_LEAVES):  # x == c, x < c of secret operands (preludes/arithmetic.py)
            widths += [c.bits + 2 for c in cols.values()]
        if isinstance(leaf, SecretExam):
            widths.append((e_slots + 1).bit_length() + 2)
        if isinstance(leaf, SecretCondition):
            widths.append((c_slots * leaf.width).bit_length() + 1)
    if query.stats is not None:  # the exam tallies' range tests
        widths.append(e_slots.bit_length() + 1)
    return max(widths + sums + [shape.patients.bit_length() + 1])


def compile_flags(
    protocol: Protocol,
    query: Query,
    shape: program.Shape,
    options: CompileOptions,
    parties: int,
    noise: int = 0,
) -> tuple[str, ...]:
    """compile.py's flags (before the source file) for this program; `noise` bounds a stats
    query's noise.  ValueError when its sums could wrap modulo 2^64."""
    flags = list(protocol.compile_flags)
    if protocol.domain == RING and query.stats is not None:
        largest = program.sum_bound(query.stats, shape, noise)
        if largest >= program.RING_SUMS:
            raise ValueError(
                f"{protocol.name}: the stats sums reach {largest} (with noise), which wraps modulo "
                "2^64; use fewer patients or a field protocol"
            )
    if protocol.domain == FIELD:
        flags += ["-F", str(options.field_bits or field_bits(query, shape, options.lowering, noise))]
    elif options.field_bits:
        raise ValueError(f"{protocol.name} computes modulo 2^64; field_bits does not apply")
    if options.edabit:
        flags.append("-Y")
    if options.split:
        if protocol.domain != RING:
            raise ValueError(f"{protocol.name} computes in a field; share splitting needs a ring")
        flags += ["-Z", str(parties)]
    flags += ["-b", str(options.budget)]
    return tuple(flags)


def _settings(protocol: Protocol, options: CompileOptions) -> tuple[str, ...]:
    if options.split is False and protocol.domain == RING:
        return ("program.use_split(False)  # compile option: no local share splitting",)
    return ()


def parse_compiler_output(text: str) -> dict:
    """The compiler's cost estimate: expected online/offline bytes and the
    'Program requires at most' table (preprocessing items and rounds)."""
    out: dict = {}
    m = _EXPECTED.search(text)
    if m:
        out["online_bytes"] = float(m.group(1)) * 1e6
        out["offline_bytes"] = float(m.group(2)) * 1e6
    lines = text.splitlines()
    try:
        start = lines.index("Program requires at most:") + 1
    except ValueError:
        return out
    requires = {}
    for line in lines[start:]:
        r = _REQUIRES.match(line)
        if not r:
            break
        requires[r.group(2)] = int(r.group(1))
    out["requires"] = requires
    return out


def _script(home: Path | None) -> Path:
    script = compiler_script(home)
    if not script.is_file():
        raise RuntimeError(
            f"MP-SPDZ's compiler is not at {script}; set MP_SPDZ_HOME (see `cohortbench doctor`)"
        )
    return script


def _key_fields(
    query: Query,
    shape: program.Shape,
    proto: Protocol,
    parties: int,
    options: CompileOptions,
    flags: tuple[str, ...],
    version: str,
) -> dict:
    """Everything besides the source that the compiled program depends on."""
    return {
        "ir_hash": query.ir_hash,
        "output": query.output.value,
        "patients": shape.patients,
        "slots": list(shape.slots),
        "bounds": asdict(shape.bounds),
        "protocol": proto.name,
        "domain": proto.domain,
        "parties": parties,
        "options": asdict(options),
        "flags": list(flags),
        "compiler": version,
        "translator": program.TRANSLATOR_VERSION,
    }


def _run_compiler(
    work: Path,
    source: str,
    script: Path,
    flags: tuple[str, ...],
    parties: int,
    python: str | None,
    timeout_s: float,
) -> tuple[list[str], str, float]:
    """compile.py on `source` in `work`: (argv, its stdout, seconds); RuntimeError if it fails."""
    src = work / f"{program.PROGRAM_NAME}.mpc"
    src.write_text(source)
    env = dict(os.environ, PYTHONDONTWRITEBYTECODE="1", PLAYERS=str(parties))
    argv = [python or sys.executable, str(script), *flags, src.name]
    t0 = time.perf_counter()
    try:
        done = subprocess.run(argv, cwd=work, env=env, capture_output=True, text=True, timeout=timeout_s)
    except subprocess.TimeoutExpired:
        raise RuntimeError(f"MP-SPDZ's compiler took over {timeout_s:.0f} s ({' '.join(argv)})") from None
    compile_s = time.perf_counter() - t0
    log = done.stdout + done.stderr
    (work / "compile.log").write_text(log)
    schedule = work / "Programs" / "Schedules" / f"{program.PROGRAM_NAME}.sch"
    if done.returncode != 0 or not schedule.is_file():
        tail = "\n".join(log.splitlines()[-25:])
        raise RuntimeError(
            f"MP-SPDZ's compiler failed (exit {done.returncode}) on {src}:\n{' '.join(argv)}\n{tail}"
        )
    return argv, done.stdout, compile_s


def _publish(work: Path, entry: Path) -> dict | None:
    """Rename the finished `work` into place: None, or the metadata of the entry another
    process compiled first (then `work` is left to be removed)."""
    try:
        work.rename(entry)
    except OSError:
        if not (entry / META).is_file():
            raise
        return json.loads((entry / META).read_text())
    return None


def compile_program(
    query: Query,
    shape: program.Shape,
    protocol: Protocol | str,
    parties: int | None = None,
    options: CompileOptions | None = None,
    cache_dir: Path | None = None,
    home: Path | None = None,
    python: str | None = None,
    timeout_s: float = 1800,
    sites: program.Sites | None = None,
    researcher: int | None = None,
    noise: int = 0,
) -> Compiled:
    """Translate and compile `query` for `protocol` with `parties` parties (over `sites`,
    when several hold the data), or take it from the cache.  `researcher`: the party that
    inputs a private query's constants (the query is its template; the cache key is the
    template's, so every query of that shape shares the program).  `noise`: a bound on a
    stats query's noise (`program.noise_bound`; the shares are inputs, never in the
    program).  RuntimeError with the compiler's output if it fails; ValueError if the
    sums could wrap."""
    proto = get(protocol) if isinstance(protocol, str) else protocol
    parties = parties or proto.default_parties
    proto.check_parties(parties)
    options = options or default_options(proto)
    script = _script(home)
    flags = compile_flags(proto, query, shape, options, parties, noise)
    source = program.translate(
        query, shape, options.lowering, proto.domain, _settings(proto, options), sites, researcher, parties
    )
    version = compiler_version(home)
    key_fields = _key_fields(query, shape, proto, parties, options, flags, version)
    key = hashlib.sha256(json.dumps([key_fields, source], sort_keys=True).encode()).hexdigest()[:20]
    cache = (cache_dir or default_cache_dir()).resolve()
    entry = cache / f"{proto.name}-{key}"

    def compiled(meta: dict, cached: bool) -> Compiled:
        return Compiled(
            entry,
            program.PROGRAM_NAME,
            proto.name,
            parties,
            query,
            shape,
            options,
            flags,
            key,
            version,
            meta["compile_s"],
            cached,
            meta.get("expected", {}),
        )

    if (entry / META).is_file():
        return compiled(json.loads((entry / META).read_text()), True)
    cache.mkdir(parents=True, exist_ok=True)
    published = False  # the work directory became the cache entry
    work = Path(tempfile.mkdtemp(prefix=f".{proto.name}-{key}-", dir=cache))
    try:
        argv, stdout, compile_s = _run_compiler(work, source, script, flags, parties, python, timeout_s)
        meta = {
            "key": key,
            "key_fields": key_fields,
            "argv": argv,
            "compile_s": compile_s,
            "expected": parse_compiler_output(stdout),
            "query": {"root": to_plain(query.root), "output": query.output.value, "name": query.name},
        }
        (work / META).write_text(json.dumps(meta, indent=1))
        first = _publish(work, entry)
        if first is not None:
            return compiled(first, True)
        published = True
        return compiled(meta, False)
    finally:
        if not published:
            shutil.rmtree(work, ignore_errors=True)
