"""The `cohortbench` command line: check, extract, eval (and the harness verbs)."""

from __future__ import annotations

import datetime as dt
import json
import os
from dataclasses import replace
import sys
from pathlib import Path

import click
from rich.console import Console
from rich.measure import Measurement
from rich.table import Table

from circuits import cost, ir, secret
from circuits.errors import InputError
from circuits.oracle import cohort
from circuits.population import EXACT, Padding, write_jsonl
from circuits.queryfile import load_query
from harness.analysis import accuracy, compare, latency, report, records as results, summary, tamper
from harness.analysis.records import Record
from harness import doctor
from harness.privacy import ledger
from backends.engine import MAX_PARTIES
from harness.data import fhir, sources
from harness.data import sites as site_rules
from harness.run.config import Experiment, Overrides, load_experiment
from harness.run.dryrun import dry_run
from harness.run.sweep import expected_failure, kept_runs, run_sweep, runs

# tables fit the terminal, or COLUMNS, else 100 characters (a pipe, a log); so do the
# progress bar and warnings on stderr
_SIZED = "COLUMNS" in os.environ
out = Console(emoji=False, highlight=False, width=None if sys.stdout.isatty() or _SIZED else 100)
err = Console(emoji=False, stderr=True, highlight=False, width=None if sys.stderr.isatty() or _SIZED else 100)


def _slots(value: str) -> int | str:
    if value == EXACT:
        return EXACT
    try:
        n = int(value)
    except ValueError:
        raise click.BadParameter("a whole number >= 1, or 'exact'") from None
    if n < 1:
        raise click.BadParameter("a whole number >= 1, or 'exact'")
    return n


def _as_of(ctx: click.Context, param: click.Parameter, value: str | None) -> dt.date | None:
    if value is None:
        return None
    try:
        return dt.date.fromisoformat(value)
    except ValueError:
        raise click.BadParameter(f"{value!r} is not a date; write YYYY-MM-DD") from None


def _warn(message: str) -> None:
    err.print(f"[yellow]warning:[/] {message}", soft_wrap=True)


def _load(query: Path, strict: bool) -> ir.Query:
    q, warnings = load_query(query, strict)
    for w in warnings:
        _warn(w)
    return q


padding_options = [
    click.option(
        "--conditions",
        "conditions",
        default="16",
        show_default=True,
        help="Condition slots per patient, or 'exact' (counts public, as in the paper).",
    ),
    click.option(
        "--exams", "exams", default="32", show_default=True, help="Exam slots per patient, or 'exact'."
    ),
]


def with_padding(f):
    for option in reversed(padding_options):
        f = option(f)
    return f


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="cohortbench")
def cli() -> None:
    """What does it cost to select a clinical-trial cohort from FHIR records under MPC?"""


COST_FIELDS = ("comparisons", "equalities", "multiplications", "selections", "depth", "max_bits")


@cli.command()
@click.argument("query", type=click.Path(path_type=Path))
@with_padding
@click.option("--strict", is_flag=True, help="Treat doubtful codes as errors.")
@click.option(
    "--private", is_flag=True, help="Also the cost with the criteria secret (a researcher's input)."
)
@click.option(
    "--max-codes",
    type=click.IntRange(1, None),
    help="With --private: the codes every condition node is padded to (default: the most any node has).",
)
def check(
    query: Path, conditions: str, exams: str, strict: bool, private: bool, max_codes: int | None
) -> None:
    """Validate QUERY, print its normalised tree and per-patient cost."""
    q = _load(query, strict)
    padding = Padding(_slots(conditions), _slots(exams))
    c_slots = padding.conditions if padding.conditions != EXACT else 1
    e_slots = padding.exams if padding.exams != EXACT else 1
    root = ir.normalise(q.root)
    out.print(f"[bold]{q.name}[/]  output={q.output.value}  ir_hash={q.ir_hash}")
    out.print(ir.render(root))
    if q.stats is not None:
        columns = q.stats.columns()
        out.print(
            f"releases {len(q.stats.aggregates)} aggregate(s): "
            + ", ".join(g.name for g in q.stats.aggregates)
        )
        out.print(f"from {len(columns)} secure sum(s) over the cohort: " + ", ".join(c.name for c in columns))
    table = Table(
        title=f"per-patient cost, padding {padding.label()}"
        + (" (exact: per real slot)" if padding.exact else "")
    )
    trees = [("public", root)]
    if private:
        hidden = _hidden(query, replace(q, root=root), e_slots, max_codes)
        trees.append(("private", hidden.template.root))
        out.print(f"private: {len(hidden.constants)} secret constants; public shape:")
        out.print(ir.render(hidden.template.root))
    names = COST_FIELDS if private else tuple(n for n in COST_FIELDS if n != "selections")
    if private:
        table.add_column("criteria")
    for name in names:
        table.add_column(name, justify="right")
    for label, tree in trees:
        c = cost.estimate(tree, c_slots, e_slots)
        table.add_row(*([label] if private else []), *(str(getattr(c, n)) for n in names))
    out.print(table)


