"""Clean runs that a cell's own runs depend on, one per setting and shared by its networks.

A fault given as a `fraction` of its link's stream is placed from a clean run's
byte counts.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Callable

from harness.run.runner import CellRunner, Outcome
from harness.net.networks import Network

if TYPE_CHECKING:
    from harness.run.sweep import Cell

Enter = Callable[[Callable[[], Outcome]], Outcome]  # how a run is entered (isolation)


class Calibrations:
    """Clean runs that place faults given as a `fraction` of their link's stream: one per
    setting (engine, data, query, links), shared by its networks that differ only in
    their faults."""

    def __init__(self, timeout_s: float, enter: Enter):
        self.timeout_s, self.enter = timeout_s, enter
        self.found: dict[tuple, Outcome] = {}

    @staticmethod
    def _key(cell: Cell) -> tuple:
        return (
            json.dumps(cell.engine.model_dump(mode="json", exclude_defaults=True)),
            cell.source.text,
            cell.padding,
            cell.query.ir_hash,
            cell.network.default,
            cell.network.links,
        )

    def network(self, cell: Cell, runner: CellRunner) -> Network | Outcome:
        """The cell's network with its faults placed, or the failed calibration's outcome."""
        if not cell.network.needs_calibration:
            return cell.network
        key = self._key(cell)
        if key not in self.found:
            clean = cell.network.without_faults()
            name = f"calibration-{len(self.found)}"
            self.found[key] = self.enter(lambda: runner.run(name, self.timeout_s, clean))
        done = self.found[key]
        if done.error is not None:
            return Outcome(
                None,
                {},
                None,
                False,
                f"the clean calibration run that places this cell's faults failed: {done.error}",
            )
        return cell.network.calibrated(done.figures["bytes_by_link"])

    def streams(self, cell: Cell) -> dict[str, int] | None:
        """The calibration's stream length of each faulted link, e.g. {"1->0": 52113}."""
        done = self.found.get(self._key(cell))
        if done is None or done.error is not None:
            return None
        return {f"{s}->{t}": done.figures["bytes_by_link"][s][t] for (s, t), _ in cell.network.faults}
