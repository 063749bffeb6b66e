"""Tamper experiments: who noticed a fault, and the summary table of their outcomes.

A run on a network with faults (`harness.faults`) ends in one of these ways,
decided from its record:

* ``protocol``: the run failed and a party aborted with the engine's own
  integrity error (MP-SPDZ's MAC/consistency checks, see `PROTOCOL_ABORTS`);
* ``tls``: the run failed and a party's TLS layer rejected the tampered record
  (`TLS_ERRORS`): detection by the channel, not by the protocol;
* ``correct``: it completed and the revealed answer equals the oracle's;
* ``wrong``: it completed and revealed a wrong answer, and nobody noticed;
* ``failed``: it failed otherwise (a crash on garbage, a hang until the
  timeout, a party that printed nothing useful): nothing detected as such.

`diagnose` reads a failed run's party logs: the failing party (the one that
failed on its own account rather than because a peer went away), its first
error line, and whether any party's log shows an integrity abort
(``protocol``), else a TLS error (``tls``), else ``none``.  The patterns were read off real failures of MP-SPDZ 3a0a7b1d's
VMs (see tests/test_tamper.py and configs/tamper.yaml).
"""
from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from rich.table import Table

from harness.faults import where
from harness.results import measured

# Integrity aborts: MP-SPDZ's checks (Tools/Exceptions.h and the protocols): mac_fail
# ("MacCheck Failure", "check hash mismatch", "inconsistent Shamir secret sharing",
# "mismatch in private output"), Offline_Check_Error ("Offline-Check-Error : ..."), the
# sacrifice's bad_value ("Some value is wrong somewhere"), commitments, broadcasts, and the
# OT extension's own checks (libOTe's SoftSpoken: "PPRF failed consistency check", "Failed
# subspace VOLE consistency check"; "OT consistency check failed", "correlation check"),
# which run in the semi-honest OT-based VMs too.  In tamper experiments the VMs also print the
# type of every exception they throw (backends/mp_spdz/throwtrace.c): "cohortbench: C++
# exception thrown: mac_fail" shows a check that failed even where MP-SPDZ's own message is
# lost (a MAC checker destroyed with unchecked openings calls terminate() first).
PROTOCOL_ABORTS = re.compile(
    r"MacCheck Failure|mac_fail|MAC check|check hash mismatch|inconsistent Shamir secret sharing"
    r"|mismatch in private output|Offline-Check-Error|Offline_Check_Error|consistency check"
    r"|consistency_check_fail|correlation check|Invalid Commitment|invalid_commitment"
    r"|Inconsistent broadcast|broadcast_invalid|Some value is wrong somewhere"
    r"|hash mismatch in joint message passing|invalid replicated secret sharing")
# TLS rejecting a record: OpenSSL via Boost.Asio reports e.g. "read_some: cipher operation
# failed (Provider routines) [asio.ssl:478150758]" (AES-GCM tag mismatch) or "wrong version
# number (SSL routines) [asio.ssl:167772427]" (a corrupted record header); Python's ssl
# module "[SSL: ...]".  NOT "stream truncated [asio.ssl.stream:1]": that is a peer that went
# away, the consequence of someone else's failure.
TLS_ERRORS = re.compile(
    r"\[asio\.ssl:\d+\]|bad record mac|decryption failed|cipher operation failed"
    r"|wrong version number|record layer failure|packet length too long|\[SSL: [A-Z_]+\]"
    r"|ssl\.SSLError", re.I)
# Lines that report someone else's failure, not one's own.
_CONSEQUENCE = re.compile(
    r"Connection closed down|closed_connection|stream truncated|Event loop stopped before Future"
    r"|Connection reset|Broken pipe|ConnectionResetError|BrokenPipeError|IncompleteReadError"
    r"|probably because party")
# A line that says something went wrong (for the failing party's message).
_ERROR_LINE = re.compile(
    r"Fatal error|terminate called|what\(\)|\w*Error\b|\w*Exception\b|[Ee]rror:|failed"
    r"|Failure|[Aa]bort|mismatch|[Ii]nconsistent|Traceback|Segmentation")
