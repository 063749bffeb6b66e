"""One MHE party: its site's local evaluation in the clear, the key generation, its
encrypted inputs, the joint decryption, and what it learnt (`result-<pid>.json`).

`python -m backends.mhe.party JOB PID`, under the MHE interpreter (`.venv-mhe`).
Party 0 is a site and the star's aggregator: it receives every site's ciphertexts,
evaluates (rows: a sum; columns: the secure remainder, `circuit.Homomorphic`), sends
the result to every site for its partial decryption, fuses the partials and sends
the answer back in the clear (semi-honest: it could not lie undetected to an honest
party, only to one that does not check).  What is decrypted is exactly what the query
reveals:

* rows, `count`: each site puts its own count (`Split.presum`) in slot 0, zeros
  elsewhere; the sum's slot 0 is the total, every other slot 0.
* rows, `count_by_site`: site i puts its count in slot i.
* rows, `stats`: each site puts its own K sums over its own cohort
  (`circuits.oracle.site_sums`) in slots 0..K-1 (`by_site`: site i in slots iK..iK+K-1),
  plus, with dp, its own shares of every released sum's noise (`circuits.noise`): the
  decrypted slots are the released sums, signed (a slot above t/2 is negative).
* columns, `count`: the remainder's bits, one slot per patient, plus every party's
  zero-sum mask (uniform slots adding up to 0 modulo t, drawn from the OS's CSPRNG):
  the decrypted slots are uniform given their sum, which is the count plus the
  padding slots' public value, so even n - 1 colluding parties learn only the count
  (the honest one's mask hides the rest).  No rotation keys are needed.
* columns, `stats`: per released sum, the remainder's bits times the sum's factors,
  which the sites holding its attributes encrypt (`sums`), plus every party's mask for
  that sum, whose slots add up to its noise share: the decrypted slots of a sum add up
  to the released sum and are uniform given it.
* columns, `eligible`: the remainder's bits, unmasked, decrypted by `reveal_to` alone:
  party 0 sends it the result and every other party's partial decryption; the party
  that learns keeps its own.  No other party can decrypt.
* private criteria (`lookup`, `researcher`): the query is its template, all of it
  secure; the researcher's truth tables reach the sites through party 0, each site
  looks up its leaves' bits on its blocks (under rows its own patients', one segment
  per site), and party 0 evaluates the tree on them as under columns.
"""

from __future__ import annotations

import json
import os
import resource
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from backends.mhe import keygen, lookup, researcher, scheme, sums
from backends.mhe.circuit import Homomorphic, at_zero
from backends.mhe.framing import Peer, accept, dial
from backends.mhe.job import GENERATED, REUSED, TOPOLOGY, Job
from backends.mhe.keygen import Keys
from circuits.holdings import Holdings, Partition
from circuits.ir import LocalBit, Output, Query, from_wire
from circuits.locality import Split, split
from circuits import noise
from circuits.oracle import ColumnValues, site_sums
from circuits.population import Population
from circuits.sitedata import holding, read_site_population


@dataclass(frozen=True)
class Site:
    """What one party knows: the job, its id, the split query and its own local bits."""

    job: Job
    pid: int
    plan: Split
    bits: np.ndarray  # (patients it holds, its local parts)
    pop: Population  # its own data

    @property
    def query(self) -> Query:
        return self.plan.query

    @property
    def patients(self) -> int:
        """Every patient (under columns the one block of the secure arrays, under rows the sites')."""
        return sum(self.job.blocks)


def own_population(job: Job, pid: int) -> Population:
    """This site's data: its own file, zeros in the columns it does not hold."""
    if pid >= len(job.site_paths):
        return holding(0, job.slots, {})  # an extra researcher holds no data
    rows = job.deployment["partition"] == Partition.ROWS.value
    n = job.blocks[pid] if rows else job.blocks[0]
    return read_site_population(Path(job.site_paths[pid]), n, job.slots)


def connect(job: Job, pid: int) -> list[Peer]:
    """The star: party 0 dials every other party; each of them takes that one call."""
    if pid == 0:
        return [dial(j, job.hosts[0][j], job.views[0][j]) for j in range(1, len(job.views))]
    return [accept(0, job.hosts[pid][pid], job.views[pid][pid])]


def sent(peers: Sequence[Peer]) -> int:
    return sum(p.sent for p in peers)


def setup(cc: Any, site: Site, peers: list[Peer]) -> tuple[Keys, str]:
    """This party's keys: those a previous run kept, or generated now with every party."""
    directory, depth = site.job.key_dir(site.pid), site.job.scheme.depth
    if site.job.reuse_keys:
        return keygen.load(cc, directory), REUSED
    keys = keygen.lead(cc, peers, depth) if site.pid == 0 else keygen.site(cc, peers[0], depth)
    keygen.save(keys, directory)
    return keys, GENERATED


