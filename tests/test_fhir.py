"""harness.data.fhir: extraction of the paper's fields from FHIR R4 bundles.

The expected values for the shared Synthea bundles were read by hand from the
JSON with jq (Patient, 72166-2 Observations, Conditions, DiagnosticReports),
not produced by the extractor.
"""

from __future__ import annotations

import datetime as dt
import json
import pickle
from pathlib import Path

import pytest

from harness.data.fhir import BundleError, extract_bundle, extract_dir

DATA = Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "synthea-r4"
AS_OF = dt.date(2021, 4, 1)
needs_data = pytest.mark.skipif(not DATA.is_dir(), reason=f"shared Synthea sample not found: {DATA}")

NEVER, CURRENT, FORMER = "266919005", "449868002", "8517006"


# ---- hand-built bundles ---------------------------------------------------------------


def bundle(*resources: dict) -> dict:
    return {
        "resourceType": "Bundle",
        "type": "collection",
        "entry": [{"fullUrl": f"urn:uuid:{i}", "resource": r} for i, r in enumerate(resources)],
    }


def patient(birth: str | None = "1980-06-15", gender: str | None = "female", pid: str = "p1") -> dict:
    p = {"resourceType": "Patient", "id": pid}
    if birth is not None:
        p["birthDate"] = birth
    if gender is not None:
        p["gender"] = gender
    return p


def smoking(when: str | None, value: str, issued: str | None = None) -> dict:
    r = {
        "resourceType": "Observation",
        "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "72166-2"}]},
        "valueCodeableConcept": {"coding": [{"system": "http://snomed.info/sct", "code": value}]},
    }
    if when is not None:
        r["effectiveDateTime"] = when
    if issued is not None:
        r["issued"] = issued
    return r


def condition(
    code: str,
    status: str = "active",
    verification: str = "confirmed",
    onset: str | None = "2000-01-01T00:00:00+00:00",
) -> dict:
    r = {
        "resourceType": "Condition",
        "clinicalStatus": {
            "coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-clinical", "code": status}]
        },
        "verificationStatus": {
            "coding": [
                {"system": "http://terminology.hl7.org/CodeSystem/condition-ver-status", "code": verification}
            ]
        },
        "code": {"coding": [{"system": "http://snomed.info/sct", "code": code}]},
    }
    if onset is not None:
        r["onsetDateTime"] = onset
    return r


def report(loinc: str, when: str | None, system: str = "http://loinc.org") -> dict:
    r = {
        "resourceType": "DiagnosticReport",
        "status": "final",
        "code": {"coding": [{"system": system, "code": loinc}]},
    }
    if when is not None:
        r["effectiveDateTime"] = when
    return r


def extract(*resources: dict, as_of: dt.date = AS_OF):
    return extract_bundle(bundle(*resources), as_of, Path("test.json"))


# ---- age ------------------------------------------------------------------------------


def test_age_birthday_on_reference_date() -> None:
    assert extract(patient("1980-04-01")).age == 41


def test_age_birthday_one_day_after_reference_date() -> None:
    assert extract(patient("1980-04-02")).age == 40


def test_age_born_on_reference_date_is_zero() -> None:
    assert extract(patient("2021-04-01")).age == 0


def test_born_after_reference_date_is_an_error() -> None:
    with pytest.raises(BundleError) as e:
        extract(patient("2021-04-02"))
    assert e.value.field == "entry[0].resource.birthDate"
    assert "after the reference date" in e.value.problem


def test_age_leap_day_birthday() -> None:
    assert extract(patient("2000-02-29"), as_of=dt.date(2021, 2, 28)).age == 20
    assert extract(patient("2000-02-29"), as_of=dt.date(2021, 3, 1)).age == 21


def test_datetime_reference_date_is_taken_as_its_date() -> None:
    assert extract(patient("1980-04-01"), as_of=dt.datetime(2021, 4, 1, 12, 0)).age == 41


# ---- gender ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "gender, code", [("male", 0), ("female", 1), ("other", 2), ("unknown", 3), (None, 3)]
)
def test_gender_codes(gender, code) -> None:
    assert extract(patient(gender=gender)).gender == code


def test_invalid_gender_is_an_error() -> None:
    with pytest.raises(BundleError) as e:
        extract(condition("38341003"), patient(gender="M"))
    assert e.value.field == "entry[1].resource.gender"


