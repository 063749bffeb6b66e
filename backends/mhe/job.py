"""One MHE run as the harness hands it to the party processes: a JSON file every party reads.

It holds only public facts (the query, the deployment, the sites' block sizes, the
parameters, the ports) and paths: each site's data file, which only that site reads,
and the directory of each party's key share, which only that party reads and writes.
Pure Python: the harness writes it, the parties' interpreter reads it.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

from backends.mhe.params import Params

TOPOLOGY = "star"  # party 0 aggregates; every other party talks to it alone
GENERATED, REUSED = "generated", "reused"  # what a run did for its keys
KEYS_COMPLETE = "complete"  # written last in a party's key directory


@dataclass(frozen=True)
class Job:
    query: dict  # circuits.ir.to_wire
    deployment: dict  # circuits.holdings.Holdings.public()
    blocks: list[int]  # patients each site holds (rows), or [every patient] (columns)
    slots: tuple[int, int]  # condition and exam slots per patient
    params: dict  # backends.mhe.params.Params
    site_paths: list[str]  # site i's own data file
    keys_dir: str  # party i keeps its key share in keys_dir/party-<i>
    reuse_keys: bool  # load the key shares a previous run left, rather than generate them
    result_dir: str  # party i writes result-<i>.json
    hosts: list[list[str]]  # hosts[i][j]: the address party i reaches party j at (links.host)
    views: list[list[int]]  # views[i][j]: the port party i uses for party j (links.views)
    # A stats query with dp: the mechanism, each released sum's noise scale ("p/q") and the
    # shares that make up the whole noise (`circuits.privacy.Plan`); every party adds its own.
    noise: dict | None = None
    # Private criteria (`lookup`): the researcher party, and its constants file, which it alone reads.
    researcher: int | None = None
    constants_path: str = ""

    def write(self, path: Path) -> None:
        path.write_text(json.dumps(asdict(self)))

    @staticmethod
    def read(path: Path) -> Job:
        data = json.loads(path.read_text())
        return Job(**{**data, "slots": tuple(data["slots"])})

    @property
    def scheme(self) -> Params:
        return Params(**self.params)

    def key_dir(self, party: int) -> Path:
        return key_dir(Path(self.keys_dir), party)

    def result_path(self, party: int) -> Path:
        return Path(self.result_dir) / f"result-{party}.json"


def key_dir(keys_dir: Path, party: int) -> Path:
    """Where `party` keeps its key share."""
    return keys_dir / f"party-{party}"


def keys_saved(keys_dir: Path, parties: int) -> bool:
    """Whether a run left every party's keys complete under `keys_dir`."""
    return all((key_dir(keys_dir, i) / KEYS_COMPLETE).exists() for i in range(parties))
