"""BIP 445 FROST signing for BIP340 signatures (siv2r/bip-frost-signing).

One function per algorithm of the specification, under its name. Where the specification text and
the published test vectors (../shared/vectors/bip445/) differ, the vectors win, and they follow the
later revision: the hash tags are `BIP0445/aux`, `BIP0445/nonce`, `BIP0445/noncecoef` and
`BIP0445/deterministic/nonce` (not `FROST/...`), DeterministicSign also hashes `bytes(4, my_id) ||
bytes(4, u) || SerializeIds(ids)` before `aggothernonce`, and a lone signer (u = 1) passes no
`aggothernonce` (its own pubnonce is the aggregate nonce). Points go through libsecp256k1
(`frostfed.frost.secp`); scalars are ints mod n. Errors follow the specification: `ValueError` for a
caller's bad input (messages as in the published test vectors), `InvalidContributionError` naming the
blamed participant for a bad contribution from another party.

What depends only on the signer set (the parsed public shares, the Lagrange coefficients and the
threshold key check of ValidateSignersCtx) and on the tweak list is computed once and cached, as the
specification permits ("Actual implementations can cache these values"); that is what keeps a
67-of-100 partial signature and its verification in the sub-millisecond range.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import NamedTuple

from coincurve import PublicKey

from frostfed.frost import secp
from frostfed.frost.errors import COORDINATOR_ID, InvalidContributionError
from frostfed.frost.tweak import TweakContext, apply_tweaks, get_xonly_pk

__all__ = [
    "COORDINATOR_ID",
    "InvalidContributionError",
    "SessionContext",
    "SessionValues",
    "SignersContext",
    "derive_interpolating_value",
    "derive_thresh_pubkey",
    "deterministic_sign",
    "get_session_values",
    "nonce_agg",
    "nonce_gen",
    "nonce_gen_internal",
    "nonce_gen_preprocess",
    "partial_sig_agg",
    "partial_sig_verify",
    "partial_sig_verify_internal",
    "pubshare_from_secshare",
    "serialize_ids",
    "session_xonly_pk",
    "sign",
    "validate_signers_ctx",
]

MAX_PARTICIPANTS = 2**32 - 1


def _mul_g(k: int) -> PublicKey:
    """k*G for 0 < k < n. `G.multiply` costs a third of building a PrivateKey (`point_mul_g`) here."""
    point = secp.point_mul(secp.G, k)
    if point is None:
        raise ValueError("k*G is the point at infinity: k must lie in (0, n)")
    return point


def _is_bytes(x: object) -> bool:
    return isinstance(x, bytes | bytearray)


def _xor_bytes(a: bytes, b: bytes) -> bytes:
    return bytes(x ^ y for x, y in zip(a, b, strict=True))


# ---------------------------------------------------------------------------------------------
# Key Material and Setup: the Signers Context
# ---------------------------------------------------------------------------------------------


class SignersContext(NamedTuple):
    """The public data of one signing session's participants (BIP 445 "Signers Context").

    `ids` are participant identifiers 0..n-1; `pubshares[i]` is the 33-byte public share of `ids[i]`;
    `thresh_pk` is the 33-byte threshold public key. `u = len(ids)`.
    """

    n: int
    t: int
    ids: Sequence[int]
    pubshares: Sequence[bytes]
    thresh_pk: bytes


@dataclass(frozen=True, eq=False)  # hashed by identity: the cache below hands out one object per set
class _SignerSet:
    """A validated Signers Context with everything that depends only on it."""

    ids: tuple[int, ...]
    pubshares: tuple[bytes, ...]
    pubshare_set: frozenset[bytes]
    points: dict[bytes, PublicKey]
    lambdas: dict[int, int]
    ser_ids: bytes


def derive_interpolating_value(ids: Sequence[int], my_id: int) -> int:
    """DeriveInterpolatingValue: the Lagrange coefficient of `my_id` at x = 0 (x-coordinate id + 1)."""
    if my_id not in ids:
        raise ValueError("The signer's id must be present in the participant identifier list.")
    if len(set(ids)) != len(ids):
        raise ValueError("The participant identifier list contains duplicate elements.")
    num = 1
    deno = 1
    for i in ids:
        if i != my_id:
            num = num * (i + 1) % secp.N
            deno = deno * (i - my_id) % secp.N
    return num * pow(deno, -1, secp.N) % secp.N


def _interpolating_values(ids: Sequence[int]) -> dict[int, int]:
    """All coefficients of a set at once (the values of DeriveInterpolatingValue, computed together).

    The ids are small integers, so each denominator x_j * prod(x_i - x_j) is first an exact integer
    product (reduced only when it grows large), and the u denominators share one modular inversion
    (Montgomery's trick): about 3u multiplications mod n instead of u^2 and u inversions."""
    n = secp.N
    total = 1
    for i in ids:
        total = total * (i + 1)
        if total.bit_length() > 1024:
            total %= n
    total %= n
    denos = []
    for my_id in ids:
        deno = my_id + 1
        for i in ids:
            if i != my_id:
                deno *= i - my_id
                if deno.bit_length() > 1024:
                    deno %= n
        denos.append(deno % n)
    return {my_id: total * inv % n for my_id, inv in zip(ids, _batch_inverse(denos), strict=True)}


def _batch_inverse(values: Sequence[int]) -> list[int]:
    """The inverses mod n of nonzero `values` with a single modular inversion; ValueError for a zero."""
    n = secp.N
    prefix = [1] * (len(values) + 1)
    for k, v in enumerate(values):
        prefix[k + 1] = prefix[k] * v % n
    acc = pow(prefix[-1], -1, n)  # raises ValueError if any value is 0 mod n
    out = [0] * len(values)
    for k in range(len(values) - 1, -1, -1):
        out[k] = acc * prefix[k] % n
        acc = acc * values[k] % n
    return out


@lru_cache(maxsize=4096)
def _pubshare_point(pubshare: bytes) -> PublicKey:
    """A parsed public share, kept: the same shares come back in every signer set of a key. The point
    objects are only read (coincurve's point operations return new objects)."""
    return secp.cpoint(pubshare)


def derive_thresh_pubkey(ids: Sequence[int], pubshares: Sequence[bytes]) -> bytes:
    """DeriveThreshPubkey: interpolate the public shares at 0; 33 zero bytes if that is infinity."""
    lambdas = _interpolating_values(ids)
    points = [secp.point_mul(secp.cpoint(bytes(p)), lambdas[i]) for i, p in zip(ids, pubshares, strict=True)]
    return secp.cbytes_ext(secp.point_sum(points))


def _signer_set(signers_ctx: SignersContext) -> _SignerSet:
    try:
        n, t, ids, pubshares, thresh_pk = signers_ctx
    except (TypeError, ValueError) as e:
        raise ValueError("The signers context must be (n, t, ids, pubshares, thresh_pk).") from e
    if type(n) is not int or type(t) is not int or not 1 <= t <= n <= MAX_PARTICIPANTS:
        raise ValueError("The threshold must be 1 <= t <= n.")
    try:
        ids_t = tuple(ids)
        pubshares_t = tuple(bytes(p) if _is_bytes(p) else p for p in pubshares)
    except TypeError as e:
        raise ValueError("The ids and pubshares must be lists.") from e
    if not _is_bytes(thresh_pk):
        raise ValueError("The provided key material is incorrect.")
    if any(type(i) is not int for i in ids_t):
        # Never through the cache: True == 1 and 1.0 == 1 would find another context's entry.
        _validated_signer_set.__wrapped__(n, t, ids_t, pubshares_t, bytes(thresh_pk))
        raise ValueError("The participant identifiers must be integers.")
    try:
        return _validated_signer_set(n, t, ids_t, pubshares_t, bytes(thresh_pk))
    except TypeError as e:  # an unhashable id or pubshare
        raise ValueError("The ids must be integers and the pubshares byte arrays.") from e


@lru_cache(maxsize=256)
def _validated_signer_set(
    n: int, t: int, ids: tuple[int, ...], pubshares: tuple[bytes, ...], thresh_pk: bytes
) -> _SignerSet:
    if not t <= len(ids) <= n:
        raise ValueError("The number of signers must be between t and n.")
    if len(pubshares) != len(ids):
        raise ValueError("The pubshares and ids arrays must have the same length.")
    points: dict[bytes, PublicKey] = {}
    for idx, (i, pubshare) in enumerate(zip(ids, pubshares, strict=True)):
        if type(i) is not int or not 0 <= i <= n - 1:
            raise ValueError(f"The participant identifier at index {idx} is out of range.")
        try:
            points[pubshare] = _pubshare_point(pubshare)
        except (ValueError, TypeError):
            raise ValueError(f"Invalid pubshare at index {idx}.") from None
    if len(set(ids)) != len(ids):
        raise ValueError("The participant identifier list contains duplicate elements.")
    lambdas = _interpolating_values(ids)
    Q = secp.point_sum(secp.point_mul(points[p], lambdas[i]) for i, p in zip(ids, pubshares, strict=True))
    if secp.cbytes_ext(Q) != thresh_pk:
        raise ValueError("The provided key material is incorrect.")
    return _SignerSet(ids, pubshares, frozenset(pubshares), points, lambdas, serialize_ids(ids))


def validate_signers_ctx(signers_ctx: SignersContext) -> None:
    """ValidateSignersCtx: raises ValueError unless the context is consistent key material."""
    _signer_set(signers_ctx)


def serialize_ids(ids: Sequence[int]) -> bytes:
    """SerializeIds: sorted ids, 4 bytes big-endian each (the signer set, not its order, counts)."""
    return b"".join(i.to_bytes(4, "big") for i in sorted(ids))


def pubshare_from_secshare(secshare: bytes) -> bytes:
    """The 33-byte public share `cbytes(secshare * G)` of a secret share."""
    d = _secshare_scalar(secshare)
    return secp.cbytes(_mul_g(d))


def _secshare_scalar(secshare: bytes) -> int:
    if not _is_bytes(secshare) or len(secshare) != 32:
        raise ValueError("The signer's secret share value is out of range.")
    d = secp.int_from_bytes(bytes(secshare))
    if not 0 < d < secp.N:
        raise ValueError("The signer's secret share value is out of range.")
    return d


# ---------------------------------------------------------------------------------------------
# Nonce Generation and Aggregation
# ---------------------------------------------------------------------------------------------


def _nonce_hash(rand: bytes, pubshare: bytes, thresh_pk: bytes, msg_prefixed: bytes, extra_in: bytes, i: int) -> bytes:
    buf = (
        rand
        + len(pubshare).to_bytes(1, "big")
        + pubshare
        + len(thresh_pk).to_bytes(1, "big")
        + thresh_pk
        + msg_prefixed
        + len(extra_in).to_bytes(4, "big")
        + extra_in
        + i.to_bytes(1, "big")
    )
    return secp.tagged_hash("BIP0445/nonce", buf)


def nonce_gen_internal(
    rand_: bytes,
    secshare: bytes | None,
    pubshare: bytes | None,
    thresh_pk: bytes | None,
    msg: bytes | None,
    extra_in: bytes | None,
) -> tuple[bytearray, bytes]:
    """NonceGen with the random draw `rand_` given (for the test vectors; use `nonce_gen`)."""
    if not _is_bytes(rand_) or len(rand_) != 32:
        raise ValueError("The random input rand_ must have length 32.")
    if secshare is not None:
        if not _is_bytes(secshare) or len(secshare) != 32:
            raise ValueError("The optional byte array secshare must have length 32.")
        rand = _xor_bytes(bytes(secshare), secp.tagged_hash("BIP0445/aux", bytes(rand_)))
    else:
        rand = bytes(rand_)
    if pubshare is not None and (not _is_bytes(pubshare) or len(pubshare) != 33):
        raise ValueError("The optional byte array pubshare must have length 33.")
    if thresh_pk is not None and (not _is_bytes(thresh_pk) or len(thresh_pk) != 32):
        raise ValueError("The optional byte array thresh_pk must have length 32.")
    if msg is None:
        msg_prefixed = b"\x00"
    elif _is_bytes(msg):
        msg_prefixed = b"\x01" + len(msg).to_bytes(8, "big") + bytes(msg)
    else:
        raise ValueError("The optional message must be a byte array.")
    if extra_in is None:
        extra_in = b""
    elif not _is_bytes(extra_in) or len(extra_in) > 2**32 - 1:
        raise ValueError("The optional byte array extra_in must be shorter than 2^32 bytes.")
    pk = b"" if pubshare is None else bytes(pubshare)
    tpk = b"" if thresh_pk is None else bytes(thresh_pk)
    k1 = secp.int_from_bytes(_nonce_hash(rand, pk, tpk, msg_prefixed, bytes(extra_in), 0)) % secp.N
    k2 = secp.int_from_bytes(_nonce_hash(rand, pk, tpk, msg_prefixed, bytes(extra_in), 1)) % secp.N
    if k1 == 0 or k2 == 0:  # probability ~2^-128; the specification says fail
        raise ValueError("NonceGen produced a zero nonce; retry.")
    pubnonce = secp.cbytes(_mul_g(k1)) + secp.cbytes(_mul_g(k2))
    secnonce = bytearray(secp.bytes_from_int(k1) + secp.bytes_from_int(k2))
    return secnonce, pubnonce


def nonce_gen(
    secshare: bytes | None = None,
    pubshare: bytes | None = None,
    thresh_pk: bytes | None = None,
    msg: bytes | None = None,
    extra_in: bytes | None = None,
) -> tuple[bytearray, bytes]:
    """NonceGen: a fresh (secnonce, pubnonce). `thresh_pk` here is the 32-byte x-only key.

    The secnonce is a bytearray so that `sign` can erase it: never copy it, never use it twice.
    """
    return nonce_gen_internal(secrets.token_bytes(32), secshare, pubshare, thresh_pk, msg, extra_in)


def nonce_gen_preprocess(
    secshare: bytes | None = None,
    pubshare: bytes | None = None,
    thresh_pk: bytes | None = None,
    extra_in: bytes | None = None,
) -> tuple[bytearray, bytes]:
    """NonceGen run ahead of the message (BIP 445 "preprocessing"): the form ROAST presignatures use.

    The message is absent, as the specification allows for preprocessing; pass a unique counter or
    session id in `extra_in` as extra defence against a faulty random generator.
    """
    return nonce_gen(secshare, pubshare, thresh_pk, None, extra_in)


def nonce_agg(pubnonces: Sequence[bytes], ids: Sequence[int | None]) -> bytes:
    """NonceAgg: the 66-byte aggregate nonce; a bad pubnonce blames its sender `ids[i]`."""
    if len(pubnonces) != len(ids):
        raise ValueError("The pubnonces and ids arrays must have the same length.")
    try:
        return _nonce_agg_cached(tuple(bytes(p) if _is_bytes(p) else p for p in pubnonces), tuple(ids))
    except TypeError:  # an unhashable value: find and blame it
        for idx, (my_id, p) in enumerate(zip(ids, pubnonces, strict=True)):
            if not _is_bytes(p):
                raise InvalidContributionError(my_id, "pubnonce", idx) from None
        raise ValueError("The ids must be integers.") from None


@lru_cache(maxsize=256)
def _nonce_agg_cached(pubnonces: tuple[bytes, ...], ids: tuple[int | None, ...]) -> bytes:
    aggnonce = b""
    for j in (0, 1):
        points = []
        for idx, (my_id, pubnonce) in enumerate(zip(ids, pubnonces, strict=True)):
            try:
                if not _is_bytes(pubnonce) or len(pubnonce) != 66:
                    raise ValueError("pubnonce must be 66 bytes")
                points.append(secp.cpoint(pubnonce[j * 33 : (j + 1) * 33]))
            except (ValueError, TypeError):
                raise InvalidContributionError(my_id, "pubnonce", idx) from None
        aggnonce += secp.cbytes_ext(secp.point_sum(points))
    return aggnonce


# ---------------------------------------------------------------------------------------------
# Session Context
# ---------------------------------------------------------------------------------------------


class SessionContext(NamedTuple):
    """BIP 445 "Session Context": what all signers of one session must agree on."""

    signers_ctx: SignersContext
    aggnonce: bytes
    tweaks: Sequence[bytes]
    is_xonly: Sequence[bool]
    msg: bytes


class SessionValues(NamedTuple):
    Q: PublicKey
    gacc: int
    tacc: int
    ids: tuple[int, ...]
    pubshares: tuple[bytes, ...]
    b: int
    R: PublicKey
    e: int


def _session(session_ctx: SessionContext) -> tuple[SessionValues, _SignerSet]:
    try:
        signers_ctx, aggnonce, tweaks, is_xonly, msg = session_ctx
    except (TypeError, ValueError) as exc:
        raise ValueError("The session context must be (signers_ctx, aggnonce, tweaks, is_xonly, msg).") from exc
    ss = _signer_set(signers_ctx)
    tweak_ctx: TweakContext = apply_tweaks(signers_ctx.thresh_pk, tweaks, is_xonly)
    Q, gacc, tacc = tweak_ctx
    if not _is_bytes(msg):
        raise ValueError("The message must be a byte array.")
    msg = bytes(msg)
    if not _is_bytes(aggnonce) or len(aggnonce) != 66:
        raise InvalidContributionError(COORDINATOR_ID, "aggnonce")
    b, R, e = _nonce_values(ss, bytes(aggnonce), secp.xbytes(Q), msg)
    return SessionValues(Q, gacc, tacc, ss.ids, ss.pubshares, b, R, e), ss


@lru_cache(maxsize=1024)
def _nonce_values(ss: _SignerSet, aggnonce: bytes, qx: bytes, msg: bytes) -> tuple[int, PublicKey, int]:
    """b, R and e of GetSessionValues; cached because a coordinator verifies u psigs per session."""
    b = secp.int_from_bytes(secp.tagged_hash("BIP0445/noncecoef", ss.ser_ids + aggnonce + qx + msg)) % secp.N
    if b == 0:  # probability ~2^-128
        raise ValueError("The nonce coefficient is zero.")
    try:
        R1 = secp.cpoint_ext(aggnonce[0:33])
        R2 = secp.cpoint_ext(aggnonce[33:66])
    except ValueError:
        raise InvalidContributionError(COORDINATOR_ID, "aggnonce") from None
    R_ = secp.point_add(R1, secp.point_mul(R2, b))
    R = secp.G if R_ is None else R_
    e = secp.int_from_bytes(secp.tagged_hash("BIP0340/challenge", secp.xbytes(R) + qx + msg)) % secp.N
    if e == 0:  # probability ~2^-128
        raise ValueError("The challenge is zero.")
    return b, R, e


def get_session_values(session_ctx: SessionContext) -> SessionValues:
    """GetSessionValues: (Q, gacc, tacc, ids, pubshares, b, R, e) of a session."""
    return _session(session_ctx)[0]


def session_xonly_pk(thresh_pk: bytes, tweaks: Sequence[bytes] = (), is_xonly: Sequence[bool] = ()) -> bytes:
    """The 32-byte key that the aggregate signature of a session with these tweaks verifies under."""
    return get_xonly_pk(apply_tweaks(thresh_pk, tweaks, is_xonly))


# ---------------------------------------------------------------------------------------------
# Signing, Partial Signature Verification, Aggregation
# ---------------------------------------------------------------------------------------------


def sign(secnonce: bytearray, secshare: bytes, my_id: int, session_ctx: SessionContext) -> bytes:
    """Sign: the 32-byte partial signature. Erases `secnonce` (overwrites it with zeros).

    A secnonce must never be used twice: a zeroed one is refused, and `secnonce` must be a
    bytearray so the erasure reaches the caller's copy.
    """
    if not isinstance(secnonce, bytearray):
        raise TypeError("secnonce must be a bytearray so that it can be erased after use")
    if len(secnonce) != 64:
        raise ValueError("The secnonce must be 64 bytes.")
    v, ss = _session(session_ctx)
    k1_ = secp.int_from_bytes(bytes(secnonce[0:32]))
    if not 0 < k1_ < secp.N:
        raise ValueError("first secnonce value is out of range.")
    k2_ = secp.int_from_bytes(bytes(secnonce[32:64]))
    if not 0 < k2_ < secp.N:
        raise ValueError("second secnonce value is out of range.")
    secnonce[:] = bytes(64)
    even_r = secp.has_even_y(v.R)
    k1 = k1_ if even_r else secp.N - k1_
    k2 = k2_ if even_r else secp.N - k2_
    d_ = _secshare_scalar(secshare)
    my_pubshare = secp.cbytes(_mul_g(d_))
    if my_pubshare not in ss.pubshare_set:
        raise ValueError("The signer's pubshare must be included in the list of pubshares.")
    if type(my_id) is not int or my_id not in ss.lambdas:
        raise ValueError("The signer's id must be present in the participant identifier list.")
    lam = ss.lambdas[my_id]
    g = 1 if secp.has_even_y(v.Q) else secp.N - 1
    d = g * v.gacc * d_ % secp.N
    s = (k1 + v.b * k2 + v.e * lam * d) % secp.N
    psig = secp.bytes_from_int(s)
    pubnonce = secp.cbytes(_mul_g(k1_)) + secp.cbytes(_mul_g(k2_))
    if not _verify_with_values(v, ss, psig, my_id, pubnonce, my_pubshare):
        raise RuntimeError("The partial signature failed its own verification (computation error).")
    return psig


def _det_nonce_hash(
    secshare_: bytes,
    my_id: int,
    ids: Sequence[int],
    aggothernonce: bytes,
    tweaked_tpk: bytes,
    msg: bytes,
    i: int,
) -> bytes:
    buf = (
        secshare_
        + my_id.to_bytes(4, "big")
        + len(ids).to_bytes(4, "big")
        + serialize_ids(ids)
        + aggothernonce
        + tweaked_tpk
        + len(msg).to_bytes(8, "big")
        + msg
        + i.to_bytes(1, "big")
    )
    return secp.tagged_hash("BIP0445/deterministic/nonce", buf)


def deterministic_sign(
    secshare: bytes,
    my_id: int,
    aggothernonce: bytes | None,
    signers_ctx: SignersContext,
    tweaks: Sequence[bytes],
    is_xonly: Sequence[bool],
    msg: bytes,
    rand: bytes | None = None,
) -> tuple[bytes, bytes]:
    """DeterministicSign: (pubnonce, psig) for the last signer, with no secnonce kept in between.

    `aggothernonce` is NonceAgg of every other signer's pubnonce (a bad one blames the coordinator);
    it is `None` only when this signer signs alone (u = 1).
    """
    if not _is_bytes(secshare) or len(secshare) != 32:
        raise ValueError("The signer's secret share value is out of range.")
    if rand is not None:
        if not _is_bytes(rand) or len(rand) != 32:
            raise ValueError("The auxiliary randomness rand must have length 32.")
        secshare_ = _xor_bytes(bytes(secshare), secp.tagged_hash("BIP0445/aux", bytes(rand)))
    else:
        secshare_ = bytes(secshare)
    ss = _signer_set(signers_ctx)
    tweaked_tpk = session_xonly_pk(signers_ctx.thresh_pk, tweaks, is_xonly)
    if not _is_bytes(msg):
        raise ValueError("The message must be a byte array.")
    msg = bytes(msg)
    if aggothernonce is None and len(ss.ids) != 1:
        raise ValueError("aggothernonce is required when there are other signers.")
    other = b"" if aggothernonce is None else aggothernonce
    if not _is_bytes(other):
        raise InvalidContributionError(COORDINATOR_ID, "aggothernonce")
    other = bytes(other)
    if type(my_id) is not int or not 0 <= my_id < 2**32:
        raise ValueError("The signer's id must be present in the participant identifier list.")
    k1 = secp.int_from_bytes(_det_nonce_hash(secshare_, my_id, ss.ids, other, tweaked_tpk, msg, 0)) % secp.N
    k2 = secp.int_from_bytes(_det_nonce_hash(secshare_, my_id, ss.ids, other, tweaked_tpk, msg, 1)) % secp.N
    if k1 == 0 or k2 == 0:  # probability ~2^-128
        raise ValueError("DeterministicSign produced a zero nonce.")
    pubnonce = secp.cbytes(_mul_g(k1)) + secp.cbytes(_mul_g(k2))
    secnonce = bytearray(secp.bytes_from_int(k1) + secp.bytes_from_int(k2))
    if aggothernonce is None:
        aggnonce = pubnonce
    else:
        try:
            aggnonce = nonce_agg([pubnonce, other], [my_id, COORDINATOR_ID])
        except InvalidContributionError:
            raise InvalidContributionError(COORDINATOR_ID, "aggothernonce") from None
    session_ctx = SessionContext(signers_ctx, aggnonce, tweaks, is_xonly, msg)
    return pubnonce, sign(secnonce, secshare, my_id, session_ctx)


def partial_sig_verify(
    psig: bytes,
    pubnonces: Sequence[bytes],
    signers_ctx: SignersContext,
    tweaks: Sequence[bytes],
    is_xonly: Sequence[bool],
    msg: bytes,
    i: int,
) -> bool:
    """PartialSigVerify: whether `psig` is valid for the signer at position `i` (0-based) of the set.

    A malformed pubnonce raises InvalidContributionError blaming its sender; a bad `psig` returns
    False, and the caller blames `signers_ctx.ids[i]`.
    """
    ss = _signer_set(signers_ctx)
    if len(pubnonces) != len(ss.ids):
        raise ValueError("The pubnonces and ids arrays must have the same length.")
    if type(i) is not int or not 0 <= i < len(ss.ids):
        raise ValueError("The signer index i is out of range.")
    aggnonce = nonce_agg(pubnonces, ss.ids)
    session_ctx = SessionContext(signers_ctx, aggnonce, tweaks, is_xonly, msg)
    return partial_sig_verify_internal(psig, ss.ids[i], pubnonces[i], ss.pubshares[i], session_ctx)


def partial_sig_verify_internal(
    psig: bytes, my_id: int, pubnonce: bytes, pubshare: bytes, session_ctx: SessionContext
) -> bool:
    """PartialSigVerifyInternal: s*G == Re* + e*lambda*g'*P for the signer's own nonce and share."""
    v, ss = _session(session_ctx)
    return _verify_with_values(v, ss, psig, my_id, pubnonce, pubshare)


def _verify_with_values(
    v: SessionValues, ss: _SignerSet, psig: bytes, my_id: int, pubnonce: bytes, pubshare: bytes
) -> bool:
    if not _is_bytes(psig) or len(psig) != 32:
        return False
    s = secp.int_from_bytes(bytes(psig))
    if not 0 < s < secp.N:
        return False
    if not _is_bytes(pubshare) or bytes(pubshare) not in ss.pubshare_set:
        return False
    if type(my_id) is not int or my_id not in ss.lambdas:
        return False
    if not _is_bytes(pubnonce) or len(pubnonce) != 66:
        return False
    try:
        R1 = secp.cpoint(bytes(pubnonce[0:33]))
        R2 = secp.cpoint(bytes(pubnonce[33:66]))
    except ValueError:
        return False
    Re = secp.point_add(R1, secp.point_mul(R2, v.b))
    if not secp.has_even_y(v.R):
        Re = secp.point_neg(Re)
    P = ss.points[bytes(pubshare)]
    g = 1 if secp.has_even_y(v.Q) else secp.N - 1
    lhs = _mul_g(s)
    rhs = secp.point_add(Re, secp.point_mul(P, v.e * ss.lambdas[my_id] * g * v.gacc))
    return secp.cbytes_ext(lhs) == secp.cbytes_ext(rhs)


def partial_sig_agg(psigs: Sequence[bytes], ids: Sequence[int], session_ctx: SessionContext) -> bytes:
    """PartialSigAgg: the 64-byte BIP340 signature; an out-of-range psig blames its sender `ids[i]`.

    This does not verify the partial signatures: run `partial_sig_verify` on each first when an
    invalid result must be attributed (identifiable abort).
    """
    if len(psigs) != len(ids):
        raise ValueError("The psigs and ids arrays must have the same length.")
    v, ss = _session(session_ctx)
    try:
        same_signers = sorted(ids) == sorted(ss.ids)
    except TypeError:
        same_signers = False
    if not same_signers:
        raise ValueError("The psigs must come from exactly the signers of the session.")
    s = 0
    for idx, (my_id, psig) in enumerate(zip(ids, psigs, strict=True)):
        s_i = secp.int_from_bytes(bytes(psig)) if _is_bytes(psig) and len(psig) == 32 else 0
        if not 0 < s_i < secp.N:
            raise InvalidContributionError(my_id, "psig", idx)
        s += s_i
    g = 1 if secp.has_even_y(v.Q) else secp.N - 1
    s = (s + v.e * g * v.tacc) % secp.N
    return secp.xbytes(v.R) + secp.bytes_from_int(s)