# ---- smoking status -------------------------------------------------------------------


@pytest.mark.parametrize(
    "observations, code",
    [
        pytest.param(
            [
                smoking("2019-05-01T10:00:00+00:00", FORMER),
                smoking("2020-05-01T10:00:00+00:00", CURRENT),
                smoking("2010-05-01T10:00:00+00:00", NEVER),
            ],
            1,
            id="the latest observation wins whatever the entry order",
        ),
        pytest.param(
            [smoking("2019-05-01T10:00:00+00:00", NEVER), smoking("2021-04-02T00:00:00+00:00", CURRENT)],
            0,
            id="an observation after the reference date is ignored",
        ),
        pytest.param(
            [smoking("2019-05-01T10:00:00+00:00", NEVER), smoking("2021-04-01T23:00:00+00:00", FORMER)],
            2,
            id="an observation on the reference date counts",
        ),
        pytest.param(
            [
                smoking("2019-05-01T10:00:00+00:00", NEVER),
                smoking(None, FORMER, issued="2020-01-01T00:00:00.123+00:00"),
            ],
            2,
            id="without effectiveDateTime, issued",
        ),
        # 2020-05-01T01:00+05:00 is 2020-04-30T20:00Z, earlier than 2020-04-30T22:00Z
        pytest.param(
            [smoking("2020-04-30T22:00:00+00:00", NEVER), smoking("2020-05-01T01:00:00+05:00", CURRENT)],
            0,
            id="time zones ordered as instants",
        ),
    ],
)
def test_smoking_status_is_the_latest_observation_up_to_the_reference_date(observations, code) -> None:
    assert extract(patient(), *observations).smoker == code


def test_smoking_unknown_value_and_absent() -> None:
    assert extract(patient(), smoking("2020-01-01", "77176002")).smoker == 3  # "Smoker", unmapped
    assert extract(patient()).smoker == 3
    other = smoking("2020-01-01", CURRENT)
    other["code"]["coding"][0]["code"] = "8867-4"  # heart rate: not a smoking observation
    assert extract(patient(), other).smoker == 3


# ---- conditions -----------------------------------------------------------------------


def test_only_active_confirmed_conditions() -> None:
    p = extract(
        patient(),
        condition("38341003"),
        condition("44465007", status="resolved"),
        condition("15777000", verification="unconfirmed"),
        condition("55822004", verification="provisional"),
        condition("162864005", onset=None),
        condition("68496003", onset="2021-04-02T00:00:00+00:00"),  # after as_of
        condition("410429000", onset="2021-04-01T08:00:00+00:00"),  # on as_of
        condition("38341003"),
    )  # duplicate
    assert p.conditions == (38341003, 162864005, 410429000)


def test_condition_without_snomed_coding_skipped() -> None:
    c = condition("I10")
    c["code"]["coding"][0]["system"] = "http://hl7.org/fhir/sid/icd-10-cm"
    assert extract(patient(), c).conditions == ()


def test_bad_onset_date_named() -> None:
    with pytest.raises(BundleError) as e:
        extract(patient(), condition("38341003", onset="yesterday"))
    assert e.value.field == "entry[1].resource.onsetDateTime"


# ---- exams ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "when, months",
    [
        ("2021-04-01T00:00:00+00:00", 0),
        ("2021-03-02", 0),
        ("2021-03-01", 1),
        ("2020-04-01T12:00:00+00:00", 12),
        ("2020-04-02", 11),
        ("2016-04-01", 60),
        ("2016-03-31", 60),
    ],
)
def test_exam_months(when, months) -> None:
    assert extract(patient(), report("57698-3", when)).exams == ((57698, months),)


def test_exam_months_day_of_month() -> None:
    # 2021-01-31 to 2021-03-30: the 31st is not reached, so one whole month
    for written, as_of in (("2021-01-31", dt.date(2021, 3, 30)), ("2021-02-28", dt.date(2021, 3, 31))):
        assert extract(patient(), report("57698-3", written), as_of=as_of).exams == ((57698, 1),)


