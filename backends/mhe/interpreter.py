"""Which Python runs the MHE parties: `$COHORTBENCH_MHE_PYTHON`, else the repo's `.venv-mhe`.

OpenFHE's wheels import under CPython 3.12 or 3.10 only, never this project's 3.11
(see pyproject.toml's `mhe` extra), so the parties run under a second interpreter,
made by `make install` (`backends/mhe/make_venv.sh`).  An interpreter counts only if it
starts and imports openfhe; the check runs it once and reports its versions.
"""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

from backends.engine import REPO

ENV = "COHORTBENCH_MHE_PYTHON"
VENV_PYTHON = REPO / ".venv-mhe" / "bin" / "python"
FIX = (
    "run `make install` where CPython 3.12 or 3.10 is installed (it makes .venv-mhe with OpenFHE), "
    f"or set {ENV} to a Python that imports openfhe"
)
_PROBE = "import sys, importlib.metadata as m, openfhe; print(sys.version.split()[0], m.version('openfhe'))"


@dataclass(frozen=True)
class Interpreter:
    """The MHE parties' Python: where it is, its versions, or why it cannot be used."""

    path: Path
    python: str | None = None
    openfhe: str | None = None
    problem: str | None = None

    @property
    def ok(self) -> bool:
        return self.problem is None


def find(environ: Mapping[str, str] = os.environ) -> Interpreter:
    """The interpreter to use, checked by running it."""
    given = environ.get(ENV)
    path = Path(given) if given else VENV_PYTHON
    where = f"${ENV} ({path})" if given else str(path)
    if not path.exists():
        return Interpreter(path, problem=f"no MHE interpreter at {where}")
    try:
        done = subprocess.run([str(path), "-c", _PROBE], capture_output=True, text=True, timeout=120)
    except (OSError, subprocess.TimeoutExpired) as e:
        return Interpreter(path, problem=f"{where} does not run: {e}")
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["(no message)"])[-1]
        return Interpreter(path, problem=f"{where} cannot import openfhe: {last}")
    python, openfhe = done.stdout.split()
    return Interpreter(path, python, openfhe)
