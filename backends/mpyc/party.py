"""The program each MPyC party process runs: `python -m backends.mpyc.party -M m -I i -P ...`.

The job file comes through the COHORTBENCH_JOB environment variable, not the
command line, because MPyC parses (and abbreviates) the command line itself.
Party 0 reads the private inputs and secret-shares them; the others read only
public sizes.  Each party writes its revealed result and timings as JSON.
"""
from __future__ import annotations

import json
import os
import resource
import time
from pathlib import Path

import numpy as np
from mpyc.runtime import mpc

from backends.mpyc.job import COLUMNS, Job
from backends.mpyc.paper_loop import PaperPatient
from backends.mpyc.vectorised import Columns, Vectorised
from circuits import cost
from circuits.ir import Output, Query, from_plain, leaves


def derived_bit_length(job: Job, query) -> int:
    """Widest comparison the query needs on this data's public ranges."""
    widths = [cost.estimate(leaf, *job.slots, job.bounds).max_bits for leaf in leaves(query.root)]
    return max(widths)


def _shapes(job: Job) -> dict[str, tuple[int, ...]]:
    n, (c, e) = job.size, job.slots
    return {"age": (n,), "gender": (n,), "smoker": (n,), "conditions": (n, c),
            "exam_codes": (n, e), "exam_months": (n, e)}


def _private(job: Job) -> dict[str, np.ndarray]:
    shapes = _shapes(job)
    if mpc.pid == 0:
        with np.load(job.data_path) as data:
            return {c: data[c] for c in COLUMNS}
    return {c: np.zeros(shapes[c], dtype=np.int64) for c in COLUMNS}


async def vectorised(job: Job, query, secint) -> object:
    data = _private(job)
    shared = {c: mpc.input(secint.array(data[c]), senders=0) for c in COLUMNS}
    mask = None
    if job.exact:
        with np.load(job.counts_path) as counts:
            mask = np.arange(job.slots[1]) < counts["exams"][:, None]
    bits = Vectorised(mpc, Columns(**shared), job.bounds, mask).eval(query.root)
    if query.output is Output.COUNT:
        return await mpc.output(mpc.np_sum(bits))
    return await mpc.output(bits, receivers=0)


async def paper_loop(job: Job, query, secint) -> object:
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
        scalars = [int(data["age"][i]), int(data["gender"][i]), int(data["smoker"][i]),
                   *map(int, data["conditions"][i, :nc]), *map(int, data["exam_codes"][i, :ne]),
                   *map(int, data["exam_months"][i, :ne])]
        x = mpc.input([secint(v) for v in scalars], senders=0)
        codes, months = x[3 + nc:3 + nc + ne], x[3 + nc + ne:]
        bit = PaperPatient(mpc, secint, x[0], x[1], x[2], x[3:3 + nc],
                           list(zip(codes, months))).eval(query.root)
        if query.output is Output.COUNT:
            total += bit
            await mpc.barrier(f"patient-{i}")
        else:
            bits.append(await mpc.output(bit, receivers=0))
    if query.output is Output.COUNT:
        return await mpc.output(total)
    return bits


async def main() -> None:
    job = Job.read(Path(os.environ["COHORTBENCH_JOB"]))
    query = Query(from_plain(job.query["root"]), Output(job.query["output"]))
    bit_length = job.bit_length or derived_bit_length(job, query)
    secint = mpc.SecInt(bit_length)
    await mpc.start()
    t0 = time.perf_counter()
    run = vectorised if job.protocol == "shamir" else paper_loop
    result = await run(job, query, secint)
    compute_s = time.perf_counter() - t0
    await mpc.shutdown()
    if isinstance(result, (list, np.ndarray)) and len(result) and result[0] is None:
        result = None  # not a receiver
    elif result is not None and not isinstance(result, int):
        result = [int(b) for b in np.asarray(result).reshape(-1)]
    record = {"pid": mpc.pid, "bit_length": bit_length, "compute_s": compute_s, "result": result,
              "peak_rss_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}
    Path(job.result_path, f"result-{mpc.pid}.json").write_text(json.dumps(record))


if __name__ == "__main__":
    mpc.run(main())
