"""Who noticed a fault: the failing party of a failed run and what detected the tampering.

A failed run of a tampered cell was detected by ``protocol`` (a party aborted
with the engine's own integrity error), by ``tls`` (a party's TLS layer rejected
the tampered record), or by ``none``.

`diagnose` reads a failed run's party logs: the failing party (the one that
failed on its own account rather than because a peer went away), its first
error line, and whether any party's log shows an integrity abort
(``protocol``), else a TLS error (``tls``), else ``none``.  What an integrity
abort and a TLS error look like is the engine's (`Engine.aborts`, `Engine.tls_errors`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence


# Lines that report someone else's failure, not one's own.
_CONSEQUENCE = re.compile(
    r"Connection closed down|closed_connection|stream truncated|Event loop stopped before Future"
    r"|Connection reset|Broken pipe|ConnectionResetError|BrokenPipeError|IncompleteReadError"
    r"|probably because party"
)
# A line that says something went wrong (for the failing party's message).
_ERROR_LINE = re.compile(
    r"Fatal error|terminate called|what\(\)|\w*Error\b|\w*Exception\b|[Ee]rror:|failed"
    r"|Failure|[Aa]bort|mismatch|[Ii]nconsistent|Traceback|Segmentation"
)
_PY_EXCEPTION = re.compile(r"^[A-Za-z_][\w.]*(?:Error|Exception|Exit|Interrupt)\b.*")

DETECTED_BY = ("protocol", "tls", "none")


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
        window = lines[i : i + 3]
        if any(w.startswith("Traceback") for w in window):
            for later in lines[i + 1 :]:
                if _PY_EXCEPTION.match(later):
                    return later
        if line.startswith("terminate called"):
            for later in lines[i + 1 : i + 3]:
                if later.startswith("what()"):
                    return f"{line}: {later[len('what()') :].lstrip(': ').strip()}"
        return line
    return None


def _abort_line(text: str, aborts: re.Pattern[str]) -> str | None:
    """The first line that shows an integrity abort, if any."""
    return next((ln.strip() for ln in text.splitlines() if aborts.search(ln)), None)


def _rank(text: str, aborts: re.Pattern[str], tls_errors: re.Pattern[str]) -> int:
    """How much a party's log says it found the fault itself (lower: more)."""
    if aborts.search(text):
        return 0
    if tls_errors.search(text):
        return 1
    line = first_error_line(text)
    if line is not None and not _CONSEQUENCE.search(line):
        return 2
    return 3


def diagnose(
    logs: Sequence[Path],
    returncodes: Sequence[int | None],
    timed_out: bool,
    first_failed: Sequence[int],
    aborts: re.Pattern[str],
    tls_errors: re.Pattern[str],
) -> Diagnosis:
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
        failing = min(failed, key=lambda i: (_rank(texts[i], aborts, tls_errors), i not in first, i))
    by = "none"
    if any(aborts.search(t) for t in texts):
        by = "protocol"
    elif any(tls_errors.search(t) for t in texts):
        by = "tls"
    message = None
    if failing is not None:
        message = _abort_line(texts[failing], aborts) or first_error_line(texts[failing])
        if message is None:
            message = f"exited with {returncodes[failing]} and printed no error line"
    elif timed_out:
        message = "timed out; no party had failed"
    return Diagnosis(failing, message, by)