def test_exam_after_reference_date_ignored() -> None:
    p = extract(
        patient(),
        report("57698-3", "2021-04-02T00:00:00+00:00"),
        report("58410-2", "2021-04-01T23:59:59-05:00"),  # local date as written: as_of
        report("51990-0", "2019-01-15"),
    )
    assert p.exams == ((58410, 0), (51990, 26))


def test_exams_sorted_most_recent_first_and_repeats_kept() -> None:
    p = extract(
        patient(),
        report("57698-3", "2010-01-01"),
        report("57698-3", "2020-06-01"),
        report("57698-3", "2020-06-01"),
    )
    assert p.exams == ((57698, 10), (57698, 10), (57698, 135))


def test_report_without_loinc_or_date_skipped() -> None:
    p = extract(
        patient(), report("12345", "2020-01-01", system="http://example.org/local"), report("57698-3", None)
    )
    assert p.exams == ()


def test_bad_loinc_check_digit_named() -> None:
    with pytest.raises(BundleError) as e:
        extract(patient(), report("57698-4", "2020-01-01"))
    assert e.value.field == "entry[1].resource.code.coding"
    assert "57698-3" in e.value.problem


# ---- errors ---------------------------------------------------------------------------


def test_not_a_bundle() -> None:
    with pytest.raises(BundleError) as e:
        extract_bundle(patient(), AS_OF, Path("x.json"))
    assert e.value.field == "resourceType"
    with pytest.raises(BundleError) as e:
        extract_bundle([1, 2], AS_OF, Path("x.json"))
    assert e.value.field == "resourceType"


def test_no_patient() -> None:
    with pytest.raises(BundleError) as e:
        extract(condition("38341003"))
    assert e.value.field == "entry"
    assert "no Patient" in e.value.problem
    with pytest.raises(BundleError):
        extract_bundle({"resourceType": "Bundle"}, AS_OF, Path("x.json"))


def test_bad_birth_date_names_the_field() -> None:
    with pytest.raises(BundleError) as e:
        extract(condition("38341003"), report("57698-3", "2020-01-01"), patient("1980-13-01"))
    err = e.value
    assert isinstance(err, ValueError)
    assert (err.path, err.field) == (Path("test.json"), "entry[2].resource.birthDate")
    assert str(err) == f"test.json: entry[2].resource.birthDate: {err.problem}"
    assert "1980-13-01" in err.problem


@pytest.mark.parametrize(
    "birth, words", [(None, "missing"), ("1980", "partial"), (19800101, "not a FHIR date")]
)
def test_missing_or_partial_birth_date(birth, words) -> None:
    with pytest.raises(BundleError) as e:
        extract(patient(birth))
    assert e.value.field == "entry[0].resource.birthDate"
    assert words in e.value.problem


def test_bundle_error_pickles() -> None:
    err = BundleError(Path("a.json"), "entry[1].resource.birthDate", "bad")
    back = pickle.loads(pickle.dumps(err))
    assert (back.path, back.field, back.problem, str(back)) == (err.path, err.field, err.problem, str(err))


# ---- directories ----------------------------------------------------------------------


def test_directory_with_corrupt_file(tmp_path: Path) -> None:
    (tmp_path / "b.json").write_text(json.dumps(bundle(patient("1990-01-01", "male", "pb"))))
    (tmp_path / "a.json").write_text(json.dumps(bundle(patient("1980-01-01", "female", "pa"))))
    (tmp_path / "c.json").write_text('{"resourceType": "Bundle", "entry": [')  # truncated
    (tmp_path / "d.json").write_text(json.dumps({"hello": "world"}))  # JSON, not FHIR
    (tmp_path / "e.json").write_bytes(b"\xff\xfe\x00garbage")
    (tmp_path / "notes.txt").write_text("not a bundle, not *.json")
    patients, errors = extract_dir(tmp_path, AS_OF)
    assert [p.id for p in patients] == ["pa", "pb"]
    assert [(e.path.name, e.field) for e in errors] == [
        ("c.json", "(json)"),
        ("d.json", "resourceType"),
        ("e.json", "(json)"),
    ]
    assert all(str(e).startswith(str(tmp_path)) for e in errors)


