"""BIP 445 signing end to end on dealer keys, checked by libsecp256k1's own BIP340 verifier.

The aggregate signature must verify with coincurve's `PublicKeyXOnly.verify` (code this project did
not write) for random t-of-n setups up to 7-of-10, random signer subsets, and every tweak mode used
for Bitcoin: none, a BIP32 plain tweak, a BIP341 x-only TapTweak, and both.
"""

from __future__ import annotations

import hashlib
import hmac
import random

import pytest
from coincurve import PublicKeyXOnly
from dealer import trusted_dealer
from frost_session import full_sign
from hypothesis import given, settings
from hypothesis import strategies as st

from frostfed.frost import secp, signing
from frostfed.frost.signer_sets import SignerSets
from frostfed.frost.signing import (
    InvalidContributionError,
    SessionContext,
    SignersContext,
    derive_interpolating_value,
    deterministic_sign,
    nonce_agg,
    nonce_gen,
    nonce_gen_preprocess,
    partial_sig_agg,
    partial_sig_verify,
    session_xonly_pk,
    sign,
    validate_signers_ctx,
)
from frostfed.frost.tweak import apply_tweaks, get_plain_pk

SETUPS = [(1, 2), (2, 2), (2, 3), (3, 5), (4, 7), (5, 9), (7, 10)]


def bip32_plain_tweak(pub33: bytes, chain_code: bytes, index: int) -> bytes:
    """The left half of BIP32 CKDpub's HMAC: the plain tweak from parent to child."""
    return hmac.new(chain_code, pub33 + index.to_bytes(4, "big"), hashlib.sha512).digest()[:32]


def taptweak(xonly: bytes) -> bytes:
    return secp.tagged_hash("TapTweak", xonly)


def tweaks_for(mode: str, thresh_pk: bytes) -> tuple[list[bytes], list[bool]]:
    cc = hashlib.sha256(b"chain code " + thresh_pk).digest()
    if mode == "none":
        return [], []
    if mode == "bip32":
        return [bip32_plain_tweak(thresh_pk, cc, 7)], [False]
    if mode == "taproot":
        return [taptweak(thresh_pk[1:])], [True]
    child_tweak = bip32_plain_tweak(thresh_pk, cc, 7)
    child = get_plain_pk(apply_tweaks(thresh_pk, [child_tweak], [False]))
    return [child_tweak, taptweak(child[1:])], [False, True]


@pytest.mark.parametrize("mode", ["none", "bip32", "taproot", "bip32+taproot"])
@pytest.mark.parametrize(("t", "n"), SETUPS)
def test_signature_verifies_with_libsecp256k1(t: int, n: int, mode: str) -> None:
    rng = random.Random(1000 * t + n)
    for seed in range(3):
        keys = trusted_dealer(t, n, seed=rng.randrange(2**32) + seed)
        u = rng.randint(t, n)
        signer_ids = rng.sample(keys.ids, u)
        msg = rng.randbytes(32)
        tweaks, is_xonly = tweaks_for(mode, keys.thresh_pk)
        sig, *_ = full_sign(keys, t, signer_ids, msg, tweaks, is_xonly)
        xonly = session_xonly_pk(keys.thresh_pk, tweaks, is_xonly)
        assert PublicKeyXOnly(xonly).verify(sig, msg)
        assert not PublicKeyXOnly(xonly).verify(sig, bytes(32))


def test_odd_threshold_keys_occur_and_sign() -> None:
    """Both parities of the threshold key (and of the tweaked keys) are exercised."""
    parities = set()
    for seed in range(16):
        keys = trusted_dealer(2, 3, seed=seed)
        parities.add(keys.thresh_pk[0])
        for mode in ("none", "bip32", "taproot", "bip32+taproot"):
            tweaks, is_xonly = tweaks_for(mode, keys.thresh_pk)
            sig, *_ = full_sign(keys, 2, [2, 0], b"parity", tweaks, is_xonly)
            assert secp.schnorr_verify(b"parity", session_xonly_pk(keys.thresh_pk, tweaks, is_xonly), sig)
    assert parities == {2, 3}


