"""The plain engine's one party: the oracle on the population file, its answer and time."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np

from circuits.ir import Output, Query, from_wire
from circuits.holdings import Holdings, Partition
from circuits.oracle import Cohort, cohort
from circuits.population import ARRAYS, Padding, Population


def write_population(pop: Population, path: Path) -> Path:
    np.savez(path, **{c: getattr(pop, c) for c in ARRAYS})
    return path


def read_population(path: Path) -> Population:
    with np.load(path) as data:
        cols = {c: data[c] for c in ARRAYS}
    slots = Padding(max(cols["conditions"].shape[1], 1), max(cols["exam_codes"].shape[1], 1))
    return Population(tuple(map(str, range(len(cols["age"])))), padding=slots, **cols)


def main(job_path: Path) -> None:
    job = json.loads(job_path.read_text())
    query = from_wire(job)
    pop = read_population(Path(job["population"]))
    t0 = time.perf_counter()
    result = cohort(query, pop)
    compute_s = time.perf_counter() - t0
    answer = _answer(query, result, job)
    Path(job["result"]).write_text(json.dumps({"answer": answer, "compute_s": compute_s}))


def _answer(query: Query, result: Cohort, job: dict) -> object:
    """The whole answer: one party in the clear holds every site's data."""
    if query.output is Output.COUNT:
        return result.count
    if query.output is Output.STATS:
        return list(result.sums)
    if query.output is Output.COUNT_BY_SITE:
        return result.count_by_site(Holdings(Partition.ROWS, job["sites"], tuple(job["site_of_patient"])))
    return result.eligible.astype(int).tolist()


if __name__ == "__main__":
    main(Path(sys.argv[1]))
