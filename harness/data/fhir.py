"""Extract the paper's patient fields from FHIR R4 bundles (Synthea format).

Section 3.2.3 of the paper: age from `Patient.birthDate`, gender from
`Patient.gender`, smoking status from the latest Observation coded LOINC
72166-2, conditions from the active and confirmed Conditions (SNOMED CT) and
exams from the DiagnosticReports (LOINC, `effectiveDateTime`).  The record is
read *as of* a reference date: anything dated after it (reports, smoking
observations, condition onsets) is ignored, age is counted in whole years at
that date and an exam's age in whole calendar months before it.

A bundle is bucketed by resource type in one pass; the per-type filters and
projections are JMESPath expressions compiled once at import.  A bundle that
cannot be read raises `BundleError`, which names the file, the offending field
(e.g. ``entry[3].resource.birthDate``) and the problem.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any, Callable

import jmespath

from circuits.codes import GENDERS, SMOKER_SNOMED, SMOKER_STATES, TOBACCO_SMOKING_STATUS_LOINC, parse_loinc
from circuits.ir import MAX_AGE, MAX_MONTHS
from circuits.population import Patient

LOINC_SYSTEM = "http://loinc.org"
SNOMED_SYSTEM = "http://snomed.info/sct"
UNKNOWN_GENDER = GENDERS.index("unknown")
UNKNOWN_SMOKER = SMOKER_STATES.index("unknown")

# Each projection keeps the resource itself (`@`) last, to locate it on error.
# Smoking-status Observations: [effectiveDateTime or issued, SNOMED value code, resource].
_SMOKING = jmespath.compile(
    f"[?code.coding[?system=='{LOINC_SYSTEM}' && code=='{TOBACCO_SMOKING_STATUS_LOINC}']]"
    f".[effectiveDateTime || issued, valueCodeableConcept.coding[?system=='{SNOMED_SYSTEM}'].code | [0], @]"
)
# Active, confirmed Conditions: [SNOMED code, onsetDateTime, resource].
_CONDITIONS = jmespath.compile(
    "[?clinicalStatus.coding[?code=='active'] && verificationStatus.coding[?code=='confirmed']]"
    f".[code.coding[?system=='{SNOMED_SYSTEM}'].code | [0], onsetDateTime, @]"
)
# DiagnosticReports with a LOINC coding: [LOINC code, effectiveDateTime, resource].
_REPORTS = jmespath.compile(
    f"[?code.coding[?system=='{LOINC_SYSTEM}']]"
    f".[code.coding[?system=='{LOINC_SYSTEM}'].code | [0], effectiveDateTime, @]"
)

_WANTED = ("Patient", "Observation", "Condition", "DiagnosticReport")


class BundleError(ValueError):
    """A FHIR bundle (or file) that cannot be extracted: which file, which field, why."""

    def __init__(self, path: Path | str, field: str, problem: str) -> None:
        self.path = Path(path)
        self.field = field
        self.problem = problem
        super().__init__(f"{self.path}: {field}: {problem}")

    def __reduce__(self):  # picklable despite the 3-argument constructor
        return (type(self), (self.path, self.field, self.problem))


def extract_bundle(data: Any, as_of: dt.date, path: Path) -> Patient:
    """One patient from one parsed FHIR R4 Bundle, read as of the date `as_of`."""
    if isinstance(as_of, dt.datetime):
        as_of = as_of.date()
    path = Path(path)
    entries = _entries(data, path)
    buckets, patient_index = _bucketed(entries)
    p, where = _the_patient(buckets["Patient"], patient_index, path)
    pid = _patient_id(p, where, path)
    age = _age(p, where, as_of, path)
    gender = _gender(p, where, path)
    smoker = _smoking_status(buckets["Observation"], entries, as_of, path)
    conditions = _conditions(buckets["Condition"], entries, as_of, path)
    exams = _exams(buckets["DiagnosticReport"], entries, as_of, path)
    return Patient(pid, age, gender, smoker, conditions, exams)


def _entries(data: Any, path: Path) -> list:
    """The bundle's entries (none when absent); anything but a Bundle is an error."""
    if not isinstance(data, dict):
        raise BundleError(path, "resourceType", f"not a FHIR Bundle (the JSON is a {type(data).__name__})")
    if data.get("resourceType") != "Bundle":
        raise BundleError(
            path, "resourceType", f"not a FHIR Bundle (resourceType is {data.get('resourceType')!r})"
        )
    entries = data.get("entry")
    if entries is None:
        entries = []
    if not isinstance(entries, list):
        raise BundleError(path, "entry", "is not a list")
    return entries


