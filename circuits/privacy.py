"""Differential privacy of a stats release: the noise of each sum, and what it spends.

Neighbouring cohorts differ by one patient (added or removed).  A sum's sensitivity
is its column's bound (`circuits.stats`); a histogram's bins are one release, since
a patient falls in at most one bin (L1 = L2 = 1).  The query's (epsilon, delta) is
split evenly over its releases:

* discrete Laplace: each release gets epsilon / G (pure DP, basic composition);
* discrete Gaussian: the total zCDP rho that gives (epsilon, delta) is found with
  OpenDP's zCDP-to-approximate-DP conversion, and each release gets rho / G (zCDP
  composes by addition).

With `dp.weights`, a release gets w / W of the budget instead of 1 / G: w is the largest
weight among the aggregates that need it (1 unless named), W the releases' total.

The noise is drawn in shares by the parties (`circuits.noise.share`) so that the
shares of the `honest` parties alone make up the whole noise; the others' shares
are independent extra noise, which costs no privacy.  A Gaussian's honest shares
sum to a sum of discrete Gaussians, not exactly one: Kairouz, Liu and Steinke, "The
Distributed Discrete Gaussian Mechanism" (ICML 2021, Theorem 1) bound the gap by a
term `tau`, which the accounting adds.  Every privacy figure comes from OpenDP's
measurements of the mechanism (`make_laplace`, `make_gaussian`, their `map`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction

import opendp.prelude as dp

from circuits.noise import GAUSSIAN
from circuits.stats import Column, InBin, IsCode, Privacy, Stats

dp.enable_features("contrib")
_PRECISION = 10**9  # noise scales are rationals rounded up to this denominator


@dataclass(frozen=True)
class Release:
    """Sums released together: one column, or a histogram's bins."""

    columns: tuple[Column, ...]
    sensitivity: int  # L1 and L2 alike: a single sum's bound, or 1 for a histogram
    scale: Fraction  # the noise: Laplace scale, or Gaussian standard deviation


@dataclass(frozen=True)
class Plan:
    """The noise of every sum of a stats query and the privacy it spends."""

    privacy: Privacy
    releases: tuple[Release, ...]
    honest: int  # shares that make up the whole noise: the parties outside the coalition
    parties: int
    epsilon: float  # spent, by OpenDP (with the Gaussian's sum-of-shares gap)
    delta: float

    def scales(self, columns: tuple[Column, ...]) -> list[Fraction]:
        """Each column's noise scale, in `columns` order."""
        by_column = {c: r.scale for r in self.releases for c in r.columns}
        return [by_column[c] for c in columns]

    def job(self, stats: Stats, sites: int) -> dict:
        """What a party needs to draw its shares: the mechanism, each released sum's scale
        (as "p/q", in `Stats.released` order) and the honest shares."""
        scales = self.scales(stats.released(sites))
        return {
            "mechanism": self.privacy.mechanism,
            "scales": [str(s) for s in scales],
            "honest": self.honest,
        }

    def record(self) -> dict:
        """The record's `dp` field."""
        return {
            "mechanism": self.privacy.mechanism,
            "epsilon": self.privacy.epsilon,
            "delta": self.privacy.delta,
            "epsilon_spent": self.epsilon,
            "delta_spent": self.delta,
            "honest_shares": self.honest,
            "parties": self.parties,
            "scale": {c.name: float(r.scale) for r in self.releases for c in r.columns},
            "weights": dict(self.privacy.weights),
        }


def releases(stats: Stats, exam_slots: int, sites: int = 0) -> list[tuple[tuple[Column, ...], int]]:
    """The query's releases and their sensitivities (`by_site`, each site's release of a
    sum is over its own patients: parallel composition, so one release counts for all)."""
    out = []
    for g in stats.aggregates:
        if g.op == "histogram":
            out.append((g.columns(sites), 1))
    binned = {c for cols, _ in out for c in cols}
    singles = [c for c in stats.columns(sites) if c not in binned and not isinstance(c, (InBin, IsCode))]
    return out + [((c,), c.bound(exam_slots)) for c in singles]


