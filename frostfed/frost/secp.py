"""secp256k1 group arithmetic in the vocabulary of the BIP 340/445 and ChillDKG specifications.

The specifications write `cbytes(P)`, `xbytes(P)`, `lift_x(x)`, `P + Q`, `k * G` and allow the point
at infinity as an intermediate value. libsecp256k1 (through coincurve) does the arithmetic but cannot
represent infinity, so here a point is a `coincurve.PublicKey` or `None` for infinity, and every
operation that may produce infinity returns `None` instead of raising.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

from coincurve import PrivateKey, PublicKey, PublicKeyXOnly

P_FIELD = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEFFFFFC2F
N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141

Point = PublicKey | None
"""A curve point; `None` is the point at infinity."""

G: PublicKey = PublicKey(bytes.fromhex("0279BE667EF9DCBBAC55A06295CE870B07029BFCDB2DCE28D959F2815B16F81798"))


def tagged_hash(tag: str, msg: bytes) -> bytes:
    """BIP 340 tagged hash: SHA256(SHA256(tag) || SHA256(tag) || msg)."""
    tag_hash = hashlib.sha256(tag.encode()).digest()
    return hashlib.sha256(tag_hash + tag_hash + msg).digest()


def int_from_bytes(b: bytes) -> int:
    return int.from_bytes(b, "big")


def bytes_from_int(x: int) -> bytes:
    return x.to_bytes(32, "big")


def scalar_from_bytes_checked(b: bytes) -> int:
    """Parse a 32-byte scalar, raising ValueError unless 0 <= x < n (the spec's name)."""
    if len(b) != 32:
        raise ValueError("scalar must be 32 bytes")
    x = int_from_bytes(b)
    if x >= N:
        raise ValueError("scalar out of range")
    return x


def scalar_from_bytes_nonzero_checked(b: bytes) -> int:
    x = scalar_from_bytes_checked(b)
    if x == 0:
        raise ValueError("scalar is zero")
    return x


def point_mul_g(k: int) -> Point:
    k %= N
    if k == 0:
        return None
    return PrivateKey(bytes_from_int(k)).public_key


def point_mul(p: Point, k: int) -> Point:
    k %= N
    if p is None or k == 0:
        return None
    return p.multiply(bytes_from_int(k))


def point_add(p: Point, q: Point) -> Point:
    if p is None:
        return q
    if q is None:
        return p
    try:
        return PublicKey.combine_keys([p, q])
    except ValueError:  # libsecp256k1 refuses a sum at infinity
        return None


def point_sum(points: Iterable[Point]) -> Point:
    finite = [p for p in points if p is not None]
    if not finite:
        return None
    if len(finite) == 1:
        return finite[0]
    try:
        return PublicKey.combine_keys(finite)
    except ValueError:
        return None


def point_neg(p: Point) -> Point:
    if p is None:
        return None
    c = p.format()
    return PublicKey(bytes([c[0] ^ 1]) + c[1:])


def has_even_y(p: PublicKey) -> bool:
    return p.format()[0] == 2


def cbytes(p: PublicKey) -> bytes:
    return p.format(compressed=True)


def cbytes_ext(p: Point) -> bytes:
    """33-byte encoding that maps infinity to 33 zero bytes (BIP 445)."""
    if p is None:
        return bytes(33)
    return cbytes(p)


def xbytes(p: PublicKey) -> bytes:
    return p.format()[1:]


def cpoint(b: bytes) -> PublicKey:
    """Parse a compressed point; raises ValueError if it is not one."""
    if len(b) != 33 or b[0] not in (2, 3):
        raise ValueError("not a compressed point")
    try:
        return PublicKey(b)
    except Exception as e:  # coincurve raises ValueError or its own error types
        raise ValueError("not a point on the curve") from e


def cpoint_ext(b: bytes) -> Point:
    if b == bytes(33):
        return None
    return cpoint(b)


def lift_x(x: bytes) -> PublicKey:
    """The point with x-coordinate `x` and even y; raises ValueError if there is none."""
    if len(x) != 32:
        raise ValueError("x-coordinate must be 32 bytes")
    if int_from_bytes(x) >= P_FIELD:
        raise ValueError("x-coordinate out of range")
    return cpoint(b"\x02" + x)


def schnorr_verify(msg: bytes, pubkey_x: bytes, sig: bytes) -> bool:
    """BIP 340 verification by libsecp256k1 (arbitrary message length)."""
    if len(pubkey_x) != 32 or len(sig) != 64:
        return False
    try:
        return PublicKeyXOnly(pubkey_x).verify(sig, msg)
    except Exception:
        return False
