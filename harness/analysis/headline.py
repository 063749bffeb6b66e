"""The report's answer: what each security model costs, on each network.

Cells are compared within a context: the same network, query, population (source and
padding), number of parties, deployment and criteria (public, or private with who inputs
them). In each context with a semi-honest cell and a second security model, each
model's fastest cell is set against the fastest semi-honest one: its engine time (the
engine's own, else wall) and bytes as ratios. The plaintext engine (security `none`) is
no security model here. `missing` says why there is no answer, and RUN_COMPARISON what
to run for one.
"""

from __future__ import annotations

from dataclasses import dataclass

from harness.analysis.stats import Cell

SEMI_HONEST, NO_SECURITY = "semi-honest", "none"
# the configs that run several security models side by side (paths from the repository)
COMPARISON = "configs/security-models.yaml"  # MPyC and every MP-SPDZ protocol, lan and wan
QUICK_COMPARISON = "configs/bench-mp-spdz.yaml"  # the same protocols on loopback, < 5 minutes
RUN_COMPARISON = f"cohortbench run {COMPARISON} --out results/security-models.jsonl"


@dataclass(frozen=True)
class Cost:
    """One security model in one context, against the context's fastest semi-honest cell."""

    cell: Cell  # the model's fastest cell
    baseline: Cell  # the fastest semi-honest cell

    @property
    def model(self) -> tuple[str, str]:
        return self.cell.security

    @property
    def time_ratio(self) -> float | None:
        t, b = self.cell.time, self.baseline.time
        return t / b if t and b else None

    @property
    def bytes_ratio(self) -> float | None:
        x, b = self.cell.bytes_sent, self.baseline.bytes_sent
        return x / b if x and b else None


def _context(c: Cell) -> tuple:
    setting = (c.first.parties, c.deployment, c.criteria)
    return (c.network, c.query, c.first.population_source, c.padding, *setting)


def context_label(c: Cell) -> str:
    """What a context holds fixed, in words (the network aside)."""
    where = "" if c.deployment == "patient" else f", {c.deployment}"
    who = "" if c.criteria == "public" else f", {c.criteria} criteria"
    return f"{c.first.parties} parties, {c.population_label}, {c.query}{where}{who}"


def models(all_cells: list[Cell]) -> set[tuple[str, str]]:
    """The security models (security, majority) of the timed cells, plaintext aside."""
    return {c.security for c in all_cells if c.time and c.security[0] != NO_SECURITY}


def costs(all_cells: list[Cell]) -> list[Cost]:
    """Each model's cost in each context that has a semi-honest cell and another model,
    ordered by network (delay), context and model (semi-honest first)."""
    contexts: dict[tuple, list[Cell]] = {}
    for c in all_cells:
        if c.time and c.security[0] != NO_SECURITY:
            contexts.setdefault(_context(c), []).append(c)
    out = []
    for cs in contexts.values():
        semi = [c for c in cs if c.security[0] == SEMI_HONEST]
        if not semi or len(models(cs)) < 2:
            continue
        baseline = min(semi, key=_time)
        for model in sorted(models(cs), key=_model_order):
            fastest = min((c for c in cs if c.security == model), key=_time)
            out.append(Cost(fastest, baseline))
    return sorted(out, key=lambda k: (k.cell.network_order, context_label(k.cell), _model_order(k.model)))


def _time(c: Cell) -> float:
    return c.time or 0.0


def _model_order(model: tuple[str, str]) -> tuple:
    return (model[0] != SEMI_HONEST, model[1] != "honest", model)


def missing(all_cells: list[Cell]) -> str | None:
    """Why the results cannot say what security costs (then run RUN_COMPARISON); None when
    they can."""
    if costs(all_cells):
        return None
    found = sorted(models(all_cells))
    if len(found) < 2:
        held = f"one security model ({', '.join(found[0])} majority)" if found else "no security model"
        return f"These results hold {held}, so there is nothing to compare."
    return (
        f"These results hold {len(found)} security models, but never a second one beside a "
        "semi-honest protocol at the same network, query, population, parties and deployment."
    )
