"""A run of a compiled program: directories, certificates, addresses, party commands, reports.

`prepare_run(run_dir, compiled, population, ports)` lays out one run:

    run_dir/
      certs/                 per-run TLS material (when the protocol encrypts)
      P0/ P1/ ...            each party's working directory (the VMs resolve
        Programs -> <cache>/Programs     Programs/ and Player-Data/ against it)
        Player-Data/
          Input-P0-0         party 0 only: the encoded patients
          P<j>.pem, P<i>.key, <hash>.0 links   (TLS: every certificate, own key)
        hosts.txt            this party's view of every party's address (-ip)

and returns the command of each party (the VM with -p i, -N when it takes it,
-ip hosts.txt, -OF . and -v).  A party's command changes into its
own directory and execs the VM (`sh -c 'cd DIR && exec VM ...'`), so the
commands can run in one process group from any working directory.  Each
party has its own address file, identical at first (127.0.0.1:port per party,
ports from the harness); a relay can later give each party its own view by
passing `addresses` (party i's list of every party's host:port; a party listens
on the port of its own line).

Certificates mirror MP-SPDZ's Scripts/setup-ssl.sh without writing into
MP_SPDZ_HOME: one self-signed certificate per party with CN=P<i> (EC P-256,
valid one day), P<i>.pem/P<i>.key, and the `c_rehash` links (<subject
hash>.0 and the old-style hash) that let OpenSSL find the peers' certificates.

`read_report(pid, log, query, patients, returncode, timed_out)` parses a
party's merged stdout+stderr: `Time = ... seconds`, `Data sent = X MB in ~N
rounds (party i only...)`, `Global data sent = Y MB (all parties)` (MB =
10^6 bytes), and the revealed result: the eligible bits (party 0 only) or
the count or a stats query's sums (every party: the VMs run with `-OF .` so that
each prints it).  A party that failed, timed out or printed no figures is a
ValueError naming what is missing.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Sequence

from backends.mp_spdz import program
from backends.mp_spdz.compile import Compiled
from backends.mp_spdz.protocols import PLAINTEXT_HOME_ENV, Protocol, get, plaintext_home
from backends.mp_spdz.site import JOB_FILE, LOCAL_PREFIX, SiteJob
from circuits.ir import Output, Query
from circuits.population import Population

HOSTS_FILE = "hosts.txt"
CERT_DAYS = 1
_TIME = re.compile(r"^Time = ([0-9.e+-]+) seconds", re.M)
_SENT = re.compile(r"^Data sent = ([0-9.e+-]+) MB in ~(\d+) rounds \(party (\d+)", re.M)
_GLOBAL = re.compile(r"^Global data sent = ([0-9.e+-]+) MB", re.M)
_PHASE = r"([0-9.e+-]+) seconds(?: \(([0-9.e+-]+) MB, (\d+) rounds\))?"  # no (...) when 0 bytes
_PHASES = re.compile(
    rf"^Spent {_PHASE} on the online phase and {_PHASE} on the "
    r"preprocessing/offline phase",
    re.M,
)
_CD_EXEC = 'cd "$1" && shift && exec "$@"'
_LOCAL = re.compile("^" + re.escape(LOCAL_PREFIX) + r"([0-9.e+-]+) s", re.M)
SITE_STEP = (sys.executable, "-m", "backends.mp_spdz.site", JOB_FILE)  # then -- and the VM


@dataclass(frozen=True)
class RunPlan:
    """Everything needed to start a run's parties (e.g. with harness.run.parties.run_group)."""

    directory: Path
    party_dirs: tuple[Path, ...]
    commands: tuple[tuple[str, ...], ...]
    protocol: Protocol
    parties: int
    tls: bool

    def argv(self) -> list[list[str]]:
        return [list(c) for c in self.commands]


@dataclass(frozen=True)
class PartyReport:
    """What one party printed."""

    pid: int
    time_s: float  # the VM's `Time =` (online and offline phase together)
    bytes_sent: int  # this party's `Data sent` (MB = 10^6 bytes)
    rounds: int  # this party's approximate rounds
    global_bytes: int  # `Global data sent`: all parties together
    result: object  # the revealed count(s) (every party) or bits (party 0, or each site its own)
    # With -v (the default, see party_command): the VM's split into online and offline
    # (preprocessing) phase, this party's seconds, bytes sent and rounds; else None.
    online: tuple[float, int, int] | None = None
    offline: tuple[float, int, int] | None = None
    local_s: float | None = None  # several sites: this site's local evaluation in the clear


