"""PSBT encoding: Taproot key-path fields round trip, and malformed input is refused with a reason."""

from __future__ import annotations

import base64

import pytest
from bitcoin.core import COutPoint, CTransaction, CTxIn, CTxOut, lx
from bitcoin.core.script import CScript
from hypothesis import given, settings
from hypothesis import strategies as st

from frostfed.bitcoin.psbt import (
    MAGIC,
    PSBT_GLOBAL_UNSIGNED_TX,
    PSBT_GLOBAL_VERSION,
    PSBT_IN_TAP_INTERNAL_KEY,
    PSBT_IN_TAP_KEY_SIG,
    KeyOrigin,
    Psbt,
    PsbtError,
    TapBip32Derivation,
)

SCRIPT = CScript(b"\x51\x20" + bytes(range(32)))


def _tx(n_in: int = 2) -> CTransaction:
    vin = [CTxIn(COutPoint(lx(f"{i + 1:02x}" * 32), i), nSequence=0xFFFFFFFD) for i in range(n_in)]
    return CTransaction(vin, [CTxOut(50_000, SCRIPT), CTxOut(1_000, CScript(b"\x00\x14" + bytes(20)))], 0, 2)


def _filled() -> Psbt:
    psbt = Psbt.from_unsigned_tx(_tx())
    for i, m in enumerate(psbt.inputs):
        m.witness_utxo = CTxOut(100_000 + i, SCRIPT)
        key = bytes([i + 1]) * 32
        m.tap_internal_key = key
        m.add_tap_bip32_derivation(key, TapBip32Derivation((), KeyOrigin(b"\xaa\xbb\xcc\xdd", (0, i))))
    psbt.outputs[0].tap_internal_key = bytes([9]) * 32
    psbt.outputs[0].add_tap_bip32_derivation(bytes([9]) * 32, TapBip32Derivation((), KeyOrigin(bytes(4), (0, 7))))
    return psbt


def test_key_path_fields_round_trip():
    psbt = _filled()
    again = Psbt.from_base64(psbt.to_base64())
    assert again.serialize() == psbt.serialize()
    assert again.tx.serialize() == _tx().serialize()
    assert [o.nValue for o in again.spent_outputs()] == [100_000, 100_001]
    ((key, deriv),) = again.inputs[1].tap_bip32_derivations.items()
    assert key == bytes([2]) * 32 and deriv.origin.path == (0, 1) and deriv.origin.fingerprint == b"\xaa\xbb\xcc\xdd"
    assert again.outputs[0].tap_bip32_derivations[bytes([9]) * 32].origin.path == (0, 7)
    assert again.inputs[0].tap_key_sig is None


def test_finalize_and_extract_key_path_spend():
    psbt = _filled()
    with pytest.raises(PsbtError, match="no Taproot key signature"):
        psbt.finalize_keypath()
    with pytest.raises(PsbtError, match="not finalized"):
        psbt.extract()
    psbt.inputs[0].tap_key_sig = b"\x11" * 64
    psbt.inputs[1].tap_key_sig = b"\x22" * 64 + b"\x01"
    psbt.finalize_keypath()
    for m in psbt.inputs:
        assert m.get(PSBT_IN_TAP_KEY_SIG) is None and m.get(PSBT_IN_TAP_INTERNAL_KEY) is None
        assert m.tap_bip32_derivations == {} and m.witness_utxo is not None
    tx = psbt.extract()
    assert list(tx.wit.vtxinwit[0].scriptWitness.stack) == [b"\x11" * 64]
    assert list(tx.wit.vtxinwit[1].scriptWitness.stack) == [b"\x22" * 64 + b"\x01"]
    assert tx.GetTxid() == _tx().GetTxid()
    assert Psbt.from_bytes(psbt.serialize()).inputs[1].final_scriptwitness == [b"\x22" * 64 + b"\x01"]


def _pair(key: bytes, value: bytes) -> bytes:
    return bytes([len(key)]) + key + bytes([len(value)]) + value


def _raw(global_pairs: bytes, rest: bytes) -> bytes:
    return MAGIC + global_pairs + b"\x00" + rest


