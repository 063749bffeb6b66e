"""MP-SPDZ as a cohortbench engine: its YAML spec, its protocols' facts, and one cell's runs.

A cell compiles its program once (cached across sweeps); each run lays out the
parties' directories, certificates and address files afresh and removes the
private input file and keys when it ends.  VMs connect in every direction.
"""

from __future__ import annotations

import os
import re
import subprocess
from dataclasses import replace
from fractions import Fraction
from pathlib import Path
from typing import Literal

from backends.engine import Engine, Figures, Finding, Finished, Links, OutputError, Party, Preparation
from backends.engine import ProtocolFacts, Spec, Unavailable, python_path
from backends.mp_spdz import compile as mp_compile
from backends.mp_spdz import launch, program, protocols, throwtrace
from backends.mp_spdz.site import SiteJob
from circuits import noise, privacy, secret
from circuits.cost import DataBounds
from circuits.holdings import PATIENT_HELD, Holdings
from circuits.ir import Query, to_wire
from circuits.locality import split
from circuits.population import Population
from circuits.sitedata import blocks, write_site_files


FACTS = {
    p.name: ProtocolFacts(
        p.name, p.security, p.majority, p.domain, p.min_parties, p.max_parties, p.tls, private_criteria=True
    )
    for p in protocols.PROTOCOLS.values()
}
# What the program prints as its answer (see program.parse_output).
_ANSWER = re.compile(r"^(?:ELIGIBLE|COUNT|COUNT_BY_SITE|STATS) ", re.M)
# Integrity aborts: MP-SPDZ's checks (Tools/Exceptions.h and the protocols): mac_fail
# ("MacCheck Failure", "check hash mismatch", "inconsistent Shamir secret sharing",
# "mismatch in private output"), Offline_Check_Error ("Offline-Check-Error : ..."), the
# sacrifice's bad_value ("Some value is wrong somewhere"), commitments, broadcasts, and the
# OT extension's own checks (libOTe's SoftSpoken: "PPRF failed consistency check", "Failed
# subspace VOLE consistency check"; "OT consistency check failed", "correlation check"),
# which run in the semi-honest OT-based VMs too.  In tamper experiments the VMs also print the
# type of every exception they throw (throwtrace.c): "cohortbench: C++ exception thrown:
# mac_fail" shows a check that failed even where MP-SPDZ's own message is lost (a MAC checker
# destroyed with unchecked openings calls terminate() first).
ABORTS = re.compile(
    r"MacCheck Failure|mac_fail|MAC check|check hash mismatch|inconsistent Shamir secret sharing"
    r"|mismatch in private output|Offline-Check-Error|Offline_Check_Error|consistency check"
    r"|consistency_check_fail|correlation check|Invalid Commitment|invalid_commitment"
    r"|Inconsistent broadcast|broadcast_invalid|Some value is wrong somewhere"
    r"|hash mismatch in joint message passing|invalid replicated secret sharing"
)
# TLS rejecting a record: OpenSSL via Boost.Asio reports e.g. "read_some: cipher operation
# failed (Provider routines) [asio.ssl:478150758]" (AES-GCM tag mismatch) or "wrong version
# number (SSL routines) [asio.ssl:167772427]" (a corrupted record header).  NOT "stream
# truncated [asio.ssl.stream:1]": that is a peer that went away.
TLS_ERRORS = re.compile(
    r"\[asio\.ssl:\d+\]|bad record mac|decryption failed|cipher operation failed"
    r"|wrong version number|record layer failure|packet length too long",
    re.I,
)


class MpSpdzSpec(Spec):
    title = "MP-SPDZ"
    defaults = FACTS
    engine: Literal["mp-spdz"]
    lowering: Literal["binary", "arithmetic"] | None = None  # None: the measured default
    edabit: bool | None = None  # compile option -Y; None: the measured default

    def options_label(self) -> str:
        label = f" {self.lowering}" if self.lowering else ""
        return label + ("" if self.edabit is None else (" edabit" if self.edabit else " no-edabit"))


