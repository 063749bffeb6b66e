"""The data-locality pass: what each deployment evaluates in the clear, and that the
split, evaluated in the clear, is the oracle's answer for any tree and any holdings."""

from __future__ import annotations

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from circuits.holdings import GROUPS, PATIENT_HELD, Holdings, Partition
from circuits.ir import AgeRange, And, ExamCount, Gender, HasCondition, LocalBit, Not, Or, Output, Query
from circuits.ir import Smoker, from_plain, to_plain
from circuits.locality import SECURE_NONE, SECURE_SUM, SECURE_TREE, split
from circuits.oracle import cohort
from test_queryfile import trees

FIVE = And((AgeRange(40, 66), Gender(1), Smoker(0), HasCondition((44054006,)), ExamCount(4548, 2, 12)))
COLUMNS = Holdings(Partition.COLUMNS, 3, site_of_group={"demographics": 0, "conditions": 1, "exams": 2})


def test_patient_and_off_keep_the_whole_tree_secure(boundary_population):
    q = Query(FIVE, Output.COUNT)
    off = Holdings(Partition.ROWS, 3, (0,) * len(boundary_population), local=False)
    for holdings in (PATIENT_HELD, off):
        s = split(q, holdings)
        assert s.secure == FIVE and s.local == () and s.mode == SECURE_TREE and s.local_nodes == 0


def test_private_criteria_keep_the_whole_tree_secure_under_every_partition(boundary_population):
    """The record's `secure` and `local_nodes` of a private cell: no site knows the constants."""
    rows = Holdings(Partition.ROWS, 3, (0,) * len(boundary_population))
    for holdings in (rows, COLUMNS):
        s = split(Query(FIVE, Output.COUNT), holdings, private=True)
        assert s.secure == FIVE and s.mode == SECURE_TREE and s.local_nodes == 0


def test_rows_count_is_a_sum_and_eligible_needs_nothing_secure(boundary_population):
    rows = Holdings(Partition.ROWS, 3, tuple(i % 3 for i in range(len(boundary_population))))
    count = split(Query(FIVE, Output.COUNT), rows)
    assert count.mode == SECURE_SUM and count.secure == LocalBit(0) and count.local_nodes == 6
    assert split(Query(FIVE, Output.ELIGIBLE), rows).mode == SECURE_NONE
    pop = boundary_population
    per_site = [int(count.local_bits(pop.take(rows.patients_of(s)), s).sum()) for s in range(3)]
    assert sum(per_site) == cohort(Query(FIVE, Output.COUNT), pop).count


def test_columns_leave_one_bit_per_site_and_the_and_secure():
    s = split(Query(FIVE), COLUMNS)
    assert s.secure == And((LocalBit(0), LocalBit(1), LocalBit(2)))
    assert [p.site for p in s.local] == [0, 1, 2] and s.local[0].node == And(FIVE.children[:3])
    assert s.raw_groups() == () and s.parts_of(0) == (0,) and s.local_nodes == 6
    one_site = split(Query(And((Gender(1), Smoker(0)))), COLUMNS)
    assert one_site.secure == LocalBit(0) and one_site.mode == SECURE_TREE


def test_a_mixed_subtree_is_split_below_its_combinator():
    tree = Or((Not(And((Gender(0), HasCondition((1,))))), ExamCount(4548, 1, 3)))
    s = split(Query(tree), COLUMNS)
    assert s.secure == Or((LocalBit(0), Not(And((LocalBit(1), LocalBit(2))))))
    assert from_plain(to_plain(s.secure)) == s.secure


@st.composite
def holdings(draw, patients: int) -> Holdings:
    sites = draw(st.integers(1, 4))
    local = draw(st.booleans())
    if draw(st.booleans()):
        at = tuple(draw(st.lists(st.integers(0, sites - 1), min_size=patients, max_size=patients)))
        return Holdings(Partition.ROWS, sites, at, local=local)
    groups = {g: draw(st.integers(0, sites - 1)) for g in GROUPS}
    return Holdings(Partition.COLUMNS, sites, site_of_group=groups, local=local)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(tree=trees, data=st.data())
def test_the_split_evaluates_to_the_oracle(boundary_population, tree, data):
    pop = boundary_population  # read only: the same for every example
    h = data.draw(holdings(len(pop)))
    s = split(Query(tree), h)
    assert np.array_equal(s.evaluate(pop), cohort(Query(tree), pop).eligible)