def plan(stats: Stats, exam_slots: int, parties: int, coalition: int, sites: int = 0) -> Plan:
    """The noise of each release for (epsilon, delta) = stats.dp, with `coalition` of
    the `parties` knowing their own shares."""
    privacy = stats.dp
    if privacy is None:
        raise ValueError("the query has no dp")
    groups = releases(stats, exam_slots, sites)
    honest = parties - coalition
    weights = _weights(stats, [cols for cols, _ in groups], sites)
    total = sum(weights)
    if privacy.mechanism == GAUSSIAN:
        rho = _rho_for(privacy.epsilon, privacy.delta)
        scales = [d / math.sqrt(2 * (rho * w / total)) for (_, d), w in zip(groups, weights)]
    else:
        scales = [d / (privacy.epsilon * w / total) for (_, d), w in zip(groups, weights)]
    made = [Release(cols, d, _round_up(x)) for (cols, d), x in zip(groups, scales)]
    epsilon, delta = spent(privacy, made, honest)
    return Plan(privacy, tuple(made), honest, parties, epsilon, delta)


def _weights(stats: Stats, groups: list[tuple[Column, ...]], sites: int) -> list[float]:
    """Each release's weight: the largest of the aggregates that need it (1 by default)."""
    assert stats.dp is not None
    return [
        max(stats.dp.weight(g.name) for g in stats.aggregates if set(g.columns(sites)) & set(cols))
        for cols in groups
    ]


def _round_up(x: float) -> Fraction:
    """x as a rational no smaller than x (more noise, never less)."""
    return Fraction(math.ceil(x * _PRECISION), _PRECISION)


def spent(privacy: Privacy, made: list[Release], honest: int) -> tuple[float, float]:
    """(epsilon, delta) of all the releases together, by OpenDP."""
    if privacy.mechanism != GAUSSIAN:
        return sum(_laplace(r).map(r.sensitivity) for r in made), 0.0
    rho = sum(_gaussian(r).map(r.sensitivity) + _share_gap(r, honest) for r in made)
    return _epsilon_at(rho, privacy.delta), privacy.delta


def _laplace(r: Release) -> dp.Measurement:
    space = (dp.vector_domain(dp.atom_domain(T=int)), dp.l1_distance(T=int))
    return dp.m.make_laplace(*space, scale=float(r.scale))


def _gaussian(r: Release) -> dp.Measurement:
    space = (dp.vector_domain(dp.atom_domain(T=int)), dp.l2_distance(T=int))
    return dp.m.make_gaussian(*space, scale=float(r.scale))


def _share_gap(r: Release, honest: int) -> float:
    """Kairouz et al.'s extra zCDP rho of a sum of `honest` discrete Gaussians (tau d / 4)."""
    variance = float(r.scale) ** 2 / honest
    tau = 10 * sum(math.exp(-2 * math.pi**2 * variance * k / (k + 1)) for k in range(1, honest))
    return tau * len(r.columns) / 4


def _epsilon_at(rho: float, delta: float) -> float:
    """The epsilon of rho-zCDP at delta, by OpenDP's conversion."""
    unit = dp.m.make_gaussian(
        dp.atom_domain(T=int), dp.absolute_distance(T=int), scale=1 / math.sqrt(2 * rho)
    )
    return dp.c.make_zCDP_to_approxDP(unit).map(1).epsilon(delta)


def _rho_for(epsilon: float, delta: float) -> float:
    """The largest zCDP rho whose (epsilon, delta) conversion stays within epsilon."""
    low, high = 1e-12, 1.0
    while _epsilon_at(high, delta) < epsilon:
        high *= 2
    for _ in range(60):
        mid = (low + high) / 2
        low, high = (mid, high) if _epsilon_at(mid, delta) <= epsilon else (low, mid)
    return low


def coalition(majority: str, parties: int) -> int:
    """The largest coalition of parties a protocol's security model tolerates."""
    return (parties - 1) // 2 if majority == "honest" else parties - 1


def for_protocol(stats: Stats, exam_slots: int, parties: int, majority: str, sites: int = 0) -> Plan:
    """The plan of a protocol with `parties` and an `honest` or `dishonest` majority: the
    parties outside the largest coalition it tolerates make up the noise."""
    return plan(stats, exam_slots, parties, coalition(majority, parties), sites)


def stated_accuracy(mechanism: str, scale: float, parties: int, honest: int, alpha: float) -> float | None:
    """OpenDP's accuracy (|noise| <= a with probability 1 - alpha) of the noise a release
    carries: every party's share added, a discrete Gaussian of scale^2 * parties / honest
    (to Kairouz et al.'s gap).  None for Laplace shares of several parties, whose sum is no
    discrete Laplace."""
    if mechanism == GAUSSIAN:
        return dp.discrete_gaussian_scale_to_accuracy(scale=scale * math.sqrt(parties / honest), alpha=alpha)
    if parties == 1:
        return dp.discrete_laplacian_scale_to_accuracy(scale=scale, alpha=alpha)
    return None
