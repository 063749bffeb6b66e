"""Multiparty homomorphic encryption (OpenFHE threshold BFV) as a cohortbench engine.

Every party is a site holding its key share (n-out-of-n threshold decryption); party
0 is also the star's aggregator.  A cell writes each site's data file once and
chooses the BFV parameters from its split query (`params`); each run's job file
(`job.Job`) names the ports of the star, which party 0 dials (so the relay routes
i -> j for i < j, as for MPyC).  With `keys: reuse` the key shares the cell's first
run generated stay in the cell's directory (each party's in its own) and later runs
skip the setup, recording setup_s 0 and setup_bytes 0: the figures of each run are
what that run did, and a sweep's first run carries the whole setup.  The parties run
under their own interpreter (`interpreter`); where none is found every cell is
Unavailable and `cohortbench doctor` says how to make one.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Literal

from backends.engine import DISHONEST, MAX_PARTIES, SEMI_HONEST, Engine, Figures, Finding, Finished, Links
from backends.engine import OutputError, Party, Preparation, ProtocolFacts, Spec, Unavailable, python_path
from backends.mhe import interpreter, lookup, sums
from backends.mhe.job import Job, keys_saved
from backends.mhe.params import MODES, Params, depth, depth_problem, plaintext_modulus
from circuits import noise, privacy, secret
from circuits.cost import DataBounds
from circuits.holdings import PATIENT_HELD, Holdings, Partition
from circuits.ir import Output, Query, to_wire
from circuits.locality import Split, split
from circuits.population import Population
from circuits.sitedata import blocks, write_site_files

FACTS = {
    name: ProtocolFacts(
        name,
        SEMI_HONEST,
        DISHONEST,
        "rlwe",
        2,
        MAX_PARTIES,
        too_few="leave nothing to hide from: one site holds every key share",
        private_criteria=True,
        sites_only=True,
    )
    for name in MODES
}
REUSE = "reuse"


class MheSpec(Spec):
    title = "MHE"
    defaults = FACTS
    engine: Literal["mhe"]
    keys: Literal["per-run", "reuse"] = "per-run"  # generate the keys each run, or once per cell
    ring_dimension: Literal[4096, 8192, 16384, 32768] | None = None  # None: OpenFHE's smallest secure one

    @classmethod
    def default_protocol(cls) -> str:
        return "bfv"

    def options_label(self) -> str:
        ring = f" N={self.ring_dimension}" if self.ring_dimension else ""
        return ring + (" keys=reuse" if self.keys == REUSE else "")

    def query_problem(self, query: Query, holdings: Holdings) -> tuple[str, str] | None:
        if holdings.partition is Partition.PATIENT:
            return None  # refused as a deployment (`sites_only`), not for its query
        if self.private:
            problem = lookup.unsupported(query.root)
            if problem:
                return problem, "make those criteria public (criteria: public), or use MPyC or MP-SPDZ"
            query = secret.hide(query, DataBounds(), 0).template  # its shape: the depth's
        plan = split(query, holdings)
        if _unsupported(plan) is not None:
            return None
        return depth_problem(self.protocol, _depth(plan), self.ring_dimension)


def _depth(plan: Split) -> int:
    """The multiplicative depth the cell's circuit needs: none for a sum or nothing secure;
    under columns the remainder's, and for stats its bits times each sum's factors."""
    if plan.secure is None or plan.presum:
        return 0
    remainder = depth(plan.secure)
    if plan.query.stats is None:
        return remainder
    return max(sums.extra_depth(f, remainder) for f in sums.factors(plan))


def _unsupported(plan: Split) -> str | None:
    """What this first MHE engine does not lower yet (None: it runs the cell)."""
    if not plan.holdings.local:
        return (
            "local: off needs comparisons on encrypted raw columns, which this engine does not "
            "evaluate: sites always evaluate their own data in the clear; use local: auto"
        )
    private = plan.holdings.partition is Partition.ROWS and secret.is_private(plan.query.root)
    if private and (plan.query.output is not Output.COUNT or plan.query.stats is not None):
        return (
            "private criteria under rows give a count only: each site's own bits (eligible), "
            "its own count and statistics would need decryption by one site of its own slots; "
            "use output: count, or partition: columns"
        )
    return None


class MheCell:
    """A cell's site files written and parameters chosen once; each run has its job file."""

    def __init__(
        self, spec: MheSpec, query: Query, pop: Population, workdir: Path, holdings: Holdings = PATIENT_HELD
    ):
        if holdings is PATIENT_HELD:
            raise Unavailable(
                f"{spec.label}: MHE needs sites holding the data (a deployment with a partition)"
            )
        self.spec, self.workdir = spec, workdir.resolve()
        self.workdir.mkdir(parents=True, exist_ok=True)
        query, self.constants_path = self._criteria(query, pop)
        self.split = split(query, holdings)
        problem = _unsupported(self.split)
        if problem:
            raise Unavailable(f"{spec.label}: {problem}")
        self.python = interpreter.find()
        if not self.python.ok:
            raise Unavailable(f"{spec.label}: {self.python.problem}; {interpreter.FIX}")
        self.dp = _noise_plan(spec, query, pop, holdings.sites)
        self.noise = (
            None if self.dp is None or query.stats is None else self.dp.job(query.stats, holdings.sites)
        )
        largest = len(pop) if query.stats is None else 2 * self._sum_bound(query, pop) + 1
        self.params = Params(
            spec.protocol, spec.parties, _depth(self.split), plaintext_modulus(largest), spec.ring_dimension
        )
        self.query, self.holdings, self.blocks = query, holdings, list(blocks(holdings, len(pop)))
        self.site_paths = write_site_files(pop, holdings, self.workdir)
        self.slots = pop.slots
        self.kept_keys = self.workdir / "keys"
        self.preparation = Preparation()

    def _criteria(self, query: Query, pop: Population) -> tuple[Query, str]:
        """Private criteria: the query's template, and the constants in a file for the
        researcher alone (mode 0600).  Public: the query, and no file."""
        if not self.spec.private:
            return query, ""
        hidden = secret.hide(query, DataBounds.of(pop), pop.slots[1], self.spec.max_codes)
        path = self.workdir / "private-criteria.json"
        path.touch(mode=0o600)
        path.write_text(json.dumps(list(hidden.constants)))
        return hidden.template, str(path)

    def _sum_bound(self, query: Query, pop: Population) -> int:
        """The largest |sum| a stats query releases, with its noise: the slots must hold it signed."""
        assert query.stats is not None
        spread = 0 if self.noise is None else noise.bound(self.noise["scales"], self.spec.parties)
        return len(pop) * query.stats.max_bound(pop.slots[1]) + spread

    def plan(self, run_dir: Path, links: Links, traced: bool) -> list[Party]:
        keys_dir = self.kept_keys if self.spec.keys == REUSE else run_dir / "keys"
        reuse = self.spec.keys == REUSE and keys_saved(keys_dir, self.spec.parties)
        job = Job(
            to_wire(self.query),
            self.holdings.public(),
            self.blocks,
            self.slots,
            self.params.to_json(),
            [str(p) for p in self.site_paths],
            str(keys_dir),
            reuse,
            str(run_dir),
            [[links.host(i, j) for j in range(links.parties)] for i in range(links.parties)],
            [list(view) for view in links.views],
            self.noise,
            self.spec.researcher_party,
            self.constants_path,
        )
        job_path = run_dir / "job.json"
        job.write(job_path)
        argv = (str(self.python.path), "-m", "backends.mhe.party", str(job_path))
        return [Party((*argv, str(i)), self.workdir, python_path()) for i in range(self.spec.parties)]

    def read(self, run: Finished) -> Figures:
        reports = [_report(run.run_dir / f"result-{i}.json", i) for i in range(self.spec.parties)]
        secure = [r for r in reports if r["secure"]]
        return Figures(
            answers=[r["answer"] for r in reports],
            engine_s=[r["engine_s"] for r in reports],
            bytes_by_party=[r["bytes_sent"] for r in reports],
            peak_rss_kib_by_party=[r["peak_rss_kib"] for r in reports],
            local_s=[r["local_s"] for r in reports],
            input_s=[r.get("input_s") for r in reports],
            input_bytes_by_party=[r.get("input_bytes") for r in reports],
            setup_s=max(r["setup_s"] for r in secure) if secure else None,
            setup_bytes=sum(r["setup_bytes"] for r in secure) if secure else None,
            keys=secure[0]["keys"] if secure else None,
            topology=secure[0]["topology"] if secure else None,
            scheme_params=secure[0]["params"] if secure else None,
            dp=None if self.dp is None else self.dp.record(),
        )

    def finish(self, run_dir: Path) -> None:
        """Per-run keys go with their run (`keys: reuse` keeps the cell's until `close`)."""
        shutil.rmtree(run_dir / "keys", ignore_errors=True)

    def close(self) -> None:
        """Remove the sites' data files and any kept key shares; logs and results stay."""
        shutil.rmtree(self.kept_keys, ignore_errors=True)
        for path in self.site_paths:
            path.unlink(missing_ok=True)
        if self.constants_path:
            Path(self.constants_path).unlink(missing_ok=True)


def _noise_plan(spec: MheSpec, query: Query, pop: Population, sites: int) -> privacy.Plan | None:
    """A stats query with dp: the noise of each sum; n-out-of-n decryption tolerates n - 1
    colluding parties, so one party's share makes up the whole noise."""
    if query.stats is None or query.stats.dp is None:
        return None
    return privacy.for_protocol(query.stats, pop.slots[1], spec.parties, spec.facts.majority, sites)


def _report(path: Path, pid: int) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise OutputError(f"party {pid} wrote no readable result ({path}: {e})") from None


def _versions() -> dict[str, str | None]:
    found = interpreter.find()
    return {"openfhe": found.openfhe, "mhe_python": found.python}


def _doctor() -> list[Finding]:
    found = interpreter.find()
    if not found.ok:
        return [Finding("MHE", "interpreter", False, str(found.problem), interpreter.FIX)]
    detail = f"{found.path} (CPython {found.python}, openfhe {found.openfhe})"
    return [Finding("MHE", "interpreter", True, detail)]


# Party 0 dials every other party: the relay's routes i -> j for i < j suffice.
ENGINE = Engine("mhe", MheSpec, MheCell, versions=_versions, doctor=_doctor)
