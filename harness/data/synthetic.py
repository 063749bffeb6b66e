"""Seeded synthetic patient populations, shaped like the Synthea sample, in numpy.

`generate(n, seed, padding)` draws n encoded patients directly as numpy columns
(no per-patient Python), so that large populations are cheap.  The marginals
come from `SYNTHEA_R4`, measured once from the shared Synthea FHIR R4 sample
(see the README's "Patient data"; `measure` recomputes the table from extracted
patients, and tests/test_synthetic.py checks the embedded copy against the
data when it is present).

Fields are drawn independently of each other (an age does not make a
condition likelier), except that an exam never predates the patient's birth:

* age: a bin of `age_bins` by its frequency, then uniform within the bin;
* gender, smoker: categorical with the sample's counts;
* number of active conditions: negative binomial with the sample's mean and
  variance (method of moments), redrawn above the sample's largest
  count (13), so that the default padding (16 conditions, 32 exams) holds
  every generated patient; the codes are distinct, drawn one after another without replacement
  with weights calibrated (`_calibrate`) so that the share of patients with
  each code matches the sample's;
* number of exams: 1 + negative binomial (every sample patient has at least
  one report), fitted and bounded the same way; each exam's LOINC code is drawn by its
  frequency among the sample's reports, and its months-ago from `months_bins`
  (uniform within a bin), redrawn uniformly over the patient's lifetime when
  it would predate birth.

Patients are drawn first, whatever the padding (the same n and seed give the
same patients at every padding), then bounded by `circuits.population.bound`,
the rule FHIR data follows: a patient over a bound is an error unless
truncating.
"""

from __future__ import annotations

import datetime as dt
import math
from collections import Counter
from pathlib import Path
from typing import Iterable

import numpy as np

from circuits.codes import GENDERS, SMOKER_STATES
from circuits.ir import MAX_MONTHS
from circuits.population import EMPTY, EXACT, Padding, Patient, Population, bound

# Measured with `measure(extract_dir(SYNTHEA, date(2021, 4, 1))[0])`, SYNTHEA the shared sample
# (../shared/data/synthea-r4 beside the repo): the 60 Synthea v2.4 bundles (smart-on-fhir
# generated-sample-data, dates shifted 2 years ahead) read as of 2021-04-01 by
# harness.data.fhir.  Counts are patients (or, for exams, reports) of the sample.
# fmt: off
SYNTHEA_R4: dict = {
    "patients": 60,
    "as_of": "2021-04-01",
    # (lowest age, highest age + 1, patients); 15 of the 60 are deceased but
    # are aged as of 2021-04-01 like the rest, hence the five aged 100 to 108.
    "age_bins": ((0, 10, 3), (10, 20, 5), (20, 30, 6), (30, 40, 2), (40, 50, 6),
                 (50, 60, 12), (60, 70, 10), (70, 80, 9), (80, 90, 1), (90, 100, 1),
                 (100, 110, 5)),
    "gender": (34, 26, 0, 0),  # patients per GENDERS code: male, female, other, unknown
    "smoker": (44, 1, 15, 0),  # patients per SMOKER_STATES code: never, current, former, unknown
    # Active, confirmed conditions per patient: (mean, sample variance, max); 7 have none.
    "conditions_per_patient": (3.7, 9.1627, 13),
    # Exams (DiagnosticReports on or before as_of) per patient: (mean, sample variance, min, max).
    "exams_per_patient": (10.15, 75.7229, 1, 29),
    # SNOMED CT code -> patients with it active and confirmed (53 codes, 222 in all).
    "condition_codes": {
        162864005: 26,  # Body mass index 30+ - obesity
        15777000: 23,  # Prediabetes
        38341003: 20,  # Hypertension
        271737000: 19,  # Anemia
        40055000: 16,  # Chronic sinusitis
        19169002: 9,  # Miscarriage in first trimester
        53741008: 9,  # Coronary heart disease
        55822004: 6,  # Hyperlipidemia
        68496003: 5,  # Polyp of colon
        410429000: 5,  # Cardiac arrest
        429007001: 5,  # History of cardiac arrest
        44054006: 4, 49436004: 4, 55680006: 4, 237602007: 4, 239873007: 4, 302870006: 4,
        713197008: 4, 22298006: 3, 87433001: 3, 88805009: 3, 201834006: 3, 399211009: 3,
        422034002: 3, 64859006: 2, 74400008: 2, 428251008: 2, 368581000119106: 2,
        7200002: 1, 26929004: 1, 47693006: 1, 65363002: 1, 79586000: 1, 80394007: 1,
        82423001: 1, 83664006: 1, 84757009: 1, 92691004: 1, 109838007: 1, 126906006: 1,
        128613002: 1, 185086009: 1, 196416002: 1, 197927001: 1, 230690007: 1, 232353008: 1,
        239872002: 1, 363406005: 1, 446096008: 1, 703151001: 1, 1501000119109: 1,
        1551000119108: 1, 124171000119105: 1,
    },
    # LOINC body -> reports (609 in all): lipid panel, basic metabolic panel, CBC,
    # comprehensive metabolic panel, death certificate (sic: a DiagnosticReport in
    # Synthea), heart failure tracking panel, hemoglobin and hematocrit panel.
    "exam_codes": {57698: 208, 51990: 196, 58410: 129, 24323: 57, 69409: 12, 55405: 6, 24360: 1},
    # (lowest months ago, highest + 1, reports).
    "months_bins": ((0, 12, 58), (12, 24, 34), (24, 36, 37), (36, 60, 82), (60, 120, 227),
                    (120, 240, 88), (240, 360, 45), (360, 480, 18), (480, 600, 20)),
}
# fmt: on

