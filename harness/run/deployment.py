"""A `deployments:` entry of an experiment config: who holds the data (see `circuits.holdings`).

`patient` (the default) is party 0 holding every record; a mapping spreads the
records over `sites` data-holding parties, by rows or by column groups.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Annotated, Any, Callable, Literal, Union

from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag, field_validator, model_validator

from backends.engine import MAX_PARTIES
from circuits.errors import InputError
from circuits.holdings import GROUPS, PATIENT_HELD, Holdings, Partition
from circuits.population import Population
from harness.data import sites, sources
from harness.data.sites import Assignment, valid_rule
from harness.data.sources import Source

PATIENT = "patient"


class Sites(BaseModel):
    """`{sites: N, partition: rows|columns, ...}`: records held by N sites (site i is party i)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    sites: Annotated[int, Field(ge=1, le=MAX_PARTIES)]
    partition: Literal["rows", "columns"]
    assign: str | None = None  # rows: round-robin (default), random:SEED or provider
    columns: dict[str, Union[int, list[int]]] | None = None  # columns: group -> its one site
    local: Literal["auto", "off"] = "auto"
    reveal_to: Annotated[int, Field(ge=0)] | None = None  # columns: who learns the eligible bits

    @field_validator("local", mode="before")
    @classmethod
    def _yaml_off(cls, v: Any) -> Any:
        return "off" if v is False else v  # YAML reads a bare `off` as false

    @model_validator(mode="after")
    def _partition_keys(self) -> Sites:
        if self.partition == "rows":
            if self.columns is not None or self.reveal_to is not None:
                raise ValueError("columns and reveal_to belong to partition: columns; drop them under rows")
            if self.assign is not None and not valid_rule(self.assign):
                raise ValueError(f"assign {self.assign!r}: use round-robin, random:SEED or provider")
            return self
        if self.assign is not None:
            raise ValueError("assign belongs to partition: rows; under columns give columns: {group: site}")
        self._check_columns()
        if self.reveal_to is not None and self.reveal_to >= self.sites:
            raise ValueError(f"reveal_to {self.reveal_to} is not a site (0 to {self.sites - 1})")
        return self

    def _check_columns(self) -> None:
        given = self.columns or {}
        unknown = [g for g in given if g not in GROUPS]
        missing = [g for g in GROUPS if g not in given]
        if unknown or missing:
            raise ValueError(
                "columns: every group of "
                + ", ".join(GROUPS)
                + " needs exactly one site"
                + (f"; {', '.join(missing)} assigned to no site" if missing else "")
                + (f"; {', '.join(unknown)} is not a group" if unknown else "")
            )
        for group, site in given.items():
            held = site if isinstance(site, list) else [site]
            if len(held) != 1:
                raise ValueError(f"columns: {group} is assigned to {len(held)} sites {held}; give one site")
            if not 0 <= held[0] < self.sites:
                raise ValueError(
                    f"columns: {group} is assigned to site {held[0]}, not one of 0 to {self.sites - 1}"
                )

    def record(self) -> dict[str, Any]:
        """The mapping as given, defaults filled in."""
        out: dict[str, Any] = {"sites": self.sites, "partition": self.partition, "local": self.local}
        if self.partition == "rows":
            return out | {"assign": self.assign or "round-robin"}
        return out | {"columns": self.site_of_group(), "reveal_to": self.reveal_to or 0}

    def site_of_group(self) -> dict[str, int]:
        return {g: (s[0] if isinstance(s, list) else s) for g, s in (self.columns or {}).items()}

    def label(self) -> str:
        local = "" if self.local == "auto" else " local:off"
        how = f" {self.assign or 'round-robin'}" if self.partition == "rows" else ""
        return f"{self.partition}{how} {self.sites}s{local}"

    def holdings(self, site_of_patient: tuple[int, ...] = ()) -> Holdings:
        return Holdings(
            Partition(self.partition),
            self.sites,
            site_of_patient,
            self.site_of_group(),
            self.local == "auto",
            self.reveal_to or 0,
        )


DeploymentSpec = Union[Literal["patient"], Sites]


def record(deployment: DeploymentSpec) -> str | dict[str, Any]:
    return PATIENT if isinstance(deployment, str) else deployment.record()


def label(deployment: DeploymentSpec) -> str:
    return PATIENT if isinstance(deployment, str) else deployment.label()


def _tag(v: Any) -> str:
    return "deployment-mapping" if isinstance(v, (dict, Sites)) else "deployment-name"


TAGS = frozenset({"deployment-mapping", "deployment-name"})
DeploymentField = Annotated[
    Union[Annotated[Literal["patient"], Tag("deployment-name")], Annotated[Sites, Tag("deployment-mapping")]],
    Discriminator(_tag),
]


def assignment(dep: Sites, source: Source, ids: tuple[str, ...]) -> Assignment:
    """The site of each patient of `source` (in population order) under a rows deployment."""
    rule = dep.assign or "round-robin"
    if rule == "provider" and source.kind == "jsonl":
        raise InputError(
            source.text,
            "assign",
            "assign: provider needs FHIR bundles or generated data (a patients file has no Encounters)",
            "point the population at the bundle directory, or use round-robin or random:SEED",
        )
    return sites.place(rule, len(ids), dep.sites, lambda: _providers(source, ids))


def _providers(source: Source, ids: tuple[str, ...]) -> list[str | None]:
    if source.kind == "synthetic":
        return sites.generated_providers(len(ids), source.seed)
    assert source.path is not None
    found = sites.bundle_providers(source.path)
    return [found.get(i) for i in ids]


def warnings(dep: Sites, source: Source, placed: Assignment) -> list[str]:
    """What a rows assignment should tell: empty sites, patients the fallback placed."""
    out = []
    empty = [s for s, size in enumerate(placed.sizes(dep.sites)) if size == 0]
    if empty:
        out.append(f"{source.text}, {dep.label()}: site(s) {empty} hold no patient")
    if placed.fallback:
        out.append(
            f"{source.text}, {dep.label()}: {placed.fallback} patient(s) with no Encounter naming "
            "a serviceProvider, placed round-robin"
        )
    return out


@dataclass(frozen=True)
class Placement:
    """A deployment applied to one population: the engines' `Holdings` and what the record says."""

    holdings: Holdings
    site_sizes: tuple[int, ...]
    fallback: int | None = None  # rows by provider: patients the round-robin fallback placed

    @classmethod
    def of(
        cls,
        dep: DeploymentSpec,
        source: Source,
        pop: Population,
        as_of: dt.date | None,
        warn: Callable[[str], None],
    ) -> Placement:
        if isinstance(dep, str):
            return cls(PATIENT_HELD, (len(pop),))
        if dep.partition == "columns":
            held = dep.holdings()
            return cls(held, held.site_sizes(len(pop)))
        if source.kind == "sites":  # each site's own patients: the sites are known
            site_of = sources.site_of_patients(source, as_of)
            placed = Assignment(tuple(site_of[i] for i in pop.ids))
        else:
            placed = assignment(dep, source, pop.ids)
        for message in warnings(dep, source, placed):
            warn(message)
        fallback = placed.fallback if dep.assign == "provider" and source.kind != "sites" else None
        return cls(dep.holdings(placed.site_of_patient), placed.sizes(dep.sites), fallback)
