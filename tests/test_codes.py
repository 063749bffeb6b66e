from __future__ import annotations

import pytest

from circuits import codes


@pytest.mark.parametrize("code", [68496003, 410429000, 59621000, 55822004, 38341003, 368581000119106])
def test_valid_snomed(code):
    assert codes.snomed_valid(code)


@pytest.mark.parametrize("code", [5582004, 55822005, 12, 0])
def test_invalid_snomed(code):
    assert not codes.snomed_valid(code)


def test_listing1_typo_suggests_hyperlipidemia():
    assert codes.snomed_suggestion(5582004) == 55822004


@pytest.mark.parametrize(
    "text,body",
    [
        ("57698-3", 57698),
        ("58410-2", 58410),
        ("51990-0", 51990),
        ("24323-8", 24323),
        ("72166-2", 72166),
        (57698, 57698),
        ("57698", 57698),
    ],
)
def test_loinc(text, body):
    assert codes.parse_loinc(text) == body


def test_loinc_bad_check_digit_names_fix():
    with pytest.raises(ValueError, match="did you mean 57698-3"):
        codes.parse_loinc("57698-4")


@pytest.mark.parametrize("bad", ["abc", "-3", "57698-", "0", "12345678"])
def test_loinc_garbage(bad):
    with pytest.raises(ValueError):
        codes.parse_loinc(bad)


def test_enums():
    assert codes.parse_enum("Female", codes.GENDERS, "gender") == 1
    assert codes.parse_enum(3, codes.SMOKER_STATES, "smoker") == 3
    with pytest.raises(ValueError):
        codes.parse_enum(True, codes.GENDERS, "gender")
    with pytest.raises(ValueError):
        codes.parse_enum(4, codes.GENDERS, "gender")
