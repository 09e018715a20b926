"""Feldman verifiable secret sharing as ChillDKG uses it (reference module `vss.py`).

Scalars are Python ints modulo `N`; group elements are `secp.Point` (None is infinity, which a
commitment may contain so that no participant can make the sum of valid commitments unparsable).
Participant `i` (0-based) holds the evaluation at `x = i + 1`.
"""

from __future__ import annotations

from .secp import (
    N,
    Point,
    bytes_from_int,
    cbytes_ext,
    cpoint_ext,
    point_add,
    point_mul,
    point_mul_g,
    scalar_from_bytes_checked,
    tagged_hash,
    xbytes,
)

BIP_TAG = "BIP DKG/"
"""Prefix of every tagged hash the ChillDKG specification defines."""


def tagged_hash_bip_dkg(tag: str, msg: bytes) -> bytes:
    return tagged_hash(BIP_TAG + tag, msg)


scalar_checked = scalar_from_bytes_checked
"""A 32-byte scalar that must be below the group order (`Scalar.from_bytes_checked`)."""


def polynomial_eval(coeffs: list[int], x: int) -> int:
    value = 0
    for coeff in reversed(coeffs):
        value = (value * x + coeff) % N
    return value


def generate_coeffs(seed: bytes, t: int) -> list[int]:
    """The `t` polynomial coefficients derived from `seed` (`VSS.generate`)."""
    return [scalar_checked(tagged_hash_bip_dkg("vss coeffs", seed + i.to_bytes(4, "big"))) for i in range(t)]


def secshares(coeffs: list[int], n: int) -> list[int]:
    """[f(1), ..., f(n)]: the share for each participant id 0..n-1."""
    return [polynomial_eval(coeffs, i + 1) for i in range(n)]


def commit(coeffs: list[int]) -> VSSCommitment:
    return VSSCommitment([point_mul_g(c) for c in coeffs])


def verify_secshare(secshare: int, pubshare: Point) -> bool:
    """secshare * G == pubshare, with infinity compared as None."""
    actual = point_mul_g(secshare)
    if actual is None or pubshare is None:
        return actual is None and pubshare is None
    return actual.format() == pubshare.format()


def points_equal(p: Point, q: Point) -> bool:
    if p is None or q is None:
        return p is None and q is None
    return p.format() == q.format()


class VSSCommitment:
    """Commitments [a_0*G, ..., a_{t-1}*G] to the coefficients of a polynomial."""

    __slots__ = ("ges",)

    def __init__(self, ges: list[Point]) -> None:
        self.ges = ges

    @staticmethod
    def len_bytes(t: int) -> int:
        return 33 * t

    @staticmethod
    def from_bytes(b: bytes, t: int) -> VSSCommitment:
        """Raises ValueError if a 33-byte entry is neither a point nor 33 zero bytes."""
        if len(b) != VSSCommitment.len_bytes(t):
            raise ValueError("VSS commitment has the wrong length")
        return VSSCommitment([cpoint_ext(b[i : i + 33]) for i in range(0, 33 * t, 33)])

    def to_bytes(self) -> bytes:
        return b"".join(cbytes_ext(p) for p in self.ges)

    def t(self) -> int:
        return len(self.ges)

    def commitment_to_secret(self) -> Point:
        return self.ges[0]

    def commitment_to_nonconst_terms(self) -> list[Point]:
        return self.ges[1:]

    def pubshare(self, i: int) -> Point:
        """sum_j (i+1)^j * ges[j], by Horner's rule.

        Horner multiplies only by the small x = i + 1, which libsecp256k1 does in a quarter of the time
        of a full-size scalar, so this beats multiplying each ges[j] by (i+1)^j mod N.
        """
        x = i + 1
        acc = self.ges[-1]
        for ge in reversed(self.ges[:-1]):
            acc = point_add(point_mul(acc, x), ge)
        return acc

    def pubshares(self, n: int) -> list[Point]:
        return [self.pubshare(i) for i in range(n)]

    def invalid_taproot_commit(self) -> tuple[VSSCommitment, int, Point]:
        """Tweak the commitment so the threshold key commits to an unspendable script path.

        The tweak is TapTweak(xbytes(pk)) with an empty script tree, the BIP 341 recommendation for a
        key with no script path. Without it a participant could hide a valid script-path commitment in
        its contribution and later spend alone. Returns the tweaked commitment, the scalar tweak
        every secret share must add, and tweak * G.
        """
        pk = self.commitment_to_secret()
        if pk is None:
            raise ValueError("sum of commitments to the secrets is infinity")
        tweak = scalar_checked(tagged_hash("TapTweak", xbytes(pk)))
        pubtweak = point_mul_g(tweak)
        return VSSCommitment([point_add(pk, pubtweak), *self.ges[1:]]), tweak, pubtweak


def scalar_bytes(x: int) -> bytes:
    return bytes_from_int(x % N)
