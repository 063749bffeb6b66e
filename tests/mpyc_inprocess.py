"""MPyC's two lowerings run in this process, by one party (no -M), for tests of many small runs.

The answers are those of a multi-party run (the same `party.run_job`); the costs
are not, since nothing is sent.  MPyC reads the command line when its runtime is
first imported, so it is imported here with pytest's arguments hidden from it.
"""

from __future__ import annotations

import sys
from pathlib import Path

from backends.mpyc.job import Job, write_constants, write_inputs
from circuits.cost import DataBounds
from circuits.ir import Query, to_wire
from circuits.population import Population
from circuits.secret import Hidden, constants_count

_argv, sys.argv = sys.argv, sys.argv[:1]
try:
    from mpyc.runtime import mpc

    from backends.mpyc import party
finally:
    sys.argv = _argv


def run(
    protocol: str,
    query: Query,
    pop: Population,
    workdir: Path,
    hidden: Hidden | None = None,
    noise: dict | None = None,
) -> object:
    """The revealed result of `query` on `pop`: the eligible bits, the count or the stats
    sums.  With `hidden`, its template runs instead, the one party also the researcher;
    with `noise` (`Job.noise`), the sums are noised by its one share."""
    workdir.mkdir(parents=True, exist_ok=True)
    data, counts = write_inputs(pop, workdir)
    if hidden is not None:
        query = hidden.template
    private = (
        {}
        if hidden is None
        else {
            "researcher": 0,
            "constants": constants_count(query.root),
            "constants_path": write_constants(hidden.constants, workdir),
        }
    )
    job = Job(
        protocol,
        to_wire(query),
        None,
        len(pop),
        pop.slots,
        DataBounds.of(pop),
        pop.padding.exact,
        data,
        counts,
        str(workdir),
        **private,
        noise=noise,
    )
    return mpc.run(party.run_job(job))["result"]