def _hidden(path: Path, q: ir.Query, exam_slots: int, max_codes: int | None) -> secret.Hidden:
    try:
        return secret.hide(q, cost.DataBounds(), exam_slots, max_codes)
    except ValueError as e:
        field = "--max-codes" if "max_codes" in str(e) else "exams"
        fix = "raise --max-codes" if field == "--max-codes" else "use an exam type of the vocabulary"
        raise InputError(str(path), field, str(e), fix) from None


@cli.command()
@click.argument("directory", type=click.Path(path_type=Path))
@click.option("--as-of", required=True, callback=_as_of, help="Reference date, YYYY-MM-DD.")
@click.option(
    "--out",
    "out_path",
    required=True,
    type=click.Path(path_type=Path),
    help="patients.jsonl to write (with --sites: a directory for one per site and sites.json).",
)
@click.option("--sites", type=click.IntRange(1, MAX_PARTIES), help="Split the patients over N sites.")
@click.option(
    "--assign",
    default="provider",
    show_default=True,
    help="With --sites: provider, round-robin or random:SEED.",
)
def extract(directory: Path, as_of: dt.date, out_path: Path, sites: int | None, assign: str) -> None:
    """Extract the paper's fields from the FHIR bundles in DIRECTORY (with --sites, split
    them over sites, one patients file each, and write the site map)."""
    if not directory.exists():
        raise InputError(str(directory), "", "no such file or directory", "check the path")
    patients, errors = fhir.extract_dir(directory, as_of)
    for e in errors:
        _warn(f"skipped {e}")
    if not patients:
        raise InputError(
            str(directory),
            "",
            "no patient could be extracted",
            "give FHIR R4 bundles (*.json), one patient each",
        )
    skipped = f"; {len(errors)} bundle(s) skipped" if errors else ""
    if sites is None:
        n = write_jsonl(patients, out_path)
        out.print(f"{n} patient(s) written to {out_path}{skipped}")
        return
    if not site_rules.valid_rule(assign):
        raise InputError(
            "--assign", "", f"{assign!r} is not a rule", "use provider, round-robin or random:SEED"
        )
    split = site_rules.write_sites(directory, patients, assign, sites, out_path)
    if split.fallback:
        _warn(f"{split.fallback} patient(s) with no Encounter naming a serviceProvider, placed round-robin")
    out.print(f"{len(patients)} patient(s) at {sites} sites {split.sizes(sites)} in {out_path}{skipped}")


@cli.command(name="eval")
@click.argument("query", type=click.Path(path_type=Path))
@click.option(
    "--patients",
    "source",
    required=True,
    help="synthetic:N[:seed], a FHIR bundle directory, or a patients.jsonl.",
)
@click.option("--engine", type=click.Choice(["plain"]), default="plain", show_default=True)
@click.option("--as-of", callback=_as_of, help="Reference date (required for FHIR bundles).")
@with_padding
@click.option(
    "--truncate",
    is_flag=True,
    help="Keep the first conditions and most recent exams of a patient over a bound.",
)
@click.option("--strict", is_flag=True, help="Treat doubtful codes as errors.")
@click.option(
    "--json",
    "as_json",
    is_flag=True,
    help='Print {"count": n, "eligible": [ids]} ({"count": n, "stats": {...}} for a stats query).',
)
def eval_(
    query: Path,
    source: str,
    engine: str,
    as_of: dt.date | None,
    conditions: str,
    exams: str,
    truncate: bool,
    strict: bool,
    as_json: bool,
) -> None:
    """Evaluate QUERY on a population and print the cohort."""
    q = _load(query, strict)
    pop = sources.load(
        sources.parse_source(source, "--patients"),
        Padding(_slots(conditions), _slots(exams)),
        as_of,
        truncate,
        _warn,
    )
    result = cohort(q, pop)
    ids = result.ids(pop) if q.output is ir.Output.ELIGIBLE else None
    stats = None if q.stats is None else result.released(q.stats)
    if as_json:
        extra = {"eligible": ids} if ids is not None else {"stats": stats} if stats is not None else {}
        print(json.dumps({"count": result.count, **extra}))
        return
    out.print(f"cohort: {result.count} of {len(pop)} patient(s)")
    for pid in ids or ():
        out.print(pid)
    for name, value in (stats or {}).items():
        out.print(f"{name}: {_stat(value)}")


