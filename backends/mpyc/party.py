"""The program each MPyC party process runs: `python -m backends.mpyc.party -M m -I i -P ...`.

The job file comes through the COHORTBENCH_JOB environment variable, not the
command line, because MPyC parses (and abbreviates) the command line itself.
Party 0 reads the private inputs and secret-shares them, and with private criteria
the researcher its constants; the others read only public sizes.  Each party
writes its revealed result and timings as JSON.
"""

from __future__ import annotations

import functools
import json
import os
import resource
import time
from pathlib import Path
from typing import Any

import numpy as np
from mpyc.runtime import mpc

from backends.mpyc.job import COLUMNS, Job
from backends.mpyc.paper_loop import PaperPatient
from backends.mpyc.researcher import input_constants
from backends.mpyc.sites import run_sites
from backends.mpyc.statistics import Columns, comparison_bits, release
from backends.mpyc.vectorised import Vectorised, settle
from circuits import cost, noise
from circuits.ir import Output, Query, from_wire, leaves


def derived_bit_length(job: Job, query: Query) -> int:
    """Widest comparison the query needs on the data's public ranges, widened until
    MPyC's prime field (about bit_length + 32 bits) exceeds every code difference.

    The paper's loop compares raw codes with `mpc.eq`, whose width is the type's
    bit length, so there every code difference must fit the type itself.  A stats
    query's sums are revealed as signed field elements, so the field also exceeds
    twice the largest sum the population can reach.
    """
    widths = [cost.estimate(leaf, *job.slots, job.bounds).max_bits for leaf in leaves(query.root)]
    if job.protocol == "paper-loop":
        widths.append(cost.paper_code_bits(query.root, job.bounds))
    if query.stats is not None:
        widths.append(comparison_bits(query.stats, job.slots[1], job.bounds, job.sites))
    bit_length = max(widths + [8])
    field_bits = cost.field_bits_needed(query.root, job.bounds)
    if query.stats is not None:  # a revealed sum must not wrap: below half the field
        largest = job.size * query.stats.max_bound(job.slots[1])
        if job.noise is not None:  # and its noise: every party's share within 64 scales
            largest += noise.bound(job.noise["scales"], len(mpc.parties))
        field_bits = max(field_bits, largest.bit_length() + 1)
    while mpc.SecInt(bit_length).field.order.bit_length() <= field_bits:
        bit_length += 1
    return bit_length


def _private(job: Job) -> dict[str, np.ndarray]:
    """Party 0's columns (with exam types encoded on the public vocabulary); zeros elsewhere."""
    n, (c, e) = job.size, job.slots
    if mpc.pid != 0:
        shapes = {
            "age": (n,),
            "gender": (n,),
            "smoker": (n,),
            "conditions": (n, c),
            "exam_codes": (n, e),
            "exam_index": (n, e),
            "exam_months": (n, e),
        }
        return {name: np.zeros(shape, dtype=np.int64) for name, shape in shapes.items()}
    with np.load(job.data_path) as data:
        cols = {name: data[name] for name in COLUMNS}
    cols["exam_index"] = job.bounds.exam_indexes(cols["exam_codes"])
    return cols


async def vectorised(job: Job, query: Query, secint: Any) -> object:
    """All patients at once, in batches of `job.batch_size` to bound memory."""
    data = _private(job)
    mask = None
    if job.exact:
        with np.load(job.counts_path) as counts:
            mask = np.arange(job.slots[1]) < counts["exams"][:, None]
    bits_out: list[int] = []
    total = None
    constants = input_constants(job, secint)
    for lo in range(0, job.size, job.batch_size):
        hi = min(lo + job.batch_size, job.size)
        shared: dict[str, object] = {}

        def column(name: str, lo: int = lo, hi: int = hi, shared: dict = shared) -> Any:
            if name not in shared:
                shared[name] = mpc.input(secint.array(data[name][lo:hi]), senders=0)
            return shared[name]

        batch_mask = None if mask is None else mask[lo:hi]
        lowering = Vectorised(mpc, column, job.bounds, job.slots, batch_mask, constants)
        bits = lowering.visit(query.root)
        if query.output in (Output.COUNT, Output.STATS):
            part = _aggregate(query, lowering, bits)
            total = part if total is None else total + part
            await settle(mpc, total)
        else:
            got = await mpc.output(bits, receivers=0)
            bits_out.extend([] if got is None else got.tolist())
    if query.output is Output.COUNT:
        return await mpc.output(total)
    if query.output is Output.STATS:
        return await release(job, total, secint)
    return bits_out if mpc.pid == 0 else None


