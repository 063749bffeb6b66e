"""Who holds which part of a population: its deployment over sites (data-holding parties).

`patient` is the paper's setting: party 0 holds every record.  Under `rows` each
patient is held by exactly one site; under `columns` every site holds the same
patients in one public order (a pseudonymous join key agreed beforehand; record
linkage is out of scope) and each column group is held by exactly one site.
Site i is party i.  The harness builds a `Holdings` from the YAML; the engines
read it to decide who inputs what and who learns what.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Mapping

GROUPS = ("demographics", "conditions", "exams")  # the column groups a site may hold
GROUP_COLUMNS = {  # the Population columns of each group
    "demographics": ("age", "gender", "smoker"),
    "conditions": ("conditions", "condition_counts"),
    "exams": ("exam_codes", "exam_months", "exam_counts"),
}


class Partition(str, enum.Enum):
    """How the data is split over the sites."""

    PATIENT = "patient"
    ROWS = "rows"
    COLUMNS = "columns"


@dataclass(frozen=True)
class Holdings:
    """The sites and what each holds.  `local`: a site evaluates in the clear whatever
    part of the query uses only its own data and public constants (`local: auto`);
    False (`local: off`): every site inputs its raw data and the whole tree is secure.
    `reveal_to`: under `columns`, the party that learns the eligible bits."""

    partition: Partition = Partition.PATIENT
    sites: int = 1
    site_of_patient: tuple[int, ...] = ()  # rows: the site of each patient, in population order
    site_of_group: Mapping[str, int] = field(default_factory=dict)  # columns: group -> site
    local: bool = True
    reveal_to: int = 0

    def __post_init__(self) -> None:
        if self.sites < 1:
            raise ValueError(f"a deployment needs at least one site, not {self.sites}")
        if self.partition is Partition.ROWS:
            bad = sorted({s for s in self.site_of_patient if not 0 <= s < self.sites})
            if bad:
                raise ValueError(f"patients assigned to sites {bad}, outside 0..{self.sites - 1}")
        if self.partition is Partition.COLUMNS:
            self._check_groups()
        if not 0 <= self.reveal_to < self.sites:
            raise ValueError(f"reveal_to {self.reveal_to} is not a site (0..{self.sites - 1})")

    def _check_groups(self) -> None:
        missing = [g for g in GROUPS if g not in self.site_of_group]
        unknown = [g for g in self.site_of_group if g not in GROUPS]
        if missing or unknown:
            raise ValueError(
                f"columns: every group in {', '.join(GROUPS)} needs exactly one site"
                + (f"; missing {', '.join(missing)}" if missing else "")
                + (f"; unknown {', '.join(unknown)}" if unknown else "")
            )
        bad = {g: s for g, s in self.site_of_group.items() if not 0 <= s < self.sites}
        if bad:
            raise ValueError(f"columns: groups held by no site of 0..{self.sites - 1}: {bad}")

    def holder(self, group: str, patient: int) -> int:
        """The site that inputs `group` of patient number `patient`."""
        if self.partition is Partition.ROWS:
            return self.site_of_patient[patient]
        if self.partition is Partition.COLUMNS:
            return self.site_of_group[group]
        return 0

    def site_sizes(self, patients: int) -> tuple[int, ...]:
        """How many patients each site holds records of (columns: all of them, each)."""
        if self.partition is Partition.ROWS:
            return tuple(self.site_of_patient.count(s) for s in range(self.sites))
        if self.partition is Partition.COLUMNS:
            return (patients,) * self.sites
        return (patients,)

    def output_problem(self, output: str) -> str | None:
        """None when this deployment can reveal `output` (an `Output` value); else why not."""
        if output == "count_by_site" and self.partition is not Partition.ROWS:
            return f"output count_by_site needs partition: rows (this deployment is {self.partition.value})"
        return None

    def public(self) -> dict:
        """The deployment's public facts as JSON (not which site holds which patient)."""
        return {
            "partition": self.partition.value,
            "sites": self.sites,
            "site_of_group": dict(self.site_of_group),
            "local": self.local,
            "reveal_to": self.reveal_to,
        }

    @staticmethod
    def of_public(facts: Mapping) -> Holdings:
        """The inverse of `public`, as a party knows the deployment."""
        return Holdings(
            Partition(facts["partition"]),
            facts["sites"],
            (),
            facts["site_of_group"],
            facts["local"],
            facts["reveal_to"],
        )

    def patients_of(self, site: int) -> tuple[int, ...]:
        """Under `rows`, the patient numbers `site` holds, in population order."""
        return tuple(i for i, s in enumerate(self.site_of_patient) if s == site)


PATIENT_HELD = Holdings()  # today's deployment: party 0 holds every record
