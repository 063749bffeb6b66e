"""Results files: one JSON line per run, appended and flushed as soon as it finishes.

`--resume` keeps finished runs; a half-written last line (a killed sweep) is
detected, reported and discarded.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Callable, Iterator

from circuits.errors import InputError


def read(path: Path, on_bad_line: Callable[[str], None] | None = None) -> list[dict]:
    """All records; a corrupt line is an error, except a truncated last one (reported)."""
    try:
        lines = path.read_text().splitlines(keepends=True)
    except OSError as e:
        raise InputError(str(path), "", f"cannot read: {e.strerror}", "check the path") from None
    records = []
    for i, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            if i == len(lines) and not line.endswith("\n") and on_bad_line is not None:
                on_bad_line(f"{path}: line {i} is half-written (the sweep was killed); discarded")
                continue
            raise InputError(str(path), f"line {i}", "not a JSON record",
                             "results files are written by `cohortbench run`") from None
    return records


def rewrite(path: Path, records: list[dict]) -> None:
    """Replace the file with exactly these records (drops a half-written line)."""
    tmp = path.with_suffix(path.suffix + ".tmp")
    with tmp.open("w") as f:
        for r in records:
            f.write(json.dumps(r) + "\n")
    tmp.replace(path)


class Writer:
    """Appends records durably: each line is flushed and fsynced before the next run."""

    def __init__(self, path: Path):
        path.parent.mkdir(parents=True, exist_ok=True)
        self._f = path.open("a")

    def append(self, record: dict) -> None:
        self._f.write(json.dumps(record) + "\n")
        self._f.flush()
        os.fsync(self._f.fileno())

    def close(self) -> None:
        self._f.close()


def run_key(record: dict) -> tuple[str, int, bool]:
    return record["cell"], record["repeat"], record["warmup"]


def measured(records: list[dict]) -> Iterator[dict]:
    """Records that count for statistics (warmups are kept in the file, not counted)."""
    return (r for r in records if not r.get("warmup"))
