"""Encoded patients: the fixed-width integer vectors that engines secret-share.

One `Population` holds every patient as numpy columns: age, gender and smoker
codes, condition codes padded to C slots and exams (LOINC body, months ago)
padded to E slots.  An empty slot holds code 0, which no valid SNOMED CT or
LOINC code equals.  With fixed padding only the bounds C and E are public; with
`exact` padding (the paper's choice) each patient's own counts are public too.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np

EXACT = "exact"
EMPTY = 0  # code of an unused slot
# The numpy columns of a Population, in order.
ARRAYS = (
    "age",
    "gender",
    "smoker",
    "conditions",
    "exam_codes",
    "exam_months",
    "condition_counts",
    "exam_counts",
)


@dataclass(frozen=True)
class Padding:
    """Slots per patient: an int bound, or 'exact' (each patient's own count, public)."""

    conditions: int | str = 16
    exams: int | str = 32

    def __post_init__(self) -> None:
        for name in ("conditions", "exams"):
            v = getattr(self, name)
            if v != EXACT and not (isinstance(v, int) and not isinstance(v, bool) and v >= 1):
                raise ValueError(f"padding.{name} must be a whole number >= 1 or 'exact'")

    @property
    def exact(self) -> bool:
        return self.conditions == EXACT or self.exams == EXACT

    def label(self) -> str:
        return f"C={self.conditions},E={self.exams}"


@dataclass(frozen=True)
class Patient:
    """One patient's extracted fields, before padding (lists in any order)."""

    id: str
    age: int
    gender: int
    smoker: int
    conditions: tuple[int, ...]  # SNOMED CT concept ids, distinct
    exams: tuple[tuple[int, int], ...]  # (LOINC body, months before the reference date)

    def to_json(self) -> dict:
        return {
            "id": self.id,
            "age": self.age,
            "gender": self.gender,
            "smoker": self.smoker,
            "conditions": list(self.conditions),
            "exams": [list(e) for e in self.exams],
        }

    @staticmethod
    def from_json(d: dict) -> Patient:
        return Patient(
            str(d["id"]),
            int(d["age"]),
            int(d["gender"]),
            int(d["smoker"]),
            tuple(int(c) for c in d["conditions"]),
            tuple((int(c), int(m)) for c, m in d["exams"]),
        )


class PaddingOverflow(ValueError):
    """A patient has more conditions or exams than the padding bound."""


@dataclass(frozen=True, eq=False)
class Population:
    """Encoded patients as numpy int64 columns; row i is patient ids[i]."""

    ids: tuple[str, ...]
    age: np.ndarray  # (N,)
    gender: np.ndarray  # (N,)
    smoker: np.ndarray  # (N,)
    conditions: np.ndarray  # (N, C), EMPTY-padded
    exam_codes: np.ndarray  # (N, E), EMPTY-padded
    exam_months: np.ndarray  # (N, E), 0 in empty slots
    condition_counts: np.ndarray  # (N,) real slots per patient (public only if exact)
    exam_counts: np.ndarray  # (N,)
    padding: Padding
    truncated: int = 0  # patients whose oldest exams were dropped to fit the bound

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def slots(self) -> tuple[int, int]:
        return self.conditions.shape[1], self.exam_codes.shape[1]

    def subset(self, n: int) -> Population:
        """The first n patients."""
        return Population(
            self.ids[:n],
            self.age[:n],
            self.gender[:n],
            self.smoker[:n],
            self.conditions[:n],
            self.exam_codes[:n],
            self.exam_months[:n],
            self.condition_counts[:n],
            self.exam_counts[:n],
            self.padding,
            self.truncated,
        )


def encode(patients: Iterable[Patient], padding: Padding, truncate: bool = False) -> Population:
    """Pad and encode patients.  Over a bound: PaddingOverflow, or with `truncate`
    keep the most recent exams (conditions are never dropped)."""
    plist = list(patients)
    n = len(plist)
    ccount = np.array([len(p.conditions) for p in plist], dtype=np.int64)
    ecount = np.array([len(p.exams) for p in plist], dtype=np.int64)
    c_slots = _slots(padding.conditions, ccount)
    e_slots = _slots(padding.exams, ecount)
    over_c = [p.id for p in plist if len(p.conditions) > c_slots]
    if over_c:
        raise PaddingOverflow(
            f"{len(over_c)} patient(s) have more than {c_slots} active conditions "
            f"(first: {over_c[0]}, {int(ccount.max())} at most); raise padding.conditions"
        )
    over_e = [p.id for p in plist if len(p.exams) > e_slots]
    if over_e and not truncate:
        raise PaddingOverflow(
            f"{len(over_e)} patient(s) have more than {e_slots} exams (first: {over_e[0]}, "
            f"{int(ecount.max())} at most); raise padding.exams or pass --truncate"
        )
    cond = np.zeros((n, c_slots), dtype=np.int64)
    codes = np.zeros((n, e_slots), dtype=np.int64)
    months = np.zeros((n, e_slots), dtype=np.int64)
    for i, p in enumerate(plist):
        cond[i, : len(p.conditions)] = p.conditions
        exams = sorted(p.exams, key=lambda e: e[1])[:e_slots]  # most recent first
        if exams:
            codes[i, : len(exams)], months[i, : len(exams)] = zip(*exams)
    return Population(
        tuple(p.id for p in plist),
        np.array([p.age for p in plist], dtype=np.int64),
        np.array([p.gender for p in plist], dtype=np.int64),
        np.array([p.smoker for p in plist], dtype=np.int64),
        cond,
        codes,
        months,
        ccount,
        np.minimum(ecount, e_slots),
        padding,
        len(over_e),
    )


def _slots(bound: int | str, counts: np.ndarray) -> int:
    if bound == EXACT:
        return max(int(counts.max(initial=0)), 1)
    return int(bound)


def read_jsonl(path: Path) -> Iterator[Patient]:
    """Patients from a patients.jsonl (one `Patient.to_json` object a line)."""
    with path.open() as f:
        for lineno, line in enumerate(f, 1):
            if line.strip():
                try:
                    yield Patient.from_json(json.loads(line))
                except (ValueError, KeyError, TypeError) as e:
                    raise ValueError(
                        f"{path}:{lineno}: not a patient record ({e}); write it with `cohortbench extract`"
                    ) from None


def write_jsonl(patients: Iterable[Patient], path: Path) -> int:
    n = 0
    with path.open("w") as f:
        for p in patients:
            f.write(json.dumps(p.to_json()) + "\n")
            n += 1
    return n