def _bucketed(entries: list) -> tuple[dict[str, list], int]:
    """The wanted resources by type, in one pass, and the entry index of the first Patient."""
    buckets: dict[str, list] = {t: [] for t in _WANTED}
    patient_index = -1
    for i, e in enumerate(entries):
        r = e.get("resource") if isinstance(e, dict) else None
        kind = r.get("resourceType") if isinstance(r, dict) else None
        if isinstance(kind, str):
            b = buckets.get(kind)
            if b is not None:
                b.append(r)
                if b is buckets["Patient"] and patient_index < 0:
                    patient_index = i
    return buckets, patient_index


def _the_patient(patients: list, patient_index: int, path: Path) -> tuple[dict, str]:
    """The bundle's one Patient resource and its location."""
    if not patients:
        raise BundleError(path, "entry", "no Patient resource in the bundle")
    if len(patients) > 1:
        raise BundleError(path, "entry", f"{len(patients)} Patient resources; expected one per bundle")
    return patients[0], f"entry[{patient_index}].resource"


def _patient_id(p: dict, where: str, path: Path) -> str:
    pid = p.get("id")
    if not isinstance(pid, str) or not pid:
        raise BundleError(path, f"{where}.id", "missing Patient id")
    return pid


def _age(p: dict, where: str, as_of: dt.date, path: Path) -> int:
    """Whole years from `birthDate` to the reference date, within the public bound."""
    if "birthDate" not in p:
        raise BundleError(path, f"{where}.birthDate", "missing; the age cannot be computed")
    birth = _date(p["birthDate"], path, f"{where}.birthDate")
    if birth > as_of:
        raise BundleError(
            path,
            f"{where}.birthDate",
            f"born {birth.isoformat()}, after the reference date {as_of.isoformat()}",
        )
    age = as_of.year - birth.year - ((as_of.month, as_of.day) < (birth.month, birth.day))
    if age > MAX_AGE:
        raise BundleError(path, f"{where}.birthDate", f"age {age} exceeds the public bound {MAX_AGE}")
    return age


def _gender(p: dict, where: str, path: Path) -> int:
    g = p.get("gender")
    if g is None:
        return UNKNOWN_GENDER
    if isinstance(g, str) and g in GENDERS:
        return GENDERS.index(g)
    raise BundleError(path, f"{where}.gender", f"{g!r} is not one of {', '.join(GENDERS)}")


def _smoking_status(observations: list, entries: list, as_of: dt.date, path: Path) -> int:
    """The code of the latest 72166-2 observation on or before as_of (unknown if none)."""
    smoker, latest = UNKNOWN_SMOKER, None
    for when, value, r in _SMOKING.search(observations) or ():
        if when is None:
            continue  # neither effectiveDateTime nor issued: cannot be ordered
        field = "effectiveDateTime" if r.get("effectiveDateTime") is not None else "issued"
        key = _instant(when, path, _located(entries, r, field))
        if key[0] > as_of:
            continue
        if latest is None or key[1] >= latest:  # ties: the later entry wins
            latest = key[1]
            smoker = SMOKER_SNOMED.get(value, UNKNOWN_SMOKER) if isinstance(value, str) else UNKNOWN_SMOKER
    return smoker


def _conditions(conditions: list, entries: list, as_of: dt.date, path: Path) -> tuple[int, ...]:
    """The distinct SNOMED CT codes of the active, confirmed conditions with no later onset, sorted."""
    codes: dict[int, None] = {}
    for code, onset, r in _CONDITIONS.search(conditions) or ():
        if code is None:
            continue  # no SNOMED CT coding: not encodable as a condition
        if onset is not None and _date(onset, path, _located(entries, r, "onsetDateTime")) > as_of:
            continue
        if not (isinstance(code, str) and code.isdigit() and int(code) > 0):
            raise BundleError(
                path,
                f"{_locate(entries, r)}.code.coding",
                f"SNOMED CT code {code!r} is not a positive integer",
            )
        codes[int(code)] = None
    return tuple(sorted(codes))


