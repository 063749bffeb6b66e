"""MPyC backend end to end: real party processes on loopback, answers checked by the oracle."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import mpyc_inprocess  # first: MPyC's runtime must not read pytest's command line
from backends.mpyc.vectorised import is_zero
from circuits.ir import AgeRange, And, ExamCount, Gender, HasCondition, Not, Or, Output, Query, Smoker
from circuits.oracle import cohort
from circuits.population import EXACT, Padding, encode
from harness.data import fhir, synthetic
from backends.mpyc.engine import MpycSpec
from harness.run.runner import CellRunner
from test_oracle import patients
from test_queryfile import trees

BROAD = Or(
    (
        And((Smoker(0), AgeRange(30, 70), ExamCount(57698, 1, 60))),
        HasCondition((55822004, 38341003, 15777000)),
        Not(Gender(1)),
    )
)


def run(tmp_path, protocol, parties, query, pop, timeout=120):
    cell = CellRunner(
        MpycSpec(engine="mpyc", protocol=protocol, parties=parties),
        query,
        pop,
        tmp_path / f"{protocol}-{parties}",
    )
    try:
        return cell.run("r0", timeout)
    finally:
        cell.close()


@pytest.mark.parametrize("parties", [3, 5, 7])
def test_vectorised_matches_oracle(tmp_path, parties):
    pop = synthetic.generate(40, seed=parties, padding=Padding(4, 6), truncate=True)
    o = run(tmp_path, "shamir", parties, Query(BROAD), pop)
    assert o.error is None and o.correct
    assert 0 < o.cohort_size < 40
    assert len(o.figures["bytes_by_party"]) == parties and all(b > 0 for b in o.figures["bytes_by_party"])


@pytest.mark.parametrize("output", [Output.ELIGIBLE, Output.COUNT])  # count_by_site: sites only
def test_both_output_modes_and_paper_loop(tmp_path, output):
    pop = synthetic.generate(12, seed=3, padding=Padding(3, 4), truncate=True)
    for protocol in ("shamir", "paper-loop"):
        o = run(tmp_path / output.value, protocol, 3, Query(BROAD, output), pop)
        assert o.error is None and o.correct, o.error


def test_exact_padding(tmp_path):
    pop = synthetic.generate(30, seed=5, padding=Padding("exact", "exact"))
    for protocol in ("shamir", "paper-loop"):
        o = run(tmp_path, protocol, 3, Query(And((Not(Smoker(1)), ExamCount(51990, 2, 120)))), pop)
        assert o.error is None and o.correct, o.error


def test_synthea_sample(tmp_path, synthea_dir):
    patients, errors = fhir.extract_dir(synthea_dir, dt.date(2021, 4, 1))
    assert not errors
    pop = encode(patients, Padding(16, 32))
    for protocol in ("shamir", "paper-loop"):
        o = run(tmp_path, protocol, 3, Query(BROAD), pop, timeout=300)
        assert o.error is None and o.correct, o.error
        assert o.cohort_size > 0


def test_explicit_bit_length_long_codes(tmp_path):
    """15-digit SNOMED codes next to 8-digit ones, with an explicit bit length."""
    pop = encode([synthetic_patient(368581000119106), synthetic_patient(55822004)], Padding(2, 2))
    cell = CellRunner(
        MpycSpec(engine="mpyc", protocol="paper-loop", parties=3, bit_length=64),
        Query(HasCondition((55822004,))),
        pop,
        tmp_path / "w",
    )
    o = cell.run("r0", 60)
    assert o.correct and o.cohort_size == 1


def synthetic_patient(code):
    from circuits.population import Patient

    return Patient(f"p{code}", 40, 1, 0, (code,), ((57698, 3),))


def test_tls_between_parties(tmp_path):
    pop = synthetic.generate(10, seed=9, padding=Padding(3, 4), truncate=True)
    cell = CellRunner(
        MpycSpec(engine="mpyc", protocol="shamir", parties=3, ssl=True), Query(BROAD), pop, tmp_path / "tls"
    )
    o = cell.run("r0", 120)
    cell.close()
    assert o.error is None and o.correct
    assert "connected via SSL" in (tmp_path / "tls" / "r0" / "party-0.log").read_text()


@pytest.mark.parametrize("protocol", ["shamir", "paper-loop"])
def test_codes_that_agree_modulo_powers_of_two_do_not_match(tmp_path, protocol):
    """A code differing from the query's by 2^k must not match, whatever the bit length."""
    from circuits.population import Patient

    target = 55822004
    people = [
        Patient(f"k{k}", 40, 1, 0, (target + (1 << k),), ((57698 + (1 << k), 3),))
        for k in (8, 12, 19, 24, 32, 40)
    ]
    people.append(Patient("hit", 40, 1, 0, (target,), ((57698, 3),)))
    pop = encode(people, Padding(1, 1))
    for query in (HasCondition((target,)), ExamCount(57698, 1, 12), ExamCount(57699, 1, 12)):
        o = run(tmp_path / type(query).__name__, protocol, 3, Query(query), pop)
        assert o.error is None and o.correct, (query, o.error)


@settings(max_examples=15, deadline=None)
@given(
    trees,
    patients,
    st.sampled_from([Output.ELIGIBLE, Output.COUNT]),
    st.booleans(),
    st.sampled_from(["shamir", "paper-loop"]),
)
def test_generated_trees_through_the_mpyc_lowerings(tmp_path_factory, tree, people, output, exact, protocol):
    """Random trees and patients through a secure engine (one party, in this process)."""
    pop = encode(people, Padding(EXACT, EXACT) if exact else Padding(4, 6))
    query = Query(tree, output)
    expected = cohort(query, pop)
    got = mpyc_inprocess.run(protocol, query, pop, tmp_path_factory.mktemp(protocol))
    assert got == (expected.count if output is Output.COUNT else expected.eligible.astype(int).tolist())


def test_the_private_zero_test_is_still_there():
    """`vectorised.is_zero` calls MPyC's private `_np_is_zero` (pyproject pins mpyc below 0.12):
    when an MPyC release drops or changes it, this fails before any run does.  The values
    are products far outside the type's bit length, which a public comparison would get wrong."""
    mpc = mpyc_inprocess.mpc
    secint = mpc.SecInt(16)
    x = secint.array(np.array([0, 7, -3, 0, 1 << 14]))
    got = mpc.run(mpc.output(is_zero(mpc, x * x * x * (1 << 15))))
    assert got.tolist() == [1, 0, 0, 1, 0]