class MpSpdzCell:
    """A cell's program compiled once; each run in its own directory.  With several
    sites, each site's data is written once to a file of its own, and each party runs
    its site's step (`site.py`) before its VM."""

    def __init__(
        self,
        spec: MpSpdzSpec,
        query: Query,
        pop: Population,
        workdir: Path,
        holdings: Holdings = PATIENT_HELD,
    ):
        self.spec, self.query, self.pop, self.holdings = spec, query, pop, holdings
        self.noise = self._noise(spec, query, pop.slots[1], holdings.sites)
        self.researcher: int | None = None
        self.constants: tuple[int, ...] = ()
        if spec.private:
            # The query becomes its template (compiled once for every query of its shape);
            # its constants are the researcher's input alone.
            hidden = secret.hide(query, DataBounds.of(pop), pop.slots[1], spec.max_codes)
            self.query, self.constants = hidden.template, hidden.constants
            self.researcher = spec.researcher_party
            query = self.query
        self.protocol = protocols.get(spec.protocol)
        default = mp_compile.default_options(self.protocol)
        self.options = replace(
            default,
            lowering=spec.lowering or default.lowering,
            edabit=default.edabit if spec.edabit is None else spec.edabit,
        )
        shape = program.Shape.of(pop)
        self.sites: program.Sites | None = None
        self.site_jobs: list[SiteJob] = []
        if holdings is not PATIENT_HELD:
            self.sites = program.Sites(split(query, holdings), blocks(holdings, len(pop)))
            self.site_jobs = self._site_jobs(workdir.resolve(), shape)
        self.compiled: mp_compile.Compiled | None = None
        self.preparation = Preparation()
        if self.sites is None or self.sites.plan.secure is not None:
            try:
                self.compiled = mp_compile.compile_program(
                    query,
                    shape,
                    self.protocol,
                    spec.parties,
                    self.options,
                    sites=self.sites,
                    researcher=self.researcher,
                    noise=self._noise_bound(),
                )
            except (RuntimeError, ValueError) as e:
                raise Unavailable(f"{spec.label}: {e}") from None
            c = self.compiled
            self.preparation = Preparation(c.compile_s, c.cached, c.options.label, c.expected)
        self.plans: dict[Path, launch.RunPlan] = {}

    @staticmethod
    def _noise(spec: MpSpdzSpec, query: Query, exam_slots: int, sites: int) -> privacy.Plan | None:
        """A stats query with dp: each sum's noise, shared so that the parties outside the
        largest coalition the protocol tolerates make it up (`circuits.privacy`)."""
        if query.stats is None or query.stats.dp is None:
            return None
        return privacy.for_protocol(query.stats, exam_slots, spec.parties, spec.facts.majority, sites)

    def _noise_bound(self) -> int:
        if self.noise is None or self.query.stats is None:
            return 0
        return program.noise_bound(self._scales(), self.spec.parties)

    def _scales(self) -> list[Fraction]:
        """Each released sum's noise scale, in release order."""
        assert self.noise is not None and self.query.stats is not None
        return self.noise.scales(self.query.stats.released(self.holdings.sites))

    def _shares(self, run_dir: Path) -> list[list[int]] | None:
        """Each party's fresh shares of this run's noise, one per sum, from the system's CSPRNG;
        with COHORTBENCH_DEBUG_NOISE=1 (tests only) also written to run_dir/noise-<pid>.json."""
        if self.noise is None or self.query.stats is None:
            return None
        kind, honest = self.noise.privacy.mechanism, self.noise.honest
        shares = [noise.draw(kind, self._scales(), honest) for _ in range(self.spec.parties)]
        for pid, mine in enumerate(shares):
            noise.keep_for_tests(run_dir, pid, mine)
        return shares

    def _site_jobs(self, workdir: Path, shape: program.Shape) -> list[SiteJob]:
        """Each site's data file and job (its public facts)."""
        assert self.sites is not None
        workdir.mkdir(parents=True, exist_ok=True)
        h = self.holdings
        query = to_wire(self.query)
        sizes = h.site_sizes(len(self.pop))
        lines: tuple[str, ...] = ()
        if self.researcher is not None:
            lines = tuple(
                program.researcher_lines(self.query.root, self.constants, shape, self.options.lowering)
            )
        return [
            SiteJob(
                site,
                str(path),
                sizes[site],
                query,
                h.public(),
                self.sites.blocks,
                shape.patients,
                shape.slots,
                shape.bounds,
                self.options.lowering,
                lines if site == self.researcher else (),
            )
            for site, path in enumerate(write_site_files(self.pop, h, workdir))
        ]

    def plan(self, run_dir: Path, links: Links, traced: bool) -> list[Party]:
        addresses = [[links.address(i, j) for j in range(links.parties)] for i in range(links.parties)]
        try:
            if self.compiled is None:
                plan = launch.prepare_local_run(run_dir, self.protocol, self.site_jobs)
            else:
                plan = launch.prepare_run(
                    run_dir,
                    self.compiled,
                    self.pop,
                    list(links.listen),
                    tls=self.spec.ssl,
                    addresses=addresses,
                    sites=self.site_jobs or None,
                    criteria=None if self.researcher is None else (self.researcher, self.constants),
                    noise=self._shares(run_dir),
                )
        except RuntimeError as e:
            raise Unavailable(str(e)) from None
        self.plans[run_dir] = plan
        # Tampering: trace the VMs' exceptions, so that an integrity abort whose message
        # MP-SPDZ never prints (see throwtrace.c) is still recognised.
        env = throwtrace.env() if traced else {}
        if self.site_jobs:
            env = {**env, **python_path()}
        return [Party(tuple(argv), run_dir, env) for argv in plan.argv()]

    def _learns(self, pid: int) -> tuple[int, bool]:
        """How many patients' bits party `pid` learns under eligible, and whether any."""
        if self.sites is None:
            return len(self.pop), pid == 0
        if pid >= self.holdings.sites:  # an extra researcher: it learns no patient's bit
            return 0, False
        if self.sites.rows:
            return self.holdings.site_sizes(len(self.pop))[pid], True
        return len(self.pop), pid == self.holdings.reveal_to

    def read(self, run: Finished) -> Figures:
        secure = self.compiled is not None
        try:
            reports = []
            for i, log in enumerate(run.logs):
                patients, receiver = self._learns(i)
                reports.append(
                    launch.read_report(
                        i,
                        log,
                        self.query,
                        patients,
                        run.returncodes[i],
                        run.timed_out,
                        receiver=receiver,
                        secure=secure,
                        sites=self.holdings.sites,
                    )
                )
        except ValueError as e:
            # Every VM finished and a party printed an answer that is not one (e.g. values
            # that are not bits, after tampering): a wrong answer was revealed.
            raise OutputError(str(e), revealed=any(map(_printed_answer, run.logs))) from None
        f = launch.figures(reports)
        return Figures(
            answers=[r.result for r in reports],
            engine_s=f["engine_s"],
            bytes_by_party=f["bytes_by_party"],
            engine_rounds=f["rounds"] if secure else 0,
            global_bytes=f["global_bytes"],
            online_s=f["online_s"] if secure else None,
            offline_s=f["offline_s"] if secure else None,
            local_s=[r.local_s for r in reports] if self.sites else None,
            dp=None if self.noise is None else self.noise.record(),
        )

    def finish(self, run_dir: Path) -> None:
        plan = self.plans.pop(run_dir, None)
        if plan is not None:
            launch.clean_run(plan)

    def close(self) -> None:
        """Each run removes its input files; the sites' data files go with the cell."""
        for job in self.site_jobs:
            Path(job.data).unlink(missing_ok=True)


