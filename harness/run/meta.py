"""Run metadata recorded with every result: versions, commit, machine, settings."""

from __future__ import annotations

import os
import platform
import socket
import statistics
import subprocess
import time
from importlib import metadata
from pathlib import Path

import numpy as np

from backends import registry


REPO = Path(__file__).resolve().parent.parent.parent


def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def git_commit() -> str | None:
    try:
        out = subprocess.run(
            ["git", "-C", str(REPO), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5
        )
        dirty = subprocess.run(
            ["git", "-C", str(REPO), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=5,
        ).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        return None
    return (out.stdout.strip() + ("-dirty" if dirty else "")) if out.returncode == 0 else None


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def collect(config_hash: str) -> dict:
    """Metadata that is fixed for a sweep."""
    return {
        "cohortbench": _version("cohortbench"),
        "commit": git_commit(),
        "engines": {k: v for e in registry.engines().values() for k, v in e.versions().items()},
        "python": platform.python_version(),
        "cpu": cpu_model(),
        "cores": cores(),
        "hostname": socket.gethostname(),
        "config_hash": config_hash,
        "calibration_s": calibrate(),
    }


def cores() -> int:
    """The logical CPUs this machine has."""
    return os.cpu_count() or 1


def load_average() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def _workload() -> int:
    """A fixed CPU job, half interpreter-bound (like MPyC's asyncio and bookkeeping), half
    single-threaded numpy kernels (no BLAS, so the core count does not matter)."""
    acc, table = 0, {}
    for i in range(750_000):
        acc = (acc * 31 + i) % 1_000_003
        table[i & 1023] = acc ^ table.get((i * 7) & 1023, 0)
    a = np.random.default_rng(20240601).integers(0, 2**31, size=500_000, dtype=np.int64)
    for _ in range(9):
        a = np.sort(a ^ (a >> 3))
        a = (np.cumsum(a % 65521) + a) % (2**31 - 1)
    return acc + int(a[::997].sum())


def calibrate(repeats: int = 5) -> float:
    """Seconds for the fixed workload (~0.2 s on a 2-core EPYC VM): the median of `repeats`."""
    samples = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        _workload()
        samples.append(time.perf_counter() - t0)
    return statistics.median(samples)