_PY_EXCEPTION = re.compile(r"^[A-Za-z_][\w.]*(?:Error|Exception|Exit|Interrupt)\b.*")

DETECTED_BY = ("protocol", "tls", "none")
OUTCOMES = ("protocol", "tls", "correct", "wrong", "failed")
CODES = {"protocol": "P", "tls": "T", "correct": "C", "wrong": "W", "failed": "F", None: "-"}


@dataclass(frozen=True)
class Diagnosis:
    failing_party: int | None
    message: str | None  # the failing party's first error line
    detected_by: str  # protocol | tls | none


def _read(path: Path) -> str:
    try:
        return path.read_text(errors="replace")
    except OSError:
        return ""


def first_error_line(text: str) -> str | None:
    """The first line that reports an error: for a Python traceback its exception line
    (not the logger's "Unhandled exception" line before it); for C++'s `terminate
    called ...`, joined with the `what():` line that follows."""
    lines = [ln.strip() for ln in text.splitlines()]
    for i, line in enumerate(lines):
        if not line or not _ERROR_LINE.search(line):
            continue
        window = lines[i:i + 3]
        if any(w.startswith("Traceback") for w in window):
            for later in lines[i + 1:]:
                if _PY_EXCEPTION.match(later):
                    return later
        if line.startswith("terminate called"):
            for later in lines[i + 1:i + 3]:
                if later.startswith("what()"):
                    return f"{line}: {later[len('what()'):].lstrip(': ').strip()}"
        return line
    return None


def _abort_line(text: str) -> str | None:
    """The first line that shows an integrity abort, if any."""
    return next((ln.strip() for ln in text.splitlines() if PROTOCOL_ABORTS.search(ln)), None)


def _rank(text: str) -> int:
    """How much a party's log says it found the fault itself (lower: more)."""
    if PROTOCOL_ABORTS.search(text):
        return 0
    if TLS_ERRORS.search(text):
        return 1
    line = first_error_line(text)
    if line is not None and not _CONSEQUENCE.search(line):
        return 2
    return 3


def diagnose(logs: Sequence[Path], returncodes: Sequence[int | None], timed_out: bool,
             first_failed: Sequence[int] = ()) -> Diagnosis:
    """The failing party, its first error line, and whether an integrity check (protocol)
    or TLS (tls) or nothing (none) rejected the tampered data.

    The failing party is the one that failed on its own account: among the parties that
    exited non-zero (not -9, the harness's kill of the rest of the group), the one whose
    log shows an integrity abort, else a TLS error, else an error of its own (not a
    "connection closed" caused by another), ties broken by who was seen failing first."""
    texts = [_read(p) for p in logs]
    failed = [i for i, rc in enumerate(returncodes) if rc not in (0, None, -9)]
    failing = None
    if failed:
        first = set(first_failed)
        failing = min(failed, key=lambda i: (_rank(texts[i]), i not in first, i))
    by = "none"
    if any(PROTOCOL_ABORTS.search(t) for t in texts):
        by = "protocol"
    elif any(TLS_ERRORS.search(t) for t in texts):
        by = "tls"
    message = None
    if failing is not None:
        message = _abort_line(texts[failing]) or first_error_line(texts[failing])
        if message is None:
            message = f"exited with {returncodes[failing]} and printed no error line"
    elif timed_out:
        message = "timed out; no party had failed"
    return Diagnosis(failing, message, by)


# --- the summary table ---------------------------------------------------------------------

def outcome(record: dict) -> str:
    """One of OUTCOMES for a record of a tampered run."""
    if record.get("error") is None:
        return "correct"
    if record.get("result_correct") is False:
        return "wrong"
    by = record.get("tamper_detected_by")
    if by in ("protocol", "tls"):
        return by
    return "failed"


@dataclass(frozen=True)
class Row:
    first: dict  # one record of the group, for its settings
    counts: dict[str, int]  # outcome -> runs, over the runs whose fault fired
    not_fired: int
    by_fault: str  # each fault's runs as letters (see CODES), e.g. "1->0 flip@3300: TTT, @3900: TTT"
    message: str | None  # the most frequent failing party message of the fired, failed runs
    message_runs: int

    @property
    def tampered(self) -> int:
        return sum(self.counts.values())


