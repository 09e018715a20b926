"""BIP 340 signing with a selectable tag prefix, as ChillDKG needs it.

ChillDKG signs messages of arbitrary length (CertEq) with deterministic nonces from given auxiliary
randomness (its vectors fix the signatures), and signs proofs of possession with the tag prefix
"BIP DKG/pop message" in place of "BIP0340" in the aux, nonce and challenge hashes. libsecp256k1 as
wrapped by coincurve offers neither, so signing is written here over the secp helpers; verification
of plain BIP 340 signatures stays with libsecp256k1 (`secp.schnorr_verify`).
"""

from __future__ import annotations

from .secp import (
    P_FIELD,
    N,
    PublicKey,
    bytes_from_int,
    has_even_y,
    int_from_bytes,
    point_add,
    point_mul,
    point_mul_g,
    point_neg,
    tagged_hash,
    xbytes,
)


def schnorr_sign(msg: bytes, seckey: bytes, aux_rand: bytes, tag_prefix: str = "BIP0340") -> bytes:
    """BIP 340 `Sign` (any message length); raises ValueError on an invalid key or aux_rand."""
    if len(seckey) != 32:
        raise ValueError("secret key must be 32 bytes")
    d0 = int_from_bytes(seckey)
    if not 1 <= d0 <= N - 1:
        raise ValueError("secret key out of range")
    if len(aux_rand) != 32:
        raise ValueError("aux_rand must be 32 bytes")
    pubkey = point_mul_g(d0)
    assert pubkey is not None
    d = d0 if has_even_y(pubkey) else N - d0
    px = xbytes(pubkey)
    masked = bytes(a ^ b for a, b in zip(bytes_from_int(d), tagged_hash(tag_prefix + "/aux", aux_rand), strict=True))
    k0 = int_from_bytes(tagged_hash(tag_prefix + "/nonce", masked + px + msg)) % N
    if k0 == 0:
        raise RuntimeError("nonce is zero (negligible probability)")
    r_point = point_mul_g(k0)
    assert r_point is not None
    k = k0 if has_even_y(r_point) else N - k0
    rx = xbytes(r_point)
    e = int_from_bytes(tagged_hash(tag_prefix + "/challenge", rx + px + msg)) % N
    return rx + bytes_from_int((k + e * d) % N)


def schnorr_verify_point(msg: bytes, pubkey: PublicKey, sig: bytes, tag_prefix: str = "BIP0340") -> bool:
    """BIP 340 `Verify` against the x-only key of `pubkey` (taken with even y, so no square root)."""
    if len(sig) != 64:
        return False
    r = int_from_bytes(sig[:32])
    s = int_from_bytes(sig[32:])
    if r >= P_FIELD or s >= N:
        return False
    p_even = pubkey if has_even_y(pubkey) else point_neg(pubkey)
    px = xbytes(pubkey)
    e = int_from_bytes(tagged_hash(tag_prefix + "/challenge", sig[:32] + px + msg)) % N
    r_point = point_add(point_mul_g(s), point_mul(point_neg(p_even), e))
    if r_point is None or not has_even_y(r_point):
        return False
    return xbytes(r_point) == sig[:32]