def _stat(value: object) -> str:
    """A released statistic for the terminal: floats to 4 significant digits."""
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, list):
        return "[" + ", ".join(map(_stat, value)) + "]"
    return "-" if value is None else str(value)


def _wide_console(table: Table) -> Console:
    """A console as wide as the table unwrapped (--wide: every column whole, however wide)."""
    width = Measurement.get(out, out.options.update_width(10_000), table).maximum
    return Console(emoji=False, highlight=False, width=max(out.width, width))


def _tables(records: list[Record], wide: bool = False) -> None:
    """The cell table (see `summary`), then the latency-slope and tamper tables if any."""
    table = summary.table(records, wide, out.width)
    (_wide_console(table) if wide else out).print(table)
    slopes = latency.table(records)
    if slopes is not None:
        out.print(slopes)
    noise = accuracy.table(records)
    if noise is not None:
        out.print(noise)
    tampering = tamper.table(records)
    if tampering is not None:
        out.print(tampering)


def _names(ctx: click.Context, param: click.Parameter, value: str | None) -> tuple[str, ...] | None:
    if value is None:
        return None
    names = tuple(v.strip() for v in value.split(",") if v.strip())
    if not names:
        raise click.BadParameter("give one or more names, separated by commas")
    return names


@cli.command()
@click.argument("config", type=click.Path(path_type=Path))
@click.option(
    "--out",
    "out_path",
    required=True,
    type=click.Path(path_type=Path),
    help="Results file (JSON lines, appended as runs finish).",
)
@click.option("--resume", is_flag=True, help="Continue an interrupted sweep in --out.")
@click.option("--force", is_flag=True, help="With --resume: even into a file another config wrote.")
@click.option(
    "--dry-run", is_flag=True, help="Check CONFIG and its data, count and time its runs; run nothing."
)
@click.option("--repeats", type=click.IntRange(min=1), help="Override the config's repeats.")
@click.option("--populations", callback=_names, help="Replace the config's populations: A,B,...")
@click.option("--networks", callback=_names, help="Replace the config's networks (names): A,B,...")
@click.option(
    "--engines", "engine_filter", help="Keep the engines whose label matches, e.g. mpyc/shamir or '*/semi*'."
)
@click.option(
    "--cluster",
    help="Run the parties on a Ray cluster's nodes: auto, HOST:PORT or ray://HOST:PORT (the cluster extra).",
)
@click.option(
    "--concurrency",
    type=click.IntRange(min=1),
    help="On a cluster: run up to N runs at once, each on nodes of its own.",
)
def run(
    config: Path,
    out_path: Path,
    resume: bool,
    force: bool,
    dry_run: bool,
    repeats: int | None,
    populations: tuple[str, ...] | None,
    networks: tuple[str, ...] | None,
    engine_filter: str | None,
    cluster: str | None,
    concurrency: int | None,
) -> None:
    """Run the experiment grid in CONFIG (YAML) and print its summary table."""
    if force and not resume:
        raise click.UsageError("--force goes with --resume")
    overrides = Overrides(repeats, populations, networks, engine_filter, cluster, concurrency)
    exp = load_experiment(config, overrides)
    for w in exp.warnings:
        _warn(w)
    if dry_run:
        _dry_run(exp, out_path, resume, force)
        return
    try:
        records = run_sweep(exp, out_path, resume, _warn, err, force)
    except (KeyboardInterrupt, click.exceptions.Abort):
        again = " ".join(filter(None, ["--resume", overrides.argv()]))
        err.print(
            f"interrupted: kept {kept_runs(exp, out_path)} of {len(runs(exp))} runs; continue with: "
            f"cohortbench run {config} --out {out_path} {again}",
            soft_wrap=True,
        )
        sys.exit(130)
    everything = results.read(out_path, _warn)
    _tables([r for r in everything if r["config"] == exp.config.name])
    out.print(f"results: {out_path}  logs: {out_path.with_suffix('.runs')}")
    tampered = [r for r in records if r["error"] is not None and expected_failure(r)]
    if tampered:
        err.print(
            f"{len(tampered)} tampered run(s) failed, as a tamper experiment may expect "
            "(not counted as failures; see the tampering table)"
        )
    unavailable = [r for r in records if r.get("unavailable")]
    if unavailable:
        err.print(
            f"[yellow]{len(unavailable)} run(s) unavailable[/]: an engine cannot run that cell here "
            f"(the reason is its `error` in {out_path}; `cohortbench doctor` for missing engines)"
        )
    bad = [
        r
        for r in records
        if r["error"] is not None
        and not r.get("skipped")
        and not r.get("unavailable")
        and not expected_failure(r)
    ]
    if bad:
        err.print(
            f"[red]{len(bad)} run(s) failed or disagreed with the oracle[/] (see `error` in {out_path})"
        )
        sys.exit(1)


