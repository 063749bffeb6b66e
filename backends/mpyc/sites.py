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
from backends.mpyc.vectorised import Vectorised, settle
from circuits.holdings import Holdings, Partition
from circuits.ir import AgeRange, ExamCount, Gender, HasCondition, LocalBit, Output, Query, SecretAge
from circuits.ir import SecretCondition, SecretExam, SecretGender, SecretSmoker, Smoker, leaves
from circuits.locality import Split, local_column, local_index, split
from circuits.population import Population
from circuits.sitedata import holding, read_site_population


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
        shares = mpc.input(secint(int(bits[:, 0].sum())), senders=list(range(plan.holdings.sites)))
        sent, input_s = await _inputs_done(shares, t0)
        return SiteRun(await _presummed(query, shares), local_s, input_s, sent)
    columns = {
        name: _share(plan.holder(name), own_column(plan, pop, bits, name, job), job, secint)
        for name in read_columns(plan.secure, job)
    }
    constants = input_constants(job, secint)
    inputs = list(columns.values()) + ([] if constants is None else [constants])
    sent, input_s = await _inputs_done(inputs, t0)
    secure = Vectorised(mpc, columns.__getitem__, job.bounds, job.slots, exam_mask(job), constants).visit(
        plan.secure
    )
    return SiteRun(await _reveal(plan, query, secure, job, secint), local_s, input_s, sent)


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


async def _presummed(query: Query, shares: list) -> object:
    """Rows with every site's count input: the total, or every site's count, to all."""
    if query.output is Output.COUNT:
        return await mpc.output(mpc.sum(shares))
    return [int(c) for c in await mpc.output(shares)]


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
