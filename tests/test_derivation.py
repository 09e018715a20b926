"""Receive keys from the threshold key: BIP32 public derivation and BIP86 output keys.

Cross-checked against BIP32's own test vectors (public derivation steps), the `bip32` package (an
independent implementation, installed where it installs: below Python 3.13) and the BIP341 wallet
vectors; a FROST signature made with `signing_tweaks` verifies for the output key under libsecp256k1,
including for odd-Y threshold keys and odd-Y children.
"""

from __future__ import annotations

import hashlib

import pytest
from coincurve import PublicKeyXOnly
from dealer import trusted_dealer
from frost_session import full_sign
from vectorfiles import load_json

from frostfed.frost import secp
from frostfed.frost.derivation import (
    ExtendedPubKey,
    derive_child,
    derive_path,
    group_xpub,
    parse_xpub,
    signing_tweaks,
    taproot_output_key,
)
from frostfed.frost.signing import session_xonly_pk


def _keys_of_both_parities() -> list:  # type: ignore[type-arg]
    found: dict[int, object] = {}
    seed = 0
    while len(found) < 2:
        keys = trusted_dealer(2, 3, seed=seed)
        found.setdefault(keys.thresh_pk[0], keys)
        seed += 1
    return [found[2], found[3]]


@pytest.mark.parametrize("parity", [2, 3])
@pytest.mark.parametrize("network", ["main", "test"])
def test_children_and_xpub_match_the_bip32_package(parity: int, network: str) -> None:
    bip32 = pytest.importorskip("bip32", reason="bip32 wants coincurve<21, which has no wheel on this Python")
    BIP32 = bip32.BIP32
    keys = next(k for k in _keys_of_both_parities() if k.thresh_pk[0] == parity)
    cc = hashlib.sha256(b"federation chain code").digest()
    root = group_xpub(keys.thresh_pk, cc)
    reference = BIP32(chaincode=cc, pubkey=keys.thresh_pk, network=network)
    assert root.to_string(network) == reference.get_xpub()
    assert parse_xpub(root.to_string(network)) == (root, network)
    child_parities = set()
    for i in range(12):
        child, tweak = derive_path(root, [0, i])
        assert child.key == reference.get_pubkey_from_path(f"m/0/{i}")
        assert child.to_string(network) == reference.get_xpub_from_path(f"m/0/{i}")
        # The accumulated tweak is what took the root to the child.
        assert secp.point_add(secp.cpoint(keys.thresh_pk), secp.point_mul_g(secp.int_from_bytes(tweak))) == (
            secp.cpoint(child.key)
        )
        child_parities.add(child.key[0])
    assert child_parities == {2, 3}  # odd-Y children were exercised


# BIP32 test vector 1: the unhardened steps, derived from the parent's xpub alone.
BIP32_VECTOR_1 = [
    (
        "xpub6D4BDPcP2GT577Vvch3R8wDkScZWzQzMMUm3PWbmWvVJrZwQY4VUNgqFJPMM3No2dFDFGTsxxpG5uJh7n7epu4trkrX7x7DogT5Uv6fcLW5",
        2,
        "xpub6FHa3pjLCk84BayeJxFW2SP4XRrFd1JYnxeLeU8EqN3vDfZmbqBqaGJAyiLjTAwm6ZLRQUMv1ZACTj37sR62cfN7fe5JnJ7dh8zL4fiyLHV",
    ),
    (
        "xpub6FHa3pjLCk84BayeJxFW2SP4XRrFd1JYnxeLeU8EqN3vDfZmbqBqaGJAyiLjTAwm6ZLRQUMv1ZACTj37sR62cfN7fe5JnJ7dh8zL4fiyLHV",
        1000000000,
        "xpub6H1LXWLaKsWFhvm6RVpEL9P4KfRZSW7abD2ttkWP3SSQvnyA8FSVqNTEcYFgJS2UaFcxupHiYkro49S8yGasTvXEYBVPamhGW6cFJodrTHy",
    ),
]


@pytest.mark.parametrize(("parent", "index", "child"), BIP32_VECTOR_1)
def test_public_derivation_matches_the_bip32_vectors(parent: str, index: int, child: str) -> None:
    key, network = parse_xpub(parent)
    assert network == "main"
    derived, _ = derive_child(key, index)
    assert derived.to_string("main") == child


def test_taproot_output_key_matches_bip341_vectors() -> None:
    cases = [c for c in load_json("bip341/wallet-test-vectors.json")["scriptPubKey"] if not c["given"]["scriptTree"]]
    assert cases
    for case in cases:
        out, _, tweak = taproot_output_key(bytes.fromhex(case["given"]["internalPubkey"]))
        assert tweak.hex() == case["intermediary"]["tweak"]
        assert out.hex() == case["intermediary"]["tweakedPubkey"]


@pytest.mark.parametrize("keys", _keys_of_both_parities(), ids=["even-root", "odd-root"])
def test_frost_signature_verifies_for_the_output_key(keys) -> None:  # type: ignore[no-untyped-def]
    cc = hashlib.sha256(b"chain code" + keys.thresh_pk).digest()
    root = group_xpub(keys.thresh_pk, cc)
    seen = set()
    for path in ([], [0, 0], [0, 1], [0, 2], [0, 3], [0, 4], [1, 5]):
        tweaks, is_xonly, out = signing_tweaks(root, path)
        child, _ = derive_path(root, path)
        seen.add(child.key[0])
        assert session_xonly_pk(keys.thresh_pk, tweaks, is_xonly) == out
        msg = hashlib.sha256(bytes(path)).digest()
        sig, *_ = full_sign(keys, 2, [1, 2], msg, tweaks, is_xonly)
        assert PublicKeyXOnly(out).verify(sig, msg)
    assert seen == {2, 3}


def test_bad_inputs_are_refused() -> None:
    keys = trusted_dealer(2, 3, seed=1)
    root = group_xpub(keys.thresh_pk, bytes(32))
    with pytest.raises(ValueError, match="unhardened"):
        derive_child(root, 2**31)
    with pytest.raises(ValueError):
        group_xpub(b"\x04" + bytes(32), bytes(32))
    with pytest.raises(ValueError):
        group_xpub(keys.thresh_pk, bytes(31))
    with pytest.raises(ValueError, match="checksum"):
        parse_xpub(root.to_string()[:-1] + ("1" if root.to_string()[-1] != "1" else "2"))
    assert isinstance(parse_xpub(root.to_string())[0], ExtendedPubKey)
