"""One MPyC run as the harness hands it to the party processes (a JSON file per cell)."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from circuits.cost import DataBounds
from circuits.population import Population

PROTOCOLS = ("shamir", "paper-loop")
COLUMNS = ("age", "gender", "smoker", "conditions", "exam_codes", "exam_months")


@dataclass(frozen=True)
class Job:
    protocol: str
    query: dict  # {"root": circuits.ir.to_plain(root), "output": "eligible" | "count"}
    bit_length: int | None  # None: derived from public ranges
    size: int  # public: number of patients
    slots: tuple[int, int]  # public: condition and exam slots per patient
    bounds: DataBounds  # public: code ranges
    exact: bool  # public counts (padding 'exact')
    data_path: str  # party 0's private inputs (npz); other parties never read it
    counts_path: str  # public per-patient counts when exact, else ""
    result_path: str  # each party writes result-<pid>.json here
    batch_size: int = 10_000  # patients per vectorised batch (bounds memory; rounds x batches)

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
    counts = ""
    if pop.padding.exact:
        counts = str(workdir / "public-counts.npz")
        np.savez(counts, conditions=pop.condition_counts, exams=pop.exam_counts)
    return str(data), counts
