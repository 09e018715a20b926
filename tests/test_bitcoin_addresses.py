"""Segwit (BIP 173/350) and base58 addresses: known encodings, refusals with a reason, arbitrary input."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from frostfed.bitcoin.taproot import (
    AddressError,
    TaprootError,
    address_from_script,
    decode_segwit_address,
    encode_segwit_address,
    p2tr_script,
    script_from_address,
    taproot_output_key,
    taproot_tweak_seckey,
)


@pytest.mark.parametrize(
    ("network", "address", "script"),
    [
        (
            "main",
            "BC1QW508D6QEJXTDG4Y5R3ZARVARY0C5XW7KV8F3T4",
            "0014751e76e8199196d454941c45d1b3a323f1433bd6",
        ),
        (
            "test",
            "tb1qqqqqp399et2xygdj5xreqhjjvcmzhxw4aywxecjdzew6hylgvsesrxh6hy",
            "0020000000c4a5cad46221b2a187905e5266362b99d5e91c6ce24d165dab93e86433",
        ),
        (
            "main",
            "bc1pw508d6qejxtdg4y5r3zarvary0c5xw7kw508d6qejxtdg4y5r3zarvary0c5xw7kt5nd6y",
            "5128751e76e8199196d454941c45d1b3a323f1433bd6751e76e8199196d454941c45d1b3a323f1433bd6",
        ),
        ("main", "BC1SW50QGDZ25J", "6002751e"),
        ("main", "1BvBMSEYstWetqTFn5Au4m4GFg7xJaNVN2", "76a91477bff20c60e522dfaa3350c39b030a5d004e839a88ac"),
        ("main", "3J98t1WpEZ73CNmQviecrnyiWrnqRhWNLy", "a914b472a266d0bd89c13706a4132ccfb16f7c3b9fcb87"),
        (
            "regtest",
            "mipcBbFg9gMiCh81Kj8tqqdgoZub1ZJRfn",
            "76a914243f1394f44554f4ce3fd68649c19adc483ce92488ac",
        ),
    ],
)
def test_bip350_and_base58_addresses(network, address, script):
    assert script_from_address(address, network).hex() == script
    assert address_from_script(bytes.fromhex(script), network) == address.lower() if address[0] in "Bb" else address


@pytest.mark.parametrize(
    ("address", "reason"),
    [
        ("tc1p0xlxvlhemja6c4dqv22uapctqupfhlxm9h8z3k2e72q4k9hcz7vq5zuyut", "network"),
        ("bc1p0xlxvlhemja6c4dqv22uapctqupfhlxm9h8z3k2e72q4k9hcz7vqh2y7hd", "checksum variant"),
        ("BC1S0XLXVLHEMJA6C4DQV22UAPCTQUPFHLXM9H8Z3K2E72Q4K9HCZ7VQ54WELL", "checksum variant"),
        ("bc1qw508d6qejxtdg4y5r3zarvary0c5xw7kemeawh", "checksum variant"),
        ("bc1p38j9r5y49hruaue7wxjce0updqjuyyx0kh56v8s25huc6995vvpql3jow4", "alphabet"),
        ("BC130XLXVLHEMJA6C4DQV22UAPCTQUPFHLXM9H8Z3K2E72Q4K9HCZ7VQ7ZWS8R", "version"),
        ("bc1pw5dgrnzv", "program"),
        ("bc1p0xlxvlhemja6c4dqv22uapctqupfhlxm9h8z3k2e72q4k9hcz7v8n0nx0muaewav253zgeav", "program"),
        ("BC1QR508D6QEJXTDG4Y5R3ZARVARYV98GJ9P", "program"),
        ("bc1p0xlxvlhemja6c4dqv22uapctqupfhlxm9h8z3k2e72q4k9hcz7vq47Zagq", "case"),
        ("bc1p0xlxvlhemja6c4dqv22uapctqupfhlxm9h8z3k2e72q4k9hcz7v07qwwzcrf", "padding"),
        ("1BvBMSEYstWetqTFn5Au4m4GFg7xJaNVN3", "checksum"),
        ("mipcBbFg9gMiCh81Kj8tqqdgoZub1ZJRfn", "version"),
    ],
)
def test_invalid_addresses_are_refused_with_a_reason(address, reason):
    with pytest.raises(AddressError, match=reason):
        script_from_address(address, "main")


def test_segwit_roundtrip_and_bad_keys():
    program = bytes(range(32))
    for version in (0, 1, 16):
        addr = encode_segwit_address("bcrt", version, program)
        assert decode_segwit_address("bcrt", addr) == (version, program)
    with pytest.raises(TaprootError):
        p2tr_script(bytes(33))
    with pytest.raises(TaprootError, match="internal key"):
        taproot_output_key(b"\x00" * 32)  # x = 0 is not on the curve
    with pytest.raises(TaprootError, match="out of range"):
        taproot_tweak_seckey(bytes(32))
    assert address_from_script(b"\x6a\x04abcd", "regtest") is None


@settings(max_examples=400, deadline=None)
@given(st.text(max_size=100))
def test_arbitrary_strings_decode_or_raise_address_error(text):
    for network in ("main", "regtest"):
        try:
            script = script_from_address(text, network)
        except AddressError:
            continue
        assert script_from_address(address_from_script(script, network), network) == script
