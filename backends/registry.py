"""Where the harness finds its engines: one line per backend, plus any named in $COHORTBENCH_ENGINES.

A new engine is one package exposing an `Engine` object (see `backends.engine`)
and one line in `BUILT_IN`; an engine kept outside this repository is named at
run time, as ``COHORTBENCH_ENGINES="name=package.module:OBJECT,..."``.
"""

from __future__ import annotations

import importlib
import os
from typing import Mapping

from backends.engine import Engine
from circuits.errors import InputError

BUILT_IN = {
    "mpyc": "backends.mpyc.engine:ENGINE",
    "mp-spdz": "backends.mp_spdz.engine:ENGINE",
    "plain": "backends.plain.engine:ENGINE",
    "mhe": "backends.mhe.engine:ENGINE",
}
ENV = "COHORTBENCH_ENGINES"


def locations(environ: Mapping[str, str] = os.environ) -> dict[str, str]:
    """Engine name -> "module:object": the built-in ones and those of $COHORTBENCH_ENGINES."""
    out = dict(BUILT_IN)
    for item in filter(None, (s.strip() for s in environ.get(ENV, "").split(","))):
        name, sep, where = item.partition("=")
        if not sep or ":" not in where:
            raise InputError(
                f"${ENV}",
                item,
                "not of the form name=module:object",
                "e.g. COHORTBENCH_ENGINES=toy=mypackage.engine:ENGINE",
            )
        out[name.strip()] = where.strip()
    return out


def load(name: str, where: str) -> Engine:
    module, _, attr = where.partition(":")
    try:
        engine = getattr(importlib.import_module(module), attr)
    except (ImportError, AttributeError) as e:
        raise InputError(
            f"${ENV}", name, f"cannot load {where}: {e}", "check the module path and the object's name"
        ) from None
    if engine.name != name:
        raise InputError(
            f"${ENV}", name, f"{where} is the engine {engine.name!r}", f"register it as {engine.name}={where}"
        )
    return engine


def engines(environ: Mapping[str, str] = os.environ) -> dict[str, Engine]:
    """Every engine, by name."""
    return {name: load(name, where) for name, where in locations(environ).items()}


def get(name: str, environ: Mapping[str, str] = os.environ) -> Engine:
    found = locations(environ)
    if name not in found:
        raise ValueError(f"unknown engine {name!r}; use one of {', '.join(found)}")
    return load(name, found[name])