def _printed_answer(log: Path) -> bool:
    try:
        return bool(_ANSWER.search(log.read_text(errors="replace")))
    except OSError:
        return False


def _starts(vm: Path) -> str | None:
    """None when `vm --help` runs; else why not (e.g. a shared library it cannot find)."""
    try:
        done = subprocess.run([str(vm), "--help"], capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired) as e:
        return str(e)
    text = done.stdout + done.stderr
    if "error while loading shared libraries" in text or "Illegal instruction" in text or done.returncode < 0:
        return text.strip().splitlines()[-1] if text.strip() else f"exit {done.returncode}"
    return None


FIX = (
    f"build MP-SPDZ from source ({protocols.INSTALL_DOCS}; the steps measured here are in "
    f"backends/mp_spdz/README.md) and set {protocols.HOME_ENV} to its directory"
)


def _home() -> list[Finding]:
    root = protocols.mp_spdz_home()
    where = f"{root} (from ${protocols.HOME_ENV})" if os.environ.get(protocols.HOME_ENV) else str(root)
    if not root.is_dir():
        return [Finding("MP-SPDZ", "home", False, f"no directory {where}", FIX)]
    described = protocols.describe(root)
    version = " ".join(filter(None, [protocols.commit(root), f"({described})" if described else None]))
    script = protocols.compiler_script(root)
    ok = script.is_file() and (root / "Compiler").is_dir()
    return [
        Finding("MP-SPDZ", "home", True, f"{where}, commit {version or 'no .git or version file'}"),
        Finding(
            "MP-SPDZ", "compile.py", ok, str(script) if ok else f"missing: {script}", None if ok else FIX
        ),
    ]


