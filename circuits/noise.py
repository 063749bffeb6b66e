"""Exact samplers of integer noise, on any `random.Random` (the CSPRNG in production).

The discrete Laplace and discrete Gaussian samplers of Canonne, Kamath and Steinke,
"The Discrete Gaussian for Differential Privacy" (NeurIPS 2020), Algorithms 1-3: only
integer and rational arithmetic (`fractions.Fraction`), no floating point, so the
output distribution is exactly the target one.  The caller passes the random source:
`random.SystemRandom()` for a release, a seeded `random.Random` in tests.

A party of a secure run draws one *share* per released sum (`share`): the parties'
shares add up to the release's noise, inside the secure computation.
"""

from __future__ import annotations

import json
import os
import math
import random
from collections.abc import Sequence
from fractions import Fraction
from pathlib import Path

LAPLACE, GAUSSIAN = "discrete-laplace", "discrete-gaussian"
SCALES_BOUND = 64  # a party's noise share beyond this many scales has probability below 1e-27
DEBUG = "COHORTBENCH_DEBUG_NOISE"  # =1, tests only: each party's shares also written beside its result


def bernoulli(p: Fraction, rng: random.Random) -> bool:
    """True with probability p (a rational in [0, 1])."""
    return rng.randrange(p.denominator) < p.numerator


def bernoulli_exp(gamma: Fraction, rng: random.Random) -> bool:
    """True with probability exp(-gamma), gamma >= 0 (CKS Algorithm 1)."""
    while gamma > 1:
        if not bernoulli_exp(Fraction(1), rng):
            return False
        gamma -= 1
    k = 1
    while bernoulli(gamma / k, rng):
        k += 1
    return k % 2 == 1


def discrete_laplace(scale: Fraction, rng: random.Random) -> int:
    """P(x) proportional to exp(-|x| / scale) over the integers (CKS Algorithm 2)."""
    t, s = scale.numerator, scale.denominator
    while True:
        u = rng.randrange(t)
        if not bernoulli_exp(Fraction(u, t), rng):
            continue
        v = 0
        while bernoulli_exp(Fraction(1), rng):
            v += 1
        y = (u + t * v) // s
        negative = rng.randrange(2) == 1
        if negative and y == 0:
            continue
        return -y if negative else y


def discrete_gaussian(variance: Fraction, rng: random.Random) -> int:
    """P(x) proportional to exp(-x^2 / (2 variance)) over the integers (CKS Algorithm 3)."""
    t = _isqrt_floor(variance) + 1
    while True:
        y = discrete_laplace(Fraction(t), rng)
        gap = abs(y) - variance / t
        if bernoulli_exp(gap * gap / (2 * variance), rng):
            return y


def _isqrt_floor(x: Fraction) -> int:
    """floor(sqrt(x)) of a rational x >= 0."""
    n = int(x)
    r = int(n**0.5)
    while (r + 1) * (r + 1) <= x:
        r += 1
    while r * r > x:
        r -= 1
    return r


def share(mechanism: str, scale: Fraction, shares: int, rng: random.Random) -> int:
    """One party's share of a release's noise of `scale` (Laplace: its scale; Gaussian:
    its variance is scale^2), when `shares` honest parties' shares must add up to it:
    a discrete Gaussian of variance scale^2 / shares, or (the Laplace noise is not
    split) a whole discrete Laplace of the scale."""
    if mechanism == GAUSSIAN:
        return discrete_gaussian(scale * scale / shares, rng)
    if mechanism == LAPLACE:
        return discrete_laplace(scale, rng)
    raise ValueError(f"unknown mechanism {mechanism!r}")


def draw(mechanism: str, scales: Sequence[Fraction | str], honest: int) -> list[int]:
    """One party's fresh shares of a release's sums, from the system's CSPRNG."""
    rng = random.SystemRandom()
    return [share(mechanism, Fraction(s), honest, rng) for s in scales]


def bound(scales: Sequence[Fraction | str], parties: int) -> int:
    """A bound on the total noise of a sum: every party's share within SCALES_BOUND scales."""
    return parties * SCALES_BOUND * math.ceil(max((Fraction(s) for s in scales), default=Fraction(0)))


def keep_for_tests(directory: Path, pid: int, shares: list[int]) -> None:
    """With COHORTBENCH_DEBUG_NOISE=1 (tests only, never a release), party pid's shares as
    `noise-<pid>.json` in `directory`, so that a test can take the noise-free sums."""
    if os.environ.get(DEBUG) == "1":
        (directory / f"noise-{pid}.json").write_text(json.dumps(shares))
