"""Each site's own data under a deployment: what a site holds of a population, and that
data read back as a population of its own.

Under `rows` a site holds its patients' whole records (in population order); under
`columns` it holds its column groups of every patient.  A site's population has
zeros of the public shape in the columns it does not hold, so that the oracle's code
runs on it unchanged.  The secure arrays hold the patients in `secure_order`: under
`rows` the sites' blocks one after another, whose sizes are public.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from circuits.holdings import GROUP_COLUMNS, Holdings, Partition
from circuits.population import ARRAYS, Padding, Population


def site_arrays(pop: Population, holdings: Holdings, site: int) -> dict[str, np.ndarray]:
    """The columns `site` holds: its own rows of every column, or its groups' columns."""
    if holdings.partition is Partition.ROWS:
        mine = pop.take(holdings.patients_of(site))
        return {c: getattr(mine, c) for c in ARRAYS}
    held = [g for g, s in holdings.site_of_group.items() if s == site]
    return {c: getattr(pop, c) for g in held for c in GROUP_COLUMNS[g]}


def write_site_files(pop: Population, holdings: Holdings, directory: Path) -> list[Path]:
    """Each site's arrays in a file of its own (`site-<i>.npz`), which only that site reads."""
    paths = []
    for site in range(holdings.sites):
        path = directory / f"site-{site}.npz"
        arrays: dict[str, Any] = site_arrays(pop, holdings, site)
        np.savez(path, **arrays)
        paths.append(path)
    return paths


def read_site_population(path: Path, patients: int, slots: tuple[int, int]) -> Population:
    """A site's file as a population of `patients` rows: its own columns, zeros elsewhere."""
    with np.load(path) as data:
        return holding(patients, slots, {name: data[name] for name in data.files})


def holding(patients: int, slots: tuple[int, int], held: dict[str, Any]) -> Population:
    """A population of `patients` rows with the `held` columns, zeros elsewhere (a party
    holding no data: none)."""
    c, e = slots
    shapes = {"conditions": (patients, c), "exam_codes": (patients, e), "exam_months": (patients, e)}
    cols = {a: held.get(a, np.zeros(shapes.get(a, (patients,)), dtype=np.int64)) for a in ARRAYS}
    return Population(tuple(map(str, range(patients))), padding=Padding(c, e), **cols)


def blocks(holdings: Holdings, patients: int) -> tuple[int, ...]:
    """The public sizes of the sites' blocks in the secure arrays (one block: columns)."""
    if holdings.partition is Partition.ROWS:
        return holdings.site_sizes(patients)
    return (patients,)


def secure_order(holdings: Holdings, patients: int) -> list[int]:
    """The patient numbers in the order the secure arrays hold them."""
    if holdings.partition is Partition.ROWS:
        return [i for s in range(holdings.sites) for i in holdings.patients_of(s)]
    return list(range(patients))
