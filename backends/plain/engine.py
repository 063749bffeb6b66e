"""The `plain` engine: one party evaluates the query in the clear with the oracle.

It is what a data holder computes on its own records, and the floor every
secure engine is compared with.  It writes the population once per cell; its
one party has no links, so networks do not apply to it.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Literal

from backends.engine import NO_SECURITY, Engine, Figures, Finished, Links, OutputError, Party, Preparation
from backends.engine import ProtocolFacts, Spec, python_path
from backends.plain import party
from circuits.holdings import PATIENT_HELD, Holdings
from circuits.ir import Query, to_wire
from circuits.population import Population

FACTS = {"oracle": ProtocolFacts("oracle", NO_SECURITY, NO_SECURITY, "plaintext", 1, 1)}


class PlainSpec(Spec):
    title = "plain"
    defaults = FACTS
    engine: Literal["plain"]

    @classmethod
    def default_protocol(cls) -> str:
        return "oracle"


class PlainCell:
    """The population written once; each run's job names the query and where to answer."""

    def __init__(
        self, spec: Spec, query: Query, pop: Population, workdir: Path, holdings: Holdings = PATIENT_HELD
    ):
        self.query, self.workdir, self.holdings = query, workdir.resolve(), holdings
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.data = party.write_population(pop, self.workdir / "population.npz")
        self.preparation = Preparation()

    def plan(self, run_dir: Path, links: Links, traced: bool) -> list[Party]:
        job = run_dir / "job.json"
        job.write_text(
            json.dumps(
                {
                    **to_wire(self.query),
                    "population": str(self.data),
                    "result": str(run_dir / "result.json"),
                    "site_of_patient": list(self.holdings.site_of_patient),
                    "sites": self.holdings.sites,
                }
            )
        )
        return [Party((sys.executable, "-m", "backends.plain.party", str(job)), run_dir, python_path())]

    def read(self, run: Finished) -> Figures:
        path = run.run_dir / "result.json"
        try:
            r = json.loads(path.read_text())
        except (OSError, ValueError) as e:
            raise OutputError(f"the party wrote no readable result ({path}: {e})") from None
        return Figures(answers=[r["answer"]], engine_s=[r["compute_s"]], bytes_by_party=None)

    def finish(self, run_dir: Path) -> None:
        """Nothing private is written per run."""

    def close(self) -> None:
        self.data.unlink(missing_ok=True)


ENGINE = Engine("plain", PlainSpec, PlainCell)
