"""Which site holds each patient under a `rows` deployment: round-robin, random:SEED or provider.

`provider` groups patients by their main provider (on FHIR data, the Organization
that served most of the patient's Encounters, ties to the smallest reference) and
deals the providers to the sites largest first (then by reference), each to the
site that holds the fewest patients so far (ties to the lowest site): a stable rule
that keeps a provider's patients together and allows unequal site sizes.  Patients
with no provider are dealt round-robin and counted.  Generated data has no
Encounters: its providers are drawn from `SYNTHEA_PROVIDERS`, the provider sizes
measured once from the shared Synthea sample (see the README's "Deployments").
"""

from __future__ import annotations

import json
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from circuits.population import Patient, write_jsonl

SYNTHEA_PROVIDERS: dict = {
    "source": "../shared/data/synthea-r4 (60 patients): each patient's main provider "
    "(`main_provider`); patients per provider, largest first",
    "patients": 60,
    "sizes": (4, 3, 3, 3, 3, 3, 3, 3, 3, 2, 2, 2, 2, 2, 2, 2) + (1,) * 18,
}

_RULE = re.compile(r"^(round-robin|provider|random:(\d+))$")


def valid_rule(rule: str) -> bool:
    return _RULE.match(rule) is not None


@dataclass(frozen=True)
class Assignment:
    """The site of each patient, in population order, and how many the fallback placed."""

    site_of_patient: tuple[int, ...]
    fallback: int = 0

    def sizes(self, sites: int) -> tuple[int, ...]:
        return tuple(self.site_of_patient.count(s) for s in range(sites))


def place(rule: str, n: int, sites: int, providers: Callable[[], Sequence[str | None]]) -> Assignment:
    """n patients at `sites` by `rule` (see `valid_rule`); `providers` gives each one's, for `provider`."""
    if rule == "round-robin":
        return round_robin(n, sites)
    if rule.startswith("random:"):
        return random_sites(n, sites, int(rule.removeprefix("random:")))
    return by_provider(providers(), sites)


def round_robin(n: int, sites: int) -> Assignment:
    return Assignment(tuple(i % sites for i in range(n)))


def random_sites(n: int, sites: int, seed: int) -> Assignment:
    rng = np.random.default_rng(seed)
    return Assignment(tuple(int(s) for s in rng.integers(0, sites, n)))


def by_provider(providers: Sequence[str | None], sites: int) -> Assignment:
    """Patients grouped by provider, providers dealt to the least-filled site, largest first."""
    counts = Counter(p for p in providers if p is not None)
    load = [0] * sites
    site_of: dict[str, int] = {}
    for provider, size in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])):
        site = min(range(sites), key=lambda s: (load[s], s))
        site_of[provider] = site
        load[site] += size
    out, fallback = [], 0
    for p in providers:
        if p is None:
            out.append(fallback % sites)
            fallback += 1
        else:
            out.append(site_of[p])
    return Assignment(tuple(out), fallback)


def measure(providers: dict[str, str | None]) -> tuple[int, ...]:
    """Patients per provider, largest first (`SYNTHEA_PROVIDERS["sizes"]` from `bundle_providers`)."""
    return tuple(sorted(Counter(p for p in providers.values() if p is not None).values(), reverse=True))


def generated_providers(n: int, seed: int) -> list[str | None]:
    """Providers for n generated patients, shaped like the Synthea sample's: as many
    providers per patient, with weights cycling through its provider sizes."""
    sizes = SYNTHEA_PROVIDERS["sizes"]
    k = max(1, round(n * len(sizes) / SYNTHEA_PROVIDERS["patients"]))
    weights = np.array([sizes[i % len(sizes)] for i in range(k)], dtype=float)
    rng = np.random.default_rng([seed, 14])
    return [f"provider-{int(i):06d}" for i in rng.choice(k, size=n, p=weights / weights.sum())]


def main_provider(bundle: dict) -> str | None:
    """The serviceProvider reference of most of a bundle's Encounters (None: no Encounter names one)."""
    counts: Counter[str] = Counter()
    for entry in bundle.get("entry") or ():
        r = entry.get("resource") if isinstance(entry, dict) else None
        if isinstance(r, dict) and r.get("resourceType") == "Encounter":
            ref = (r.get("serviceProvider") or {}).get("reference")
            if isinstance(ref, str):
                counts[ref] += 1
    if not counts:
        return None
    top = max(counts.values())
    return min(ref for ref, c in counts.items() if c == top)


def bundle_providers(directory: Path) -> dict[str, str | None]:
    """Patient id -> main provider, for every readable bundle of a directory (or one file)."""
    files = [directory] if directory.is_file() else sorted(directory.glob("*.json"), key=lambda f: f.name)
    out: dict[str, str | None] = {}
    for f in files:
        try:
            bundle = json.loads(f.read_bytes())
        except (OSError, ValueError):
            continue  # reported by the extraction
        patient = next(
            (
                e["resource"]
                for e in bundle.get("entry") or ()
                if isinstance(e, dict) and (e.get("resource") or {}).get("resourceType") == "Patient"
            ),
            None,
        )
        if patient is not None and patient.get("id") not in out:
            out[str(patient.get("id"))] = main_provider(bundle)
    return out


def write_sites(directory: Path, patients: Sequence[Patient], rule: str, sites: int, out: Path) -> Assignment:
    """`patients` (extracted from `directory`) split by `rule`: `out`/site-I.jsonl for each
    site and `out`/sites.json, the site map (patient id -> site, and the sizes)."""
    found = bundle_providers(directory) if rule == "provider" else {}
    placed = place(rule, len(patients), sites, lambda: [found.get(p.id) for p in patients])
    out.mkdir(parents=True, exist_ok=True)
    for site in range(sites):
        write_jsonl(
            (p for p, s in zip(patients, placed.site_of_patient) if s == site), out / f"site-{site}.jsonl"
        )
    site_map = {
        "assign": rule,
        "sites": sites,
        "site_sizes": list(placed.sizes(sites)),
        "fallback": placed.fallback,
        "site_of_patient": {p.id: s for p, s in zip(patients, placed.site_of_patient)},
    }
    (out / "sites.json").write_text(json.dumps(site_map, indent=1) + "\n")
    return placed
