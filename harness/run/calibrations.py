"""Clean runs that a cell's own runs depend on, one per setting and shared by its networks.

A fault given as a `fraction` of its link's stream is placed from a clean run's
byte counts.  A cell's rounds are counted once per setting (engine, data, query, deployment),
by a run on the lock-step relay, whatever the networks it is run on, and on this machine,
wherever the cell's parties run: the barrier watches every party's process, and rounds
are the protocol's and the query's, not the placement's.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Callable

from harness.run.runner import CellRunner, Outcome
from harness.net.networks import Network
from harness.run.parties import HERE, Launcher

if TYPE_CHECKING:
    from harness.run.sweep import Cell

Enter = Callable[[Callable[[], Outcome]], Outcome]  # how a run is entered (isolation)


class Calibrations:
    """The clean runs of a sweep: one that places faults given as a `fraction` of their
    link's stream per setting and links, shared by the networks that differ only in their
    faults; and one lock-step run per setting, whose rounds every network shares."""

    def __init__(self, timeout_s: float, enter: Enter, warn: Callable[[str], None]):
        self.timeout_s, self.enter, self.warn = timeout_s, enter, warn
        self.found: dict[tuple, Outcome] = {}
        self.counted: dict[tuple, float | None] = {}  # rounds, by setting

    @staticmethod
    def _setting(cell: Cell) -> tuple:
        return (
            json.dumps(cell.engine.model_dump(mode="json", exclude_defaults=True)),
            cell.source.text,
            cell.padding,
            cell.query.ir_hash,
            json.dumps(cell.deployment_key()),
        )

    @classmethod
    def planned(cls, todo: list[Cell], rounds: bool) -> list[Cell]:
        """The calibration runs a sweep of these cells' runs makes: one lock-step run per
        setting (with `rounds`, of more than one party), one clean run per faulted links."""
        settings = {cls._setting(c): c for c in todo if rounds and c.engine.parties > 1}
        faulted = {cls._key(c): c for c in todo if c.network.needs_calibration}
        return [*settings.values(), *faulted.values()]

    @classmethod
    def _key(cls, cell: Cell) -> tuple:
        return (*cls._setting(cell), cell.network.default, cell.network.links)

    def rounds(self, cell: Cell, runner: CellRunner) -> float | None:
        """The setting's synchronous rounds (None for one party, or if the lock-step run
        failed, which is warned about once)."""
        key = self._setting(cell)
        if key not in self.counted:
            self.counted[key] = None
            if cell.engine.parties > 1:
                name = f"rounds-{len(self.counted)}"
                done = self.enter(
                    lambda: runner.run(name, self.timeout_s, Network.rounds_calibration(), HERE)
                )
                if done.error is None:
                    self.counted[key] = done.figures.get("rounds")
                else:
                    self.warn(
                        f"{cell.label()}: no rounds, the lock-step run failed: {done.error.splitlines()[0]}"
                    )
        return self.counted[key]

    def network(self, cell: Cell, runner: CellRunner, launcher: Launcher) -> Network | Outcome:
        """The cell's network with its faults placed (by a clean run where `launcher`
        places the parties), or the failed calibration's outcome."""
        if not cell.network.needs_calibration:
            return cell.network
        key = self._key(cell)
        if key not in self.found:
            clean = cell.network.without_faults()
            name = f"calibration-{len(self.found)}"
            self.found[key] = self.enter(lambda: runner.run(name, self.timeout_s, clean, launcher))
        done = self.found[key]
        if done.error is not None:
            return Outcome(
                None,
                {},
                None,
                False,
                f"the clean calibration run that places this cell's faults failed: {done.error}",
                unavailable=done.unavailable,
            )
        return cell.network.calibrated(done.figures["bytes_by_link"])

    def streams(self, cell: Cell) -> dict[str, int] | None:
        """The calibration's stream length of each faulted link, e.g. {"1->0": 52113}."""
        done = self.found.get(self._key(cell))
        if done is None or done.error is not None:
            return None
        return {f"{s}->{t}": done.figures["bytes_by_link"][s][t] for (s, t), _ in cell.network.faults}
