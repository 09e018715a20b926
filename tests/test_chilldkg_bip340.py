"""The BIP 340 signer ChillDKG uses, against the published BIP 340 vectors (../shared/vectors/bip340)."""

from __future__ import annotations

import csv
import io
import os

import pytest
from vectorfiles import load_text

from frostfed.frost import secp
from frostfed.frost.chilldkg_bip340 import schnorr_sign, schnorr_verify_point

ROWS = list(csv.DictReader(io.StringIO(load_text("bip340/test-vectors.csv"))))


@pytest.mark.parametrize("row", [r for r in ROWS if r["secret key"]], ids=lambda r: r["index"])
def test_sign_matches_the_vectors(row: dict[str, str]) -> None:
    sig = schnorr_sign(bytes.fromhex(row["message"]), bytes.fromhex(row["secret key"]), bytes.fromhex(row["aux_rand"]))
    assert sig == bytes.fromhex(row["signature"])


@pytest.mark.parametrize("row", ROWS, ids=lambda r: r["index"])
def test_verify_matches_the_vectors(row: dict[str, str]) -> None:
    try:
        pubkey = secp.lift_x(bytes.fromhex(row["public key"]))
    except ValueError:
        assert row["verification result"] == "FALSE"
        return
    ok = schnorr_verify_point(bytes.fromhex(row["message"]), pubkey, bytes.fromhex(row["signature"]))
    assert ok == (row["verification result"] == "TRUE")


def test_other_tag_prefix_is_not_a_bip340_signature() -> None:
    """Proofs of possession use their own tag prefix, so they never double as BIP 340 signatures."""
    seckey = os.urandom(32)
    pubkey = secp.point_mul_g(secp.int_from_bytes(seckey))
    assert pubkey is not None
    msg = b"\x00\x00\x00\x01"
    pop = schnorr_sign(msg, seckey, bytes(32), tag_prefix="BIP DKG/pop message")
    assert schnorr_verify_point(msg, pubkey, pop, tag_prefix="BIP DKG/pop message")
    assert not schnorr_verify_point(msg, pubkey, pop)
    assert not secp.schnorr_verify(msg, secp.xbytes(pubkey), pop)


def test_bad_keys_are_refused() -> None:
    for seckey in (bytes(32), secp.bytes_from_int(secp.N), bytes(31)):
        with pytest.raises(ValueError):
            schnorr_sign(b"", seckey, bytes(32))
    with pytest.raises(ValueError):
        schnorr_sign(b"", b"\x01" * 32, bytes(16))
