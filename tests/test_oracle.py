from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from circuits.ir import AgeRange, And, ExamCount, Gender, HasCondition, Not, Or, Query, Smoker
from circuits.oracle import cohort, evaluate
from circuits.population import EXACT, Padding, encode
from conftest import patient
from test_queryfile import trees


def chosen(node, pop):
    return {pid for pid, ok in zip(pop.ids, evaluate(node, pop)) if ok}


def test_age_bounds_are_exclusive(boundary_population):
    got = chosen(AgeRange(12, 24), boundary_population)
    assert {"age13", "age23"} <= got and not {"age12", "age24"} & got


def test_gender_and_smoker(boundary_population):
    assert chosen(Gender(0), boundary_population) == {"male"}
    assert chosen(Not(Gender(0)), boundary_population) == set(boundary_population.ids) - {"male"}
    assert chosen(Smoker(2), boundary_population) == {"former"}
    assert chosen(Smoker(3), boundary_population) == {"smk-unknown"}


def test_condition_any_of(boundary_population):
    assert chosen(HasCondition((55822004,)), boundary_population) == {"hyperlipid", "hyper+polyp"}
    assert chosen(HasCondition((68496003, 410429000)), boundary_population) == {"hyper+polyp", "polyp"}


def test_exam_window_is_inclusive(boundary_population):
    got = chosen(ExamCount(57698, 2, 200), boundary_population)
    assert got == {"lipid-2-at-200", "lipid-4"}
    assert chosen(ExamCount(57698, 1, 1), boundary_population) == {"lipid-1-cbc-1", "lipid-4"}
    assert chosen(ExamCount(58410, 1, 0), boundary_population) == set()
    assert chosen(ExamCount(57698, 4, 3), boundary_population) == {"lipid-4"}


def test_padding_slots_never_match(boundary_population):
    # Empty slots hold code 0 and month 0: a query must not count them.
    assert boundary_population.exam_codes[boundary_population.ids.index("none")].tolist() == [0] * 4
    assert chosen(ExamCount(57698, 1, 0), boundary_population) == {"lipid-4"}


def test_combinators(boundary_population):
    t = Or((Gender(0), And((Smoker(1), Not(AgeRange(20, 40))))))
    assert chosen(t, boundary_population) == {"male"}
    assert cohort(Query(Not(t)), boundary_population).count == len(boundary_population) - 1


def scalar(node, p) -> bool:
    """A per-patient reference evaluator, written independently of the numpy oracle."""
    if isinstance(node, AgeRange):
        return node.min_exclusive < p.age < node.max_exclusive
    if isinstance(node, Gender):
        return p.gender == node.code
    if isinstance(node, Smoker):
        return p.smoker == node.code
    if isinstance(node, HasCondition):
        return any(c in node.codes for c in p.conditions)
    if isinstance(node, ExamCount):
        return sum(c == node.loinc and m <= node.within_months for c, m in p.exams) >= node.at_least
    if isinstance(node, Not):
        return not scalar(node.child, p)
    if isinstance(node, And):
        return all(scalar(c, p) for c in node.children)
    return any(scalar(c, p) for c in node.children)


patients = st.lists(
    st.builds(
        patient,
        st.uuids().map(str),
        st.integers(0, 110),
        st.integers(0, 3),
        st.integers(0, 3),
        st.lists(st.sampled_from([55822004, 38341003, 68496003, 410429000]), max_size=4, unique=True).map(
            tuple
        ),
        st.lists(
            st.tuples(st.sampled_from([57698, 58410, 51990, 2345]), st.integers(0, 300)), max_size=6
        ).map(tuple),
    ),
    min_size=1,
    max_size=12,
)


@settings(max_examples=200, deadline=None)
@given(trees, patients, st.booleans())
def test_oracle_matches_scalar_reference(tree, people, exact):
    pop = encode(people, Padding(EXACT, EXACT) if exact else Padding(4, 6))
    assert evaluate(tree, pop).tolist() == [scalar(tree, p) for p in people]


def test_encode_keeps_most_recent_exams_when_truncating():
    people = [patient("a", exams=((57698, 30), (57698, 1), (57698, 10)))]
    pop = encode(people, Padding(2, 2), truncate=True)
    assert pop.exam_months.tolist() == [[1, 10]] and pop.truncated == 1
    assert np.array_equal(pop.exam_counts, [2])


def test_count_by_site_and_what_each_party_learns(boundary_population):
    from circuits.holdings import Holdings, Partition
    from circuits.ir import Output

    n = len(boundary_population)
    rows = Holdings(Partition.ROWS, 3, tuple(i % 3 for i in range(n)))
    result = cohort(Query(Not(Gender(0))), boundary_population)  # all but "male" (patient 4)
    assert result.count_by_site(rows) == [6, 5, 6]
    assert result.learnt(Output.COUNT_BY_SITE, rows) == [[6, 5, 6]] * 3
    assert result.learnt(Output.COUNT, rows) == [17] * 3
    bits = result.learnt(Output.ELIGIBLE, rows)
    assert [len(b) for b in bits] == [6, 6, 6] and bits[1][1] == 0  # patient 4 is site 1's second
    cols = Holdings(Partition.COLUMNS, 3, site_of_group={"demographics": 2, "conditions": 0, "exams": 1})
    assert result.learnt(Output.ELIGIBLE, Holdings(reveal_to=0), parties=3)[1:] == [None, None]
    learnt = result.learnt(Output.ELIGIBLE, Holdings(**{**cols.__dict__, "reveal_to": 2}))
    assert learnt[:2] == [None, None] and sum(learnt[2]) == 17
    with pytest.raises(ValueError, match="partition: rows"):
        result.count_by_site(cols)
    assert cols.output_problem("count_by_site") and rows.output_problem("count_by_site") is None
