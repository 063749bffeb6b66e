"""`cohortbench doctor`: which MPC engines this machine has, and what to do about missing ones.

It lists MPyC (the installed version), MP-SPDZ at $MP_SPDZ_HOME (default
/opt/mp-spdz: its commit when it is a git checkout or carries a version file,
the compiler, and every virtual machine of backends.mp_spdz.protocols, each
present or missing, and whether it starts), and the openssl command that TLS
certificates are made with; also the optional -DINSECURE build of MP-SPDZ at
$MP_SPDZ_INSECURE_HOME that `ssl: false` cells of honest-majority protocols need, and
whether runs can be isolated in network namespaces.  For anything missing it prints the fix.  Exit
status 0 when everything is there, 1 otherwise.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from dataclasses import asdict, dataclass
from importlib import metadata
from pathlib import Path

import click
from rich.console import Console
from rich.table import Table

from backends.mp_spdz import protocols
from harness.net import isolation

MP_SPDZ_FIX = (f"build MP-SPDZ from source ({protocols.INSTALL_DOCS}) and set "
               f"{protocols.HOME_ENV} to its directory")


@dataclass(frozen=True)
class Finding:
    """One thing the doctor looked for."""
    engine: str
    item: str
    ok: bool
    detail: str
    fix: str | None = None


def _mpyc() -> list[Finding]:
    try:
        version = metadata.version("mpyc")
    except metadata.PackageNotFoundError:
        return [Finding("MPyC", "mpyc", False, "not installed",
                        "run `make install` (or `pip install mpyc gmpy2` in .venv)")]
    try:
        gmpy2 = metadata.version("gmpy2")
    except metadata.PackageNotFoundError:
        gmpy2 = None
    return [Finding("MPyC", "mpyc", True, f"version {version}"),
            Finding("MPyC", "gmpy2", gmpy2 is not None,
                    f"version {gmpy2}" if gmpy2 else "not installed (MPyC runs much slower)",
                    None if gmpy2 else "pip install gmpy2 in .venv")]


def _starts(vm: Path) -> str | None:
    """None when `vm --help` runs; else why not (e.g. a shared library it cannot find)."""
    try:
        done = subprocess.run([str(vm), "--help"], capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired) as e:
        return str(e)
    text = done.stdout + done.stderr
    if "error while loading shared libraries" in text or "Illegal instruction" in text \
            or done.returncode < 0:
        return text.strip().splitlines()[-1] if text.strip() else f"exit {done.returncode}"
    return None


def _mp_spdz(home: Path | None) -> list[Finding]:
    root = protocols.mp_spdz_home(home)
    from_env = home is None and bool(os.environ.get(protocols.HOME_ENV))
    where = f"{root} (from ${protocols.HOME_ENV})" if from_env else str(root)
    if not root.is_dir():
        return [Finding("MP-SPDZ", "home", False, f"no directory {where}", MP_SPDZ_FIX)]
    commit = protocols.commit(root)
    described = protocols.describe(root)
    version = " ".join(filter(None, [commit, f"({described})" if described else None])) \
        or "no .git or version file"
    found = [Finding("MP-SPDZ", "home", True, f"{where}, commit {version}")]
    script = protocols.compiler_script(root)
    found.append(Finding("MP-SPDZ", "compile.py", script.is_file() and (root / "Compiler").is_dir(),
                         str(script) if script.is_file() else f"missing: {script}",
                         None if script.is_file() else MP_SPDZ_FIX))
    for p in protocols.PROTOCOLS.values():
        vm = p.vm_path(root)
        label = f"{p.name} ({p.security}, {p.majority} majority, {p.domain})"
        if not vm.is_file():
            found.append(Finding("MP-SPDZ", p.vm, False, f"missing: {label}",
                                 f"cd {root} && make -j2 {p.vm} (see {protocols.INSTALL_DOCS})"))
            continue
        problem = _starts(vm)
        found.append(Finding("MP-SPDZ", p.vm, problem is None,
                             label if problem is None else f"does not start: {problem}",
                             None if problem is None else
                             f"rebuild it in {root} (`make clean && make -j2 {p.vm}`); the "
                             "binaries must not be moved (they link libSPDZ.so by absolute path)"))
    return found


def _plaintext_build(home: Path | None) -> list[Finding]:
    """The optional -DINSECURE build that runs honest-majority VMs with plaintext links
    (`ssl: false` cells); never a failure, since only such cells need it."""
    root = protocols.plaintext_home()
    needed = [p for p in protocols.PROTOCOLS.values() if p.tls]
    present = [p.name for p in needed if p.vm_path(root).is_file()]
    if not present:
        return [Finding("MP-SPDZ", "plaintext links", True,
                        f"optional, absent: no -DINSECURE build at {root} (${protocols.PLAINTEXT_HOME_ENV}); "
                        f"`ssl: false` cells of {', '.join(p.name for p in needed)} fail without it")]
    same = protocols.commit(root) == protocols.commit(protocols.mp_spdz_home(home))
    return [Finding("MP-SPDZ", "plaintext links", same,
                    f"{root}: {', '.join(present)}"
                    + ("" if same else f"; commit {protocols.commit(root)} differs from the main build's"),
                    None if same else "build it from the same commit as the main build")]


def _tools() -> list[Finding]:
    openssl = shutil.which("openssl")
    why_not = isolation.probe()
    return [Finding("TLS", "openssl", openssl is not None,
                    openssl or "not found (needed for MP-SPDZ's honest-majority protocols and "
                    "MPyC's --ssl)", None if openssl else "apt-get install openssl"),
            Finding("harness", "isolation", True,
                    "a network namespace per run (isolation: auto)" if why_not is None else
                    f"runs use the host's loopback: {why_not}",
                    None if why_not is None else "run as root for a namespace per run")]


def diagnose(home: Path | None = None) -> list[Finding]:
    """Everything the doctor checks, in order."""
    return _mpyc() + _mp_spdz(home) + _plaintext_build(home) + _tools()


@click.command("doctor")
@click.option("--mp-spdz-home", "home", type=click.Path(path_type=Path), default=None,
              help=f"MP-SPDZ's directory (default: ${protocols.HOME_ENV} or "
                   f"{protocols.DEFAULT_HOME}).")
@click.option("--json", "as_json", is_flag=True, help="Print the findings as JSON.")
@click.option("--quiet", is_flag=True, help="Print nothing; exit 0 only if everything is found.")
def command(home: Path | None, as_json: bool, quiet: bool) -> None:
    """List the MPC engines found (MPyC, MP-SPDZ and its VMs) and how to fix missing ones."""
    findings = diagnose(home)
    if quiet:
        pass
    elif as_json:
        click.echo(json.dumps([asdict(f) for f in findings], indent=1))
    else:
        out = Console(highlight=False, width=None if sys.stdout.isatty() else 200)
        table = Table(title="cohortbench doctor")
        for column in ("engine", "item", "status", "detail"):
            table.add_column(column)
        for f in findings:
            table.add_row(f.engine, f.item, "[green]ok[/]" if f.ok else "[red]missing[/]", f.detail)
        out.print(table)
        fixes = [f for f in findings if not f.ok and f.fix]
        for f in fixes:
            out.print(f"[yellow]{f.item}:[/] {f.fix}", soft_wrap=True)
        if not fixes:
            out.print("every engine is ready")
    sys.exit(0 if all(f.ok for f in findings) else 1)
