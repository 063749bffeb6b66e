"""`cohortbench doctor`: which engines this machine can run, and what to do about missing parts.

Each registered engine says what it checks (`Engine.doctor`); the doctor adds
the openssl command that TLS certificates are made with and whether runs can
be isolated in network namespaces.  For anything missing it prints the fix.
Exit status 0 when everything is there, 1 otherwise.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from dataclasses import asdict
from pathlib import Path

import click
from rich.console import Console
from rich.table import Table

from backends import registry
from backends.engine import Finding
from harness.net import isolation


def _tools() -> list[Finding]:
    openssl = shutil.which("openssl")
    why_not = isolation.probe()
    return [
        Finding(
            "TLS",
            "openssl",
            openssl is not None,
            openssl or "not found (needed for MP-SPDZ's honest-majority protocols and MPyC's --ssl)",
            None if openssl else "apt-get install openssl",
        ),
        Finding(
            "harness",
            "isolation",
            True,
            "a network namespace per run (isolation: auto)"
            if why_not is None
            else f"runs use the host's loopback: {why_not}",
            None if why_not is None else "run as root for a namespace per run",
        ),
    ]


def diagnose(engine: str | None = None) -> list[Finding]:
    """Everything the doctor checks: each engine's own findings (or only `engine`'s), then
    the tools."""
    engines = [registry.get(engine)] if engine else list(registry.engines().values())
    return [f for e in engines for f in e.doctor()] + _tools()


@click.command("doctor")
@click.option(
    "--mp-spdz-home",
    "home",
    type=click.Path(path_type=Path),
    default=None,
    help="MP-SPDZ's directory (sets $MP_SPDZ_HOME, which the MP-SPDZ engine reads).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the findings as JSON.")
@click.option("--quiet", is_flag=True, help="Print nothing; exit 0 only if everything is found.")
@click.option(
    "--engine",
    type=click.Choice(sorted(registry.locations())),
    default=None,
    help="Check this engine only (and the tools), e.g. mp-spdz.",
)
def command(home: Path | None, as_json: bool, quiet: bool, engine: str | None) -> None:
    """List the engines found (MPyC, MP-SPDZ and its VMs, the MHE interpreter) and how to
    fix missing ones."""
    if home is not None:
        os.environ["MP_SPDZ_HOME"] = str(home)
    findings = diagnose(engine)
    if quiet:
        pass
    elif as_json:
        click.echo(json.dumps([asdict(f) for f in findings], indent=1))
    else:
        out = Console(emoji=False, highlight=False, width=None if sys.stdout.isatty() else 200)
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
