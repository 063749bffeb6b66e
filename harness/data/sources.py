"""Population sources: `synthetic:N[:seed]`, a FHIR bundle directory, or a patients.jsonl.

Every source becomes a `circuits.population.Population` padded as asked; bundles
that cannot be read are reported (never silently skipped) through `on_skip`.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from circuits.errors import InputError
from circuits.population import Padding, PaddingOverflow, Patient, Population, encode, read_jsonl
from harness.data import fhir, synthetic

_SYNTHETIC = re.compile(r"^synthetic:(\d+)(?::(\d+))?$")


@dataclass(frozen=True)
class Source:
    """A parsed population source string."""

    text: str
    kind: str  # "synthetic" | "fhir" | "jsonl" | "sites"
    size: int | None = None  # synthetic only
    seed: int = 0
    path: Path | None = None
    parts: tuple[tuple[int, Source], ...] = ()  # sites: each site's own source, by site

    @property
    def needs_as_of(self) -> bool:
        return self.kind == "fhir" or any(part.needs_as_of for _, part in self.parts)


def parse_source(text: str, where: str = "populations") -> Source:
    m = _SYNTHETIC.match(text.strip())
    if m:
        n = int(m.group(1))
        if n < 1:
            raise InputError(where, "", f"{text!r}: a synthetic population needs at least 1 patient")
        return Source(text, "synthetic", n, int(m.group(2) or 0))
    if text.startswith("synthetic"):
        raise InputError(
            where,
            "",
            f"{text!r} is not a synthetic source",
            "write synthetic:N or synthetic:N:SEED, e.g. synthetic:1000:7",
        )
    path = Path(text).expanduser()
    if path.is_dir() or (path.is_file() and path.suffix == ".json"):
        return Source(text, "fhir", path=path)
    if path.is_file() and path.suffix == ".jsonl":
        return Source(text, "jsonl", path=path)
    raise InputError(
        where,
        "",
        f"{text!r} is neither synthetic:N[:seed], a FHIR bundle directory, nor a patients.jsonl",
        "check the path",
    )


def load(
    source: Source,
    padding: Padding,
    as_of: dt.date | None = None,
    truncate: bool = False,
    on_skip: Callable[[str], None] = lambda message: None,
) -> Population:
    """The encoded population of a source."""
    if source.kind == "synthetic":
        assert source.size is not None
        return _bounded(
            source, lambda: synthetic.generate(source.size, source.seed, padding, truncate), on_skip
        )
    patients = [p for part in (source.parts or ((0, source),)) for p in _patients(part[1], as_of, on_skip)]
    return _bounded(source, lambda: encode(patients, padding, truncate), on_skip)


def site_of_patients(source: Source, as_of: dt.date | None) -> dict[str, int]:
    """Under per-site sources: patient id -> the site whose source holds it."""
    quiet: Callable[[str], None] = lambda message: None  # noqa: E731 (reported by `load`)
    return {p.id: site for site, part in source.parts for p in _patients(part, as_of, quiet)}


def _patients(source: Source, as_of: dt.date | None, on_skip: Callable[[str], None]) -> list[Patient]:
    """The patients of a FHIR or patients-file source, in file order."""
    if source.kind == "fhir":
        if as_of is None:
            raise InputError(
                source.text,
                "",
                "FHIR bundles need a reference date for ages and exam months",
                "pass --as-of YYYY-MM-DD (or as_of: in the config)",
            )
        assert source.path is not None
        patients, errors = fhir.extract_dir(source.path, as_of)
        for e in errors:
            on_skip(f"skipped {e}")
        if errors:
            on_skip(f"{len(errors)} bundle(s) skipped, {len(patients)} extracted")
        if not patients:
            raise InputError(
                source.text,
                "",
                "no patient could be extracted",
                "point it at a directory of FHIR R4 bundles (*.json)",
            )
        return patients
    assert source.path is not None
    try:
        return list(read_jsonl(source.path))
    except ValueError as e:
        raise InputError(source.text, "", str(e)) from None


def _bounded(source: Source, make: Callable[[], Population], on_skip: Callable[[str], None]) -> Population:
    """The population `make` bounds: a bound exceeded is an InputError on `padding`,
    what truncation cut is reported."""
    try:
        pop = make()
    except PaddingOverflow as e:
        raise InputError(source.text, "padding", str(e)) from None
    cut = pop.cut()
    if cut:
        on_skip(f"{source.text}: {cut}")
    return pop