def blocks(site: Site, slots: int) -> int:
    """Blocks of slots each secure column takes: under rows every site's segment."""
    return sum(lookup.block_count(n, slots) for n in site.job.blocks)


def zero_sum_mask(length: int, modulus: int, total: int = 0) -> list[int]:
    """`length` values uniform modulo `modulus` whose sum is `total` modulo it (CSPRNG)."""
    drawn = np.frombuffer(os.urandom(8 * (length - 1)), dtype=np.uint64) % np.uint64(modulus)
    values = [int(v) for v in drawn]
    return values + [(total - sum(values)) % modulus]


def masks(site: Site) -> int:
    """How many masks every party adds to what is decrypted, under columns: one per entry
    of `decrypted` (the count, or each released sum), none for eligible bits."""
    if site.plan.presum or site.query.output is Output.ELIGIBLE:
        return 0
    return len(decrypted(site))


def own_factors(site: Site, party: int) -> list[sums.Factor]:
    """The stats factors `party` encrypts, in release order (none without stats)."""
    if site.query.stats is None:
        return []
    return list(dict.fromkeys(f for fs in sums.factors(site.plan) for f in fs if f.site == party))


def decrypted(site: Site) -> list[tuple[sums.Factor, ...]]:
    """Under columns, what party 0 decrypts, block by block: the bits times each entry's
    factors (stats: one entry per released sum; count and eligible: the bits alone)."""
    return [()] if site.query.stats is None else sums.factors(site.plan)


def reader(site: Site) -> int | None:
    """The one party that decrypts (columns, eligible: `reveal_to`); None: every party
    hears the answer."""
    if site.plan.presum or site.query.output is not Output.ELIGIBLE:
        return None
    return site.plan.holdings.reveal_to


def plaintexts(site: Site, slots: int) -> list[list[int]]:
    """The slot vectors this party encrypts: under rows its count (slot 0, or its own
    slot for count_by_site); under columns each of its local parts' bits, block by
    block, then its stats factors, then its masks (`masks`), block by block."""
    if site.plan.presum and site.query.stats is not None:
        return [stats_slots(site)]
    if site.plan.presum:
        count = int(site.bits[:, 0].sum())
        at = site.pid if site.query.output is Output.COUNT_BY_SITE else 0
        return [[0] * at + [count]]
    n, t = blocks(site, slots), site.job.scheme.plaintext_modulus
    values = ColumnValues(site.pop)
    columns = [*site.bits.T, *(values.visit(f.column) for f in own_factors(site, site.pid))]
    shares = noise_shares(site) if site.query.stats is not None else [0] * masks(site)
    columns += [zero_sum_mask(n * slots, t, share) for share in shares]
    return [block for column in columns for block in in_blocks(column, n, slots)]


def in_blocks(column: Sequence[int] | np.ndarray, n: int, slots: int) -> list[list[int]]:
    """A per-patient column as `n` blocks of `slots` slots, zero past its end."""
    padded = np.zeros(n * slots, dtype=np.int64)
    padded[: len(column)] = column
    return [padded[b * slots : (b + 1) * slots].tolist() for b in range(n)]


def noise_shares(site: Site) -> list[int]:
    """This party's share of every released sum's noise (zeros without dp)."""
    stats = site.query.stats
    assert stats is not None
    job = site.job
    if job.noise is None:
        return [0] * len(stats.released(site.plan.holdings.sites))
    shares = noise.draw(job.noise["mechanism"], job.noise["scales"], job.noise["honest"])
    noise.keep_for_tests(Path(job.result_dir), site.pid, shares)
    return shares


def stats_slots(site: Site) -> list[int]:
    """A site's stats input: its own sums at its offset, plus its noise shares (mod t)."""
    stats, sites, t = site.query.stats, site.plan.holdings.sites, site.job.scheme.plaintext_modulus
    assert stats is not None
    own = site_sums(stats, site.pop, site.bits[:, 0].astype(bool), site.pid, sites)
    at = site.pid * len(own) if stats.by_site else 0
    values = [0] * len(stats.released(sites))
    values[at : at + len(own)] = own
    return [(v + e) % t for v, e in zip(values, noise_shares(site))]


def inputs_of(site: Site, party: int, slots: int) -> int:
    """How many ciphertexts `party` sends (public: its parts and the blocks)."""
    if site.plan.presum:
        return 1
    inputs = len(site.plan.parts_of(party)) + len(own_factors(site, party)) + masks(site)
    leaves = len(lookup.holders(site.plan, party))
    return leaves * lookup.blocks_of(site.plan, site.job.blocks, party, slots) + inputs * blocks(site, slots)


