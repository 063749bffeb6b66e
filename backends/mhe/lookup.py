"""Private criteria under MHE: each secret leaf as a truth table over its public domain.

The researcher knows the constants, the sites their patients.  A leaf reading one
demographic column of D public values (age 0..MAX_AGE, gender, smoking status) is a
table T of D bits, T[d] the leaf's truth for value d, computed with the oracle's own
code.  The researcher encrypts one ciphertext per value, T[d] in every slot; the site
holding the column computes its patients' bits as sum_d Enc(T[d]) * [x = d], one
plaintext-ciphertext product per value its block holds: no relinearisation, and no
level above the circuit's own (`tests/test_mhe_private.py` checks it at the deepest
circuit a ring takes).  Which leaves a site looks up, and for which blocks of slots, is public:
under `rows` every site its own patients' blocks, one after another in site order;
under `columns` the site holding the demographics every patient.

Conditions and exams have no public domain of useful size (a SNOMED CT code is any
number below 10^18; an exam leaf's table spans type x at_least x months): they are
refused (`unsupported`).  Pure Python: the harness and the parties import it.
"""

from __future__ import annotations

import math

import numpy as np

from circuits.codes import GENDERS, MAX_AGE, SMOKER_STATES
from circuits.holdings import Partition
from circuits.ir import ExamCount, HasCondition, Node, SecretAge, SecretGender, SecretSmoker, leaves
from circuits.locality import GROUP_OF_LEAF, Split
from circuits.oracle import Oracle
from circuits.population import Population
from circuits.sitedata import holding

COLUMN = {SecretAge: "age", SecretGender: "gender", SecretSmoker: "smoker"}
DOMAIN = {SecretAge: MAX_AGE + 1, SecretGender: len(GENDERS), SecretSmoker: len(SMOKER_STATES)}
LookedUp = SecretAge | SecretGender | SecretSmoker
REFUSED = {HasCondition: "condition", ExamCount: "exams"}  # by their YAML keys


def unsupported(root: Node) -> str | None:
    """Why a query's criteria cannot be private under MHE (None: they can)."""
    kinds = sorted({REFUSED[type(leaf)] for leaf in leaves(root) if type(leaf) in REFUSED})
    if not kinds:
        return None
    return (
        "private criteria under MHE take age, gender and smoking status only: the researcher "
        "encrypts a truth table over each criterion's public domain, and a condition (any "
        "SNOMED CT code) has none, an exam criterion's (type x at_least x months) is too large "
        f"to send (backends/mhe/README.md); this query has {' and '.join(kinds)} criteria"
    )


def secret_leaves(root: Node) -> list[LookedUp]:
    """The template's secret leaves, in tree order (each its own table)."""
    return [leaf for leaf in leaves(root) if isinstance(leaf, (SecretAge, SecretGender, SecretSmoker))]


def tables(root: Node, constants: tuple[int, ...]) -> list[np.ndarray]:
    """The researcher's truth table of each secret leaf, by the oracle's own code."""
    out = []
    for leaf in secret_leaves(root):
        domain = np.arange(DOMAIN[type(leaf)], dtype=np.int64)
        values = holding(len(domain), (1, 1), {COLUMN[type(leaf)]: domain})
        out.append(Oracle(values, constants=constants).visit(leaf).astype(np.int64))
    return out


def table_sizes(root: Node) -> list[int]:
    """How many ciphertexts each leaf's table takes (public: the domains)."""
    return [DOMAIN[type(leaf)] for leaf in secret_leaves(root)]


def holders(plan: Split, party: int) -> list[LookedUp]:
    """The secret leaves `party` looks up: under rows every leaf (a site, on its own
    patients), under columns those whose column its groups hold."""
    if party >= plan.holdings.sites:
        return []  # an extra researcher holds no data
    rows = plan.holdings.partition is Partition.ROWS
    site_of = plan.holdings.site_of_group
    return [
        leaf for leaf in secret_leaves(plan.query.root) if rows or site_of[GROUP_OF_LEAF[type(leaf)]] == party
    ]


def blocks_of(plan: Split, sizes: list[int], party: int, slots: int) -> int:
    """How many blocks of slots `party`'s lookups cover: under rows its own patients',
    under columns every patient's (`sizes`: the job's block sizes); an extra researcher none."""
    if party >= plan.holdings.sites:
        return 0
    if plan.holdings.partition is Partition.ROWS:
        return block_count(sizes[party], slots)
    return block_count(sizes[0], slots)


def block_count(patients: int, slots: int) -> int:
    """Ciphertexts a column of `patients` takes, `slots` to a ciphertext (one at least)."""
    return max(1, math.ceil(patients / slots))


def indicators(leaf: LookedUp, pop: Population, blocks: int, slots: int) -> list[dict[int, list[int]]]:
    """Per block, each value the block holds with its 0/1 slot vector [x = d] (padding:
    no value, so a padding slot looks up 0)."""
    column = np.full(blocks * slots, -1, dtype=np.int64)
    column[: len(pop)] = getattr(pop, COLUMN[type(leaf)])
    out = []
    for b in range(blocks):
        block = column[b * slots : (b + 1) * slots]
        out.append({int(d): (block == d).astype(np.int64).tolist() for d in np.unique(block) if d >= 0})
    return out
