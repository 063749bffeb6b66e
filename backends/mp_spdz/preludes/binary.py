"""The binary (bit-sliced) lowering's prelude, included after common.py.

A value is a list of bit planes, least significant first; plane i is one secret
binary register holding bit i of every patient (one lane per patient), so each
gate below acts on all patients at once.  XOR and NOT are local; each AND is one
round of bit multiplications for all lanes.
"""

import operator
from typing import TYPE_CHECKING

from Compiler import util
from Compiler.GC.types import sbits
from Compiler.types import sint

if TYPE_CHECKING:  # common.py, included before this file
    from common import AND, NOT, OR, _fold, _fold_count, _lanes


def input_column(bits, patients, party=0):
    """A column from `party`, input as `bits` bit planes (one `patients`-bit number each)."""
    lanes = sbits.get_type(patients)
    return [lanes.get_input_from(party) for _ in range(bits)]


def input_bit(patients, party):
    """One bit per patient from `party`: a single plane."""
    return input_column(1, patients, party)[0]


def input_rows(bits, blocks):
    """A column whose rows the sites hold in blocks, one after another: each site inputs
    planes of every lane, zeros outside its block, and the sites' planes are XORed
    (free).  Joining block-sized planes instead would decompose every lane at compile time."""
    per_site = [input_column(bits, sum(blocks), site) for site, n in enumerate(blocks) if n]
    return [util.tree_reduce(operator.xor, planes) for planes in zip(*per_site)]


def _negate(x):
    return ~x


def _conjoin(x, y):
    return x & y


def _to_sint(x):
    return sint(x)  # one daBit per lane


def XOR(x, y):
    x, y = _fold(x), _fold(y)
    if isinstance(x, bool) and isinstance(y, bool):
        return x != y
    if isinstance(x, bool):
        x, y = y, x
    return (~x if y else x) if isinstance(y, bool) else x ^ y


def MUX(s, if1, if0):
    """if1 where s else if0, with one AND: if0 ^ (s & (if0 ^ if1))."""
    return XOR(if0, AND(s, XOR(if0, if1)))


def literal(x, bit):
    return x if bit else NOT(x)


def equals(x, c, bits):
    """[x == c] for a public c: the AND of the bits' literals."""
    if not 0 <= c < 2 ** len(x):
        return False
    return AND(*(literal(b, (c >> i) & 1) for i, b in enumerate(x)))


def is_value(x, v, bits, domain, prime_field):
    """[x == v] for x in a small public domain {0..domain-1} (in any computation domain)."""
    return equals(x, v, bits)


def less_than(x, c, bits):
    """[x < c] for a public c: the borrow of x - c.  From the least significant bit up,
    r = NOT x_i OR r where c has a 1, r = NOT x_i AND r where c has a 0; each run of equal
    bits of c is one balanced tree (at most len(x) - 1 gates, depth = runs of c)."""
    if c <= 0:
        return False
    if c >= 2 ** len(x):
        return True
    r, i = False, 0
    while i < len(x):
        bit, j = (c >> i) & 1, i
        while j < len(x) and (c >> j) & 1 == bit:
            j += 1
        run = [NOT(b) for b in x[i:j]]
        r = OR(r, OR(*run)) if bit else AND(r, AND(*run))
        i = j
    return r


def in_codes(x, codes):
    """[x in codes] for distinct public codes, in about len(x) gates whatever the number
    of codes.  Relative to the first code, bit i of x "flips" when it differs from that
    code's bit.  Where all codes agree, no bit may flip; bits whose pattern across the
    codes is the same must flip together, so one bit z stands for its class and the
    others are tested against it; what remains is whether the flips z of the classes
    are those of one of the codes: a small decision diagram over z."""
    codes = [c for c in codes if 0 <= c < 2 ** len(x)]
    if not codes:
        return False
    base = codes[0]
    flips = [XOR(b, bool((base >> i) & 1)) for i, b in enumerate(x)]
    classes = {}  # pattern across the codes -> bit positions
    for i in range(len(x)):
        classes.setdefault(tuple(((c ^ base) >> i) & 1 for c in codes), []).append(i)
    tests = [NOT(flips[i]) for i in classes.pop((0,) * len(codes), [])]
    z, patterns = [], []
    for pattern, positions in classes.items():
        z.append(flips[positions[0]])
        tests += [NOT(XOR(flips[i], z[-1])) for i in positions[1:]]
        patterns.append(pattern)
    wanted = [sum(p[j] << k for k, p in enumerate(patterns)) for j in range(len(codes))]
    return AND(*tests, _in_codes(z, wanted, list(range(len(z)))))


