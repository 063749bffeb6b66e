"""A site's part of a run when several sites hold the data (`circuits.holdings`).

Each site reads only its own file: its patients' rows (`rows`) or its column groups
of every patient (`columns`).  It evaluates its local parts in the clear
(`circuits.locality`), inputs its raw columns and local bits to the secure
remainder, and learns what the deployment reveals to it: under `rows` its own
patients' bits (in the order it holds them) or every site's count; under
`columns` the bits go to `reveal_to` only.  Site blocks are public sizes; under
`rows` the secure arrays hold the sites' blocks one after another.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from mpyc.runtime import mpc

from backends.mpyc.job import Job
from backends.mpyc.researcher import input_constants
from backends.mpyc.statistics import Columns, release
from backends.mpyc.vectorised import Vectorised, settle
from circuits.holdings import Holdings, Partition
from circuits.ir import AgeRange, ExamCount, Gender, HasCondition, LocalBit, Output, Query, SecretAge
from circuits.ir import SecretCondition, SecretExam, SecretGender, SecretSmoker, Smoker, leaves
from circuits.locality import Split, local_column, local_index, split
from circuits.oracle import site_sums
from circuits.population import Population
from circuits.sitedata import holding, read_site_population
from circuits.stats import Stats


@dataclass(frozen=True)
class SiteRun:
    """What this site learnt and what its local work and inputs cost."""

    result: object
    local_s: float
    input_s: float | None  # from the start of the secure part until every input is shared
    input_bytes: int | None  # bytes this party sent until then

    @property
    def secure(self) -> bool:
        """Whether the site took part in a secure computation (no: its answer was its own)."""
        return self.input_s is not None


def holdings_of(job: Job) -> Holdings:
    """The public facts of the deployment (the sites' patients are not among them)."""
    assert job.deployment is not None
    return Holdings.of_public(job.deployment)


def own_population(job: Job) -> Population:
    """This site's data as a population: its own columns, zeros where it holds none (all
    of them, for a researcher that is not a site)."""
    assert job.deployment is not None
    rows = job.deployment["partition"] == "rows"
    if mpc.pid >= len(job.site_paths):
        return holding(0 if rows else job.size, job.slots, {})
    n = job.deployment["blocks"][mpc.pid] if rows else job.size
    return read_site_population(Path(job.site_paths[mpc.pid]), n, job.slots)


_DEMOGRAPHICS = {
    AgeRange: "age",
    Gender: "gender",
    Smoker: "smoker",
    SecretAge: "age",
    SecretGender: "gender",
    SecretSmoker: "smoker",
}


def read_columns(root: Any, job: Job) -> list[str]:
    """The secret columns the secure tree reads, as the vectorised lowering names them."""
    names: set[str] = set()
    for leaf in leaves(root):
        if type(leaf) in _DEMOGRAPHICS:
            names.add(_DEMOGRAPHICS[type(leaf)])
        elif isinstance(leaf, (HasCondition, SecretCondition)):
            names.add("conditions")
        elif isinstance(leaf, (ExamCount, SecretExam)):
            known = isinstance(leaf, SecretExam) or job.bounds.exam_index(leaf.loinc) is not None
            names.update(("exam_months", "exam_index" if known else "exam_codes"))
        elif isinstance(leaf, LocalBit):
            names.add(local_column(leaf.index))
    return sorted(names)


def _stats_columns(stats: Stats | None, job: Job) -> set[str]:
    """The secret columns a stats query's columns read (`site` is public under rows; the
    count's ones take the age column's shape)."""
    if stats is None:
        return set()
    names = {"age"}
    for a in stats.attributes():
        if a.kind == "exams":
            names.update(read_columns(ExamCount(a.loinc, 1, a.within_months), job))
        elif a.kind != "site":
            names.add(a.kind)
    return names


def own_column(plan: Split, pop: Population, bits: np.ndarray, name: str, job: Job) -> np.ndarray:
    """This site's values of column `name` (zeros of the public shape where it holds none)."""
    k, mine = local_index(name), plan.parts_of(mpc.pid)
    if k is not None:
        return bits[:, mine.index(k)] if k in mine else np.zeros(len(pop), dtype=np.int64)
    if name == "exam_index":
        return job.bounds.exam_indexes(pop.exam_codes)
    return getattr(pop, name)


async def run_sites(job: Job, query: Query, secint: Any) -> SiteRun:
    """This site's part: local parts in the clear, then the secure remainder."""
    plan = split(query, holdings_of(job))
    pop = own_population(job)
    t0 = time.perf_counter()
    bits = plan.local_bits(pop, mpc.pid)
    local_s = time.perf_counter() - t0
    if plan.secure is None:  # rows, eligible: each site's answer is its own
        return SiteRun(bits[:, 0].tolist(), local_s, None, None)
    await mpc.start()
    t0 = time.perf_counter()
    if plan.presum:
        shares = _input_own_sums(query, plan, pop, bits, secint)
        sent, input_s = await _inputs_done(shares, t0)
        return SiteRun(await _presummed(query, shares, job, secint), local_s, input_s, sent)
    columns = {
        name: _share(plan.holder(name), own_column(plan, pop, bits, name, job), job, secint)
        for name in sorted({*read_columns(plan.secure, job), *_stats_columns(query.stats, job)})
    }
    constants = input_constants(job, secint)
    inputs = list(columns.values()) + ([] if constants is None else [constants])
    sent, input_s = await _inputs_done(inputs, t0)
    lowering = Vectorised(mpc, columns.__getitem__, job.bounds, job.slots, exam_mask(job), constants)
    secure = lowering.visit(plan.secure)
    if query.stats is not None:
        return SiteRun(await _stats(query.stats, lowering, secure, job, secint), local_s, input_s, sent)
    return SiteRun(await _reveal(plan, query, secure, job, secint), local_s, input_s, sent)


def _input_own_sums(query: Query, plan: Split, pop: Population, bits: np.ndarray, secint: Any) -> list:
    """What each site holding rows inputs in place of its patients: its count, or the sums
    of a stats query over its own cohort (`circuits.oracle.site_sums`)."""
    senders = list(range(plan.holdings.sites))
    if query.stats is None:
        return mpc.input(secint(int(bits[:, 0].sum())), senders=senders)
    mine = site_sums(query.stats, pop, bits[:, 0].astype(bool), mpc.pid, len(senders))
    return mpc.input(secint.array(np.array(mine, dtype=np.int64)), senders=senders)


async def _inputs_done(shares: list, t0: float) -> tuple[int, float]:
    """Once this site holds its shares of every input: what it sent, and how long it took."""
    await settle(mpc, shares)
    sent = sum(p.protocol.nbytes_sent for p in mpc.parties if p.pid != mpc.pid)
    return sent, time.perf_counter() - t0


def _share(site: int | None, own: np.ndarray, job: Job, secint: Any) -> Any:
    """One column secret-shared: by its holder (`site`), or under rows (None) every
    site's block, joined in site order."""
    assert job.deployment is not None
    if site is not None:
        return mpc.input(secint.array(own), senders=site)
    blocks = []
    for s, size in enumerate(job.deployment["blocks"]):
        if size:
            mine = own if s == mpc.pid else np.zeros((size, *own.shape[1:]), dtype=np.int64)
            blocks.append(mpc.input(secint.array(mine), senders=s))
    return blocks[0] if len(blocks) == 1 else mpc.np_concatenate(blocks, axis=0)


def exam_mask(job: Job) -> np.ndarray | None:
    """With exact padding the real exam slots (public counts, in the secure arrays' order)."""
    if not job.exact:
        return None
    with np.load(job.counts_path) as counts:
        return np.arange(job.slots[1]) < counts["exams"][:, None]


async def _presummed(query: Query, shares: list, job: Job, secint: Any) -> object:
    """Rows with every site's count (or stats sums) input: the total, or every site's, to all."""
    if query.stats is not None:
        by_site = query.stats.by_site
        return await release(
            job, mpc.np_concatenate(shares) if by_site else sum(shares[1:], shares[0]), secint
        )
    if query.output is Output.COUNT:
        return await mpc.output(mpc.sum(shares))
    return [int(c) for c in await mpc.output(shares)]


async def _stats(stats: Stats, lowering: Vectorised, bits: Any, job: Job, secint: Any) -> list[int]:
    """A stats query's sums over the secure cohort, per site `by_site`, to all."""
    assert job.deployment is not None
    sites = job.sites
    columns = stats.columns(sites)
    rows = job.deployment["partition"] == "rows"
    site_of_row = np.repeat(np.arange(sites), job.deployment["blocks"]) if rows else None
    visitor = Columns(lowering, site_of_row)
    if stats.by_site:
        return await release(job, visitor.sums_by_block(bits, columns, job.deployment["blocks"]), secint)
    return await release(job, visitor.sums(bits, columns), secint)


async def _reveal(plan: Split, query: Query, bits: Any, job: Job, secint: Any) -> object:
    """What the remainder's bits reveal, to whom the deployment says."""
    assert job.deployment is not None
    if query.output is Output.COUNT:
        return int(await mpc.output(mpc.np_sum(bits)))
    if plan.holdings.partition is Partition.COLUMNS:
        got = await mpc.output(bits, receivers=plan.holdings.reveal_to)
        return None if got is None else [int(b) for b in got]
    edges = np.cumsum([0, *job.deployment["blocks"]])
    if query.output is Output.COUNT_BY_SITE:
        sums = [mpc.np_sum(bits[a:b]) if b > a else secint(0) for a, b in zip(edges, edges[1:])]
        return [int(c) for c in await mpc.output(sums)]
    mine = None
    for site, (a, b) in enumerate(zip(edges, edges[1:])):
        got = await mpc.output(bits[a:b], receivers=site) if b > a else []
        if site == mpc.pid:
            mine = [] if got is None else [int(x) for x in got]
    return mine