def _vm(p: protocols.Protocol, root: Path) -> Finding:
    vm = p.vm_path(root)
    label = f"{p.name} ({p.security}, {p.majority} majority, {p.domain})"
    if not vm.is_file():
        return Finding(
            "MP-SPDZ",
            p.vm,
            False,
            f"missing: {label}",
            f"cd {root} && make -j2 {p.vm} (see {protocols.INSTALL_DOCS})",
        )
    problem = _starts(vm)
    return Finding(
        "MP-SPDZ",
        p.vm,
        problem is None,
        label if problem is None else f"does not start: {problem}",
        None
        if problem is None
        else f"rebuild it in {root} (`make clean && make -j2 {p.vm}`); the binaries "
        "must not be moved (they link libSPDZ.so by absolute path)",
    )


def _plaintext_build() -> Finding:
    """The optional -DINSECURE build that runs honest-majority VMs with plaintext links
    (`ssl: false` cells); never a failure, since only such cells need it."""
    root = protocols.plaintext_home()
    needed = [p for p in protocols.PROTOCOLS.values() if p.tls]
    present = [p.name for p in needed if p.vm_path(root).is_file()]
    if not present:
        return Finding(
            "MP-SPDZ",
            "plaintext links",
            True,
            f"optional, absent: no -DINSECURE build at {root} "
            f"(${protocols.PLAINTEXT_HOME_ENV}); `ssl: false` cells of "
            f"{', '.join(p.name for p in needed)} fail without it",
        )
    same = protocols.commit(root) == protocols.commit(protocols.mp_spdz_home())
    return Finding(
        "MP-SPDZ",
        "plaintext links",
        same,
        f"{root}: {', '.join(present)}"
        + ("" if same else f"; commit {protocols.commit(root)} differs from the main build's"),
        None if same else "build it from the same commit as the main build",
    )


def _versions() -> dict[str, str | None]:
    return {"mp-spdz": protocols.commit()}


def _doctor() -> list[Finding]:
    found = _home()
    if found[0].ok:
        root = protocols.mp_spdz_home()
        found += [_vm(p, root) for p in protocols.PROTOCOLS.values()]
    return found + [_plaintext_build()]


ENGINE = Engine(
    "mp-spdz",
    MpSpdzSpec,
    MpSpdzCell,
    connects_every_direction=True,
    aborts=ABORTS,
    tls_errors=TLS_ERRORS,
    versions=_versions,
    doctor=_doctor,
)
