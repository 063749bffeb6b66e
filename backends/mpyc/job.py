"""One MPyC run as the harness hands it to the party processes (a JSON file per cell)."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from circuits.cost import DataBounds
from circuits.holdings import Holdings
from circuits.population import Population
from circuits.sitedata import secure_order, write_site_files

PROTOCOLS = ("shamir", "paper-loop")
COLUMNS = ("age", "gender", "smoker", "conditions", "exam_codes", "exam_months")


@dataclass(frozen=True)
class Job:
    protocol: str
    query: dict  # circuits.ir.to_wire
    bit_length: int | None  # None: derived from public ranges
    size: int  # public: number of patients
    slots: tuple[int, int]  # public: condition and exam slots per patient
    bounds: DataBounds  # public: code ranges
    exact: bool  # public counts (padding 'exact')
    data_path: str  # party 0's private inputs (npz); other parties never read it
    counts_path: str  # public per-patient counts when exact, else ""
    result_path: str  # each party writes result-<pid>.json here
    batch_size: int = 10_000  # patients per vectorised batch (bounds memory; rounds x batches)
    # Several sites (None: party 0 holds every record): the deployment's public facts
    # (partition, sites, site_of_group, local, reveal_to, blocks: patients per site under
    # rows) and each site's private file, which only that site reads.
    deployment: dict | None = None
    site_paths: list[str] = field(default_factory=list)
    # Private criteria (`circuits.secret`): the researcher's party, the number of its secret
    # constants (public) and its private file of them, which only it reads.
    researcher: int | None = None
    constants: int = 0
    constants_path: str = ""
    # A stats query with dp: the mechanism, each sum's noise scale ("p/q"), and how many
    # parties' shares make up the whole noise (`circuits.privacy.Plan`).
    noise: dict | None = None

    @property
    def sites(self) -> int:
        """How many sites hold the data (1: party 0 holds every record)."""
        return 1 if self.deployment is None else int(self.deployment["sites"])

    def write(self, path: Path) -> None:
        path.write_text(json.dumps(asdict(self)))

    @staticmethod
    def read(path: Path) -> Job:
        d = json.loads(path.read_text())
        d["slots"] = tuple(d["slots"])
        d["bounds"] = DataBounds(**{**d["bounds"], "exam_vocabulary": tuple(d["bounds"]["exam_vocabulary"])})
        return Job(**d)


def write_inputs(pop: Population, workdir: Path) -> tuple[str, str]:
    """Party 0's private arrays and, with exact padding, the public counts."""
    data = workdir / "private-p0.npz"
    np.savez(data, **{c: getattr(pop, c) for c in COLUMNS})
    return str(data), _write_counts(pop, workdir)


def _write_counts(pop: Population, workdir: Path) -> str:
    if not pop.padding.exact:
        return ""
    counts = workdir / "public-counts.npz"
    np.savez(counts, conditions=pop.condition_counts, exams=pop.exam_counts)
    return str(counts)


def write_site_inputs(pop: Population, holdings: Holdings, workdir: Path) -> tuple[list[str], str, dict]:
    """Each site's private file (`circuits.sitedata`), the public counts (exact padding)
    in the secure arrays' order, and the deployment's public facts for the job."""
    paths = [str(p) for p in write_site_files(pop, holdings, workdir)]
    facts = {**holdings.public(), "blocks": list(holdings.site_sizes(len(pop)))}
    return paths, _write_counts(pop.take(secure_order(holdings, len(pop))), workdir), facts


def write_constants(constants: tuple[int, ...], workdir: Path) -> str:
    """The researcher's private file of a private query's constants; returns its path."""
    path = workdir / "private-criteria.json"
    path.write_text(json.dumps(list(constants)))
    return str(path)