def aggregate(cc: Any, site: Site, cts: list[list[Any]], slots: int) -> list[Any]:
    """Party 0: every party's ciphertexts (in party order) into what is decrypted."""
    if site.plan.presum:
        return [cc.EvalAddMany([c for party in cts for c in party])]
    n = blocks(site, slots)
    inputs: dict[object, list[Any]] = {}  # a remainder's input (a node) or a factor: its blocks
    masks_of: list[list[Any]] = []  # every party's masks, block by block
    for party, got in enumerate(cts):
        at = lookup.blocks_of(site.plan, site.job.blocks, party, slots)
        for leaf in lookup.holders(site.plan, party):  # under rows each site's segment, in site order
            inputs.setdefault(leaf, []).extend(got[:at])
            got = got[at:]
        keys = [*map(LocalBit, site.plan.parts_of(party)), *own_factors(site, party)]
        for i, key in enumerate(keys):
            inputs[key] = got[i * n : (i + 1) * n]
        masks_of.append(got[len(keys) * n :])
    ones = cc.MakePackedPlaintext([1] * slots)
    bits = [
        Homomorphic(cc, {k: v[b] for k, v in inputs.items() if not isinstance(k, sums.Factor)}, ones).visit(
            site.plan.secure
        )
        for b in range(n)
    ]
    out = []
    for j, factors in enumerate(decrypted(site)):
        for b in range(n):
            value = times(cc, bits[b], [inputs[f][b] for f in factors])
            out.append(cc.EvalAddMany([value, *(m[j * n + b] for m in masks_of)]) if masks_of[0] else value)
    return out


def times(cc: Any, bits: Any, factors: list[Any]) -> Any:
    """The bits times the product of `factors` (none: the bits), as `sums.extra_depth` counts."""
    if not factors:
        return bits
    return cc.EvalMult(bits, factors[0] if len(factors) == 1 else cc.EvalMultMany(factors))


def answer(site: Site, values: list[list[int]], modulus: int) -> object:
    """What the decrypted slots reveal: the count, every site's count, the eligible bits
    or the released sums."""
    if site.plan.presum:
        return presum_answer(site, values[0], modulus)
    if site.query.output is Output.ELIGIBLE:
        return [v % modulus for block in values for v in block][: site.patients]
    entries = decrypted(site)
    n = len(values) // len(entries)
    padding = n * len(values[0]) - site.patients
    assert site.plan.secure is not None
    totals = [
        sum(map(sum, values[j * n : (j + 1) * n])) - (0 if factors else at_zero(site.plan.secure) * padding)
        for j, factors in enumerate(entries)
    ]  # a padding slot is 0 times any factor; alone, the bits there are the remainder's value
    return totals[0] % modulus if site.query.stats is None else [signed(v, modulus) for v in totals]


def presum_answer(site: Site, slots: list[int], modulus: int) -> object:
    """Under rows: the released sums, every site's count, or the count."""
    if site.query.stats is not None:
        return [signed(v, modulus) for v in slots[: len(site.query.stats.released(site.plan.holdings.sites))]]
    if site.query.output is Output.COUNT_BY_SITE:
        return [v % modulus for v in slots[: site.plan.holdings.sites]]
    return slots[0] % modulus


def signed(v: int, modulus: int) -> int:
    """A slot value read as signed: above modulus / 2 it is negative."""
    v %= modulus
    return v - modulus if v > modulus // 2 else v


@dataclass(frozen=True)
class QueryRun:
    answer: object
    input_s: float
    input_bytes: int


def lead_query(cc: Any, site: Site, keys: Keys, peers: list[Peer]) -> QueryRun:
    """Party 0: gather, evaluate, have every party decrypt, fuse, tell the answer."""
    slots, t0, before = cc.GetRingDimension(), time.perf_counter(), sent(peers)
    job, public = site.job, keys.share.public
    tables = [] if job.researcher is None else researcher.lead_tables(cc, site.plan, public, job, peers)
    own = [*looked_up(cc, site, tables), *(scheme.encrypt(cc, public, v) for v in plaintexts(site, slots))]
    cts = [own] + [
        [scheme.ciphertext(p.receive(b"C")) for _ in range(inputs_of(site, p.party, slots))] for p in peers
    ]
    input_s, input_bytes = time.perf_counter() - t0, sent(peers) - before
    result = aggregate(cc, site, cts, slots)
    for peer in peers:
        for ct in result:
            peer.send(b"C", scheme.serialize(ct))
    to = reader(site)
    partials = [scheme.partial_decryptions(cc, keys.share, result, lead=True)]
    partials += [[scheme.ciphertext(p.receive(b"D")) for _ in result] for p in peers if p.party != to]
    if to not in (None, 0):  # the reader fuses: it gets every partial but its own
        (peer,) = [p for p in peers if p.party == to]
        for party in partials:
            for partial in party:
                peer.send(b"D", scheme.serialize(partial))
        return QueryRun(None, input_s, input_bytes)
    revealed = answer(site, fused(cc, partials, slots), site.job.scheme.plaintext_modulus)
    for peer in peers if to is None else ():
        peer.send(b"A", json.dumps(revealed).encode())
    return QueryRun(revealed, input_s, input_bytes)