def make_certs(directory: Path, parties: int) -> Path:
    """P<i>.pem/P<i>.key (CN=P<i>, self-signed, valid one day) and their hash links."""
    if shutil.which("openssl") is None:
        raise RuntimeError(
            "MP-SPDZ's honest-majority protocols need TLS certificates, made with "
            "the openssl command; install it (Debian: apt-get install openssl)"
        )
    directory.mkdir(parents=True, exist_ok=True)
    for i in range(parties):
        subprocess.run(
            [
                "openssl",
                "req",
                "-x509",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:prime256v1",
                "-nodes",
                "-keyout",
                f"P{i}.key",
                "-out",
                f"P{i}.pem",
                "-days",
                str(CERT_DAYS),
                "-subj",
                f"/CN=P{i}",
            ],
            cwd=directory,
            check=True,
            capture_output=True,
        )
    return directory


def _hash_links(pem: Path) -> list[str]:
    out = subprocess.run(
        ["openssl", "x509", "-noout", "-subject_hash", "-subject_hash_old", "-in", str(pem)],
        check=True,
        capture_output=True,
        text=True,
    )
    return out.stdout.split()


def _install_certs(certs: Path, hashes: list[list[str]], player_data: Path, pid: int) -> None:
    """Every party's certificate, this party's key, and c_rehash-style links."""
    for j, names in enumerate(hashes):
        shutil.copy2(certs / f"P{j}.pem", player_data / f"P{j}.pem")
        for h in names:
            n = 0
            while (player_data / f"{h}.{n}").exists():
                n += 1
            (player_data / f"{h}.{n}").symlink_to(f"P{j}.pem")
    shutil.copy2(certs / f"P{pid}.key", player_data / f"P{pid}.key")


def party_command(
    protocol: Protocol,
    pid: int,
    parties: int,
    name: str,
    tls: bool,
    home: Path | None = None,
    vm_args: Sequence[str] = (),
    verbose: bool = True,
) -> list[str]:
    """The VM's own arguments for party `pid` (run in the party's directory).  `verbose`
    (-v) makes the VM also report its online and offline phases separately."""
    argv = [str(protocol.vm_path(home)), "-p", str(pid)]
    if protocol.takes_N:
        argv += ["-N", str(parties)]
    argv += ["-ip", HOSTS_FILE]
    if tls != protocol.tls:
        argv.append("-e" if tls else "-u")  # against the VM's default (see protocols.py)
    # -OF .: public output (the count) on every party's stdout, not only party 0's;
    # output for party 0 alone (the eligible bits) still appears only there.
    argv += ["-OF", "."]
    if verbose:
        argv.append("-v")
    return argv + list(vm_args) + [name]


def _vm_home(protocol: Protocol, tls: bool | None, home: Path | None) -> Path | None:
    """Where the VM comes from: `home`, or the -DINSECURE build for plaintext links of a VM
    that encrypts by default; RuntimeError if that VM is not built."""
    if protocol.needs_plaintext_build(tls) and home is None:
        home = plaintext_home()
        if not protocol.vm_path(home).is_file():
            raise RuntimeError(
                f"MP-SPDZ's {protocol.vm} runs with plaintext links (ssl: false, -u) only when "
                f"built with -DINSECURE; there is none at {protocol.vm_path(home)} (set "
                f"{PLAINTEXT_HOME_ENV} to such a build of the same commit, or drop "
                "ssl: false)"
            )
    vm = protocol.vm_path(home)
    if not vm.is_file():
        raise RuntimeError(f"MP-SPDZ's {protocol.vm} is not at {vm} (see `cohortbench doctor`)")
    return home


def _views(
    ports: Sequence[int], addresses: Sequence[Sequence[str]] | None, parties: int
) -> Sequence[Sequence[str]]:
    """Each party's view of every party's host:port (default: 127.0.0.1 and `ports`)."""
    if len(ports) != parties:
        raise ValueError(f"{parties} parties need {parties} ports, got {len(ports)}")
    views = addresses or [[f"127.0.0.1:{p}" for p in ports]] * parties
    if len(views) != parties or any(len(v) != parties for v in views):
        raise ValueError(f"addresses must give each of the {parties} parties a view of {parties} addresses")
    return views


