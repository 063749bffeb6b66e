from __future__ import annotations

import pytest

from circuits.ir import AgeRange, And, ExamCount, Gender, HasCondition, Not, Or, Output, Query, Smoker, leaves
from circuits.ir import normalise, render, to_plain


def test_tree_is_immutable_and_hashable():
    a = And((Smoker(0), Not(Gender(0))))
    b = And((Smoker(0), Not(Gender(0))))
    assert a == b and hash(a) == hash(b)
    assert {a: 1}[b] == 1
    with pytest.raises(AttributeError):
        a.children = ()  # type: ignore[misc]


def test_query_hash_ignores_name_not_output():
    root = AgeRange(12, 24)
    assert Query(root, name="x").ir_hash == Query(root, name="y").ir_hash
    assert Query(root).ir_hash != Query(root, Output.COUNT).ir_hash
    assert Query(root).ir_hash != Query(AgeRange(12, 25)).ir_hash


@pytest.mark.parametrize(
    "make",
    [
        lambda: AgeRange(12, 13),
        lambda: AgeRange(30, 20),
        lambda: AgeRange(12, 500),
        lambda: Gender(4),
        lambda: Smoker(-1),
        lambda: Gender(True),
        lambda: HasCondition(()),
        lambda: HasCondition((55822004, 55822004)),
        lambda: ExamCount(57698, 0, 10),
        lambda: ExamCount(57698, 1, -1),
        lambda: And(()),
    ],
)
def test_invalid_nodes(make):
    with pytest.raises(ValueError):
        make()


def test_normalise():
    t = And((And((Smoker(0), Gender(1))), Not(Not(AgeRange(1, 9))), Or((Smoker(2),))))
    assert normalise(t) == And((Smoker(0), Gender(1), AgeRange(1, 9), Smoker(2)))


def test_leaves_and_render():
    t = Or((Not(HasCondition((55822004,))), ExamCount(57698, 2, 12)))
    assert [type(x) for x in leaves(t)] == [HasCondition, ExamCount]
    text = render(t)
    assert "ANY" in text and "NOT" in text and "57698-3" in text


def test_to_plain_is_canonical_json():
    t = And((Smoker(0), HasCondition((55822004, 38341003))))
    assert to_plain(t) == [
        "And",
        {"children": [["Smoker", {"code": 0}], ["HasCondition", {"codes": [55822004, 38341003]}]]},
    ]


def test_from_plain_inverts_to_plain():
    from circuits.ir import from_plain

    t = Or((Not(HasCondition((55822004, 38341003))), And((ExamCount(57698, 2, 12), Smoker(1)))))
    assert from_plain(to_plain(t)) == t