def looked_up(cc: Any, site: Site, tables: researcher.Tables) -> list[Any]:
    """This party's secret leaves' bits (none: public criteria, or no leaf held)."""
    return researcher.lookups(cc, site.plan, tables, site.pid, site.pop, site.job.blocks) if tables else []


def fused(cc: Any, partials: list[list[Any]], slots: int) -> list[list[int]]:
    """Each result ciphertext's slots from every party's partial decryption of it."""
    return [scheme.fuse(cc, [party[b] for party in partials], slots) for b in range(len(partials[0]))]


def site_query(cc: Any, site: Site, keys: Keys, peer: Peer) -> QueryRun:
    """Another party: send its ciphertexts, decrypt its share of the result, hear the answer."""
    slots, t0, before = cc.GetRingDimension(), time.perf_counter(), peer.sent
    job, public = site.job, keys.share.public
    tables = (
        [] if job.researcher is None else researcher.site_tables(cc, site.plan, public, job, site.pid, peer)
    )
    for ct in looked_up(cc, site, tables):
        peer.send(b"C", scheme.serialize(ct))
    for values in plaintexts(site, slots):
        peer.send(b"C", scheme.serialize(scheme.encrypt(cc, public, values)))
    input_s, input_bytes = time.perf_counter() - t0, peer.sent - before
    result_blocks = 1 if site.plan.presum else len(decrypted(site)) * blocks(site, slots)
    result = [scheme.ciphertext(peer.receive(b"C")) for _ in range(result_blocks)]
    own = scheme.partial_decryptions(cc, keys.share, result, lead=False)
    to = reader(site)
    if to == site.pid:  # it alone decrypts: every other party's partials come through party 0
        others = len(site.job.views) - 1  # every party but itself, an extra researcher too
        partials = [[scheme.ciphertext(peer.receive(b"D")) for _ in result] for _ in range(others)]
        slots_of = fused(cc, [*partials, own], slots)
        return QueryRun(answer(site, slots_of, site.job.scheme.plaintext_modulus), input_s, input_bytes)
    for partial in own:
        peer.send(b"D", scheme.serialize(partial))
    revealed = json.loads(peer.receive(b"A")) if to is None else None
    return QueryRun(revealed, input_s, input_bytes)


def main(job_path: Path, pid: int) -> None:
    start = time.perf_counter()
    job = Job.read(job_path)
    plan = split(from_wire(job.query), Holdings.of_public(job.deployment))
    pop = own_population(job, pid)
    t0 = time.perf_counter()
    site = Site(job, pid, plan, plan.local_bits(pop, pid), pop)
    report: dict = {"local_s": time.perf_counter() - t0, "secure": plan.secure is not None}
    if plan.secure is None:  # rows, eligible: each site's answer is its own bits
        report.update(answer=site.bits[:, 0].tolist(), bytes_sent=0)
    else:
        report.update(secure_part(site))
    report.update(engine_s=time.perf_counter() - start, peak_rss_kib=_peak_rss_kib())
    job.result_path(pid).write_text(json.dumps(report))


def secure_part(site: Site) -> dict:
    """Key generation (or reuse), then the query: the figures this party reports."""
    params = site.job.scheme
    cc = scheme.context(params)
    peers = connect(site.job, site.pid)
    try:
        t0 = time.perf_counter()
        keys, how = setup(cc, site, peers)
        setup_s, setup_bytes = time.perf_counter() - t0, sent(peers)
        run = lead_query(cc, site, keys, peers) if site.pid == 0 else site_query(cc, site, keys, peers[0])
    finally:
        for peer in peers:
            peer.close()
    return {
        "answer": run.answer,
        "bytes_sent": sent(peers),
        "setup_s": setup_s if how == GENERATED else 0.0,
        "setup_bytes": setup_bytes,
        "keys": how,
        "input_s": run.input_s,
        "input_bytes": run.input_bytes,
        "topology": TOPOLOGY,
        "params": scheme.described(cc, params),
    }


def _peak_rss_kib() -> int:
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)


if __name__ == "__main__":
    main(Path(sys.argv[1]), int(sys.argv[2]))