def _party_dir(
    run_dir: Path,
    pid: int,
    compiled: Compiled,
    pop: Population,
    view: Sequence[str],
    certs: Path | None,
    hashes: list[list[str]],
    site: SiteJob | None,
    criteria: tuple[int, tuple[int, ...]] | None = None,
    noise: Sequence[int] | None = None,
) -> Path:
    """Party `pid`'s directory: Programs link, Player-Data (inputs, TLS files), hosts file;
    with sites, the site's job instead of an input file (the site writes its own).
    `noise`: this party's shares of a stats query's noise, its last inputs."""
    pdir = run_dir / f"P{pid}"
    data = pdir / "Player-Data"
    data.mkdir(parents=True, exist_ok=True)
    (pdir / "Programs").symlink_to(compiled.programs, target_is_directory=True)
    if site is not None:  # its noise shares go after its own inputs, which its site step writes
        replace(site, noise=tuple(noise or ())).write(pdir / JOB_FILE)
    elif pid == 0:
        program.write_inputs(pop, compiled.query, compiled.shape, data, compiled.options.lowering)
    if criteria is not None and criteria[0] == pid and site is None:
        program.write_researcher(
            compiled.query.root, criteria[1], compiled.shape, data, pid, compiled.options.lowering
        )
    if noise is not None and site is None:
        program.write_noise(list(noise), data, pid)
    if certs is not None:
        _install_certs(certs, hashes, data, pid)
    (pdir / HOSTS_FILE).write_text("".join(f"{a}\n" for a in view))
    return pdir


def prepare_run(
    run_dir: Path,
    compiled: Compiled,
    pop: Population,
    ports: Sequence[int],
    tls: bool | None = None,
    addresses: Sequence[Sequence[str]] | None = None,
    home: Path | None = None,
    vm_args: Sequence[str] = (),
    verbose: bool = True,
    sites: Sequence[SiteJob] | None = None,
    criteria: tuple[int, tuple[int, ...]] | None = None,
    noise: Sequence[Sequence[int]] | None = None,
) -> RunPlan:
    """Lay out a run of `compiled` on `pop` in run_dir (a fresh directory per run).

    `ports`: one free port per party (every party listens on its own).  `tls`: None
    means the protocol's default (honest-majority VMs encrypt, the others do not);
    True or False asks for encrypted or plaintext links (-e, -u; plaintext links of an
    honest-majority VM take it from the -DINSECURE build, see `plaintext_home`).
    `addresses`: per party, that party's view of every party's host:port (default:
    127.0.0.1 and `ports` for everyone).  `vm_args`: extra
    VM options (e.g. -lgp 192); `verbose`: -v, for the online/offline split.  `sites`:
    several sites hold the data, and each party runs its site's step before its VM.
    `criteria`: a private query's (researcher party, secret constants), which that party
    alone inputs after its other inputs (with sites, its site step writes them).  `noise`:
    per party, its shares of a stats query's noise (one per sum), in its own input file only."""
    protocol = get(compiled.protocol)
    parties = compiled.parties
    views = _views(ports, addresses, parties)
    home = _vm_home(protocol, tls, home)
    tls = protocol.tls if tls is None else tls
    run_dir = _fresh(run_dir)
    certs = make_certs(run_dir / "certs", parties) if tls else None
    hashes = [_hash_links(certs / f"P{j}.pem") for j in range(parties)] if certs else []
    dirs, commands = [], []
    for pid in range(parties):
        site = sites[pid] if sites and pid < len(sites) else None  # not: an extra researcher
        shares = None if noise is None else noise[pid]
        pdir = _party_dir(run_dir, pid, compiled, pop, views[pid], certs, hashes, site, criteria, shares)
        vm_argv = party_command(protocol, pid, parties, compiled.name, tls, home, vm_args, verbose)
        step = (*SITE_STEP, "--") if site is not None else ()
        commands.append(("/bin/sh", "-c", _CD_EXEC, "sh", str(pdir), *step, *vm_argv))
        dirs.append(pdir)
    if certs is not None:
        for key in certs.glob("*.key"):
            key.unlink()  # each party holds its own copy; nothing else needs them
    return RunPlan(run_dir, tuple(dirs), tuple(commands), protocol, parties, tls)


def _fresh(run_dir: Path) -> Path:
    run_dir = run_dir.resolve()
    if (run_dir / "P0").exists():
        raise ValueError(f"{run_dir} already holds a run; give each run a fresh directory")
    run_dir.mkdir(parents=True, exist_ok=True)
    return run_dir


def prepare_local_run(run_dir: Path, protocol: Protocol, sites: Sequence[SiteJob]) -> RunPlan:
    """A run where nothing is secure: each site's step alone, which prints its answer."""
    run_dir = _fresh(run_dir)
    dirs = []
    for site in sites:
        pdir = run_dir / f"P{site.site}"
        pdir.mkdir()
        site.write(pdir / JOB_FILE)
        dirs.append(pdir)
    commands = tuple(("/bin/sh", "-c", _CD_EXEC, "sh", str(d), *SITE_STEP) for d in dirs)
    return RunPlan(run_dir, tuple(dirs), commands, protocol, len(sites), False)


