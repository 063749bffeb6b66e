"""OpenFHE's threshold BFV as the MHE parties use it: the context, each step of the
collective key generation, packing, homomorphic evaluation and joint decryption.

Every party builds its own context from the same `Params` (a context is a pure
function of its parameters, so none is sent); objects cross processes as OpenFHE's
own binary serialization (`Serialize(obj, BINARY)` and the `Deserialize...String`
functions, in memory).  The key generation is the star form of OpenFHE's threshold
scheme: party 0's public key fixes the common random polynomial, every other party
derives its own share from it (`MultipartyKeyGen(..., fresh=True)`) and party 0 adds
them up (`MultiAddPubKeys`); the relinearisation key (depth > 0) takes two such
rounds.  Decryption needs every party's share (n out of n).  Imports openfhe: the
parties' interpreter only.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Sequence

import openfhe as fhe

from backends.mhe.params import FLOODING, Params

_FEATURES = ("PKE", "KEYSWITCH", "LEVELEDSHE", "ADVANCEDSHE", "MULTIPARTY")


def context(params: Params) -> Any:
    """The crypto context every party builds alike from `params`."""
    p = fhe.CCParamsBFVRNS()
    p.SetPlaintextModulus(params.plaintext_modulus)
    p.SetMultiplicativeDepth(params.depth)
    p.SetThresholdNumOfParties(params.parties)
    p.SetSecurityLevel(fhe.SecurityLevel.HEStd_128_classic)
    flooding = params.mode == FLOODING
    p.SetMultipartyMode(fhe.NOISE_FLOODING_MULTIPARTY if flooding else fhe.FIXED_NOISE_MULTIPARTY)
    if params.ring_dimension:
        p.SetRingDim(params.ring_dimension)
    cc = fhe.GenCryptoContext(p)
    for feature in _FEATURES:
        cc.Enable(getattr(fhe.PKESchemeFeature, feature))
    return cc


def described(cc: Any, params: Params) -> dict:
    """What the record says of the parameters: OpenFHE's choices and ours."""
    return {
        "scheme": "BFVrns",
        "mode": params.mode,
        "ring_dimension": cc.GetRingDimension(),
        "modulus_bits": round(math.log2(cc.GetModulus())),
        "depth": params.depth,
        "plaintext_modulus": params.plaintext_modulus,
        "security": "HEStd_128_classic",
    }


def serialize(obj: Any) -> bytes:
    return fhe.Serialize(obj, fhe.BINARY)


def public_key(data: bytes) -> Any:
    return fhe.DeserializePublicKeyString(data, fhe.BINARY)


def private_key(data: bytes) -> Any:
    return fhe.DeserializePrivateKeyString(data, fhe.BINARY)


def eval_key(data: bytes) -> Any:
    return fhe.DeserializeEvalKeyString(data, fhe.BINARY)


def ciphertext(data: bytes) -> Any:
    return fhe.DeserializeCiphertextString(data, fhe.BINARY)


@dataclass
class Share:
    """One party's key material: its secret share and, once joined, the joint public key."""

    secret: Any
    public: Any  # its own public share until the join, then the joint public key


def first_share(cc: Any) -> Share:
    """Party 0's key pair: its public key fixes the common random polynomial."""
    pair = cc.KeyGen()
    return Share(pair.secretKey, pair.publicKey)


def next_share(cc: Any, lead_public: Any) -> Share:
    """Another party's key pair on party 0's polynomial (not chained: the star)."""
    pair = cc.MultipartyKeyGen(lead_public, False, True)
    return Share(pair.secretKey, pair.publicKey)


def joint_public(cc: Any, shares: Sequence[Any]) -> Any:
    """Party 0: the joint public key, the sum of every party's public share."""
    joint = shares[0]
    for pk in shares[1:]:
        joint = cc.MultiAddPubKeys(joint, pk, joint.GetKeyTag())
    return joint


def first_switch_key(cc: Any, share: Share) -> Any:
    """Party 0's first-round relinearisation share (s0 -> s0)."""
    return cc.KeySwitchGen(share.secret, share.secret)


def next_switch_key(cc: Any, share: Share, lead_key: Any) -> Any:
    """Another party's first-round share, on party 0's key's randomness."""
    return cc.MultiKeySwitchGen(share.secret, share.secret, lead_key)


def joint_switch_key(cc: Any, keys: Sequence[Any], tag: str) -> Any:
    """Party 0: the first round's sum."""
    joint = keys[0]
    for key in keys[1:]:
        joint = cc.MultiAddEvalKeys(joint, key, tag)
    return joint


def mult_key_share(cc: Any, share: Share, joint_switch: Any) -> Any:
    """Each party's second-round share: the joint first-round key times its secret."""
    return cc.MultiMultEvalKey(share.secret, joint_switch, share.public.GetKeyTag())


def install_mult_key(cc: Any, shares: Sequence[Any], tag: str) -> Any:
    """Party 0: the relinearisation key, the sum of the second round, installed in `cc`."""
    key = shares[0]
    for s in shares[1:]:
        key = cc.MultiAddEvalMultKeys(key, s, tag)
    cc.InsertEvalMultKey([key])
    return key


def encrypt(cc: Any, public: Any, values: Sequence[int]) -> Any:
    return cc.Encrypt(public, cc.MakePackedPlaintext([int(v) for v in values]))


def partial_decryptions(cc: Any, share: Share, cts: Sequence[Any], lead: bool) -> list:
    """This party's partial decryption of each ciphertext (party 0 is the lead)."""
    step = cc.MultipartyDecryptLead if lead else cc.MultipartyDecryptMain
    return list(step(list(cts), share.secret))


def fuse(cc: Any, partials: Sequence[Any], slots: int) -> list[int]:
    """The decrypting party: one ciphertext's slots from every party's partial decryption."""
    plain = cc.MultipartyDecryptFusion(list(partials))
    plain.SetLength(slots)
    return [int(v) for v in plain.GetPackedValue()]
