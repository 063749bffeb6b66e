"""Run metadata recorded with every result: versions, commit, machine, settings."""
from __future__ import annotations

import os
import platform
import socket
import subprocess
from importlib import metadata
from pathlib import Path

from harness.compare import calibrate

REPO = Path(__file__).resolve().parent.parent


def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "-C", str(REPO), "rev-parse", "HEAD"], capture_output=True,
                             text=True, timeout=5)
        dirty = subprocess.run(["git", "-C", str(REPO), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=5).stdout.strip()
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
        "cohortbench": _version("cohortbench"), "commit": git_commit(),
        "engines": {"mpyc": _version("mpyc"), "gmpy2": _version("gmpy2"), "numpy": _version("numpy")},
        "python": platform.python_version(), "cpu": cpu_model(), "cores": os.cpu_count(),
        "hostname": socket.gethostname(), "config_hash": config_hash,
        "calibration_s": calibrate(),
    }


def load_average() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]
