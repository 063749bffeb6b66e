"""A toy engine for tests/test_engines.py: two party processes, no security at all.

Party 0 holds the population, evaluates the query with the oracle and sends its
answer to party 1 over TCP; both print it.  It exists to show that an engine is
one package plus one registry entry (here `COHORTBENCH_ENGINES=toy=toy_engine:ENGINE`).
"""

from __future__ import annotations

import json
import os
import socket
import sys
import time
from pathlib import Path
from typing import Literal

from backends.engine import Engine, Figures, Finished, Links, OutputError, Party, ProtocolFacts, Spec
from backends.plain.engine import PlainCell
from backends.plain.party import read_population
from circuits.ir import Output, Query, from_plain, to_plain
from circuits.oracle import cohort

HERE = Path(__file__).resolve().parent


class ToySpec(Spec):
    title = "toy"
    defaults = {"clear": ProtocolFacts("clear", "none", "none", "plaintext", 2, 2)}
    engine: Literal["toy"]

    @classmethod
    def default_protocol(cls) -> str:
        return "clear"


class ToyCell(PlainCell):
    """The plain engine's cell (population written once), with two parties and a link."""

    def plan(self, run_dir: Path, links: Links, traced: bool) -> list[Party]:
        job = {
            "root": to_plain(self.query.root),
            "output": self.query.output.value,
            "population": str(self.data),
            "listen": links.listen[1],
            "peer": links.views[0][1],
            "host": links.host(1, 1),
            "peer_host": links.host(0, 1),
        }
        (run_dir / "job.json").write_text(json.dumps(job))
        path = os.pathsep.join(filter(None, [str(HERE), str(HERE.parent), os.environ.get("PYTHONPATH")]))
        return [
            Party(
                (sys.executable, "-m", "toy_engine", str(run_dir / "job.json"), str(pid)),
                run_dir,
                {"PYTHONPATH": path},
            )
            for pid in (0, 1)
        ]

    def read(self, run: Finished) -> Figures:
        reports = []
        for log in run.logs:
            lines = [ln for ln in log.read_text().splitlines() if ln.startswith("{")]
            if not lines:
                raise OutputError(f"{log} holds no report line")
            reports.append(json.loads(lines[-1]))
        return Figures(
            answers=[r["answer"] for r in reports],
            engine_s=[r["s"] for r in reports],
            bytes_by_party=[r["sent"] for r in reports],
        )


ENGINE = Engine("toy", ToySpec, ToyCell, versions=lambda: {"toy": "1"})


def _party(job: dict, pid: int) -> None:
    t0 = time.perf_counter()
    if pid == 1:
        with socket.create_server((job["host"], job["listen"])) as server:
            conn, _ = server.accept()
            with conn:
                data = b"".join(iter(lambda: conn.recv(65536), b""))
        print(json.dumps({"answer": json.loads(data), "sent": 0, "s": time.perf_counter() - t0}))
        return
    query = Query(from_plain(job["root"]), Output(job["output"]))
    result = cohort(query, read_population(Path(job["population"])))
    payload = json.dumps(result.count).encode()
    for _ in range(200):  # party 1 may not listen yet
        try:
            with socket.create_connection((job["peer_host"], job["peer"])) as conn:
                conn.sendall(payload)
            break
        except ConnectionRefusedError:
            time.sleep(0.05)
    print(json.dumps({"answer": result.count, "sent": len(payload), "s": time.perf_counter() - t0}))


if __name__ == "__main__":
    _party(json.loads(Path(sys.argv[1]).read_text()), int(sys.argv[2]))
