from __future__ import annotations

import json

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from circuits.errors import InputError
from circuits.ir import AgeRange, And, ExamCount, Gender, HasCondition, Not, Or, Output, Smoker
from circuits.queryfile import dump_native, load_query, parse_query
from conftest import REPO

LISTING1 = REPO / "configs" / "queries" / "paper-listing1.json"


def test_listing1_loads_with_a_warning_naming_the_likely_code():
    q, warnings = load_query(LISTING1)
    assert q.root == And(
        (Smoker(0), Not(Gender(0)), AgeRange(12, 24), HasCondition((5582004,)), ExamCount(57698, 2, 200))
    )
    assert q.output is Output.ELIGIBLE
    assert len(warnings) == 1
    assert "restrictions[3].value" in warnings[0] and "55822004" in warnings[0]


def test_listing1_strict_is_an_error():
    with pytest.raises(InputError, match=r"restrictions\[3\]\.value.*55822004"):
        load_query(LISTING1, strict=True)


def test_paper_inverse_and_loinc_forms():
    q, _ = parse_query(
        {
            "restrictions": [
                {
                    "restriction_type": "NUMBEREXAMS",
                    "nr_exams": 1,
                    "type": "58410-2",
                    "nr_months": 6,
                    "inverse": True,
                }
            ]
        },
        "q.json",
    )
    assert q.root == Not(ExamCount(58410, 1, 6))


NATIVE = """
name: demo
output: count
criteria:
  all:
    - smoker: never
    - not: {gender: male}
    - age: {min_exclusive: 40, max_exclusive: 70}
    - any:
        - condition: [55822004, 38341003]
        - exams: {loinc: 57698-3, at_least: 2, within_months: 24}
"""


def test_native_yaml(tmp_path):
    p = tmp_path / "demo.yaml"
    p.write_text(NATIVE)
    q, warnings = load_query(p)
    assert not warnings and q.name == "demo" and q.output is Output.COUNT
    assert q.root == And(
        (
            Smoker(0),
            Not(Gender(0)),
            AgeRange(40, 70),
            Or((HasCondition((55822004, 38341003)), ExamCount(57698, 2, 24))),
        )
    )
    assert parse_query(dump_native(q), "x")[0] == q


def test_native_json_equals_yaml(tmp_path):
    p = tmp_path / "demo.json"
    p.write_text(json.dumps(yaml.safe_load(NATIVE)))
    assert load_query(p)[0] == parse_query(yaml.safe_load(NATIVE), "x")[0]


@pytest.mark.parametrize(
    "data,where",
    [
        (
            {"restrictions": [{"restriction_type": "AGE", "min_age": "x", "max_age": 3}]},
            "restrictions[0].min_age",
        ),
        ({"restrictions": [{}, {"restriction_type": "SMOKER", "value": 9}]}, "restrictions[0]"),
        ({"restrictions": [{"restriction_type": "SMOKER", "value": 9}]}, "restrictions[0].value"),
        ({"restrictions": [{"restriction_type": "FOO", "value": 1}]}, "restrictions[0]"),
        (
            {"restrictions": [{"restriction_type": "GENDER", "value": 1, "invers": True}]},
            "restrictions[0].invers",
        ),
        (
            {
                "restrictions": [
                    {"restriction_type": "NUMBEREXAMS", "nr_exams": 1, "type": "57698-1", "nr_months": 3}
                ]
            },
            "restrictions[0].type",
        ),
        ({"restrictions": [{"restriction_type": "AGE", "min_age": 30, "max_age": 20}]}, "restrictions[0]"),
        ({"restrictions": []}, "restrictions"),
        ({"criteria": {"all": [{"age": {"min_exclusive": 1}}]}}, "criteria.all[0].age.max_exclusive"),
        ({"criteria": {"all": [{"agee": 1}]}}, "criteria.all[0]"),
        ({"criteria": {"not": {"gender": "robot"}}}, "criteria.not.gender"),
        ({"criteria": {"any": [{"condition": 5582004}]}}, "criteria.any[0].condition"),
        (
            {"criteria": {"exams": {"loinc": 57698, "at_least": 0, "within_months": 1}}},
            "criteria.exams.at_least",
        ),
        ({"criteria": {"smoker": 0}, "output": "bits"}, "output"),
        ([1, 2], ""),
    ],
)
def test_errors_name_the_field(data, where):
    with pytest.raises(InputError) as e:
        parse_query(data, "q.json")
    assert e.value.source == "q.json" and e.value.location == where
    assert str(e.value).startswith("q.json")


def test_syntax_errors_name_the_line(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("criteria:\n  all: [\n")
    with pytest.raises(InputError, match="line"):
        load_query(bad)
    badj = tmp_path / "bad.json"
    badj.write_text('{"restrictions": [}')
    with pytest.raises(InputError, match="line 1"):
        load_query(badj)
    with pytest.raises(InputError, match="cannot read"):
        load_query(tmp_path / "missing.json")


VALID_CONDITIONS = [55822004, 38341003, 68496003, 410429000, 59621000, 368581000119106]
leaf = st.one_of(
    st.builds(lambda a, w: AgeRange(a, a + w), st.integers(-1, 140), st.integers(2, 11)),
    st.builds(Gender, st.integers(0, 3)),
    st.builds(Smoker, st.integers(0, 3)),
    st.builds(
        lambda cs: HasCondition(tuple(cs)),
        st.lists(st.sampled_from(VALID_CONDITIONS), min_size=1, max_size=3, unique=True),
    ),
    st.builds(
        ExamCount, st.sampled_from([57698, 58410, 51990, 2345]), st.integers(1, 5), st.integers(0, 300)
    ),
)
trees = st.recursive(
    leaf,
    lambda kids: st.one_of(
        st.builds(Not, kids),
        st.builds(lambda cs: And(tuple(cs)), st.lists(kids, min_size=1, max_size=3)),
        st.builds(lambda cs: Or(tuple(cs)), st.lists(kids, min_size=1, max_size=3)),
    ),
    max_leaves=8,
)


@settings(max_examples=200, deadline=None)
@given(trees, st.sampled_from([o for o in Output if o is not Output.STATS]))
def test_native_round_trip(tree, output):
    from circuits.ir import Query

    q = Query(tree, output, "rt")
    back, warnings = parse_query(json.loads(json.dumps(dump_native(q))), "rt.json")
    assert back == q and back.ir_hash == q.ir_hash and not warnings


def test_count_by_site_output():
    q, _ = parse_query({"output": "count_by_site", "criteria": {"smoker": 0}}, "q.yaml")
    assert q.output is Output.COUNT_BY_SITE
    paper = {"restrictions": [{"restriction_type": "SMOKER", "value": 0}], "output": "count_by_site"}
    assert parse_query(paper, "q.json")[0].output is Output.COUNT_BY_SITE
