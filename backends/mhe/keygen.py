"""The collective key generation over the star, and the key shares a cell keeps for reuse.

Party 0 (the lead) sends its public key (and, for depth > 0, its first-round
relinearisation share) to every site; each site answers with its own shares built on
them; party 0 adds them up and sends back the joint public key (and the first round's
sum, for each site's second-round share, which party 0 adds into the relinearisation
key that it alone, the evaluator, holds).  Three messages per link at depth 0, four
above.  With `keys: reuse` each party writes its secret share, the joint public key
and (party 0) the relinearisation key to its own directory, which only it reads.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from backends.mhe import scheme
from backends.mhe.framing import Peer
from backends.mhe.job import KEYS_COMPLETE
from backends.mhe.scheme import Share, serialize

_SECRET, _PUBLIC, _MULT = "secret.bin", "public.bin", "mult.bin"


@dataclass
class Keys:
    """A party's secret share and the joint public key; party 0's relinearisation key."""

    share: Share
    mult: Any | None = None


def lead(cc: Any, peers: Sequence[Peer], depth: int) -> Keys:
    """Party 0's side of the key generation."""
    own = scheme.first_share(cc)
    first = scheme.first_switch_key(cc, own) if depth else None
    for peer in peers:
        peer.send(b"P", serialize(own.public))
        if first is not None:
            peer.send(b"E", serialize(first))
    publics, switches = [own.public], [first]
    for peer in peers:
        publics.append(scheme.public_key(peer.receive(b"P")))
        if depth:
            switches.append(scheme.eval_key(peer.receive(b"E")))
    share = Share(own.secret, scheme.joint_public(cc, publics))
    for peer in peers:
        peer.send(b"P", serialize(share.public))
    if not depth:
        return Keys(share)
    tag = share.public.GetKeyTag()
    joint_switch = scheme.joint_switch_key(cc, switches, tag)
    for peer in peers:
        peer.send(b"E", serialize(joint_switch))
    mults = [scheme.mult_key_share(cc, share, joint_switch)]
    mults += [scheme.eval_key(peer.receive(b"M")) for peer in peers]
    return Keys(share, scheme.install_mult_key(cc, mults, tag))


def site(cc: Any, peer: Peer, depth: int) -> Keys:
    """Another party's side: shares built on party 0's, sent to it alone."""
    own = scheme.next_share(cc, scheme.public_key(peer.receive(b"P")))
    peer.send(b"P", serialize(own.public))
    if depth:
        lead_switch = scheme.eval_key(peer.receive(b"E"))
        peer.send(b"E", serialize(scheme.next_switch_key(cc, own, lead_switch)))
    share = Share(own.secret, scheme.public_key(peer.receive(b"P")))
    if depth:
        joint_switch = scheme.eval_key(peer.receive(b"E"))
        peer.send(b"M", serialize(scheme.mult_key_share(cc, share, joint_switch)))
    return Keys(share)


def save(keys: Keys, directory: Path) -> None:
    """This party's keys in its own directory (the secret share readable by its owner only)."""
    directory.mkdir(parents=True, exist_ok=True)
    secret = directory / _SECRET
    secret.write_bytes(serialize(keys.share.secret))
    os.chmod(secret, 0o600)
    (directory / _PUBLIC).write_bytes(serialize(keys.share.public))
    if keys.mult is not None:
        (directory / _MULT).write_bytes(serialize(keys.mult))
    (directory / KEYS_COMPLETE).touch()


def load(cc: Any, directory: Path) -> Keys:
    """The keys `save` wrote, the relinearisation key (if any) installed in `cc`."""
    share = Share(
        scheme.private_key((directory / _SECRET).read_bytes()),
        scheme.public_key((directory / _PUBLIC).read_bytes()),
    )
    mult_path = directory / _MULT
    if not mult_path.exists():
        return Keys(share)
    mult = scheme.eval_key(mult_path.read_bytes())
    cc.InsertEvalMultKey([mult])
    return Keys(share, mult)
