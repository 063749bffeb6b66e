"""Sites as MP-SPDZ parties, end to end (issue 14): each party runs its site's step
(`backends/mp_spdz/site.py`), which reads only its own data file, evaluates its local
parts in the clear and writes its own input file, then its VM.  Every deployment,
local mode and output against the plaintext oracle, for shamir (3 and 5 sites),
semi2k (2 sites), replicated-ring (3) and malicious-shamir (3); every party's log read
back to check that it printed what the deployment reveals to it and nothing more.
Every case runs on each protocol (about two minutes on two cores with every VM built).
Each run skips when its protocol's VM is not built.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from backends.mp_spdz import program
from backends.mp_spdz.engine import MpSpdzSpec
from circuits.holdings import Holdings, Partition
from circuits.ir import AgeRange, And, ExamCount, Gender, HasCondition, Not, Or, Output, Query, Smoker
from circuits.locality import split
from circuits.oracle import cohort
from circuits.population import Padding, Population
from circuits.sitedata import blocks
from harness.data import synthetic
from harness.run.runner import CellRunner
from mp_spdz_vms import need_compiler, need_vm
from test_mp_spdz_stats import run_cell

# Every criterion kind, across the three column groups (as in test_sites.py).
TREE = Or(
    (
        And((Smoker(0), AgeRange(30, 70), ExamCount(57698, 1, 60))),
        And((HasCondition((55822004, 38341003, 15777000)), Not(Gender(1)))),
    )
)
GROUPS = {
    2: {"demographics": 0, "conditions": 1, "exams": 1},
    3: {"demographics": 0, "conditions": 1, "exams": 2},
    5: {"demographics": 1, "conditions": 3, "exams": 4},
}
OUTPUTS = (Output.COUNT, Output.ELIGIBLE, Output.COUNT_BY_SITE)
_ANSWER = re.compile(r"^(ELIGIBLE|COUNT|COUNT_BY_SITE) (.*)$", re.M)


def population(patients: int = 36, seed: int = 5) -> Population:
    return synthetic.generate(patients, seed=seed, padding=Padding(3, 4), truncate=True)


def holdings_of(partition: str, sites: int, local: bool, patients: int) -> Holdings:
    if partition == "rows":  # uneven blocks: site i holds patients i, i+sites, ... and the rest
        site_of = tuple(min(i % (sites + 1), sites - 1) for i in range(patients))
        return Holdings(Partition.ROWS, sites, site_of, local=local)
    return Holdings(Partition.COLUMNS, sites, (), GROUPS[sites], local, reveal_to=sites - 1)


def printed(log: Path) -> list[tuple[str, list[int]]]:
    """Every answer line a party printed: (kind, the numbers on it)."""
    text = log.read_text(errors="replace")
    return [(kind, [int(x) for x in re.findall(r"-?\d+", rest)]) for kind, rest in _ANSWER.findall(text)]


def expected_lines(output: Output, learnt: object) -> list[tuple[str, list[int]]]:
    """What a party's log must hold as answers, given what it may learn."""
    if learnt is None or (output is Output.ELIGIBLE and learnt == []):
        return []
    if output is Output.COUNT:
        return [("COUNT", [learnt])]
    kind = "COUNT_BY_SITE" if output is Output.COUNT_BY_SITE else "ELIGIBLE"
    return [(kind, list(learnt))]


def run_and_check(protocol: str, sites: int, partition: str, local: bool, output: Output, tmp: Path) -> None:
    need_vm(protocol)
    pop = population()
    query = Query(TREE, output)
    holdings = holdings_of(partition, sites, local, len(pop))
    spec = MpSpdzSpec(engine="mp-spdz", protocol=protocol, parties=sites)
    outcome, _ = run_cell(spec, query, pop, tmp, holdings)
    assert outcome.error is None and outcome.correct, outcome.error
    expected = cohort(query, pop)
    learnt = expected.learnt(output, holdings, sites)
    for pid in range(sites):  # the leak check: each log holds its own answer, nothing more
        assert printed(tmp / "r0" / f"party-{pid}.log") == expected_lines(output, learnt[pid]), pid
    assert not list((tmp / "r0").glob("P*/Player-Data/Input-*")), "input files stay after the run"
    assert not list(tmp.glob("site-*.npz")), "the sites' data files stay after the cell"
    mode = split(query, holdings).mode
    figures = outcome.figures
    assert len(figures["local_s"]) == sites and all(s is not None for s in figures["local_s"])
    if mode == "none":
        assert figures["bytes_sent"] == 0


