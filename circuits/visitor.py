"""The one way a translator walks the criteria IR: a method per node type, or `Unsupported`.

Every consumer of the tree (oracle, cost model, each engine's lowering, the
native and paper-format writers, `render`) subclasses `Visitor` and defines
``visit_<node>`` for each node type it handles, named from the class name
(`AgeRange` -> ``visit_age_range``).  A node type without its method raises
`Unsupported` naming the node and the target, never a silent fall-through, so
a new node in `circuits.ir.NODES` fails every translator that misses it.
"""

from __future__ import annotations

import re
from typing import Any, Generic, TypeVar

T = TypeVar("T")


class Unsupported(Exception):
    """A translator met a node type it cannot lower."""

    def __init__(self, node: object, target: str, why: str = "") -> None:
        kind = type(node).__name__
        super().__init__(
            f"{target} cannot translate {kind} nodes"
            + (f": {why}" if why else f"; it has no visit_{method_suffix(type(node))} method")
        )
        self.node, self.target = node, target


def method_suffix(cls: type) -> str:
    """`AgeRange` -> ``age_range``: the name after ``visit_`` of a node type's method."""
    return re.sub(r"(?<!^)(?=[A-Z])", "_", cls.__name__).lower()


class Visitor(Generic[T]):
    """Dispatch on the node's type to ``visit_<node>(node, *args)``."""

    target = "this translator"  # named in `Unsupported` errors, e.g. "MP-SPDZ binary lowering"
    nodes: tuple[type, ...] | None = None  # the node types it translates (None: circuits.ir.NODES)

    def visit(self, node: Any, *args: Any, **kwargs: Any) -> T:
        method = getattr(self, "visit_" + method_suffix(type(node)), None)
        if method is None:
            raise Unsupported(node, self.target)
        return method(node, *args, **kwargs)

    @classmethod
    def missing(cls) -> list[str]:
        """The node types of `nodes` (by default `circuits.ir.NODES`) this visitor has no
        method for."""
        from circuits.ir import NODES  # here, not above: circuits.ir's own `render` is a Visitor

        return [n.__name__ for n in cls.nodes or NODES if not hasattr(cls, "visit_" + method_suffix(n))]