UNSIGNED = _tx(1).serialize()
GOOD_GLOBAL = _pair(bytes([PSBT_GLOBAL_UNSIGNED_TX]), UNSIGNED)  # a one-input tx is < 253 bytes
EMPTY_MAPS = b"\x00" * 3  # one input, two outputs


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"psbt\x00" + b"\x00" * 4, "magic"),
        (_raw(b"", EMPTY_MAPS), "no unsigned transaction"),
        (MAGIC + GOOD_GLOBAL, "ends inside"),
        (_raw(GOOD_GLOBAL, EMPTY_MAPS + b"\x00"), "trailing bytes"),
        (_raw(GOOD_GLOBAL + GOOD_GLOBAL, EMPTY_MAPS), "duplicate key"),
        (
            _raw(GOOD_GLOBAL + _pair(bytes([PSBT_GLOBAL_VERSION]), (2).to_bytes(4, "little")), EMPTY_MAPS),
            "version 0",
        ),
        (_raw(_pair(b"\x00", b"\x01\x02"), EMPTY_MAPS), "does not parse"),
        (_raw(GOOD_GLOBAL, _pair(b"\x17", bytes(31)) + b"\x00\x00\x00"), "internal key is 32 bytes"),
        (_raw(GOOD_GLOBAL, _pair(b"\x13", bytes(63)) + b"\x00\x00\x00"), "64 or 65 bytes"),
        (_raw(GOOD_GLOBAL, _pair(b"\x17\x01", bytes(32)) + b"\x00\x00\x00"), "takes no key data"),
        (_raw(GOOD_GLOBAL, _pair(b"\x16" + bytes(31), bytes(5)) + b"\x00\x00\x00"), "32-byte x-only"),
        (_raw(GOOD_GLOBAL, _pair(b"\x16" + bytes(32), b"\x00\x01\x02") + b"\x00\x00\x00"), "key origin"),
        (_raw(GOOD_GLOBAL, _pair(b"\x01", b"\x00\x01") + b"\x00\x00\x00"), "witness utxo"),
        (_raw(GOOD_GLOBAL, _pair(b"\x03", b"\x00") + b"\x00\x00\x00"), "sighash type"),
        (_raw(GOOD_GLOBAL, b"\x00" + _pair(b"\x05", bytes(3)) + b"\x00\x00"), "output 0"),
        (MAGIC + b"\xfd\x01\x00", "non-canonical"),
    ],
)
def test_malformed_psbts_are_refused(data, reason):
    with pytest.raises(PsbtError, match=reason):
        Psbt.from_bytes(data)


def test_good_minimal_psbt_and_bad_base64():
    psbt = Psbt.from_bytes(_raw(GOOD_GLOBAL, EMPTY_MAPS))
    assert psbt.serialize() == _raw(GOOD_GLOBAL, EMPTY_MAPS)
    with pytest.raises(PsbtError, match="base64"):
        Psbt.from_base64("not base64!")
    with pytest.raises(PsbtError, match="magic"):
        Psbt.from_base64(base64.b64encode(b"hello").decode())
    with pytest.raises(PsbtError, match="64 or 65"):
        psbt.inputs[0].tap_key_sig = bytes(10)
    signed = CTransaction([CTxIn(COutPoint(lx("01" * 32), 0), CScript(b"\x51"))], _tx().vout, 0, 2)
    with pytest.raises(PsbtError, match="no signatures"):
        Psbt.from_unsigned_tx(signed)


@settings(max_examples=400, deadline=None)
@given(st.data())
def test_mutated_psbts_round_trip_or_raise_psbt_error(data):
    good = _filled().serialize()
    pos = data.draw(st.integers(0, len(good) - 1))
    cut = data.draw(st.integers(0, 12))
    insert = data.draw(st.binary(max_size=9))
    mutated = good[:pos] + insert + good[pos + cut :]
    try:
        parsed = Psbt.from_bytes(mutated)
    except PsbtError:
        return
    assert parsed.serialize() == mutated  # whatever parses, serializes back unchanged