CASES = [
    (partition, local, output)
    for partition in ("rows", "columns")
    for local in (True, False)
    for output in OUTPUTS
    if not (output is Output.COUNT_BY_SITE and partition == "columns")
]


def _id(case: tuple) -> str:
    partition, local, output = case
    return f"{partition}-{'auto' if local else 'off'}-{output.value}"


@pytest.mark.parametrize("case", CASES, ids=_id)
def test_shamir_three_sites(case, tmp_path):
    run_and_check("shamir", 3, *case, tmp_path)


@pytest.mark.parametrize(
    "case",
    [
        ("rows", True, Output.COUNT_BY_SITE),
        ("rows", False, Output.ELIGIBLE),
        ("columns", True, Output.ELIGIBLE),
    ],
    ids=_id,
)
def test_shamir_five_sites(case, tmp_path):
    run_and_check("shamir", 5, *case, tmp_path)


@pytest.mark.parametrize("case", CASES, ids=_id)
@pytest.mark.parametrize("protocol, sites", [("semi2k", 2), ("replicated-ring", 3), ("malicious-shamir", 3)])
def test_other_protocols(protocol, sites, case, tmp_path):
    run_and_check(protocol, sites, *case, tmp_path)


@pytest.mark.parametrize("lowering", program.LOWERINGS)
def test_a_sites_input_file_holds_only_its_own_data(lowering):
    """Under columns a site's file encodes its own groups and local bits only; under rows
    its own block (binary: in its lanes, zeros elsewhere)."""
    pop = population(12)
    shape = program.Shape.of(pop)
    for partition in ("rows", "columns"):
        holdings = holdings_of(partition, 3, False, len(pop))
        sites = program.Sites(split(Query(TREE, Output.COUNT), holdings), blocks(holdings, len(pop)))
        texts = []
        for site in range(3):
            mine = pop.take(holdings.patients_of(site)) if partition == "rows" else pop
            own = np.zeros((len(mine), 0), dtype=np.int64)
            texts.append(program.site_input_text(sites, site, mine, own, shape, lowering))
        whole = program.input_text(pop, Query(TREE, Output.COUNT), shape, lowering).splitlines()
        if partition == "columns":  # the sites' files together are party 0's file, by column
            assert sorted(sum((t.splitlines() for t in texts), [])) == sorted(whole)
            assert all(texts)
        else:  # a line per plane or slot, as party 0's; each holds the site's block only
            assert all(len(t.splitlines()) == len(whole) for t in texts)
            if lowering == program.ARITHMETIC:
                sizes = holdings.site_sizes(len(pop))
                assert [len(t.splitlines()[0].split()) for t in texts] == list(sizes)


def test_a_site_with_no_patients_inputs_nothing(tmp_path):
    """Rows with an empty site: it inputs nothing, learns no bits, and the answer holds."""
    need_compiler()
    pop = population(20)
    holdings = Holdings(Partition.ROWS, 3, tuple(i % 2 for i in range(20)))  # site 2 empty
    sites = program.Sites(split(Query(TREE, Output.COUNT), holdings), blocks(holdings, 20))
    bits = np.zeros((0, 1), dtype=np.int64)
    assert program.site_input_text(sites, 2, pop.take(()), bits, program.Shape.of(pop)) == "0\n"
    unsplit = Holdings(Partition.ROWS, 3, holdings.site_of_patient, local=False)
    off = program.Sites(split(Query(TREE), unsplit), sites.blocks)
    assert program.site_input_text(off, 2, pop.take(()), bits, program.Shape.of(pop)) == ""
    need_vm("shamir")
    for output in (Output.ELIGIBLE, Output.COUNT_BY_SITE):
        runner = CellRunner(
            MpSpdzSpec(engine="mp-spdz", protocol="shamir", parties=3),
            Query(TREE, output),
            pop,
            tmp_path / output.value,
            off.plan.holdings,
        )
        try:
            outcome = runner.run("r0", 240)
        finally:
            runner.close()
        assert outcome.error is None and outcome.correct, outcome.error
