"""The engine interface: all the harness asks of a backend, and all a backend may assume.

An engine translates the criteria IR (`circuits`) for one framework and runs
it as separate party processes that the harness starts, connects (directly or
through its relay), measures and checks against the oracle.  An engine:

* declares its YAML spec (`Spec`: the common keys below plus its own, each
  validated where it is written) and its protocols' security facts;
* prepares a cell once (`Engine.cell`: inputs written, programs compiled) and
  each run of it (`Cell.plan`: per party the argv, environment and directory,
  given the ports every party listens on and reaches the others by);
* reads what its parties printed into `Figures`, or raises `OutputError`;
* says how its parties report an integrity abort (`Engine.aborts`) and what
  `cohortbench doctor` should check.

The harness never names an engine: it finds them in `backends.registry`.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Callable, ClassVar, Literal, Mapping, Protocol, Sequence

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator

from circuits.holdings import Holdings
from circuits.ir import Query
from circuits.population import Population
from circuits.secret import EXTRA, PRIVATE, PUBLIC

SEMI_HONEST, MALICIOUS, NO_SECURITY = "semi-honest", "malicious", "none"
HONEST, DISHONEST = "honest", "dishonest"
MAX_PARTIES = 16  # the harness's limit on parties


@dataclass(frozen=True)
class ProtocolFacts:
    """What a protocol guarantees and needs, as the records and the checks use it."""

    name: str
    security: str  # semi-honest | malicious | none
    majority: str  # honest | dishonest | none (of the parties)
    domain: str  # field | ring | plaintext | rlwe (lattice ciphertexts: homomorphic encryption)
    min_parties: int
    max_parties: int
    tls: bool = False  # links encrypted unless a cell sets ssl: false
    too_few: str = ""  # why fewer than min_parties cannot run it, for the error message
    private_criteria: bool = False  # takes the criteria as a researcher party's secret input
    sites_only: bool = False  # runs only where sites hold the data (a deployment with a partition)

    @property
    def default_parties(self) -> int:
        return self.min_parties

    def parties_problem(self, engine: str, parties: int) -> str | None:
        """None when the protocol runs with `parties`; else the error message."""
        if self.min_parties <= parties <= self.max_parties:
            return None
        if parties < self.min_parties and self.too_few:
            return f"{parties} parties {self.too_few}; use {self.min_parties} or more"
        span = (
            str(self.min_parties)
            if self.min_parties == self.max_parties
            else f"{self.min_parties} to {self.max_parties}"
        )
        return f"{engine} {self.name} runs with {span} parties, not {parties}"


class Spec(BaseModel):
    """One `engines:` entry of an experiment config: the keys every engine takes.

    An engine subclasses it with its own keys (and `engine: Literal[...]`); field
    order and defaults are part of each cell's key, so new keys go at the end.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)
    title: ClassVar[str] = ""  # the engine's name in messages, e.g. "MPyC"
    defaults: ClassVar[Mapping[str, ProtocolFacts]] = {}  # set by each engine: its protocols

    engine: str
    protocol: str = "shamir"
    parties: Annotated[int, Field(ge=1, le=MAX_PARTIES)] = 3
    bit_length: Annotated[int, Field(ge=8, le=256)] | None = None
    populations: list[str] | None = None  # run this engine on these populations only
    # TLS between parties: None, the protocol's default; true, on; false, off.
    ssl: bool | None = None
    # The criteria's constants: public (compiled into the program) or private (circuits.secret):
    # the researcher's secret input.  `researcher`: `extra`, one more party holding no data
    # (the last; `parties` counts it), or the index of a party that also holds data.
    criteria: Literal["public", "private"] = PUBLIC
    researcher: Literal["extra"] | Annotated[int, Field(ge=0)] = EXTRA
    max_codes: Annotated[int, Field(ge=1)] | None = None  # private: codes of every condition node

    @classmethod
    def default_protocol(cls) -> str:
        return "shamir"

    @model_validator(mode="before")
    @classmethod
    def _protocol_defaults(cls, data: Any) -> Any:
        """An omitted protocol is the engine's default; omitted parties, its protocol's."""
        if not isinstance(data, dict):
            return data
        protocol = data.get("protocol", cls.default_protocol())
        facts = cls.defaults.get(str(protocol))
        out = {**data, "protocol": protocol}
        if "parties" not in data and facts is not None:
            out["parties"] = facts.default_parties
        return out

    @model_validator(mode="after")
    def _protocol_and_parties(self) -> Spec:
        facts = self.defaults.get(self.protocol)
        if facts is None:
            raise ValueError(
                f"unknown {self.title} protocol {self.protocol!r}; use one of " + ", ".join(self.defaults)
            )
        problem = facts.parties_problem(self.title, self.parties)
        if problem:
            raise ValueError(problem)
        return self

    @field_validator("criteria")
    @classmethod
    def _takes_criteria(cls, v: str, info: ValidationInfo) -> str:
        facts = cls.defaults.get(str(info.data.get("protocol")))
        if v == PRIVATE and facts is not None and not facts.private_criteria:
            raise ValueError(
                f"criteria: private needs a researcher party's input, which {cls.title} "
                f"{facts.name} cannot take; use criteria: public, or another protocol"
            )
        return v

    @field_validator("researcher")
    @classmethod
    def _researcher_is_a_party(cls, v: Any, info: ValidationInfo) -> Any:
        parties = info.data.get("parties")
        if v != EXTRA and isinstance(parties, int) and v >= parties:
            raise ValueError(
                f"{v} is not a party of {parties} (0 to {parties - 1}); give a party index, "
                "or extra (the last party, holding no data)"
            )
        return v

    @property
    def private(self) -> bool:
        return self.criteria == PRIVATE

    @property
    def researcher_party(self) -> int | None:
        """The party that inputs the criteria (None: they are public)."""
        if not self.private:
            return None
        return self.parties - 1 if self.researcher == EXTRA else int(self.researcher)

    @property
    def data_parties(self) -> int:
        """The parties other than an extra researcher: data holders and computing parties."""
        return self.parties - (1 if self.private and self.researcher == EXTRA else 0)

    @property
    def facts(self) -> ProtocolFacts:
        return self.defaults[self.protocol]

    @property
    def tls(self) -> bool:
        """Whether the links are encrypted: `ssl`, else the protocol's default."""
        return self.facts.tls if self.ssl is None else self.ssl

    def options_label(self) -> str:
        """The engine's own options, for a cell's label (e.g. " binary")."""
        return ""

    def query_problem(self, query: Query, holdings: Holdings) -> tuple[str, str] | None:
        """None when this engine setting can run `query` over `holdings` (checked when the
        config loads); else the problem and its fix."""
        return None

    @property
    def label(self) -> str:
        extra = f" l={self.bit_length}" if self.bit_length else ""
        extra += {True: " tls", False: " no-tls", None: ""}[self.ssl]
        extra += f" private(r={self.researcher})" if self.private else ""
        return f"{self.engine}/{self.protocol}/{self.parties}p{extra}{self.options_label()}"


