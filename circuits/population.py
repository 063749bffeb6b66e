"""Encoded patients: the fixed-width integer vectors that engines secret-share.

One `Population` holds every patient as numpy columns: age, gender and smoker
codes, condition codes padded to C slots and exams (LOINC body, months ago)
padded to E slots.  An empty slot holds code 0, which no valid SNOMED CT or
LOINC code equals.  With fixed padding only the bounds C and E are public; with
`exact` padding (the paper's choice) each patient's own counts are public too.
Whatever the data's source, one rule bounds it (`bound`): a patient over a bound
is an error, unless truncating, which keeps its first conditions and its most
recent exams and counts what it cut.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator, Sequence

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
    truncated: int = 0  # patients who lost conditions or exams to fit the bounds
    dropped: tuple[int, int] = (0, 0)  # (conditions, exams) cut to fit the bounds

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def slots(self) -> tuple[int, int]:
        return self.conditions.shape[1], self.exam_codes.shape[1]

    def subset(self, n: int) -> Population:
        """The first n patients."""
        return self.take(range(min(n, len(self))))

    def take(self, rows: Sequence[int]) -> Population:
        """These patients (by number), in this order."""
        index = np.asarray(rows, dtype=np.int64)
        cols = {c: getattr(self, c)[index] for c in ARRAYS}
        return Population(
            tuple(self.ids[i] for i in index),
            **cols,
            padding=self.padding,
            truncated=self.truncated,
            dropped=self.dropped,
        )

    def cut(self) -> str | None:
        """What truncation cut, in words (None: nothing)."""
        if not self.truncated:
            return None
        c, e = self.dropped
        return (
            f"{self.truncated} patient(s) over the padding ({self.padding.label()}) lost "
            f"{c} condition(s) and their {e} oldest exam(s) (truncate)"
        )


def encode(patients: Iterable[Patient], padding: Padding, truncate: bool = False) -> Population:
    """Encode patients, then `bound` them to `padding`."""
    plist = list(patients)
    n = len(plist)
    ccount = np.array([len(p.conditions) for p in plist], dtype=np.int64)
    ecount = np.array([len(p.exams) for p in plist], dtype=np.int64)
    cond = np.zeros((n, _slots(EXACT, ccount)), dtype=np.int64)
    codes = np.zeros((n, _slots(EXACT, ecount)), dtype=np.int64)
    months = np.zeros_like(codes)
    for i, p in enumerate(plist):
        cond[i, : len(p.conditions)] = p.conditions
        exams = sorted(p.exams, key=lambda e: e[1])  # most recent first
        if exams:
            codes[i, : len(exams)], months[i, : len(exams)] = zip(*exams)
    exact = Population(
        tuple(p.id for p in plist),
        np.array([p.age for p in plist], dtype=np.int64),
        np.array([p.gender for p in plist], dtype=np.int64),
        np.array([p.smoker for p in plist], dtype=np.int64),
        cond,
        codes,
        months,
        ccount,
        ecount,
        Padding(EXACT, EXACT),
    )
    return bound(exact, padding, truncate)


def bound(pop: Population, padding: Padding, truncate: bool = False) -> Population:
    """`pop` (exams most recent first) in the slots of `padding`.  A patient over a
    bound: PaddingOverflow, or with `truncate` its first conditions and most recent
    exams are kept, and `truncated` and `dropped` count what was cut."""
    cc, ec = pop.condition_counts, pop.exam_counts
    c_slots, e_slots = _slots(padding.conditions, cc), _slots(padding.exams, ec)
    if not truncate:
        _check(pop.ids, cc, c_slots, "active conditions", "conditions")
        _check(pop.ids, ec, e_slots, "exams", "exams")
    return Population(
        pop.ids,
        pop.age,
        pop.gender,
        pop.smoker,
        _fit(pop.conditions, c_slots),
        _fit(pop.exam_codes, e_slots),
        _fit(pop.exam_months, e_slots),
        np.minimum(cc, c_slots),
        np.minimum(ec, e_slots),
        padding,
        int(np.count_nonzero((cc > c_slots) | (ec > e_slots))),
        (int((cc - c_slots).clip(0).sum()), int((ec - e_slots).clip(0).sum())),
    )


def _check(ids: tuple[str, ...], counts: np.ndarray, slots: int, what: str, key: str) -> None:
    over = np.flatnonzero(counts > slots)
    if over.size:
        raise PaddingOverflow(
            f"{over.size} patient(s) have more than {slots} {what} (first: {ids[over[0]]}, "
            f"{int(counts.max())} at most); raise padding.{key}, or truncate "
            "(a config's truncate: true; eval --truncate)"
        )


def _fit(a: np.ndarray, slots: int) -> np.ndarray:
    """The first `slots` columns of `a`, EMPTY-padded on the right if it has fewer."""
    if a.shape[1] >= slots:
        return np.ascontiguousarray(a[:, :slots])
    return np.pad(a, ((0, 0), (0, slots - a.shape[1])), constant_values=EMPTY)


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