def _dry_run(exp: Experiment, out_path: Path, resume: bool, force: bool) -> None:
    """Print what a sweep would do; exit 2 after listing every problem found."""
    plan = dry_run(exp, out_path, force, _warn)
    if plan.done and not resume:
        _warn(f"{out_path} exists: the real run needs --resume to continue it")
    for cell in plan.cells:
        out.print(f"{cell.key(exp)}  {cell.label()}", soft_wrap=True)
    held = f"{plan.done} done (in {out_path}), " if out_path.exists() else ""
    out.print(
        f"{len(plan.cells)} cell(s), {plan.planned} run(s): {held}{plan.todo} to do"
        + (f", {plan.skipped} skipped by budget_s (from the file's records)" if plan.skipped else ""),
        soft_wrap=True,
    )
    e = plan.estimate
    if e.measured or e.modelled:
        ways = [
            f"{e.measured} from earlier runs of the same cell" if e.measured else "",
            f"{e.modelled} from the cost model at a rate fitted to earlier records" if e.modelled else "",
            f"{e.unknown} without an estimate" if e.unknown else "",
        ]
        out.print(
            f"estimated time: about {_duration(e.seconds)} for the runs to do "
            f"({'; '.join(filter(None, ways))}); an estimate, without compilation and calibration runs",
            soft_wrap=True,
        )
    elif plan.todo:
        out.print("estimated time: unknown (no earlier records of these engines to measure a rate)")
    for problem in plan.problems:
        err.print(f"[red]error:[/] {problem}", soft_wrap=True)
    if plan.problems:
        sys.exit(2)


def _duration(seconds: float) -> str:
    minutes, secs = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min" if hours else (f"{minutes} min {secs} s" if minutes else f"{secs} s")


@cli.command()
@click.argument("results_path", metavar="RESULTS", type=click.Path(path_type=Path))
@click.option("--wide", is_flag=True, help="Every column (wider than 100 characters).")
@click.option("--csv", "as_csv", is_flag=True, help="The cell table as CSV on stdout, every field.")
@click.option("--json", "as_json", is_flag=True, help="The cell table as a JSON list on stdout.")
def show(results_path: Path, wide: bool, as_csv: bool, as_json: bool) -> None:
    """Print the summary table of a results file."""
    if as_csv and as_json:
        raise click.UsageError("give --csv or --json, not both")
    records = results.read(results_path, _warn)
    if not (as_csv or as_json):
        _tables(records, wide)
        return
    rows = summary.rows(summary.ordered(records))
    if as_csv:
        summary.write_csv(sys.stdout, rows)
    else:
        print(json.dumps(rows, indent=1))


@cli.command(name="budget")
@click.argument("source")
@click.option(
    "--ledger",
    "ledger_path",
    type=click.Path(path_type=Path),
    default=Path("results") / ledger.NAME,
    show_default=True,
    help="The privacy ledger (beside the results files).",
)
def budget_(source: str, ledger_path: Path) -> None:
    """Print what SOURCE (a population, as the config names it) has spent of its privacy
    budget, release by release, and what is left."""
    book = ledger.Ledger(ledger_path, _warn)
    total = book.budget(source)
    if total is None:
        known = ", ".join(book.sources()) or "none"
        raise InputError(
            str(ledger_path), source, "no release of this source", f"sources in the ledger: {known}"
        )
    for e in (e for e in book.entries if e["source"] == source):
        run = f"{e.get('config', '')} {e.get('run', '')}"
        out.print(f"{e['time']}  {run}  epsilon {e['epsilon']:g}  delta {e['delta']:g}")
    spent = book.spent(source)
    out.print(
        f"{source}: spent epsilon {spent.epsilon:g}, delta {spent.delta:g} (basic composition) "
        f"of {total.epsilon:g}, {total.delta:g}; left epsilon {max(0.0, total.epsilon - spent.epsilon):g}, "
        f"delta {max(0.0, total.delta - spent.delta):g}"
    )


cli.add_command(compare.command)
cli.add_command(doctor.command)
cli.add_command(report.command)


def main() -> None:
    """Console entry point: bad input is one clear line and exit status 2."""
    try:
        cli.main(standalone_mode=False)
    except InputError as e:
        err.print(f"[red]error:[/] {e}", soft_wrap=True)
        sys.exit(2)
    except click.exceptions.Abort:
        err.print("aborted")
        sys.exit(130)
    except click.ClickException as e:
        e.show()
        sys.exit(2)
    except fhir.BundleError as e:
        err.print(f"[red]error:[/] {e}", soft_wrap=True)
        sys.exit(2)


if __name__ == "__main__":
    main()
