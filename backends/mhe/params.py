"""The BFV parameters of an MHE cell, chosen from its query: depth, plaintext modulus, ring.

The multiplicative depth is that of the secure remainder of the split query
(`circuits.locality`): a LocalBit costs none, a Not none (1 - x), an And or an Or of
k children ceil(log2 k) levels above its deepest child (a balanced product tree; Or
is 1 - prod(1 - x)).  Under rows nothing is multiplied (depth 0).  The plaintext
modulus must exceed every value a slot or the clear slot sum may hold, the number of
patients at most: 65537 up to 65536 patients, else the smallest prime above the
population that is 1 mod 2^17 (so that it batches at every ring dimension offered).
The ring dimension is OpenFHE's smallest secure one (HEStd_128_classic) for the depth
and modulus, unless the cell fixes it; `MAX_DEPTH` is the deepest circuit each fixed
ring dimension takes.  Pure Python: both the harness and the parties import it.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

from circuits.ir import SECRET_LEAVES, And, LocalBit, Node, Not, Or

FIXED, FLOODING = "fixed-noise", "noise-flooding"
MODES = {"bfv": FIXED, "bfv-flood": FLOODING}  # protocol -> OpenFHE's multiparty mode
# The deepest circuit OpenFHE 1.6.1 (BFVrns, HEStd_128_classic, plaintext modulus 65537,
# 16 parties) generates a context for at each ring dimension (-1: none at all);
# tests/test_mhe.py checks these against OpenFHE.
MAX_DEPTH = {
    FIXED: {4096: 0, 8192: 3, 16384: 9, 32768: 20},
    FLOODING: {4096: -1, 8192: 0, 16384: 6, 32768: 17},
}
SMALL_MODULUS = 65537
_BATCHING = 1 << 17  # 2 N for the largest ring dimension


def depth(node: Node) -> int:
    """The multiplicative depth of a secure remainder (LocalBit, Not, And and Or nodes, and
    a private query's secret leaves: looked up by plaintext products, no level)."""
    if isinstance(node, (LocalBit, *SECRET_LEAVES)):
        return 0
    if isinstance(node, Not):
        return depth(node.child)
    if isinstance(node, (And, Or)):
        return max(map(depth, node.children)) + math.ceil(math.log2(len(node.children)))
    raise ValueError(f"{type(node).__name__} is not evaluated homomorphically (only LocalBit, Not, And, Or)")


def _is_prime(n: int) -> bool:
    return n > 1 and all(n % d for d in range(2, math.isqrt(n) + 1))


def plaintext_modulus(patients: int) -> int:
    """The smallest plaintext modulus (see the module docstring) above `patients`."""
    if patients < SMALL_MODULUS:
        return SMALL_MODULUS
    p = (patients // _BATCHING + 1) * _BATCHING + 1
    while not _is_prime(p):
        p += _BATCHING
    return p


def depth_problem(protocol: str, needed: int, ring_dimension: int | None) -> tuple[str, str] | None:
    """None when the protocol's parameters reach depth `needed`; else the problem and its fix."""
    table = MAX_DEPTH[MODES[protocol]]
    ring = ring_dimension or max(table)
    if needed <= table[ring]:
        return None
    fits = [n for n, d in table.items() if d >= needed]
    reach = f"depth {table[ring]} at most" if table[ring] >= 0 else "no circuit at all"
    problem = f"the query needs multiplicative depth {needed}, but {protocol} at ring dimension {ring}"
    problem += f" takes {reach}"
    if fits:
        return problem, f"use ring_dimension: {fits[0]} or more, or omit ring_dimension"
    return problem, "use a query with fewer nested all/any across sites, or more of it held by one site"


@dataclass(frozen=True)
class Params:
    """What a party builds its crypto context from (the ring: None, OpenFHE's choice)."""

    protocol: str
    parties: int
    depth: int
    plaintext_modulus: int
    ring_dimension: int | None = None

    @property
    def mode(self) -> str:
        return MODES[self.protocol]

    def to_json(self) -> dict:
        return asdict(self)