def read_report(
    pid: int,
    log: Path,
    query: Query,
    patients: int,
    returncode: int | None = 0,
    timed_out: bool = False,
    *,
    receiver: bool | None = None,
    secure: bool = True,
    sites: int = 1,
) -> PartyReport:
    """Parse party `pid`'s log (stdout and stderr merged).  ValueError names what is missing.

    `patients`: how many patients' bits the party learns under `eligible`, if it is a
    `receiver` (default: party 0 alone); `secure` False: the party ran its site's step
    alone (nothing secure), which printed its own answer."""
    text = log.read_text(errors="replace") if log.exists() else ""
    tail = "\n".join(text.splitlines()[-10:])
    if timed_out:
        raise ValueError(f"party {pid} timed out before printing its figures (see {log})")
    if returncode not in (0, None):
        raise ValueError(f"party {pid}'s VM exited with {returncode} (see {log}):\n{tail}")
    local = _LOCAL.search(text)
    local_s = float(local.group(1)) if local else None
    receiver = pid == 0 if receiver is None else receiver
    result = _result(pid, log, text, query, patients, receiver, sites)
    if not secure:
        return PartyReport(pid, local_s or 0.0, 0, 0, 0, result, local_s=local_s)
    missing = [
        what
        for what, rx in (
            ("'Time = ... seconds'", _TIME),
            ("'Data sent = ... MB in ~... rounds'", _SENT),
            ("'Global data sent = ... MB'", _GLOBAL),
        )
        if not rx.search(text)
    ]
    if missing:
        raise ValueError(f"party {pid} printed no {' and no '.join(missing)} (see {log}):\n{tail}")
    phases = _PHASES.search(text)
    online = offline = None
    if phases:
        g = phases.groups()
        online = (float(g[0]), round(float(g[1] or 0) * 1e6), int(g[2] or 0))
        offline = (float(g[3]), round(float(g[4] or 0) * 1e6), int(g[5] or 0))
    sent, time_s, total = _SENT.search(text), _TIME.search(text), _GLOBAL.search(text)
    assert sent and time_s and total  # checked above: `missing` is empty
    return PartyReport(
        pid,
        float(time_s.group(1)),
        round(float(sent.group(1)) * 1e6),
        int(sent.group(2)),
        round(float(total.group(1)) * 1e6),
        result,
        online,
        offline,
        local_s,
    )


def _result(
    pid: int, log: Path, text: str, query: Query, patients: int, receiver: bool, sites: int = 1
) -> object:
    """What the party printed as its answer: counts (every party), bits (receivers)."""
    if query.output is Output.ELIGIBLE and not receiver:
        return None
    if query.output is Output.ELIGIBLE and patients == 0:
        return []  # a site without patients learns no bits
    try:
        return program.parse_output(text, query, patients, sites)
    except ValueError as e:
        raise ValueError(f"party {pid}: {e} (see {log})") from None


def _phase_bytes(phases: Sequence[tuple[float, int, int] | None]) -> int | None:
    """Bytes sent in one phase by all parties; None unless every party reported it."""
    known = [p for p in phases if p is not None]
    return sum(p[1] for p in known) if len(known) == len(phases) else None


def figures(reports: Sequence[PartyReport]) -> dict:
    """Per-run figures in the harness's vocabulary (per-party lists and totals)."""
    return {
        "engine_s": [r.time_s for r in reports],
        "bytes_by_party": [r.bytes_sent for r in reports],
        "bytes_sent": sum(r.bytes_sent for r in reports),
        "global_bytes": reports[0].global_bytes if reports else None,
        "rounds_by_party": [r.rounds for r in reports],
        "rounds": max((r.rounds for r in reports), default=None),
        "online_s": [r.online[0] if r.online else None for r in reports],
        "offline_s": [r.offline[0] if r.offline else None for r in reports],
        "online_bytes": _phase_bytes([r.online for r in reports]),
        "offline_bytes": _phase_bytes([r.offline for r in reports]),
    }


def clean_run(plan: RunPlan) -> None:
    """Remove the parties' input files, the researcher's constants in its site job and the
    per-run keys; logs and figures stay."""
    for pdir in plan.party_dirs:
        job = pdir / JOB_FILE
        if job.is_file():
            site = SiteJob.read(job)
            if site.researcher_lines:
                replace(site, researcher_lines=()).write(job)
        for path in (pdir / "Player-Data").glob("Input-*"):
            path.unlink(missing_ok=True)
        for path in (pdir / "Player-Data").glob("P*.key"):
            path.unlink(missing_ok=True)
    if os.path.isdir(plan.directory / "certs"):
        shutil.rmtree(plan.directory / "certs", ignore_errors=True)
