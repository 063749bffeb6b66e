"""The arithmetic lowering's prelude, included after common.py.

A value is an sint vector with one entry per patient; a criterion is a 0/1 sint
vector; AND is a product, OR one minus the product of complements; comparisons
are MP-SPDZ's with explicit bit lengths.
"""

import operator
from typing import TYPE_CHECKING

from Compiler import util
from Compiler.types import cint, sint

if TYPE_CHECKING:  # common.py, included before this file
    from common import NOT, _fold_count, greater_than


def input_column(bits, patients, party=0):
    """A column from `party`: one sint per patient (`bits` is the public width)."""
    return sint.get_input_from(party, size=patients)


def input_bit(patients, party):
    """One bit per patient from `party`: a 0/1 sint each."""
    return input_column(1, patients, party)


def input_rows(bits, blocks):
    """A column whose rows the sites hold in blocks, joined in site order."""
    return sint.concat([sint.get_input_from(site, size=n) for site, n in enumerate(blocks) if n])


def _negate(x):
    return 1 - x


def _conjoin(x, y):
    return x * y


def _to_sint(x):
    return x


def equals(x, c, bits):
    """[x == c] for a public c; x - c needs bits + 1 signed bits."""
    if not 0 <= c < 2**bits:
        return False
    return x.equal(c, bit_length=bits + 1)


def is_value(x, v, bits, domain, prime_field):
    """[x == v] for x in {0..domain-1}: the Lagrange basis polynomial
    prod_{j != v} (x - j) / (v - j) in a prime field (domain - 2 multiplications, no
    comparison); an equality test in a ring, where the division does not exist."""
    if not 0 <= v < domain:
        return False
    if not prime_field:
        return equals(x, v, bits)
    scale = 1
    for j in range(domain):
        if j != v:
            scale *= v - j
    factors = [x - j for j in range(domain) if j != v]
    return util.tree_reduce(operator.mul, factors) * cint(1).field_div(cint(scale))


def less_than(x, c, bits):
    """[x < c] for x of `bits` unsigned bits and a public c (x - c needs bits + 1)."""
    if c <= 0:
        return False
    if c >= 2**bits:
        return True
    return x.less_than(c, bit_length=bits)


def any_code(slots, codes, bits):
    """[some slot holds one of the codes]: the number of matches compared with 0."""
    matches = [equals(x, c, bits) for x in slots for c in codes]
    matches = [m for m in matches if m is not False]
    if not matches:
        return False
    total = util.tree_reduce(operator.add, matches)
    return greater_than(total, 0, len(matches).bit_length())


def at_least(hits, n):
    """[at least n of the hit bits are set]: their sum compared with n."""
    hits, n, known = _fold_count(hits, n)
    if known is not None:
        return known
    total = util.tree_reduce(operator.add, hits)
    return NOT(less_than(total, n, len(hits).bit_length()))


# Private criteria: the researcher's constants as sint scalars broadcast to every patient.


def input_constants(widths, patients, party):
    """The researcher's constants: one sint each, as a vector of `patients` copies."""
    return [sint.get_input_from(party).expand_to_vector(patients) for _ in widths]


def less_than_secret(x, c, bits):
    """[x < c] for secret x and c of `bits` unsigned bits (x - c needs bits + 1)."""
    return x.less_than(c, bit_length=bits + 1)


def equals_secret(x, c, bits):
    """[x == c] for secret x and c of at most bits + 1 unsigned bits."""
    return x.equal(c, bit_length=bits + 2)


def any_secret_code(slots, codes, bits):
    """[some slot holds one of the secret codes]: the number of matches compared with 0
    (the padding code, above every code the data holds, matches no slot)."""
    matches = [equals_secret(x, c, bits) for x in slots for c in codes]
    total = util.tree_reduce(operator.add, matches)
    return greater_than(total, 0, len(matches).bit_length())


def at_least_secret(hits, n, bits):
    """[at least n of the hit bits are set] for a secret n of `bits` bits."""
    total = util.tree_reduce(operator.add, hits)
    return NOT(less_than_secret(total, n, max(bits, len(hits).bit_length())))


# Statistics: columns are sint vectors already.


def tally(hits, patients):
    """The number of set hit bits per patient, an sint each (public bits count as 0 or 1)."""
    return number(sum(int(h) if isinstance(h, bool) else h for h in hits), patients)


def number(x, patients):
    """A value as one sint per patient (a public constant, broadcast)."""
    return sint(int(x), size=patients) if isinstance(x, int) else x