def _exams(reports: list, entries: list, as_of: dt.date, path: Path) -> tuple[tuple[int, int], ...]:
    """(LOINC body, months before as_of) of each dated report up to as_of, most recent first."""
    exams = []
    for code, when, r in _REPORTS.search(reports) or ():
        if when is None:
            continue  # no effectiveDateTime: the exam has no date to count from
        d = _date(when, path, _located(entries, r, "effectiveDateTime"))
        if d > as_of:
            continue
        months = (as_of.year - d.year) * 12 + (as_of.month - d.month) - (as_of.day < d.day)
        if months > MAX_MONTHS:
            raise BundleError(
                path,
                f"{_locate(entries, r)}.effectiveDateTime",
                f"{months} months before the reference date; the bound is {MAX_MONTHS}",
            )
        try:
            body = parse_loinc(code)
        except ValueError as e:
            raise BundleError(path, f"{_locate(entries, r)}.code.coding", str(e)) from None
        exams.append((body, months))
    exams.sort(key=lambda e: e[1])  # most recent first, as circuits.population.encode
    return tuple(exams)


def extract_file(path: Path, as_of: dt.date) -> Patient:
    """One patient from one bundle file; unreadable or invalid JSON raises BundleError."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise BundleError(path, "(file)", f"cannot read: {e.strerror or e}") from None
    try:
        data = json.loads(raw)
    except (ValueError, RecursionError) as e:  # JSONDecodeError, UnicodeDecodeError
        raise BundleError(path, "(json)", f"not valid JSON: {e}") from None
    try:
        return extract_bundle(data, as_of, path)
    except (TypeError, AttributeError, KeyError, IndexError) as e:
        # A structure no FHIR R4 bundle has (a list where an object belongs, ...).
        raise BundleError(
            path,
            "(structure)",
            f"not a FHIR R4 bundle: {type(e).__name__}: {e}; check it against the FHIR R4 Bundle schema",
        ) from None


def extract_dir(directory: Path, as_of: dt.date) -> tuple[list[Patient], list[BundleError]]:
    """Patients from every *.json in `directory` (sorted by name), or from one bundle file.

    Files that cannot be extracted are skipped and returned as errors, as are
    bundles whose patient id was already extracted from an earlier file.
    """
    directory = Path(directory)
    if directory.is_file():
        files = [directory]
    elif directory.is_dir():
        files = sorted((f for f in directory.glob("*.json") if f.is_file()), key=lambda f: f.name)
    else:
        raise FileNotFoundError(f"{directory}: no such directory or bundle file")
    patients: list[Patient] = []
    errors: list[BundleError] = []
    seen: dict[str, Path] = {}
    for f in files:
        try:
            p = extract_file(f, as_of)
        except BundleError as e:
            errors.append(e)
            continue
        if p.id in seen:
            errors.append(
                BundleError(f, "Patient.id", f"patient {p.id} was already extracted from {seen[p.id].name}")
            )
            continue
        seen[p.id] = f
        patients.append(p)
    return patients, errors


def _locate(entries: list, resource: dict) -> str:
    """'entry[i].resource' for a resource object of the bundle (error path only)."""
    for i, e in enumerate(entries):
        if isinstance(e, dict) and e.get("resource") is resource:
            return f"entry[{i}].resource"
    return "entry[?].resource"


def _located(entries: list, resource: dict, field: str) -> Callable[[], str]:
    """The location of a resource's field, found only when an error needs it."""
    return lambda: f"{_locate(entries, resource)}.{field}"


def _field(field: str | Callable[[], str]) -> str:
    return field() if callable(field) else field


def _date(value: Any, path: Path, field: str | Callable[[], str]) -> dt.date:
    """The calendar date of a FHIR date or dateTime (as written, in its own offset)."""
    if isinstance(value, str) and len(value) >= 10 and (len(value) == 10 or value[10] == "T"):
        try:
            return dt.date.fromisoformat(value[:10])
        except ValueError:
            pass
    problem = (
        f"{value!r} is a partial date; a full YYYY-MM-DD date is needed"
        if isinstance(value, str) and len(value) in (4, 7) and value[:4].isdigit()
        else f"{value!r} is not a FHIR date (YYYY-MM-DD[Thh:mm:ss+zz:zz])"
    )
    raise BundleError(path, _field(field), problem)


def _instant(value: Any, path: Path, field: str | Callable[[], str]) -> tuple[dt.date, dt.datetime]:
    """(calendar date as written, comparable UTC instant) of a FHIR dateTime."""
    d = _date(value, path, field)
    try:
        t = dt.datetime.fromisoformat(value)
    except ValueError:
        raise BundleError(path, _field(field), f"{value!r} is not a FHIR dateTime") from None
    if t.tzinfo is None:
        t = t.replace(tzinfo=dt.timezone.utc)
    return d, t