def test_preprocessed_nonces_sign_a_later_message() -> None:
    """ROAST's presignatures: nonces made before the message is known."""
    keys = trusted_dealer(3, 5, seed=7)
    ids = [4, 1, 3]
    pre = [nonce_gen_preprocess(keys.secshares[i], keys.pubshares[i], None, b"counter" + bytes([i])) for i in ids]
    msg = b"message chosen later"
    ctx = SignersContext(5, 3, ids, [keys.pubshares[i] for i in ids], keys.thresh_pk)
    session = SessionContext(ctx, nonce_agg([p for _, p in pre], ids), [], [], msg)
    psigs = [sign(s, keys.secshares[i], i, session) for (s, _), i in zip(pre, ids, strict=True)]
    assert secp.schnorr_verify(msg, keys.thresh_pk[1:], partial_sig_agg(psigs, ids, session))


def test_secnonce_is_erased_and_cannot_sign_twice() -> None:
    keys = trusted_dealer(2, 3, seed=1)
    ids = [0, 1]
    nonces = [nonce_gen(keys.secshares[i]) for i in ids]
    ctx = SignersContext(3, 2, ids, keys.pubshares[:2], keys.thresh_pk)
    session = SessionContext(ctx, nonce_agg([p for _, p in nonces], ids), [], [], b"m")
    secnonce = nonces[0][0]
    sign(secnonce, keys.secshares[0], 0, session)
    assert secnonce == bytearray(64)
    with pytest.raises(ValueError, match="first secnonce value is out of range"):
        sign(secnonce, keys.secshares[0], 0, session)
    with pytest.raises(TypeError):
        sign(bytes(nonces[1][0]), keys.secshares[1], 1, session)  # type: ignore[arg-type]


def test_a_wrong_partial_signature_is_caught_and_blamed() -> None:
    keys = trusted_dealer(3, 4, seed=3)
    ids = [0, 2, 3]
    msg = b"blame"
    sig, ctx, pubnonces, psigs, session = full_sign(keys, 3, ids, msg, [], [])
    bad = secp.bytes_from_int((secp.int_from_bytes(psigs[1]) + 1) % secp.N)
    assert not partial_sig_verify(bad, pubnonces, ctx, [], [], msg, 1)
    # The aggregate of unverified psigs is simply invalid; verification is what names the culprit.
    forged = partial_sig_agg([psigs[0], bad, psigs[2]], ids, session)
    assert not secp.schnorr_verify(msg, keys.thresh_pk[1:], forged)
    assert secp.schnorr_verify(msg, keys.thresh_pk[1:], sig)


def test_a_bad_pubnonce_blames_its_sender_by_id() -> None:
    keys = trusted_dealer(2, 3, seed=4)
    ids = [2, 0]
    pubnonces = [nonce_gen()[1], b"\x02" + b"\xff" * 65]
    with pytest.raises(InvalidContributionError) as info:
        nonce_agg(pubnonces, ids)
    assert (info.value.id, info.value.signer_index, info.value.contrib) == (0, 1, "pubnonce")
    with pytest.raises(InvalidContributionError) as info:
        nonce_agg([pubnonces[0], b"short"], ids)
    assert info.value.id == 0
    ctx = SignersContext(3, 2, ids, [keys.pubshares[i] for i in ids], keys.thresh_pk)
    with pytest.raises(InvalidContributionError) as info:
        partial_sig_verify(bytes(32), pubnonces, ctx, [], [], b"m", 0)
    assert info.value.id == 0


