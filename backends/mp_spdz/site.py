"""A site's own step before its MP-SPDZ VM starts, when several sites hold the data.

Run in the party's directory as `python -m backends.mp_spdz.site site.json [-- VM ...]`:
the site reads only its own data file, evaluates its local parts in the clear
(`circuits.locality`), writes its input file `Player-Data/Input-P<i>-0` and execs
its VM.  When nothing of the query is secure (rows, eligible) its answer is its
own: it prints its patients' bits and starts no VM.  It prints its local
evaluation time on a line of its own (`LOCAL_PREFIX`).
"""

from __future__ import annotations

import json
import os
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from backends.mp_spdz import program
from circuits.cost import DataBounds
from circuits.holdings import Holdings
from circuits.ir import from_wire
from circuits.locality import Split, split
from circuits.sitedata import read_site_population

LOCAL_PREFIX = "cohortbench-site: local evaluation "  # then the seconds and " s"
JOB_FILE = "site.json"


@dataclass(frozen=True)
class SiteJob:
    """What a site knows: its own data file, and the run's public facts."""

    site: int
    data: str  # this site's own arrays (circuits.sitedata); no other site reads it
    rows: int  # patients in that file
    query: dict  # circuits.ir.to_wire
    deployment: dict  # partition, sites, site_of_group, local, reveal_to
    blocks: tuple[int, ...]
    patients: int
    slots: tuple[int, int]
    bounds: DataBounds
    lowering: str
    # Private criteria: the researcher's input lines (program.researcher_lines), in the job of
    # the site that is the researcher only; it inputs them after its own data.
    researcher_lines: tuple[str, ...] = ()
    # A stats query with dp: this site's shares of this run's noise (its last inputs), in
    # its own run directory's job only.
    noise: tuple[int, ...] = ()

    def write(self, path: Path) -> None:
        path.write_text(json.dumps(asdict(self)))

    @staticmethod
    def read(path: Path) -> SiteJob:
        d = json.loads(path.read_text())
        b = d["bounds"]
        d["bounds"] = DataBounds(**{**b, "exam_vocabulary": tuple(b["exam_vocabulary"])})
        return SiteJob(
            **{
                **d,
                "blocks": tuple(d["blocks"]),
                "slots": tuple(d["slots"]),
                "researcher_lines": tuple(d.get("researcher_lines", ())),
                "noise": tuple(d.get("noise", ())),
            }
        )

    def plan(self) -> Split:
        holdings = Holdings.of_public(self.deployment)
        query = from_wire(self.query)
        return split(query, holdings)

    def sites(self) -> program.Sites:
        return program.Sites(self.plan(), self.blocks)


def main(argv: list[str]) -> int:
    job = SiteJob.read(Path(argv[0]))
    vm = argv[2:] if argv[1:2] == ["--"] else []
    sites = job.sites()
    pop = read_site_population(Path(job.data), job.rows, job.slots)
    t0 = time.perf_counter()
    bits = sites.plan.local_bits(pop, job.site)
    local_s = time.perf_counter() - t0
    print(f"{LOCAL_PREFIX}{local_s:.6f} s", flush=True)
    if sites.plan.secure is None:  # its answer is its own
        print(f"ELIGIBLE {bits[:, 0].tolist()}", flush=True)
        return 0
    shape = program.Shape(job.patients, job.slots, job.bounds)
    text = program.site_input_text(sites, job.site, pop, bits, shape, job.lowering)
    text += "".join(f"{line}\n" for line in (*job.researcher_lines, *map(str, job.noise)))
    Path("Player-Data", f"Input-P{job.site}-0").write_text(text)
    os.execv(vm[0], vm)
    return 1  # not reached


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
