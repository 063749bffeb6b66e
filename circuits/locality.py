"""Evaluation by data locality: a query split into what sites compute in the clear and
the secure remainder, one pass shared by every engine.

A subtree whose leaves read only one site's data and whose constants are public is
that site's to evaluate in the clear (with the oracle's code), and it inputs one bit
per patient in its place (`LocalBit`); a private query's leaves (`circuits.secret`)
are never local, for no site knows their constants.  Under `rows` a site holds whole records, so it
evaluates the whole tree on its own patients: a count is then a sum of the sites'
counts (`presum`), and eligible bits need no secure computation at all.  Under
`columns` the maximal one-site subtrees are local and the combinators across sites
are secure.  Under `patient`, or with `local: off`, the whole tree is secure.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from circuits.holdings import GROUP_COLUMNS, Holdings, Partition
from circuits.ir import AgeRange, And, ExamCount, Gender, HasCondition, LocalBit, Node, Not, Or, Output, Query
from circuits.ir import SECRET_LEAVES, SecretAge, SecretCondition, SecretExam, SecretGender, SecretSmoker
from circuits.ir import Smoker, leaves
from circuits.oracle import Oracle
from circuits.population import Population

GROUP_OF_LEAF = {
    AgeRange: "demographics",
    Gender: "demographics",
    Smoker: "demographics",
    HasCondition: "conditions",
    ExamCount: "exams",
    SecretAge: "demographics",
    SecretGender: "demographics",
    SecretSmoker: "demographics",
    SecretCondition: "conditions",
    SecretExam: "exams",
}
SECURE_NONE, SECURE_SUM, SECURE_TREE = "none", "sum", "tree"  # what the record's `secure` says
GROUP_OF_COLUMN = {  # the group of each input column the engines' lowerings read
    "age": "demographics",
    "gender": "demographics",
    "smoker": "demographics",
    "conditions": "conditions",
    "exam_codes": "exams",
    "exam_index": "exams",
    "exam_months": "exams",
}
LOCAL_PREFIX = "local"  # the input column of local part k is named local<k>


def local_column(k: int) -> str:
    """The name of the input column holding the bits of local part `k`."""
    return f"{LOCAL_PREFIX}{k}"


def local_index(column: str) -> int | None:
    """k for the column `local<k>`; None for a raw column."""
    rest = column.removeprefix(LOCAL_PREFIX)
    return int(rest) if rest != column and rest.isdigit() else None


@dataclass(frozen=True)
class LocalPart:
    """A subtree evaluated in the clear: by `site`, or under `rows` (site None) by every
    site on its own patients."""

    node: Node
    site: int | None


@dataclass(frozen=True)
class Split:
    """A query over a deployment: its local parts (`LocalBit(k)` stands for `local[k]`)
    and the secure remainder (None: nothing is secure).  `presum`: each site inputs its
    count of `LocalBit(0)` rather than the bits."""

    query: Query
    holdings: Holdings
    local: tuple[LocalPart, ...]
    secure: Node | None
    presum: bool = False

    @property
    def mode(self) -> str:
        """What the secure computation is: none, a sum of site counts, or a tree."""
        if self.secure is None:
            return SECURE_NONE
        return SECURE_SUM if self.presum else SECURE_TREE

    @property
    def local_nodes(self) -> int:
        """Nodes of the query evaluated in the clear."""
        return sum(_size(part.node) for part in self.local)

    def raw_groups(self) -> tuple[str, ...]:
        """The column groups whose raw columns the secure remainder reads."""
        if self.secure is None:
            return ()
        read = {GROUP_OF_LEAF[type(leaf)] for leaf in leaves(self.secure) if not isinstance(leaf, LocalBit)}
        return tuple(g for g in GROUP_COLUMNS if g in read)

    def parts_of(self, site: int) -> tuple[int, ...]:
        """The local parts `site` evaluates (every part, under rows)."""
        return tuple(k for k, p in enumerate(self.local) if p.site in (None, site))

    def holder(self, column: str) -> int | None:
        """The site that inputs `column` (a raw column or `local<k>`); None under rows,
        where every site inputs its own block."""
        if self.holdings.partition is Partition.ROWS:
            return None
        k = local_index(column)
        if k is None:
            return self.holdings.site_of_group[GROUP_OF_COLUMN[column]]
        site = self.local[k].site
        assert site is not None
        return site

    def local_bits(self, pop: Population, site: int) -> np.ndarray:
        """`site`'s local parts on its data `pop`, as a (patients, parts) 0/1 array."""
        oracle = Oracle(pop)
        bits = [oracle.visit(self.local[k].node) for k in self.parts_of(site)]
        return np.stack(bits, axis=1).astype(np.int64) if bits else np.zeros((len(pop), 0), np.int64)

    def evaluate(self, pop: Population) -> np.ndarray:
        """The split evaluated in the clear on the whole population: what the engines
        compute, for checking the pass against the oracle."""
        if self.secure is None:
            return Oracle(pop).visit(self.local[0].node)
        local = np.stack([Oracle(pop).visit(p.node) for p in self.local], axis=1) if self.local else None
        return Oracle(pop, local).visit(self.secure)