def test_deterministic_signer_completes_a_session() -> None:
    keys = trusted_dealer(3, 5, seed=5)
    ids = [0, 2, 4]
    msg = b"deterministic last signer"
    others = [nonce_gen(keys.secshares[i]) for i in ids[:2]]
    aggother = nonce_agg([p for _, p in others], ids[:2])
    ctx = SignersContext(5, 3, ids, [keys.pubshares[i] for i in ids], keys.thresh_pk)
    tweaks, is_xonly = tweaks_for("bip32+taproot", keys.thresh_pk)
    pubnonce, psig_last = deterministic_sign(keys.secshares[4], 4, aggother, ctx, tweaks, is_xonly, msg)
    pubnonces = [p for _, p in others] + [pubnonce]
    session = SessionContext(ctx, nonce_agg(pubnonces, ids), tweaks, is_xonly, msg)
    psigs = [sign(s, keys.secshares[i], i, session) for (s, _), i in zip(others, ids[:2], strict=True)]
    psigs.append(psig_last)
    assert partial_sig_verify(psig_last, pubnonces, ctx, tweaks, is_xonly, msg, 2)
    sig = partial_sig_agg(psigs, ids, session)
    assert PublicKeyXOnly(session_xonly_pk(keys.thresh_pk, tweaks, is_xonly)).verify(sig, msg)


@pytest.mark.parametrize(
    ("ctx_change", "message"),
    [
        (lambda c: c._replace(t=0), "The threshold must be 1 <= t <= n."),
        (lambda c: c._replace(ids=[0, 1, 2, 3]), "The number of signers must be between t and n."),
        (lambda c: c._replace(ids=[0, 5]), "The participant identifier at index 1 is out of range."),
        (lambda c: c._replace(ids=[0, -1]), "The participant identifier at index 1 is out of range."),
        (lambda c: c._replace(ids=[0, "1"]), "The participant identifier at index 1 is out of range."),
        (lambda c: c._replace(ids=[0, True]), "The participant identifier at index 1 is out of range."),
        (lambda c: c._replace(ids=[0, 1.0]), "The participant identifier at index 1 is out of range."),
        (lambda c: c._replace(pubshares=[c.pubshares[0], b"\x02" * 5]), "Invalid pubshare at index 1."),
        (
            lambda c: c._replace(pubshares=[c.pubshares[0]]),
            "The pubshares and ids arrays must have the same length.",
        ),
        (lambda c: c._replace(thresh_pk=c.pubshares[0]), "The provided key material is incorrect."),
    ],
)
def test_bad_signers_context_is_refused_with_a_clear_error(ctx_change, message: str) -> None:  # type: ignore[no-untyped-def]
    keys = trusted_dealer(2, 3, seed=9)
    ctx = SignersContext(3, 2, [0, 1], keys.pubshares[:2], keys.thresh_pk)
    validate_signers_ctx(ctx)
    with pytest.raises(ValueError) as info:
        validate_signers_ctx(ctx_change(ctx))
    assert str(info.value) == message


# --- the algebra, property-tested ------------------------------------------------------------------

setups = st.integers(min_value=1, max_value=6).flatmap(
    lambda t: st.tuples(st.just(t), st.integers(min_value=t, max_value=8))
)


@settings(max_examples=40, deadline=None)
@given(setups, st.randoms(use_true_random=False), st.integers(min_value=1, max_value=secp.N - 1))
def test_lagrange_interpolation_recovers_the_secret(tn: tuple[int, int], rnd: random.Random, secret: int) -> None:
    t, n = tn
    keys = trusted_dealer(t, n, seed=rnd.randrange(2**32), secret=secret)
    subset = rnd.sample(keys.ids, rnd.randint(t, n))
    recovered = (
        sum(derive_interpolating_value(subset, i) * secp.int_from_bytes(keys.secshares[i]) for i in subset) % secp.N
    )
    assert recovered == secret
    if t >= 2:  # fewer than t shares interpolate to something else
        short = subset[: t - 1]
        guess = sum(derive_interpolating_value(short, i) * secp.int_from_bytes(keys.secshares[i]) for i in short)
        assert guess % secp.N != secret


scalars = st.integers(min_value=1, max_value=secp.N - 1)


