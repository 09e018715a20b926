"""A trusted dealer for tests: Shamir t-of-n shares in the encodings BIP 445 signing expects.

Participant `id` (0..n-1) gets the share f(id + 1) of a random degree t-1 polynomial f with
f(0) = the threshold secret, matching BIP 445's interpolation at x = id + 1. Test-only: a real
federation gets its shares from ChillDKG, where nobody ever knows the threshold secret.
"""

from __future__ import annotations

import random
from typing import NamedTuple

from frostfed.frost import secp


class DealtKeys(NamedTuple):
    thresh_pk: bytes  # 33-byte compressed threshold public key (prefix 02 or 03)
    ids: list[int]  # 0..n-1
    secshares: list[bytes]  # 32-byte secret shares, secshares[i] belongs to ids[i]
    pubshares: list[bytes]  # 33-byte compressed public shares


def trusted_dealer(t: int, n: int, *, seed: int | None = None, secret: int | None = None) -> DealtKeys:
    """Deal a t-of-n key; `seed` makes it reproducible, `secret` fixes the threshold secret key."""
    if not 1 <= t <= n:
        raise ValueError("need 1 <= t <= n")
    rng = random.Random(seed) if seed is not None else random.SystemRandom()
    coeffs = [secret % secp.N if secret is not None else rng.randrange(1, secp.N)]
    coeffs += [rng.randrange(1, secp.N) for _ in range(t - 1)]
    if coeffs[0] == 0:
        raise ValueError("the threshold secret must not be zero")
    ids = list(range(n))
    secshares = []
    for i in ids:
        x = i + 1
        y = 0
        for c in reversed(coeffs):  # Horner
            y = (y * x + c) % secp.N
        if y == 0:  # probability ~2^-256, but a zero share is not a valid secret share
            return trusted_dealer(t, n, seed=None if seed is None else seed + 1, secret=secret)
        secshares.append(secp.bytes_from_int(y))
    pubshares = [secp.cbytes(secp.point_mul_g(secp.int_from_bytes(s))) for s in secshares]  # type: ignore[arg-type]
    thresh_pk = secp.cbytes(secp.point_mul_g(coeffs[0]))  # type: ignore[arg-type]
    return DealtKeys(thresh_pk, ids, secshares, pubshares)