def _in_codes(x, codes, positions):
    """[x in codes] as a decision diagram: the literals of the bits where the codes
    agree, then a branch (MUX) on a bit where they differ, recursively."""
    agree = [i for i in positions if len({(c >> i) & 1 for c in codes}) == 1]
    common = AND(*(literal(x[i], (codes[0] >> i) & 1) for i in agree))
    if len(codes) == 1:
        return common
    split = next(i for i in positions if i not in agree)
    rest = [i for i in positions if i not in agree and i != split]
    ones = [c for c in codes if (c >> split) & 1]
    zeros = [c for c in codes if not (c >> split) & 1]
    return AND(common, MUX(x[split], _in_codes(x, ones, rest), _in_codes(x, zeros, rest)))


def any_code(slots, codes, bits):
    """[some slot holds one of the codes]."""
    return OR(*(in_codes(x, codes) for x in slots))


def at_least(hits, n):
    """[at least n of the hit bits are set]."""
    hits, n, known = _fold_count(hits, n)
    if known is not None:
        return known
    if n == 1:
        return OR(*hits)
    if n == len(hits):
        return AND(*hits)
    count = popcount(hits)
    return NOT(less_than(count, n, len(count)))


def popcount(bits):
    """The number of set bits, as bits (least significant first): a Wallace tree of full
    adders (one AND each: carry = ((a ^ b) & (b ^ c)) ^ b) and half adders."""
    columns = [list(bits)]
    while any(len(col) > 1 for col in columns):
        merged = [[] for _ in range(len(columns) + 1)]
        for i, col in enumerate(columns):
            while len(col) >= 3:
                a, b, c = col.pop(), col.pop(), col.pop()
                merged[i].append(XOR(XOR(a, b), c))
                merged[i + 1].append(XOR(AND(XOR(a, b), XOR(b, c)), b))
            if len(col) == 2:
                a, b = col
                merged[i].append(XOR(a, b))
                merged[i + 1].append(AND(a, b))
            else:
                merged[i].extend(col)
        columns = merged if merged[-1] else merged[:-1]
    return [col[0] if col else False for col in columns]


# Private criteria: the researcher's constants, each input as planes of every lane (all
# ones or all zeros), compared with the columns by circuits of one AND per bit.


def input_constants(widths, patients, party):
    """The researcher's constants, each `widths[i]` bit planes of `patients` lanes."""
    return [input_column(w, patients, party) for w in widths]


def _pad(x, y):
    """Two bit lists of one length, the shorter padded with (public) zero bits."""
    n = max(len(x), len(y))
    return list(x) + [False] * (n - len(x)), list(y) + [False] * (n - len(y))


def less_than_secret(x, c, bits=None):
    """[x < c] for secret x and c: the borrow of x - c, one AND per bit:
    borrow' = maj(NOT x_i, c_i, borrow), maj(a, b, d) = ((a ^ b) & (b ^ d)) ^ b."""
    x, c = _pad(x, c)
    borrow = False
    for xi, ci in zip(x, c):
        a = NOT(xi)
        borrow = XOR(AND(XOR(a, ci), XOR(ci, borrow)), ci)
    return borrow


def equals_secret(x, c, bits=None):
    """[x == c] for secret x and c: the AND of the bits' agreements."""
    x, c = _pad(x, c)
    return AND(*(NOT(XOR(xi, ci)) for xi, ci in zip(x, c)))


def any_secret_code(slots, codes, bits):
    """[some slot holds one of the secret codes]; a code's bit `bits` (its top bit) is set
    only for the padding code, which then matches nothing."""
    return OR(*(AND(NOT(code[bits]), OR(*(equals_secret(x, code[:bits]) for x in slots))) for code in codes))


def at_least_secret(hits, n, bits=None):
    """[at least n of the hit bits are set] for a secret n."""
    return NOT(less_than_secret(popcount(hits), n))


# Statistics: columns in the arithmetic domain, converted from bits with one daBit each.


def tally(hits, patients):
    """The number of set hit bits per patient, as bit planes."""
    return popcount(hits)


def number(x, patients):
    """A bit or bit planes (least significant first) as one sint per patient."""
    planes = x if isinstance(x, list) else [x]
    return sum(_lanes(p, patients) * 2**i for i, p in enumerate(planes))
