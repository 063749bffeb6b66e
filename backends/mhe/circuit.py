"""The secure remainder of a split query (`circuits.locality`) evaluated on ciphertexts.

Each LocalBit, and each secret leaf of a private query (`lookup`), is a site's
encrypted 0/1 slots; Not is 1 - x; And is the product of
its children, multiplied as a balanced tree (OpenFHE's EvalMultMany, relinearising
after each level: ceil(log2 k) levels for k children); Or is 1 - prod(1 - x).  BFV
arithmetic modulo the plaintext modulus is exact on 0/1 slots, so each slot of the
result is the patient's bit.  Party 0 alone evaluates, one block of slots at a time.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

from circuits.ir import And, LocalBit, Node, Not, Or, SecretAge, SecretGender, SecretSmoker
from circuits.visitor import Visitor


class Homomorphic(Visitor[Any]):
    """The remainder's value, as a ciphertext, on one block of encrypted local bits."""

    target = "the MHE evaluator"
    # a secure remainder's nodes: the sites evaluated (or looked up) the leaves
    nodes = (LocalBit, SecretAge, SecretGender, SecretSmoker, Not, And, Or)

    def __init__(self, cc: Any, parts: Mapping[object, Any], ones: Any):
        self.cc, self.parts, self.ones = cc, parts, ones  # parts: each input node's ciphertext

    def _input(self, node: Node) -> Any:
        return self.parts[node]

    visit_local_bit = visit_secret_age = visit_secret_gender = visit_secret_smoker = _input

    def visit_not(self, node: Not) -> Any:
        return self._not(self.visit(node.child))

    def visit_and(self, node: And) -> Any:
        return self._product([self.visit(c) for c in node.children])

    def visit_or(self, node: Or) -> Any:
        return self._not(self._product([self._not(self.visit(c)) for c in node.children]))

    def _not(self, ct: Any) -> Any:
        return self.cc.EvalAdd(self.cc.EvalNegate(ct), self.ones)

    def _product(self, cts: Sequence[Any]) -> Any:
        return cts[0] if len(cts) == 1 else self.cc.EvalMultMany(list(cts))


def at_zero(node: Node) -> int:
    """The remainder's value where every input is 0 (a padding slot): public."""
    if isinstance(node, Not):
        return 1 - at_zero(node.child)
    if isinstance(node, And):
        return int(all(map(at_zero, node.children)))
    if isinstance(node, Or):
        return int(any(map(at_zero, node.children)))
    return 0