AGE_BIN_WIDTH = 10
MONTHS_EDGES = (0, 12, 24, 36, 60, 120, 240, 360, 480, 600, MAX_MONTHS + 1)
COUNT_BOUND_FACTOR = 1  # generated counts are redrawn above this many times the sample's max


def _sample_variance(a: np.ndarray) -> float:
    return round(float(a.var(ddof=1)), 4) if a.size > 1 else 0.0


def measure(patients: Iterable[Patient], as_of: dt.date = dt.date(2021, 4, 1)) -> dict:
    """The `SYNTHEA_R4` table of a list of extracted patients (to re-measure it)."""
    ps = list(patients)
    if not ps:
        raise ValueError("no patients to measure")
    ages = Counter(p.age // AGE_BIN_WIDTH for p in ps)
    top_bin = max(ages)
    nc = np.array([len(p.conditions) for p in ps], dtype=float)
    ne = np.array([len(p.exams) for p in ps], dtype=float)
    months = np.array([m for p in ps for _, m in p.exams], dtype=np.int64)
    mbins = np.histogram(months, bins=MONTHS_EDGES)[0]
    last = int(np.flatnonzero(mbins).max()) + 1 if months.size else 0
    cond = Counter(c for p in ps for c in p.conditions)
    exams = Counter(c for p in ps for c, _ in p.exams)
    return {
        "patients": len(ps),
        "as_of": as_of.isoformat(),
        "age_bins": tuple(
            (b * AGE_BIN_WIDTH, (b + 1) * AGE_BIN_WIDTH, ages.get(b, 0)) for b in range(top_bin + 1)
        ),
        "gender": tuple(sum(p.gender == g for p in ps) for g in range(len(GENDERS))),
        "smoker": tuple(sum(p.smoker == s for p in ps) for s in range(len(SMOKER_STATES))),
        "conditions_per_patient": (round(float(nc.mean()), 4), _sample_variance(nc), int(nc.max())),
        "exams_per_patient": (round(float(ne.mean()), 4), _sample_variance(ne), int(ne.min()), int(ne.max())),
        "condition_codes": dict(sorted(cond.items(), key=lambda kv: (-kv[1], kv[0]))),
        "exam_codes": dict(sorted(exams.items(), key=lambda kv: (-kv[1], kv[0]))),
        "months_bins": tuple((MONTHS_EDGES[i], MONTHS_EDGES[i + 1], int(mbins[i])) for i in range(last)),
    }


def measure_dir(directory: Path, as_of: dt.date = dt.date(2021, 4, 1)) -> dict:
    """`measure` of the bundles in a directory; raises if any bundle fails to extract."""
    from harness.data.fhir import extract_dir

    patients, errors = extract_dir(Path(directory), as_of)
    if errors:
        raise ValueError(f"{len(errors)} bundle(s) failed, first: {errors[0]}")
    return measure(patients, as_of)


class _Binned:
    """Integers drawn from a histogram of (lo, hi, count) bins, uniform within a bin.

    One integer draw r in [0, total * L), L the lcm of the bin widths, picks
    the bin by r // L (through a lookup table, so the bin frequencies are
    exactly count / total) and the value within it by r % L.
    """

    def __init__(self, bins) -> None:
        lo, hi, count = (np.array(c, dtype=np.int64) for c in zip(*bins))
        width = hi - lo
        self.lcm = int(np.lcm.reduce(width))
        self.bin = np.repeat(np.arange(len(count)), count)
        self.lo, self.width = lo, width
        self.total = int(count.sum())

    def draw(self, rng: np.random.Generator, size: int) -> np.ndarray:
        r = rng.integers(0, self.total * self.lcm, size)
        b = self.bin[r // self.lcm]
        return self.lo[b] + (r % self.lcm) * self.width[b] // self.lcm


class _Model:
    """`SYNTHEA_R4` turned into sampling tables (computed once, at import)."""

    def __init__(self, t: dict) -> None:
        self.age = _Binned(t["age_bins"])
        self.gender = np.repeat(np.arange(len(GENDERS)), t["gender"])  # lookup: uniform index -> code
        self.smoker = np.repeat(np.arange(len(SMOKER_STATES)), t["smoker"])
        mean, var, cmax = t["conditions_per_patient"]
        codes = np.array(list(t["condition_codes"]), dtype=np.int64)
        if len(codes) > 64:
            raise ValueError("at most 64 condition codes (drawn codes are tracked in a 64-bit mask)")
        self.cond_max = min(COUNT_BOUND_FACTOR * cmax, len(codes))
        self.cond_nb = _bounded_nb_params(mean, var, self.cond_max)
        prevalence = np.array(list(t["condition_codes"].values()), dtype=float) / t["patients"]
        w = _calibrate(prevalence, _truncated_nb_pmf(self.cond_nb, self.cond_max))
        self.cond_cdf = np.cumsum(w) / w.sum()
        self.cond_table = np.append(codes, EMPTY)  # index -1 (no code) -> EMPTY
        mean, var, emin, emax = t["exams_per_patient"]
        self.exam_min = emin
        self.exam_max = COUNT_BOUND_FACTOR * emax
        self.exam_nb = _bounded_nb_params(mean - emin, var, self.exam_max - emin)
        self.exam_lut = np.repeat(
            np.array(list(t["exam_codes"]), dtype=np.int64), list(t["exam_codes"].values())
        )
        self.months = _Binned(t["months_bins"])


def _nb_params(mean: float, var: float) -> tuple[float, float]:
    """numpy negative_binomial (n, p) with this mean and variance (var > mean)."""
    if var <= mean:
        raise ValueError("a negative binomial needs variance > mean")
    return mean * mean / (var - mean), mean / var


def _bounded_nb_params(mean: float, var: float, bound: int, steps: int = 100) -> tuple[float, float]:
    """NB parameters whose draws, redrawn above `bound`, have this mean and variance
    (the bound lowers both: the untruncated moments are raised until they match)."""
    k = np.arange(bound + 1)
    m, v = mean, var
    for _ in range(steps):
        pk = _truncated_nb_pmf(_nb_params(m, v), bound)
        tm = float(pk @ k)
        m, v = m + mean - tm, v + var - (float(pk @ (k * k)) - tm * tm)
    return _nb_params(m, v)


def _truncated_nb_pmf(nb: tuple[float, float], bound: int) -> np.ndarray:
    """P(k), k = 0..bound, of the negative binomial redrawn above `bound`."""
    r, p = nb
    k = np.arange(bound + 1)
    logpmf = (
        np.array([math.lgamma(x + r) - math.lgamma(x + 1) for x in k])
        - math.lgamma(r)
        + r * math.log(p)
        + k * math.log1p(-p)
    )
    pmf = np.exp(logpmf)
    return pmf / pmf.sum()


def _calibrate(prevalence: np.ndarray, pk: np.ndarray, rounds: int = 25) -> np.ndarray:
    """Weights whose successive sampling of k ~ pk distinct codes gives each code `prevalence`.

    Drawing codes one after another without replacement with weights equal to
    the prevalences under-represents the common codes (a code already drawn
    cannot be drawn again).  Rosén's approximation of successive sampling,
    P(code c among k draws) ~ 1 - exp(-w_c t_k) with t_k set so that these sum
    to k, gives each code's inclusion probability; a fixed-point iteration
    scales the weights until it matches the prevalence (within ~2% when
    checked by simulation).
    """
    ks = np.arange(1, len(pk))[:, None].astype(float)
    w = prevalence.astype(float).copy()
    for _ in range(rounds):
        lo, hi = np.zeros_like(ks), np.full_like(ks, 1.0)
        while ((1 - np.exp(-w * hi)).sum(axis=1, keepdims=True) < ks).any():
            hi *= 2
        for _ in range(50):  # bisection for every k at once
            mid = (lo + hi) / 2
            low = (1 - np.exp(-w * mid)).sum(axis=1, keepdims=True) < ks
            lo, hi = np.where(low, mid, lo), np.where(low, hi, mid)
        inclusion = (pk[1:, None] * (1 - np.exp(-w * hi))).sum(axis=0)
        w *= prevalence / inclusion
    return w


_MODEL = _Model(SYNTHEA_R4)
_SENTINEL = np.iinfo(np.int64).max


def _bounded_nb(
    rng: np.random.Generator, nb: tuple[float, float], n: int, bound: int, shift: int = 0
) -> np.ndarray:
    """n draws of shift + NB, redrawn while above `bound`."""
    x = rng.negative_binomial(nb[0], nb[1], n) + shift
    over = np.flatnonzero(x > bound)
    while over.size:
        x[over] = rng.negative_binomial(nb[0], nb[1], over.size) + shift
        over = over[x[over] > bound]
    return x


def generate(n: int, seed: int = 0, padding: Padding = Padding(), truncate: bool = False) -> Population:
    """n synthetic encoded patients, the same for the same (n, seed) at every padding;
    over a bound PaddingOverflow, unless `truncate` (see `circuits.population.bound`)."""
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 0:
        raise ValueError("n must be a whole number >= 0")
    n = int(n)
    m = _MODEL
    rng = np.random.default_rng(seed)

    age = m.age.draw(rng, n)
    gender = m.gender[rng.integers(0, m.gender.size, n)]
    smoker = m.smoker[rng.integers(0, m.smoker.size, n)]

    # Conditions: distinct codes, drawn slot by slot; a draw that repeats one of
    # the patient's earlier codes is redrawn (successive sampling).
    ccount = _bounded_nb(rng, m.cond_nb, n, m.cond_max)
    c_slots = max(int(ccount.max(initial=0)), 1)
    cidx = np.full((n, c_slots), -1, dtype=np.int8)
    taken = np.zeros(n, dtype=np.uint64)  # bit c set: code c already drawn for the patient
    for j in range(c_slots):
        rows = np.flatnonzero(ccount > j)
        while rows.size:
            draw = np.searchsorted(m.cond_cdf, rng.random(rows.size), side="right")
            draw = np.minimum(draw, len(m.cond_cdf) - 1)  # guards against cdf rounding
            bit = np.left_shift(np.uint64(1), draw.astype(np.uint64))
            new = (taken[rows] & bit) == 0
            ok = rows[new]
            cidx[ok, j] = draw[new]
            taken[ok] |= bit[new]
            rows = rows[~new]
    conditions = m.cond_table[cidx]

    # Exams: months ago (never before birth), most recent first; then codes.
    ecount = _bounded_nb(rng, m.exam_nb, n, m.exam_max, shift=m.exam_min)
    e_slots = max(int(ecount.max(initial=0)), 1)
    real = np.arange(e_slots) < ecount[:, None]
    months = np.full((n, e_slots), _SENTINEL, dtype=np.int64)
    months[real] = _exam_months(rng, m, np.repeat(12 * age, ecount))
    months.sort(axis=1)
    months[~real] = 0
    exam_codes = np.zeros((n, e_slots), dtype=np.int64)
    exam_codes[real] = m.exam_lut[rng.integers(0, m.exam_lut.size, int(ecount.sum()))]

    drawn = Population(
        tuple(map(f"syn-{seed}-".__add__, map(str, range(n)))),
        age,
        gender,
        smoker,
        conditions,
        exam_codes,
        months,
        ccount.astype(np.int64),
        ecount.astype(np.int64),
        Padding(EXACT, EXACT),
    )
    return bound(drawn, padding, truncate)


def _exam_months(rng: np.random.Generator, m: _Model, life: np.ndarray) -> np.ndarray:
    """Months ago of len(life) exams; one that would predate birth is redrawn in [0, life]."""
    x = m.months.draw(rng, life.size)
    bad = np.flatnonzero(x > life)
    x[bad] = rng.integers(0, life[bad] + 1)
    return x