@settings(max_examples=40, deadline=None)
@given(scalars, st.lists(st.tuples(scalars, st.booleans()), max_size=5))
def test_tweak_accumulation_matches_direct_key_arithmetic(x: int, tweak_list: list[tuple[int, bool]]) -> None:
    """with_even_y(Q_v) = g_v*gacc_v*Q_0 + g_v*tacc_v*G, the identity signing relies on."""
    thresh_pk = secp.cbytes(secp.point_mul_g(x))  # type: ignore[arg-type]
    tweaks = [secp.bytes_from_int(tw) for tw, _ in tweak_list]
    is_xonly = [xo for _, xo in tweak_list]
    # Direct secret-key arithmetic, as a single signer would do it.
    d = x
    for tw, xo in tweak_list:
        if xo and not secp.has_even_y(secp.point_mul_g(d)):  # type: ignore[arg-type]
            d = secp.N - d
        d = (d + tw) % secp.N
        if d == 0:  # the tweaked key would be infinity: refused
            with pytest.raises(ValueError, match=r"The result of tweaking cannot be infinity\."):
                apply_tweaks(thresh_pk, tweaks, is_xonly)
            return
    Q, gacc, tacc = apply_tweaks(thresh_pk, tweaks, is_xonly)
    assert secp.point_mul_g(d) == Q
    g = 1 if secp.has_even_y(Q) else secp.N - 1
    assert secp.point_mul_g(g * gacc * x + g * tacc) == secp.point_mul_g(g * d)
    assert secp.has_even_y(secp.point_mul_g(g * d))  # type: ignore[arg-type]


@settings(max_examples=40, deadline=None)
@given(scalars)
def test_odd_y_negation(x: int) -> None:
    """An x-only tweak of an odd-Y key negates it first; the result is the same as from -x."""
    P = secp.point_mul_g(x)
    assert P is not None
    tw = secp.bytes_from_int(5)
    Q1 = apply_tweaks(secp.cbytes(P), [tw], [True]).Q
    Q2 = apply_tweaks(secp.cbytes(secp.point_neg(P)), [tw], [True]).Q  # type: ignore[arg-type]
    assert Q1 == Q2
    Qplain = apply_tweaks(secp.cbytes(P), [tw], [False]).Q
    assert (Qplain == Q1) == secp.has_even_y(P)


@settings(max_examples=40, deadline=None)
@given(st.lists(st.integers(0, 2**32 - 2), min_size=1, max_size=40, unique=True))
def test_all_interpolating_values_at_once_match_one_at_a_time(ids: list[int]) -> None:
    at_once = signing._interpolating_values(ids)
    assert at_once == {i: derive_interpolating_value(ids, i) for i in ids}


def test_batch_inversion_inverts_each_value_and_refuses_a_zero() -> None:
    values = [1, 2, secp.N - 1, 12345678901234567890]
    assert [v * inv % secp.N for v, inv in zip(values, signing._batch_inverse(values), strict=True)] == [1] * 4
    with pytest.raises(ValueError):
        signing._batch_inverse([3, secp.N, 5])


def test_signer_sets_build_a_context_once_and_refuse_a_bad_set() -> None:
    keys = trusted_dealer(3, 5, seed=9)
    sets = SignerSets(5, 3, keys.thresh_pk, keys.pubshares, size=2)
    first = sets.context([0, 2, 4])
    assert sets.context((0, 2, 4)) is first
    assert list(first.pubshares) == [keys.pubshares[i] for i in (0, 2, 4)]
    validate_signers_ctx(first)
    for bad in ([0, 2, 9], [0, 0, 4], [0, 2], [0, True, 4]):
        with pytest.raises(ValueError):
            sets.context(bad)
    sets.context([1, 2, 3])
    sets.context([0, 1, 2])  # the third set pushes out the least recently used
    assert sets.context([0, 2, 4]) is not first
    wrong = SignerSets(5, 3, trusted_dealer(3, 5, seed=10).thresh_pk, keys.pubshares)
    with pytest.raises(ValueError, match="key material"):
        wrong.context([0, 1, 2])
