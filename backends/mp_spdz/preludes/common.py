"""The helpers both lowerings share: the first part of every generated program's prelude.

`program.translate` includes this file and then the lowering's own prelude
(binary.py or arithmetic.py) in the `.mpc` source, where MP-SPDZ's compiler runs
them in one namespace; the names imported under TYPE_CHECKING come from the
lowering's prelude, and `program.PRELUDE_INTERFACE` lists what the two together
provide to the generated program.  A criterion is a secret bit per patient or a
public constant (a Python bool or int, e.g. a bound that every value satisfies),
which folds away.
"""

from typing import TYPE_CHECKING

from Compiler import util
from Compiler.library import print_ln, print_ln_to
from Compiler.types import sint

if TYPE_CHECKING:  # every lowering's prelude defines these (binary.py, arithmetic.py)
    from binary import _conjoin, _negate, _to_sint, less_than


def _fold(x):
    """Public constants (Python ints/bools) become True/False."""
    return bool(x) if isinstance(x, int) else x


def _fold_count(hits, n):
    """`at least n of hits` with public hits folded: (secret hits, n left, answer or None)."""
    hits = [_fold(h) for h in hits]
    n -= sum(1 for h in hits if h is True)
    hits = [h for h in hits if not isinstance(h, bool)]
    known = True if n <= 0 else False if n > len(hits) else None
    return hits, n, known


def NOT(x):
    x = _fold(x)
    return (not x) if isinstance(x, bool) else _negate(x)


def AND(*xs):
    xs = [_fold(x) for x in xs]
    if any(x is False for x in xs):
        return False
    xs = [x for x in xs if x is not True]
    return util.tree_reduce(_conjoin, xs) if xs else True


def OR(*xs):
    return NOT(AND(*(NOT(x) for x in xs)))


def greater_than(x, c, bits):
    """[x > c] for x of `bits` unsigned bits and a public c."""
    return NOT(less_than(x, c + 1, bits))


def _lanes(bit, patients):
    """A criterion as an sint vector of one 0/1 per patient."""
    bit = _fold(bit)
    return sint(int(bit), size=patients) if isinstance(bit, bool) else _to_sint(bit)


def reveal_eligible(bit, patients, party=0):
    """One bit per patient, revealed to `party` only, who prints it."""
    print_ln_to(party, "ELIGIBLE %s", _lanes(bit, patients).reveal_to(party))


def reveal_count(bit, patients):
    """Only the number of eligible patients, revealed to every party."""
    print_ln("COUNT %s", _lanes(bit, patients).sum().reveal())


def _blocks(bit, blocks):
    """The per-patient bits split into the sites' blocks: (site, bits) of each non-empty one."""
    lanes, base, out = _lanes(bit, sum(blocks)), 0, []
    for site, n in enumerate(blocks):
        if n:
            out.append((site, lanes.get_vector(base, n)))
        base += n
    return out


def reveal_blocks(bit, blocks):
    """Rows: each site's own patients' bits, revealed to that site only."""
    for site, bits in _blocks(bit, blocks):
        print_ln_to(site, "ELIGIBLE %s", bits.reveal_to(site))


def reveal_block_counts(bit, blocks):
    """Rows: the number of eligible patients at each site, revealed to every party."""
    sums = {site: bits.sum() for site, bits in _blocks(bit, blocks)}
    reveal_site_counts([sums.get(site, sint(0)) for site in range(len(blocks))])


def input_counts(sites):
    """Rows, counted where the data lives: each site's count of its own patients."""
    return [sint.get_input_from(site) for site in range(sites)]


def reveal_total(counts):
    """The sum of the sites' counts, revealed to every party."""
    print_ln("COUNT %s", sum(counts).reveal())


def reveal_site_counts(counts):
    """Every site's count, revealed to every party."""
    print_ln("COUNT_BY_SITE" + " %s" * len(counts), *(c.reveal() for c in counts))


# Statistics: the cohort's sums of per-patient columns, revealed to every party.


def input_noise(sums, parties):
    """Every party's share of each sum's noise, input secretly by that party (its last
    inputs); per sum, the shares' total, which no party learns."""
    shares = [[sint.get_input_from(p) for _ in range(sums)] for p in range(parties)]
    return [sum(column) for column in zip(*shares)]


def _inner(lanes, column):
    """The cohort's sum of a column: bits . column (one dot product), or a public constant."""
    if isinstance(column, int):  # the compiler folds a product with 0 into the int 0
        return lanes.sum() * column if column else sint(0)
    return sint.dot_product(lanes, column)


def reveal_sums(bit, columns, patients, noise=()):
    """The cohort's sum of every column, plus its noise, revealed to every party."""
    lanes = _lanes(bit, patients)
    _reveal_noised([_inner(lanes, c) for c in columns], noise)


def input_site_sums(sites, k):
    """Rows, summed where the data lives: each site's k sums over its own cohort."""
    return [[sint.get_input_from(site) for _ in range(k)] for site in range(sites)]


def reveal_site_sums(sums, by_site, noise=()):
    """The sites' sums added (or each site's in turn, by_site), plus noise, to every party."""
    _reveal_noised([s for own in sums for s in own] if by_site else [sum(c) for c in zip(*sums)], noise)


def _reveal_noised(sums, noise):
    if noise:
        sums = [s + e for s, e in zip(sums, noise)]
    print_ln("STATS" + " %s" * len(sums), *(s.reveal() for s in sums))
