"""The researcher's truth tables (`lookup`) on the wire, and the sites' lookups in them.

The researcher (a site, or an extra party holding no data) alone reads the constants
file the cell wrote; it encrypts every table under the joint key and, unless it is
party 0, sends them to party 0, which forwards them to every other party that looks
up a leaf.  A party then computes its leaves' bits, block by block, as encrypted
sums of the tables' ciphertexts times its own 0/1 plaintexts.  Imports openfhe (through
`scheme`): the parties' interpreter only.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Sequence

from backends.mhe import lookup, scheme
from backends.mhe.framing import Peer
from backends.mhe.job import Job
from circuits.locality import Split
from circuits.population import Population

Tables = list[list[Any]]  # per secret leaf, one ciphertext per value of its domain
TAG = b"T"


def encrypt_tables(cc: Any, public: Any, plan: Split, constants_path: str) -> Tables:
    """The researcher: each leaf's table, T[d] in every slot of the d-th ciphertext."""
    constants = tuple(json.loads(Path(constants_path).read_text()))
    slots = cc.GetRingDimension()
    return [
        [scheme.encrypt(cc, public, [int(bit)] * slots) for bit in table]
        for table in lookup.tables(plan.query.root, constants)
    ]


def lead_tables(cc: Any, plan: Split, public: Any, job: Job, peers: Sequence[Peer]) -> Tables:
    """Party 0: the tables, made here or received from the researcher, forwarded to every
    other party that looks a leaf up."""
    if job.researcher == 0:
        tables = encrypt_tables(cc, public, plan, job.constants_path)
    else:
        (source,) = [p for p in peers if p.party == job.researcher]
        tables = receive(source, plan)
    for peer in peers:
        if peer.party != job.researcher and lookup.holders(plan, peer.party):
            send(peer, tables)
    return tables


def site_tables(cc: Any, plan: Split, public: Any, job: Job, pid: int, peer: Peer) -> Tables:
    """Another party: the researcher makes the tables and sends them to party 0; a party
    that looks leaves up receives them from party 0 (none: an empty list)."""
    if pid == job.researcher:
        tables = encrypt_tables(cc, public, plan, job.constants_path)
        send(peer, tables)
        return tables
    return receive(peer, plan) if lookup.holders(plan, pid) else []


def send(peer: Peer, tables: Tables) -> None:
    for table in tables:
        for ct in table:
            peer.send(TAG, scheme.serialize(ct))


def receive(peer: Peer, plan: Split) -> Tables:
    return [
        [scheme.ciphertext(peer.receive(TAG)) for _ in range(n)] for n in lookup.table_sizes(plan.query.root)
    ]


def lookups(cc: Any, plan: Split, tables: Tables, pid: int, pop: Population, sizes: list[int]) -> list[Any]:
    """This party's secret leaves' bits, leaf by leaf, block by block (`lookup.holders`)."""
    held, slots = lookup.holders(plan, pid), cc.GetRingDimension()
    if not held:
        return []
    blocks = lookup.blocks_of(plan, sizes, pid, slots)
    index = {leaf: i for i, leaf in enumerate(lookup.secret_leaves(plan.query.root))}
    out = []
    for leaf in held:
        table = tables[index[leaf]]
        for present in lookup.indicators(leaf, pop, blocks, slots):
            terms = [cc.EvalMult(table[d], cc.MakePackedPlaintext(mask)) for d, mask in present.items()]
            out.append(total(cc, terms, table[0]))
    return out


def total(cc: Any, terms: list[Any], like: Any) -> Any:
    """The sum of `terms`; none (a block holding no patient, public): zero slots."""
    if not terms:
        return cc.EvalSub(like, like)
    return terms[0] if len(terms) == 1 else cc.EvalAddMany(terms)