def _aggregate(query: Query, lowering: Vectorised, bits: Any) -> Any:
    """A batch's part of what the query reveals to all: the count, or the stats sums."""
    if query.stats is None:
        return mpc.np_sum(bits)
    return Columns(lowering).sums(bits, query.stats.columns())


async def paper_loop(job: Job, query: Query, secint: Any) -> object:
    data = _private(job)
    c_counts = e_counts = None
    if job.exact:
        with np.load(job.counts_path) as counts:
            c_counts, e_counts = counts["conditions"], counts["exams"]
    c_slots, e_slots = job.slots
    bits, total = [], secint(0)
    for i in range(job.size):
        nc = c_slots if c_counts is None else int(c_counts[i])
        ne = e_slots if e_counts is None else int(e_counts[i])
        scalars = [
            int(data["age"][i]),
            int(data["gender"][i]),
            int(data["smoker"][i]),
            *map(int, data["conditions"][i, :nc]),
            *map(int, data["exam_codes"][i, :ne]),
            *map(int, data["exam_months"][i, :ne]),
        ]
        x = mpc.input([secint(v) for v in scalars], senders=0)
        codes, months = x[3 + nc : 3 + nc + ne], x[3 + nc + ne :]
        bit = PaperPatient(mpc, secint, x[0], x[1], x[2], x[3 : 3 + nc], list(zip(codes, months))).visit(
            query.root
        )
        if query.output is Output.COUNT:
            total += bit
            await settle(mpc, total)
        else:
            bits.append(await mpc.output(bit, receivers=0))
    if query.output is Output.COUNT:
        return await mpc.output(total)
    return bits


async def run_job(job: Job) -> dict:
    """This party's part of the job: its revealed result, timings and bit length."""
    query = from_wire(job.query)
    bit_length = job.bit_length or derived_bit_length(job, query)
    secint = mpc.SecInt(bit_length)
    if job.deployment is not None:
        return await _site_job(job, query, secint, bit_length)
    await mpc.start()
    t0 = time.perf_counter()
    run = vectorised if job.protocol == "shamir" else paper_loop
    result = await run(job, query, secint)
    compute_s = time.perf_counter() - t0
    await mpc.shutdown()
    if isinstance(result, list):
        result = None if any(b is None for b in result) else [int(b) for b in result]
    return _record(bit_length, compute_s, result)


async def _site_job(job: Job, query: Query, secint: Any, bit_length: int) -> dict:
    """A site's part when several sites hold the data; `secure` false: it learnt its
    answer in the clear and never connected."""
    t0 = time.perf_counter()
    site = await run_sites(job, query, secint)
    compute_s = time.perf_counter() - t0
    if site.secure:
        await mpc.shutdown()
    extra = {
        "secure": site.secure,
        "local_s": site.local_s,
        "input_s": site.input_s,
        "input_bytes": site.input_bytes,
    }
    return {**_record(bit_length, compute_s, site.result), **extra}


def _record(bit_length: int, compute_s: float, result: object) -> dict:
    return {
        "pid": mpc.pid,
        "bit_length": bit_length,
        "compute_s": compute_s,
        "result": result,
        "peak_rss_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
    }


async def main() -> None:
    job = Job.read(Path(os.environ["COHORTBENCH_JOB"]))
    record = await run_job(job)
    Path(job.result_path, f"result-{mpc.pid}.json").write_text(json.dumps(record))


def bind_own_address() -> None:
    """Listen on this party's own address (its `-P HOST:PORT`) only: MPyC 0.10-0.11 opens
    its server with a port and no host, which listens on every interface."""
    create_server = mpc._loop.create_server
    mpc._loop.create_server = functools.partial(create_server, host=mpc.parties[mpc.pid].host)


if __name__ == "__main__":
    bind_own_address()
    mpc.run(main())
