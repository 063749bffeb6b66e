"""How the harness starts MPyC parties and reads what they report."""

from __future__ import annotations

import json
import re
import sys
from dataclasses import dataclass
from pathlib import Path

from backends.engine import Links

_STOP = re.compile(r"Stop MPyC -- elapsed time: (\d+):(\d+):([\d.]+)\|bytes sent: (\d+)")


def commands(links: Links, ssl: bool = False) -> list[list[str]]:
    """One command per party: `-M m -I i` and every party's address.

    Party i reaches party j at `links.address(i, j)`: j's node and port, or a relay's;
    its own address is the one it listens on (`party.bind_own_address`).  With `ssl`,
    the working directory must hold MPyC's `.config` certificates.
    """
    parties = links.parties
    out = []
    for i in range(parties):
        addresses = []
        for j in range(parties):
            addresses += ["-P", links.address(i, j)]
        out.append(
            [
                sys.executable,
                "-m",
                "backends.mpyc.party",
                "-M",
                str(parties),
                "-I",
                str(i),
                *addresses,
                *(["--ssl"] if ssl else []),
            ]
        )
    return out


@dataclass(frozen=True)
class PartyReport:
    pid: int
    elapsed_s: float  # MPyC's own start-to-stop time (a site that never connected: its compute time)
    bytes_sent: int  # MPyC's count: payload plus a 12-byte header per message
    compute_s: float
    bit_length: int
    peak_rss_kib: int
    result: object
    local_s: float | None = None  # several sites: this site's local evaluation in the clear
    input_s: float | None = None  # ... the secure part's input phase (None: nothing secure)
    input_bytes: int | None = None  # ... what this site sent in it


def read_report(pid: int, log: Path, result_dir: Path) -> PartyReport:
    """Parse a party's log and result file; ValueError names what is missing."""
    path = result_dir / f"result-{pid}.json"
    try:
        r = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise ValueError(f"party {pid} wrote no readable result ({path}: {e})") from None
    sites = {k: r.get(k) for k in ("local_s", "input_s", "input_bytes")}
    if r.get("secure") is False:  # its answer was its own: MPyC never started
        return PartyReport(
            pid, r["compute_s"], 0, r["compute_s"], r["bit_length"], r["peak_rss_kib"], r["result"], **sites
        )
    text = log.read_text(errors="replace") if log.exists() else ""
    m = _STOP.search(text)
    if not m:
        raise ValueError(f"party {pid} printed no 'Stop MPyC' line (see {log})")
    h, mi, s, sent = m.groups()
    elapsed = int(h) * 3600 + int(mi) * 60 + float(s)
    return PartyReport(
        pid, elapsed, int(sent), r["compute_s"], r["bit_length"], r["peak_rss_kib"], r["result"], **sites
    )
