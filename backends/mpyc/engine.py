"""MPyC as a cohortbench engine: its YAML spec, its protocols' facts, and one cell's runs.

Each run writes a job file that every party reads (`job.Job`); party 0 alone
reads the private inputs written once per cell.  Parties connect to every
higher-numbered party, and print MPyC's own time and byte count.
"""

from __future__ import annotations

import re
import sys
from importlib import metadata
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field

from backends.engine import (
    HONEST,
    MAX_PARTIES,
    SEMI_HONEST,
    Engine,
    Figures,
    Finding,
    Finished,
    Links,
    OutputError,
    Party,
    Unavailable,
)
from backends.engine import Preparation, ProtocolFacts, Spec, python_path
from backends.mpyc import launch
from backends.mpyc.certs import make_mpyc_certs
from backends.mpyc.job import PROTOCOLS, Job, write_constants, write_inputs, write_site_inputs
from circuits import privacy, secret
from circuits.cost import DataBounds
from circuits.holdings import PATIENT_HELD, Holdings
from circuits.ir import Query, to_wire
from circuits.population import Population
from circuits.stats import Stats

FACTS = {
    name: ProtocolFacts(
        name,
        SEMI_HONEST,
        HONEST,
        "field",
        3,
        MAX_PARTIES,
        too_few="cannot run Shamir with an honest majority",
        private_criteria=name == "shamir",
    )
    for name in PROTOCOLS
}


class MpycSpec(Spec):
    title = "MPyC"
    defaults = FACTS
    engine: Literal["mpyc"]
    batch_size: Annotated[int, Field(ge=1)] = 10_000  # vectorised: patients per batch


class MpycCell:
    """A cell's inputs written once (and its TLS certificates); each run has its job file."""

    def __init__(
        self, spec: MpycSpec, query: Query, pop: Population, workdir: Path, holdings: Holdings = PATIENT_HELD
    ):
        self.spec, self.query, self.pop, self.workdir = spec, query, pop, workdir.resolve()
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.deployment: dict | None = None
        self.site_paths: list[str] = []
        self.sites = holdings.sites
        if query.stats is not None and spec.protocol != "shamir":
            raise Unavailable(f"{spec.label}: stats are lowered for shamir only")
        if holdings is PATIENT_HELD:
            self.data_path, self.counts_path = write_inputs(pop, self.workdir)
        elif spec.protocol != "shamir":
            raise Unavailable(f"{spec.label}: the paper's loop takes the patient deployment only; use shamir")
        else:
            self.data_path = ""
            self.site_paths, self.counts_path, self.deployment = write_site_inputs(
                pop, holdings, self.workdir
            )
        self.researcher, self.constants_path = self._criteria(spec, query, pop)
        self.noise = (
            None
            if query.stats is None or query.stats.dp is None
            else self._noise(spec, query.stats, pop, holdings.sites)
        )
        self.preparation = Preparation()
        if spec.ssl:
            make_mpyc_certs(self.workdir, spec.parties)

    def _criteria(self, spec: MpycSpec, query: Query, pop: Population) -> tuple[int | None, str]:
        """Private criteria: the query replaced by its template, the constants written for
        the researcher alone.  (None, "") when they are public."""
        if not spec.private:
            return None, ""
        hidden = secret.hide(query, DataBounds.of(pop), pop.slots[1], spec.max_codes)
        self.query = hidden.template
        return spec.researcher_party, write_constants(hidden.constants, self.workdir)

    def _noise(self, spec: MpycSpec, stats: Stats, pop: Population, sites: int) -> privacy.Plan:
        """The noise of each sum, shared so that Shamir's honest majority alone makes it up."""
        return privacy.for_protocol(stats, pop.slots[1], spec.parties, spec.facts.majority, sites)

    def plan(self, run_dir: Path, links: Links, traced: bool) -> list[Party]:
        job = Job(
            self.spec.protocol,
            to_wire(self.query),
            self.spec.bit_length,
            len(self.pop),
            self.pop.slots,
            DataBounds.of(self.pop),
            self.pop.padding.exact,
            self.data_path,
            self.counts_path,
            str(run_dir),
            self.spec.batch_size,
            self.deployment,
            self.site_paths,
            self.researcher,
            secret.constants_count(self.query.root),
            self.constants_path,
            None
            if self.noise is None or self.query.stats is None
            else self.noise.job(self.query.stats, self.sites),
        )
        job_path = run_dir / "job.json"
        job.write(job_path)
        env = {"COHORTBENCH_JOB": str(job_path), **python_path()}
        return [Party(tuple(argv), self.workdir, env) for argv in launch.commands(links, bool(self.spec.ssl))]

    def read(self, run: Finished) -> Figures:
        try:
            reports = [launch.read_report(i, log, run.run_dir) for i, log in enumerate(run.logs)]
        except ValueError as e:
            raise OutputError(str(e)) from None
        return Figures(
            answers=[r.result for r in reports],
            engine_s=[r.elapsed_s for r in reports],
            bytes_by_party=[r.bytes_sent for r in reports],
            compute_s=[r.compute_s for r in reports],
            peak_rss_kib_by_party=[r.peak_rss_kib for r in reports],
            bit_length=reports[0].bit_length,
            dp=None if self.noise is None else self.noise.record(),
            **(_site_figures(reports) if self.deployment else {}),
        )

    def finish(self, run_dir: Path) -> None:
        """Nothing private is written per run."""

    def close(self) -> None:
        """Remove the private inputs; logs and results stay."""
        for path in (self.data_path, self.counts_path, *self.site_paths, self.constants_path):
            if path:
                Path(path).unlink(missing_ok=True)


def _site_figures(reports: list[launch.PartyReport]) -> dict:
    return {
        "local_s": [r.local_s for r in reports],
        "input_s": [r.input_s for r in reports],
        "input_bytes_by_party": [r.input_bytes for r in reports],
    }


def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def _versions() -> dict[str, str | None]:
    return {"mpyc": _version("mpyc"), "gmpy2": _version("gmpy2"), "numpy": _version("numpy")}


def _doctor() -> list[Finding]:
    version, gmpy2 = _version("mpyc"), _version("gmpy2")
    if version is None:
        return [
            Finding(
                "MPyC",
                "mpyc",
                False,
                "not installed",
                "run `make install` (or `pip install mpyc gmpy2` in .venv)",
            )
        ]
    return [
        Finding("MPyC", "mpyc", True, f"version {version} ({sys.executable})"),
        Finding(
            "MPyC",
            "gmpy2",
            gmpy2 is not None,
            f"version {gmpy2}" if gmpy2 else "not installed (MPyC runs much slower)",
            None if gmpy2 else "pip install gmpy2 in .venv",
        ),
    ]


# Semi-honest: no integrity checks to abort.  Python's ssl module reports a rejected record
# as e.g. "[SSL: DECRYPTION_FAILED_OR_BAD_RECORD_MAC] decryption failed or bad record mac".
TLS_ERRORS = re.compile(
    r"\[SSL: [A-Z_]+\]|ssl\.SSLError|bad record mac|decryption failed"
    r"|wrong version number|record layer failure|packet length too long",
    re.I,
)
# Party i connects to every j > i.
ENGINE = Engine("mpyc", MpycSpec, MpycCell, tls_errors=TLS_ERRORS, versions=_versions, doctor=_doctor)