def test_single_file_and_duplicates(tmp_path: Path) -> None:
    (tmp_path / "a.json").write_text(json.dumps(bundle(patient(pid="same"))))
    (tmp_path / "b.json").write_text(json.dumps(bundle(patient(pid="same"))))
    patients, errors = extract_dir(tmp_path / "b.json", AS_OF)
    assert [p.id for p in patients] == ["same"] and errors == []
    patients, errors = extract_dir(tmp_path, AS_OF)
    assert len(patients) == 1 and len(errors) == 1
    assert errors[0].path.name == "b.json" and "a.json" in errors[0].problem


def test_missing_directory(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        extract_dir(tmp_path / "nope", AS_OF)
    assert extract_dir(tmp_path, AS_OF) == ([], [])


# ---- the shared Synthea sample --------------------------------------------------------

# (file, id, age at 2021-04-01, gender, smoker, sorted conditions, number of exams,
#  some (LOINC body, months) pairs), read from the JSON with jq.
SYNTHEA_EXPECTED = [
    # born 1978-04-03 (birthday two days after as_of); 4 never-smoker observations;
    # 2 active conditions (2 resolved); reports 2012-11-05 .. 2020-04-13.
    (
        "Angelic_Mueller_29d755a6-32fa-482e-8fdd-081300209df8.json",
        "2ec622d5-095b-44d4-9cb2-c0e7e451cd74",
        42,
        1,
        0,
        (38341003, 55822004),
        7,
        [(57698, 100), (24323, 11), (58410, 35), (57698, 64)],
    ),
    # born 1915-07-03, deceased 1983-01-10 (still aged at 2021-04-01); ex-smoker;
    # 6 active conditions (1 resolved); 23 reports 1973-08-18 .. 1983-01-08.
    (
        "Buddy_MacGyver_c96ab841-48f4-42e4-bd46-f25c1490e422.json",
        "a6889c6d-6915-4fac-9d2f-fc6c42b3a82e",
        105,
        0,
        2,
        (15777000, 40055000, 88805009, 185086009, 201834006, 271737000),
        23,
        [(51990, 458), (51990, 571), (55405, 500), (24323, 458)],
    ),
    # born 1997-06-27; never -> daily (2014) -> former (2016, 2019): the latest wins.
    (
        "Royal_DuBuque_6d750ddc-ee20-40df-bf83-30461dc641e4.json",
        "f1f26587-7199-4c0f-880d-d9cd0799ac15",
        23,
        0,
        2,
        (38341003, 162864005),
        2,
        [(58410, 94), (58410, 20)],
    ),
    # born 2002-12-22; never until 2018, daily smoker 2019-03-31 and 2020-04-05;
    # only resolved conditions.
    (
        "Yi_Weissnat_0edbf0a2-10d4-4ccd-a522-6aaeb41f2b41.json",
        "f39b0478-5d39-41ba-a0e7-1c5dd6987af9",
        18,
        1,
        1,
        (),
        2,
        [(58410, 97), (58410, 36)],
    ),
]


@needs_data
@pytest.mark.parametrize(
    "name, pid, age, gender, smoker, conditions, n_exams, pairs",
    SYNTHEA_EXPECTED,
    ids=[e[0].split("_")[0] for e in SYNTHEA_EXPECTED],
)
def test_synthea_bundle(name, pid, age, gender, smoker, conditions, n_exams, pairs) -> None:
    path = DATA / name
    p = extract_bundle(json.loads(path.read_bytes()), AS_OF, path)
    assert p.id == pid
    assert p.age == age
    assert p.gender == gender
    assert p.smoker == smoker
    assert tuple(sorted(p.conditions)) == conditions
    assert len(p.exams) == n_exams
    for pair in pairs:
        assert pair in p.exams
    assert [m for _, m in p.exams] == sorted(m for _, m in p.exams)


@needs_data
def test_synthea_directory() -> None:
    patients, errors = extract_dir(DATA, AS_OF)
    assert errors == []
    assert len(patients) == 60
    assert len({p.id for p in patients}) == 60
    # totals counted with jq: distinct active condition codes per patient, all reports
    assert sum(len(p.conditions) for p in patients) == 222
    assert sum(len(p.exams) for p in patients) == 609
    assert all(0 <= p.age <= 150 and 0 <= p.gender <= 3 and 0 <= p.smoker <= 3 for p in patients)
    assert all(m >= 0 for p in patients for _, m in p.exams)
    assert all(c > 0 for p in patients for c in p.conditions)