def split(query: Query, holdings: Holdings, private: bool = False) -> Split:
    """The deployment's split of `query` (see the module's docstring); `private`: its
    constants are the researcher's, as in its template, so nothing is local."""
    partition = holdings.partition
    if partition is Partition.PATIENT or not holdings.local or private:
        return Split(query, holdings, (), query.root)
    if partition is Partition.ROWS:
        if any(isinstance(leaf, SECRET_LEAVES) for leaf in leaves(query.root)):
            return Split(query, holdings, (), query.root)
        whole = (LocalPart(query.root, None),)
        if query.output is Output.ELIGIBLE:
            return Split(query, holdings, whole, None)
        return Split(query, holdings, whole, LocalBit(0), presum=True)
    parts: list[LocalPart] = []
    secure = _columns(query.root, holdings, parts)
    return Split(query, holdings, tuple(parts), secure)


def _columns(node: Node, holdings: Holdings, parts: list[LocalPart]) -> Node:
    """`node` with each maximal one-site subtree replaced by a `LocalBit` (appended to
    `parts`); an And/Or's children local to one site are combined into one part."""
    site = _site(node, holdings)
    if site is not None:
        return _local(node, site, parts)
    if isinstance(node, SECRET_LEAVES):
        return node
    if isinstance(node, Not):
        return Not(_columns(node.child, holdings, parts))
    assert isinstance(node, (And, Or))
    by_site: dict[int, list[Node]] = {}
    mixed: list[Node] = []
    for child in node.children:
        s = _site(child, holdings)
        (by_site.setdefault(s, []) if s is not None else mixed).append(child)
    kids: list[Node] = [
        _local(nodes[0] if len(nodes) == 1 else type(node)(tuple(nodes)), s, parts)
        for s, nodes in by_site.items()
    ]
    kids += [_columns(child, holdings, parts) for child in mixed]
    return kids[0] if len(kids) == 1 else type(node)(tuple(kids))


def _local(node: Node, site: int, parts: list[LocalPart]) -> LocalBit:
    parts.append(LocalPart(node, site))
    return LocalBit(len(parts) - 1)


def _site(node: Node, holdings: Holdings) -> int | None:
    """The one site holding every column `node` reads, or None (several sites, or a
    secret constant)."""
    if any(isinstance(leaf, SECRET_LEAVES) for leaf in leaves(node)):
        return None
    sites = {holdings.site_of_group[GROUP_OF_LEAF[type(leaf)]] for leaf in leaves(node)}
    return sites.pop() if len(sites) == 1 else None


def _size(node: Node) -> int:
    if isinstance(node, Not):
        return 1 + _size(node.child)
    if isinstance(node, (And, Or)):
        return 1 + sum(map(_size, node.children))
    return 1