LOOPBACK = "127.0.0.1"


@dataclass(frozen=True)
class Links:
    """Where a run's parties listen and how each reaches the others.

    `views[i][j]` is the port party i uses for party j: j's own listening port, or a
    relay's; `views[i][i]` is i's listening port.  `hosts[i][j]` is the address at that
    port (j's node, or the relay's; `hosts[i][i]`: the address i binds); none given:
    every party on loopback."""

    listen: tuple[int, ...]
    views: tuple[tuple[int, ...], ...]
    hosts: tuple[tuple[str, ...], ...] = ()

    @property
    def parties(self) -> int:
        return len(self.listen)

    def host(self, i: int, j: int) -> str:
        """The address party i reaches party j at (i's own: the one it binds)."""
        return self.hosts[i][j] if self.hosts else LOOPBACK

    def address(self, i: int, j: int) -> str:
        """`host:port` of party j as party i reaches it."""
        return f"{self.host(i, j)}:{self.views[i][j]}"


REPO = Path(__file__).resolve().parent.parent


def python_path() -> dict[str, str]:
    """The environment a party process written in Python needs to import this project."""
    return {"PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}


@dataclass(frozen=True)
class Party:
    """One party process: its command, the variables added to its environment, its directory."""

    argv: tuple[str, ...]
    cwd: Path
    env: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Figures:
    """What a run's parties reported.  Lists hold one entry per party."""

    answers: list[Any]  # what each party learnt: the eligible bits, the count, or None
    engine_s: list[float]  # each party's own start-to-stop time
    bytes_by_party: list[int] | None  # bytes each party sent, by the engine's count (None: no links)
    compute_s: list[float] | None = None
    peak_rss_kib_by_party: list[int] | None = None
    bit_length: int | None = None
    engine_rounds: int | None = None  # the engine's own count of rounds
    global_bytes: int | None = None  # the engine's own total over all parties
    online_s: list[float | None] | None = None
    offline_s: list[float | None] | None = None
    # Several sites: per site, its local evaluation in the clear, the secure part's input
    # phase and the bytes it sent in it (None: nothing secure)
    local_s: list[float | None] | None = None
    input_s: list[float | None] | None = None
    input_bytes_by_party: list[int | None] | None = None
    dp: dict | None = None  # a stats query with dp: the noise and the privacy spent (`circuits.privacy`)
    # A setup phase apart from the query (MHE's collective key generation): its time (the
    # slowest party's), the bytes every party sent in it, whether the run made its keys or
    # reused a previous run's, the parties' topology and the scheme's parameters
    setup_s: float | None = None
    setup_bytes: int | None = None
    keys: str | None = None
    topology: str | None = None
    scheme_params: dict | None = None

    @property
    def bytes_sent(self) -> int | None:
        return None if self.bytes_by_party is None else sum(self.bytes_by_party)


@dataclass(frozen=True)
class Preparation:
    """What a cell cost before its first run (e.g. compiling its program), recorded per run."""

    compile_s: float | None = None
    compile_cached: bool | None = None
    compile_options: str | None = None
    compiler_expected: dict | None = None


class Unavailable(Exception):
    """This machine cannot run the cell (a binary not built, a compiler missing): each of
    its runs fails with this message, and the sweep goes on."""


class OutputError(Exception):
    """The parties' output does not give figures and answers.  `revealed`: party 0
    printed something as its answer that is not one (after tampering, say): a wrong
    answer was revealed."""

    def __init__(self, message: str, revealed: bool = False) -> None:
        super().__init__(message)
        self.revealed = revealed


@dataclass(frozen=True)
class Finished:
    """A run whose parties all exited: where they ran, their logs and exit codes."""

    run_dir: Path
    logs: Sequence[Path]
    returncodes: Sequence[int | None]
    timed_out: bool


class Cell(Protocol):
    """One engine setting on one query and population, prepared once for all its runs."""

    preparation: Preparation

    def plan(self, run_dir: Path, links: Links, traced: bool) -> list[Party]:
        """The parties of one run in the fresh directory `run_dir`.  `traced`: the run is
        tampered with, so that an engine may log what its integrity checks see."""
        ...

    def read(self, run: Finished) -> Figures:
        """The figures and answers of a run whose parties all exited 0; OutputError if
        they are missing or malformed."""
        ...

    def finish(self, run_dir: Path) -> None:
        """After a run, failed or not: remove what is private (inputs, keys)."""
        ...

    def close(self) -> None:
        """After the cell's last run."""
        ...


@dataclass(frozen=True)
class Finding:
    """One thing `cohortbench doctor` looked for."""

    engine: str
    item: str
    ok: bool
    detail: str
    fix: str | None = None


NO_ABORTS = re.compile(r"(?!)")  # matches nothing: an engine without integrity checks


def _no_versions() -> dict[str, str | None]:
    return {}


def _no_findings() -> list[Finding]:
    return []


@dataclass(frozen=True)
class Engine:
    """A backend as the harness sees it (one per backend, found in the registry)."""

    name: str  # the YAML's `engine:` value
    spec: type[Spec]  # the YAML spec of its cells
    # Prepares one cell: (spec, query, population, work directory, who holds the data) -> Cell;
    # Unavailable for a deployment it does not take.
    cell: Callable[[Any, Query, Population, Path, Holdings], Cell]
    # How parties connect: only to higher-numbered parties (False: the relay routes i -> j
    # for j > i) or to every other party (True).
    connects_every_direction: bool = False
    aborts: re.Pattern[str] = NO_ABORTS  # a log line: a party's integrity check failed
    tls_errors: re.Pattern[str] = NO_ABORTS  # a log line: a party's TLS layer rejected a record
    versions: Callable[[], dict[str, str | None]] = _no_versions  # recorded in every run's meta
    doctor: Callable[[], list[Finding]] = _no_findings  # what `cohortbench doctor` checks
