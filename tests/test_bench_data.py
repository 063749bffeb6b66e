"""Micro-benchmarks of the data sources: FHIR extraction and synthetic generation.

Rates (bundles/s, patients/s) go to `benchmark.extra_info`; nothing here
asserts a time.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from circuits.population import Padding
from harness.data.fhir import extract_dir
from harness.data.synthetic import generate

DATA = Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "synthea-r4"
AS_OF = dt.date(2021, 4, 1)
N_GENERATED = 10**6


def _best_seconds(benchmark) -> float | None:
    stats = getattr(benchmark, "stats", None)  # None when benchmarks are disabled
    return stats.stats.min if stats is not None else None


@pytest.mark.benchmark(group="data")
@pytest.mark.skipif(not DATA.is_dir(), reason=f"shared Synthea sample not found: {DATA}")
def test_bench_extract_shared_bundles(benchmark) -> None:
    bundles = len(list(DATA.glob("*.json")))
    patients, errors = benchmark.pedantic(
        extract_dir, args=(DATA, AS_OF), rounds=3, iterations=1, warmup_rounds=0
    )
    assert errors == [] and len(patients) == bundles
    megabytes = sum(f.stat().st_size for f in DATA.glob("*.json")) / 1e6
    benchmark.extra_info.update(bundles=bundles, megabytes=round(megabytes, 1))
    best = _best_seconds(benchmark)
    if best:
        benchmark.extra_info["bundles_per_s"] = round(bundles / best, 1)
        benchmark.extra_info["mb_per_s"] = round(megabytes / best, 1)


@pytest.mark.benchmark(group="data")
def test_bench_generate(benchmark) -> None:
    padding = Padding(16, 32)
    pop = benchmark.pedantic(
        generate, args=(N_GENERATED, 0, padding), rounds=3, iterations=1, warmup_rounds=0
    )
    assert len(pop) == N_GENERATED and pop.slots == (16, 32)
    benchmark.extra_info.update(patients=N_GENERATED, padding=padding.label())
    best = _best_seconds(benchmark)
    if best:
        benchmark.extra_info["patients_per_s"] = round(N_GENERATED / best)
