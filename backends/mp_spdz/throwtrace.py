"""The exception tracer preloaded into MP-SPDZ's VMs in tamper experiments (throwtrace.c).

`library()` compiles throwtrace.c once with the C compiler (`cc`) into the compile
cache (keyed by the source's hash) and returns the shared object; `env()` is the
environment that preloads it.  Without a C compiler the tracer is absent and the
VMs run as they are (their own messages still classify most aborts).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from pathlib import Path

from backends.mp_spdz.compile import default_cache_dir

SOURCE = Path(__file__).with_name("throwtrace.c")


def library(cache: Path | None = None) -> Path | None:
    """The compiled tracer, built on first use; None without a C compiler or if it fails."""
    code = SOURCE.read_bytes()
    target = (cache or default_cache_dir()) / f"throwtrace-{hashlib.sha256(code).hexdigest()[:12]}.so"
    if target.is_file():
        return target
    cc = shutil.which("cc") or shutil.which("gcc") or shutil.which("clang")
    if cc is None:
        return None
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_suffix(f".{os.getpid()}.tmp")
    done = subprocess.run(
        [cc, "-shared", "-fPIC", "-O2", "-o", str(partial), str(SOURCE), "-ldl"],
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        partial.unlink(missing_ok=True)
        return None
    partial.replace(target)
    return target


def env(cache: Path | None = None) -> dict[str, str]:
    """{"LD_PRELOAD": tracer} to add to the VMs' environment, or {} without a tracer."""
    lib = library(cache)
    return {"LD_PRELOAD": str(lib)} if lib else {}
