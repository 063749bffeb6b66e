"""harness.data.synthetic: the seeded numpy population generator."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from circuits.oracle import cohort
from circuits.population import ARRAYS, EMPTY, EXACT, Padding, PaddingOverflow, Patient, Population, encode
from circuits.queryfile import load_query
from harness.data.synthetic import SYNTHEA_R4, generate, measure_dir
from conftest import REPO

DATA = Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "synthea-r4"


def same(a: Population, b: Population) -> bool:
    return a.ids == b.ids and all(np.array_equal(getattr(a, f), getattr(b, f)) for f in ARRAYS)


@pytest.fixture(scope="module")
def big() -> Population:
    """200k patients with exact padding: the counts are the generated ones, uncapped."""
    return generate(200_000, seed=11, padding=Padding(EXACT, EXACT))


# ---- determinism and shape ------------------------------------------------------------


def test_same_seed_same_arrays() -> None:
    assert same(generate(5000, 3), generate(5000, 3))
    assert same(generate(2000, 3, Padding(EXACT, 32)), generate(2000, 3, Padding(EXACT, 32)))


def test_different_seed_differs() -> None:
    a, b = generate(5000, 3), generate(5000, 4)
    assert a.ids != b.ids
    for f in ("age", "conditions", "exam_codes", "exam_months"):
        assert not np.array_equal(getattr(a, f), getattr(b, f)), f


def test_ids_and_types() -> None:
    pop = generate(3, seed=9)
    assert pop.ids == ("syn-9-0", "syn-9-1", "syn-9-2")
    for f in ARRAYS:
        assert getattr(pop, f).dtype == np.int64, f
    assert len(generate(0)) == 0
    with pytest.raises(ValueError):
        generate(-1)


@pytest.mark.parametrize("padding", [Padding(16, 32), Padding(4, 8), Padding(1, 1), Padding(2, EXACT)])
def test_fixed_padding_shapes(padding: Padding) -> None:
    n = 20_000
    pop = generate(n, seed=1, padding=padding, truncate=True)
    c, e = pop.slots
    assert c == padding.conditions
    assert pop.conditions.shape == (n, c)
    assert pop.exam_codes.shape == pop.exam_months.shape == (n, e)
    assert pop.padding == padding
    assert pop.condition_counts.max() <= c
    assert pop.exam_counts.max() <= e
    if padding.exams == EXACT:
        assert e == pop.exam_counts.max()
    check_slots(pop)


def test_default_padding_holds_every_generated_patient() -> None:
    pop = generate(100_000, seed=7)  # no truncation needed: the generator stays within (16, 32)
    assert pop.truncated == 0 and pop.condition_counts.max() <= 16 and pop.exam_counts.max() <= 32


def test_over_a_bound_is_an_error_unless_truncating() -> None:
    with pytest.raises(PaddingOverflow, match="more than 8 exams .* raise padding.exams, or truncate"):
        generate(2000, seed=3, padding=Padding(EXACT, 8))
    with pytest.raises(PaddingOverflow, match="more than 2 active conditions"):
        generate(2000, seed=3, padding=Padding(2, EXACT))
    cut = generate(20_000, seed=5, padding=Padding(4, 8), truncate=True)
    drawn = generate(20_000, seed=5, padding=Padding(EXACT, EXACT))
    over = (drawn.condition_counts > 4) | (drawn.exam_counts > 8)
    assert cut.truncated == int(over.sum()) > 0
    assert cut.dropped == (
        int((drawn.condition_counts - 4).clip(0).sum()),
        int((drawn.exam_counts - 8).clip(0).sum()),
    )
    assert np.array_equal(cut.exam_counts, np.minimum(drawn.exam_counts, 8))
    assert np.array_equal(cut.exam_months, drawn.exam_months[:, :8])  # the most recent kept
    assert "lost" in cut.cut() and "oldest exam" in cut.cut()


def test_one_population_at_every_padding() -> None:
    """synthetic:N:seed is the same patients at every padding that holds them: the same
    cohort at conditions 8 and 16 when no patient has more than 8."""
    drawn = generate(80, seed=597, padding=Padding(EXACT, EXACT))
    assert drawn.condition_counts.max() == 8  # this seed's 80 patients fit 8 conditions
    q, _ = load_query(REPO / "configs" / "queries" / "five-criteria.yaml", False)
    at8 = generate(80, seed=597, padding=Padding(8, 32))
    at16 = generate(80, seed=597, padding=Padding(16, 32))
    assert np.array_equal(cohort(q, at8).eligible, cohort(q, at16).eligible)
    assert cohort(q, at8).count == 3
    assert np.array_equal(at8.conditions, at16.conditions[:, :8])


def test_exact_padding() -> None:
    pop = generate(20_000, seed=2, padding=Padding(EXACT, EXACT))
    assert pop.slots == (pop.condition_counts.max(), pop.exam_counts.max())
    assert pop.truncated == 0
    check_slots(pop)


def test_real_and_empty_slots(big: Population) -> None:
    check_slots(big)


def check_slots(pop: Population) -> None:
    c, e = pop.slots
    creal = np.arange(c) < pop.condition_counts[:, None]
    ereal = np.arange(e) < pop.exam_counts[:, None]
    assert (pop.conditions[creal] != EMPTY).all()  # no empty-slot code inside real slots
    assert (pop.conditions[~creal] == EMPTY).all()
    assert (pop.exam_codes[ereal] != EMPTY).all()
    assert (pop.exam_codes[~ereal] == EMPTY).all()
    assert (pop.exam_months[~ereal] == 0).all()
    assert (pop.exam_months >= 0).all()
    # conditions distinct per patient
    s = np.sort(np.where(creal, pop.conditions, -np.arange(c)[None, :] - 1), axis=1)
    assert (np.diff(s, axis=1) != 0).all()
    # exams most recent first, never before birth
    m = np.where(ereal, pop.exam_months, np.iinfo(np.int64).max)
    assert (np.diff(m, axis=1) >= 0).all()
    assert (pop.exam_months <= 12 * pop.age[:, None] + 11).all()
    assert set(np.unique(pop.exam_codes[ereal]).tolist()) <= set(SYNTHEA_R4["exam_codes"])
    assert set(np.unique(pop.conditions[creal]).tolist()) <= set(SYNTHEA_R4["condition_codes"])


def test_matches_encode_of_its_patients() -> None:
    """Turned back into Patients and encoded, a generated population is unchanged."""
    pop = generate(500, seed=8, padding=Padding(16, 40))
    people = [
        Patient(
            pop.ids[i],
            int(pop.age[i]),
            int(pop.gender[i]),
            int(pop.smoker[i]),
            tuple(int(x) for x in pop.conditions[i, : pop.condition_counts[i]]),
            tuple(
                (int(a), int(b))
                for a, b in zip(
                    pop.exam_codes[i, : pop.exam_counts[i]], pop.exam_months[i, : pop.exam_counts[i]]
                )
            ),
        )
        for i in range(len(pop))
    ]
    assert same(encode(people, Padding(16, 40), truncate=True), pop)


# ---- marginals ------------------------------------------------------------------------


def test_age(big: Population) -> None:
    bins = SYNTHEA_R4["age_bins"]
    total = sum(c for _, _, c in bins)
    mean = sum(c * (lo + hi - 1) / 2 for lo, hi, c in bins) / total
    assert abs(big.age.mean() - mean) < 0.5
    for lo, hi, c in bins:
        assert abs(((big.age >= lo) & (big.age < hi)).mean() - c / total) < 0.01, (lo, hi)


@pytest.mark.parametrize("field", ["gender", "smoker"])
def test_categories(big: Population, field: str) -> None:
    counts = np.array(SYNTHEA_R4[field])
    got = np.bincount(getattr(big, field), minlength=len(counts)) / len(big)
    assert np.abs(got - counts / counts.sum()).max() < 0.01


def test_counts(big: Population) -> None:
    cmean, cvar, _ = SYNTHEA_R4["conditions_per_patient"]
    emean, evar, emin, _ = SYNTHEA_R4["exams_per_patient"]
    assert abs(big.condition_counts.mean() / cmean - 1) < 0.03
    assert abs(big.condition_counts.var() / cvar - 1) < 0.15
    assert abs(big.exam_counts.mean() / emean - 1) < 0.03
    assert abs(big.exam_counts.var() / evar - 1) < 0.15
    assert big.exam_counts.min() >= emin


def test_exam_codes(big: Population) -> None:
    table = SYNTHEA_R4["exam_codes"]
    total = sum(table.values())
    real = np.arange(big.slots[1]) < big.exam_counts[:, None]
    codes, counts = np.unique(big.exam_codes[real], return_counts=True)
    got = dict(zip(codes.tolist(), (counts / counts.sum()).tolist()))
    top = max(table, key=table.get)
    assert abs(got[top] - table[top] / total) < 0.01
    for code, c in table.items():
        assert abs(got.get(code, 0.0) - c / total) < 0.01, code


def test_condition_prevalence(big: Population) -> None:
    table = SYNTHEA_R4["condition_codes"]
    for code, c in list(table.items())[:8]:  # the common codes, within 10% of the sample's share
        share = (big.conditions == code).any(axis=1).mean()
        assert abs(share / (c / SYNTHEA_R4["patients"]) - 1) < 0.10, code


def test_exam_months_follow_the_sample(big: Population) -> None:
    real = np.arange(big.slots[1]) < big.exam_counts[:, None]
    months = big.exam_months[real]
    bins = SYNTHEA_R4["months_bins"]
    assert months.max() < bins[-1][1]
    # the share of recent exams (most of them, in Synthea) is near the sample's;
    # old exams are rarer than in the sample, as they cannot predate a young patient's birth
    total = sum(c for _, _, c in bins)
    recent = sum(c for lo, hi, c in bins if hi <= 120) / total
    assert abs((months < 120).mean() - recent) < 0.06


@pytest.mark.skipif(not DATA.is_dir(), reason=f"shared Synthea sample not found: {DATA}")
def test_embedded_table_is_the_measured_one() -> None:
    assert measure_dir(DATA) == SYNTHEA_R4