def rows(records: list[dict]) -> list[Row]:
    """One row per (config, engine, protocol, parties, tls): outcome counts over the runs whose
    fault fired, the runs whose fault did not fire, the faults, the usual failure."""
    groups: dict[tuple, list[dict]] = {}
    for r in measured(records):
        if not r.get("fault") or r.get("skipped"):
            continue
        key = (r["config"], r["engine"], r["protocol"], r["parties"], bool(r.get("tls")))
        groups.setdefault(key, []).append(r)
    out = []
    for runs in groups.values():
        fired = [r for r in runs if r.get("fault_fired")]
        counts = {k: 0 for k in OUTCOMES}
        for r in fired:
            counts[outcome(r)] += 1
        by_fault: dict[str, list[str]] = {}
        for r in sorted(runs, key=lambda r: r.get("repeat", 0)):
            label = ", ".join(f"{link} {f['mode']}@{where(f)}" for link, f in sorted(r["fault"].items()))
            by_fault.setdefault(label, []).append(
                CODES[outcome(r) if r.get("fault_fired") else None])
        parts, previous = [], None
        for label in sorted(by_fault, key=_natural):
            head, _, at = label.rpartition("@")
            shown = f"@{at}" if head == previous and "," not in label else label
            parts.append(f"{shown}: {''.join(by_fault[label])}")
            previous = head
        messages = Counter(r["failing_party_message"] for r in fired
                           if r.get("error") is not None and r.get("failing_party_message"))
        message, n = messages.most_common(1)[0] if messages else (None, 0)
        out.append(Row(runs[0], counts, len(runs) - len(fired), ", ".join(parts), message, n))
    return out


def _natural(text: str) -> list:
    return [(0, int(t), "") if t.isdigit() else (1, 0, t) for t in re.split(r"(\d+)", text)]


def _pct(n: int, total: int) -> str:
    return f"{100 * n / total:.0f}% ({n})" if total else "-"


TABLE_HEAD = ("engine/protocol", "security", "tampered", "detected: protocol", "detected: TLS",
              "right answer", "WRONG answer", "failed otherwise", "not fired", "per fault",
              "most frequent failure")
LEGEND = ("per fault, one letter a run: P detected by the protocol, T by TLS, C completed "
          "correct, W completed WRONG, F failed otherwise, - not fired")


def summary(records: list[dict]) -> list[list[str]]:
    """The tamper table's rows as plain text (TABLE_HEAD columns); empty without faults."""
    out = []
    for row in sorted(rows(records), key=lambda r: (r.first["config"], r.first["security"],
                                                    r.first["majority"], r.first["engine"],
                                                    r.first["protocol"], bool(r.first.get("tls")))):
        f, c, n = row.first, row.counts, row.tampered
        message = "-" if row.message is None else (
            f"{row.message if len(row.message) <= 70 else row.message[:67] + '...'} "
            f"({row.message_runs})")
        out.append([f"{f['engine']}/{f['protocol']} {f['parties']}p"
                    + (" TLS" if f.get("tls") else " plain"),
                    f"{f['security']}/{f['majority']}", str(n),
                    _pct(c["protocol"], n), _pct(c["tls"], n), _pct(c["correct"], n),
                    _pct(c["wrong"], n), _pct(c["failed"], n), str(row.not_fired), row.by_fault,
                    message])
    return out


def table(records: list[dict]) -> Table | None:
    """The tamper table, or None when no record carries a fault."""
    found = summary(records)
    if not found:
        return None
    t = Table(title="tampering: what became of the runs whose fault fired", caption=LEGEND)
    left = ("engine/protocol", "security", "per fault", "most frequent failure")
    for name in TABLE_HEAD:
        t.add_column(name, justify="left" if name in left else "right")
    wrong = TABLE_HEAD.index("WRONG answer")
    for cells in found:
        if not cells[wrong].startswith("0%") and cells[wrong] != "-":
            cells = cells[:wrong] + [f"[red]{cells[wrong]}[/]"] + cells[wrong + 1:]
        t.add_row(*cells)
    return t
