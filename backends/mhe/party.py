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
"""

from __future__ import annotations

import json
import math
import os
import resource
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from backends.mhe import keygen, scheme
from backends.mhe.circuit import Homomorphic
from backends.mhe.framing import Peer, accept, dial
from backends.mhe.job import GENERATED, REUSED, TOPOLOGY, Job
from backends.mhe.keygen import Keys
from circuits.holdings import Holdings, Partition
from circuits.ir import Output, Query, from_wire
from circuits.locality import Split, split
from circuits import noise
from circuits.oracle import Oracle, site_sums
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
        """Under columns, every patient (the one block of the secure arrays)."""
        return self.job.blocks[0]


def own_population(job: Job, pid: int) -> Population:
    """This site's data: its own file, zeros in the columns it does not hold."""
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


def blocks(patients: int, slots: int) -> int:
    """Ciphertexts per column: patients packed `slots` to a ciphertext (one at least)."""
    return max(1, math.ceil(patients / slots))


def zero_sum_mask(length: int, modulus: int) -> list[int]:
    """`length` values uniform modulo `modulus` whose sum is 0 modulo it (CSPRNG)."""
    drawn = np.frombuffer(os.urandom(8 * (length - 1)), dtype=np.uint64) % np.uint64(modulus)
    values = [int(v) for v in drawn]
    return values + [(-sum(values)) % modulus]


def plaintexts(site: Site, slots: int) -> list[list[int]]:
    """The slot vectors this party encrypts: under rows its count (slot 0, or its own
    slot for count_by_site); under columns each of its local parts' bits, block by
    block, then its zero-sum mask, block by block."""
    if site.plan.presum and site.query.stats is not None:
        return [stats_slots(site)]
    if site.plan.presum:
        count = int(site.bits[:, 0].sum())
        at = site.pid if site.query.output is Output.COUNT_BY_SITE else 0
        return [[0] * at + [count]]
    n, out = blocks(site.patients, slots), []
    for column in site.bits.T:
        padded = np.zeros(n * slots, dtype=np.int64)
        padded[: len(column)] = column
        out += [padded[b * slots : (b + 1) * slots].tolist() for b in range(n)]
    mask = zero_sum_mask(n * slots, site.job.scheme.plaintext_modulus)
    return out + [mask[b * slots : (b + 1) * slots] for b in range(n)]


def stats_slots(site: Site) -> list[int]:
    """A site's stats input: its own sums at its offset, plus its noise shares (mod t)."""
    stats, sites, t = site.query.stats, site.plan.holdings.sites, site.job.scheme.plaintext_modulus
    assert stats is not None
    own = site_sums(stats, site.pop, site.bits[:, 0].astype(bool), site.pid, sites)
    at = site.pid * len(own) if stats.by_site else 0
    values = [0] * len(stats.released(sites))
    values[at : at + len(own)] = own
    if site.job.noise is not None:
        shares = noise.draw(site.job.noise["mechanism"], site.job.noise["scales"], site.job.noise["honest"])
        noise.keep_for_tests(Path(site.job.result_dir), site.pid, shares)
        values = [v + e for v, e in zip(values, shares)]
    return [v % t for v in values]


def inputs_of(site: Site, party: int, slots: int) -> int:
    """How many ciphertexts `party` sends (public: its parts and the blocks)."""
    if site.plan.presum:
        return 1
    return (len(site.plan.parts_of(party)) + 1) * blocks(site.patients, slots)


def aggregate(cc: Any, site: Site, cts: list[list[Any]], slots: int) -> list[Any]:
    """Party 0: every party's ciphertexts (in party order) into what is decrypted."""
    if site.plan.presum:
        return [cc.EvalAddMany([c for party in cts for c in party])]
    n = blocks(site.patients, slots)
    parts: dict[int, list[Any]] = {}
    masks: list[list[Any]] = []
    for party, got in enumerate(cts):
        for i, k in enumerate(site.plan.parts_of(party)):
            parts[k] = got[i * n : (i + 1) * n]
        masks.append(got[-n:])
    ones = cc.MakePackedPlaintext([1] * slots)
    out = []
    for b in range(n):
        bits = Homomorphic(cc, {k: v[b] for k, v in parts.items()}, ones).visit(site.plan.secure)
        out.append(cc.EvalAddMany([bits, *(m[b] for m in masks)]))
    return out


def padding_value(plan: Split) -> int:
    """The remainder's value on a padding slot (every local bit 0): public."""
    assert plan.secure is not None
    zeros = np.zeros((1, len(plan.local)), dtype=np.int64)
    return int(Oracle(holding(1, (1, 1), {}), zeros).visit(plan.secure)[0])


def answer(site: Site, values: list[list[int]], modulus: int) -> object:
    """What the decrypted slots reveal: the count, or every site's count."""
    if site.query.stats is not None:
        width = len(site.query.stats.released(site.plan.holdings.sites))
        return [v % modulus - (modulus if v % modulus > modulus // 2 else 0) for v in values[0][:width]]
    if site.query.output is Output.COUNT_BY_SITE:
        return [v % modulus for v in values[0][: site.plan.holdings.sites]]
    if site.plan.presum:
        return values[0][0] % modulus
    padding = len(values) * len(values[0]) - site.patients
    return (sum(map(sum, values)) - padding_value(site.plan) * padding) % modulus


@dataclass(frozen=True)
class QueryRun:
    answer: object
    input_s: float
    input_bytes: int


def lead_query(cc: Any, site: Site, keys: Keys, peers: list[Peer]) -> QueryRun:
    """Party 0: gather, evaluate, have every party decrypt, fuse, tell the answer."""
    slots, t0, before = cc.GetRingDimension(), time.perf_counter(), sent(peers)
    own = [scheme.encrypt(cc, keys.share.public, v) for v in plaintexts(site, slots)]
    cts = [own] + [
        [scheme.ciphertext(p.receive(b"C")) for _ in range(inputs_of(site, p.party, slots))] for p in peers
    ]
    input_s, input_bytes = time.perf_counter() - t0, sent(peers) - before
    result = aggregate(cc, site, cts, slots)
    for peer in peers:
        for ct in result:
            peer.send(b"C", scheme.serialize(ct))
    partials = [scheme.partial_decryptions(cc, keys.share, result, lead=True)]
    partials += [[scheme.ciphertext(p.receive(b"D")) for _ in result] for p in peers]
    values = [scheme.fuse(cc, [party[b] for party in partials], slots) for b in range(len(result))]
    revealed = answer(site, values, site.job.scheme.plaintext_modulus)
    for peer in peers:
        peer.send(b"A", json.dumps(revealed).encode())
    return QueryRun(revealed, input_s, input_bytes)


def site_query(cc: Any, site: Site, keys: Keys, peer: Peer) -> QueryRun:
    """Another party: send its ciphertexts, decrypt its share of the result, hear the answer."""
    slots, t0, before = cc.GetRingDimension(), time.perf_counter(), peer.sent
    for values in plaintexts(site, slots):
        peer.send(b"C", scheme.serialize(scheme.encrypt(cc, keys.share.public, values)))
    input_s, input_bytes = time.perf_counter() - t0, peer.sent - before
    result_blocks = 1 if site.plan.presum else blocks(site.patients, slots)
    result = [scheme.ciphertext(peer.receive(b"C")) for _ in range(result_blocks)]
    for partial in scheme.partial_decryptions(cc, keys.share, result, lead=False):
        peer.send(b"D", scheme.serialize(partial))
    return QueryRun(json.loads(peer.receive(b"A")), input_s, input_bytes)


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
