"""Clinical code tables and check digits: gender, smoking status, SNOMED CT, LOINC.

Gender and smoking status are small public enumerations (the paper's Listing 2
order); SNOMED CT concept ids carry a Verhoeff check digit and LOINC codes a
mod-10 (Luhn) check digit, both verified here so that a typo in a query is
caught before any secure computation runs.
"""

from __future__ import annotations

from typing import Final

MAX_AGE: Final = 150  # public bound on ages, in whole years

# FHIR AdministrativeGender, in its value-set order.
GENDERS: Final = ("male", "female", "other", "unknown")

# Smoking status, as in the paper's Listing 2: code -> SNOMED CT concept.
SMOKER_STATES: Final = ("never", "current", "former", "unknown")
# The public domain of a gender or smoking-status code: 0..SMALL_DOMAIN - 1.
SMALL_DOMAIN: Final = len(GENDERS)
assert len(SMOKER_STATES) == SMALL_DOMAIN
SMOKER_SNOMED: Final = {"266919005": 0, "449868002": 1, "8517006": 2}
TOBACCO_SMOKING_STATUS_LOINC: Final = "72166-2"

# Codes the paper's prototype offered (section 3.2.1): used to suggest fixes.
KNOWN_CONDITIONS: Final = {
    68496003: "Polyp of colon",
    410429000: "Cardiac arrest",
    59621000: "Hypertension",
    55822004: "Hyperlipidemia",
    38341003: "Hypertension",
    44054006: "Diabetes",
    15777000: "Prediabetes",
    162864005: "Body mass index 30+ - obesity",
}

# The public exam vocabulary of the encoding: a report's LOINC code becomes its
# index here (1..V), any other code 0.  It is part of the data's public schema,
# fixed before any query (the paper's four panels, then the other DiagnosticReport
# codes of the Synthea sample), so that an equality test on an exam type is a
# small polynomial instead of a comparison of 17-bit codes.
EXAM_VOCABULARY: Final = (57698, 58410, 51990, 24323, 69409, 55405, 24360)


def _digit_table(rows: str) -> tuple[tuple[int, ...], ...]:
    return tuple(tuple(map(int, row)) for row in rows.split())


_VERHOEFF_D = _digit_table(
    "0123456789 1234067895 2340178956 3401289567 4012395678 "
    "5987604321 6598710432 7659821043 8765932104 9876543210"
)
_VERHOEFF_P = _digit_table(
    "0123456789 1576283094 5803796142 8916043527 9453126870 4286573901 2793806415 7046913258"
)


def verhoeff_valid(digits: str) -> bool:
    """True when the last digit of `digits` is the Verhoeff check digit of the rest."""
    c = 0
    for i, ch in enumerate(reversed(digits)):
        c = _VERHOEFF_D[c][_VERHOEFF_P[i % 8][int(ch)]]
    return c == 0


def snomed_valid(concept_id: int) -> bool:
    """A SNOMED CT identifier: 6 to 18 digits, Verhoeff check digit last."""
    s = str(concept_id)
    return concept_id > 0 and 6 <= len(s) <= 18 and verhoeff_valid(s)


def snomed_suggestion(concept_id: int) -> int | None:
    """The known condition one typo (insertion, deletion, substitution) away, if any."""
    s = str(concept_id)
    for known in KNOWN_CONDITIONS:
        k = str(known)
        if _one_edit_apart(s, k):
            return known
    return None


def _one_edit_apart(a: str, b: str) -> bool:
    if abs(len(a) - len(b)) > 1 or a == b:
        return False
    if len(a) == len(b):
        return sum(x != y for x, y in zip(a, b)) == 1
    short, long_ = sorted((a, b), key=len)
    return any(long_[:i] + long_[i + 1 :] == short for i in range(len(long_)))


def loinc_check_digit(body: int) -> int:
    """LOINC's mod-10 check digit of a code's numeric body (the Luhn algorithm)."""
    total = 0
    for i, ch in enumerate(reversed(str(body))):
        d = int(ch)
        if i % 2 == 0:
            d *= 2
            d = d - 9 if d > 9 else d
        total += d
    return (10 - total % 10) % 10


def parse_loinc(code: int | str) -> int:
    """The numeric body of a LOINC code given as '57698-3' (checked) or 57698 (paper's form).

    Raises ValueError with the correct check digit when '-N' is wrong.
    """
    text = str(code).strip()
    body_text, sep, check = text.partition("-")
    if not body_text.isdigit() or (sep and not (check.isdigit() and len(check) == 1)):
        raise ValueError(f"{code!r} is not a LOINC code; write it as '57698-3' or 57698")
    body = int(body_text)
    if body <= 0 or body >= 10**7:
        raise ValueError(f"{code!r} is not a LOINC code; its number must have 1 to 7 digits")
    if sep and int(check) != loinc_check_digit(body):
        raise ValueError(f"{text} fails the LOINC check digit; did you mean {format_loinc(body)}?")
    return body


def format_loinc(body: int) -> str:
    """'57698-3' from 57698."""
    return f"{body}-{loinc_check_digit(body)}"


def parse_enum(value: int | str, names: tuple[str, ...], what: str) -> int:
    """A code 0..len(names)-1 given as its number or its name."""
    if isinstance(value, bool):
        raise ValueError(f"{what} must be one of {', '.join(names)} or 0-{len(names) - 1}")
    if isinstance(value, int) and 0 <= value < len(names):
        return value
    if isinstance(value, str) and value.strip().lower() in names:
        return names.index(value.strip().lower())
    raise ValueError(f"{value!r} is not a {what}; use one of {', '.join(names)} (or 0-{len(names) - 1})")
