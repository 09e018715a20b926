"""Taproot outputs, addresses and key-path signature hashes against every case of BIP 341's wallet vectors."""

from __future__ import annotations

import pytest
from bitcoin.core import CTransaction, CTxOut
from bitcoin.core.script import CScript
from coincurve import PrivateKey
from vectorfiles import load_json

from frostfed.bitcoin.sighash import (
    SIGHASH_ALL,
    SIGHASH_DEFAULT,
    SighashError,
    keypath_witness_stack,
    sighash_message,
    taproot_sighash,
    tx_digests,
    with_keypath_witnesses,
)
from frostfed.bitcoin.taproot import (
    TapLeaf,
    address_from_script,
    control_block,
    p2tr_address,
    p2tr_script,
    script_from_address,
    taproot_output_key,
    taproot_tweak_seckey,
    taptree_commitments,
    taptweak,
)
from frostfed.frost.secp import schnorr_verify

VECTORS = load_json("bip341/wallet-test-vectors.json")


def _tree(node):
    if node is None:
        return None
    if isinstance(node, dict):
        return TapLeaf(bytes.fromhex(node["script"]), node["leafVersion"])
    assert len(node) == 2, "BIP 341 vector trees are binary"
    return (_tree(node[0]), _tree(node[1]))


@pytest.mark.parametrize("case", VECTORS["scriptPubKey"], ids=lambda c: c["expected"]["bip350Address"][:16])
def test_script_pubkey_vectors(case):
    given, inter, expected = case["given"], case["intermediary"], case["expected"]
    internal = bytes.fromhex(given["internalPubkey"])
    tree = _tree(given["scriptTree"])
    merkle_root = None
    if tree is not None:
        paths, merkle_root = taptree_commitments(tree)
        assert [tapleaf.hex() for tapleaf in _leaf_hashes(paths)] == inter["leafHashes"]
        assert merkle_root.hex() == inter["merkleRoot"]
        blocks = [control_block(internal, tree, i).hex() for i in range(len(paths))]
        assert blocks == expected["scriptPathControlBlocks"]
    else:
        assert inter["merkleRoot"] is None
    assert taptweak(internal, merkle_root).hex() == inter["tweak"]
    output_key, _ = taproot_output_key(internal, merkle_root)
    assert output_key.hex() == inter["tweakedPubkey"]
    assert p2tr_script(output_key).hex() == expected["scriptPubKey"]
    assert p2tr_address(output_key, "main") == expected["bip350Address"]
    assert script_from_address(expected["bip350Address"], "main").hex() == expected["scriptPubKey"]
    assert address_from_script(p2tr_script(output_key), "main") == expected["bip350Address"]


def _leaf_hashes(paths):
    from frostfed.bitcoin.taproot import tapleaf_hash

    return [tapleaf_hash(leaf) for leaf, _ in paths]


KEYPATH = VECTORS["keyPathSpending"]


def _keypath_tx(case):
    tx = CTransaction.deserialize(bytes.fromhex(case["given"]["rawUnsignedTx"]))
    spent = [CTxOut(u["amountSats"], CScript(bytes.fromhex(u["scriptPubKey"]))) for u in case["given"]["utxosSpent"]]
    return tx, spent


@pytest.mark.parametrize("case", KEYPATH)
def test_keypath_intermediary_hashes(case):
    tx, spent = _keypath_tx(case)
    d = tx_digests(tx, spent)
    inter = case["intermediary"]
    assert d.sha_amounts.hex() == inter["hashAmounts"]
    assert d.sha_outputs.hex() == inter["hashOutputs"]
    assert d.sha_prevouts.hex() == inter["hashPrevouts"]
    assert d.sha_scriptpubkeys.hex() == inter["hashScriptPubkeys"]
    assert d.sha_sequences.hex() == inter["hashSequences"]


@pytest.mark.parametrize(
    ("case", "spend"),
    [(c, s) for c in KEYPATH for s in c["inputSpending"]],
    ids=lambda v: f"input{v['given']['txinIndex']}" if "txinIndex" in v.get("given", {}) else "",
)
def test_keypath_spending_vectors(case, spend):
    tx, spent = _keypath_tx(case)
    given, inter = spend["given"], spend["intermediary"]
    index, hash_type = given["txinIndex"], given["hashType"]
    merkle_root = bytes.fromhex(given["merkleRoot"]) if given["merkleRoot"] else None
    seckey = bytes.fromhex(given["internalPrivkey"])
    internal = PrivateKey(seckey).public_key.format()[1:]
    assert internal.hex() == inter["internalPubkey"]
    assert taptweak(internal, merkle_root).hex() == inter["tweak"]
    tweaked = taproot_tweak_seckey(seckey, merkle_root)
    assert tweaked.hex() == inter["tweakedPrivkey"]
    # The vectors print SigMsg with the epoch byte 0x00 in front.
    assert (b"\x00" + sighash_message(tx, index, spent, hash_type)).hex() == inter["sigMsg"]
    sighash = taproot_sighash(tx, index, spent, hash_type)
    assert sighash.hex() == inter["sigHash"]
    # BIP 341's vectors sign with all-zero auxiliary randomness.
    sig = PrivateKey(tweaked).sign_schnorr(sighash, bytes(32))
    assert [w.hex() for w in keypath_witness_stack(sig, hash_type)] == spend["expected"]["witness"]
    output_key, _ = taproot_output_key(internal, merkle_root)
    assert bytes(spent[index].scriptPubKey) == p2tr_script(output_key)
    assert schnorr_verify(sighash, output_key, sig)


@pytest.mark.parametrize("case", KEYPATH)
def test_keypath_fully_signed_transaction(case):
    """Putting every vector witness into the unsigned transaction gives the published signed one."""
    tx, _ = _keypath_tx(case)
    signed = CTransaction.deserialize(bytes.fromhex(case["auxiliary"]["fullySignedTx"]))
    stacks = {
        s["given"]["txinIndex"]: [bytes.fromhex(w) for w in s["expected"]["witness"]] for s in case["inputSpending"]
    }
    # The non-Taproot inputs of the vector keep the published witnesses and scriptSigs.
    rebuilt = with_keypath_witnesses(signed, stacks)
    assert rebuilt.serialize() == signed.serialize()
    assert [txin.prevout for txin in tx.vin] == [txin.prevout for txin in signed.vin]


def test_sighash_rejects_undefined_cases():
    tx, spent = _keypath_tx(KEYPATH[0])
    with pytest.raises(SighashError, match="hash type"):
        taproot_sighash(tx, 0, spent, 0x04)
    with pytest.raises(SighashError, match="out of range"):
        taproot_sighash(tx, len(tx.vin), spent, SIGHASH_DEFAULT)
    with pytest.raises(SighashError, match="spent outputs"):
        taproot_sighash(tx, 0, spent[:-1], SIGHASH_ALL)
    # SIGHASH_SINGLE on an input without a matching output is undefined (the vector tx has 2 outputs).
    with pytest.raises(SighashError, match="SINGLE"):
        taproot_sighash(tx, 3, spent, 0x03)
    with pytest.raises(SighashError, match="64 bytes"):
        keypath_witness_stack(bytes(65))


def test_default_and_all_differ_but_both_commit_to_outputs():
    tx, spent = _keypath_tx(KEYPATH[0])
    default = taproot_sighash(tx, 0, spent, SIGHASH_DEFAULT)
    all_ = taproot_sighash(tx, 0, spent, SIGHASH_ALL)
    assert default != all_
    richer = [CTxOut(spent[0].nValue + 1, spent[0].scriptPubKey), *spent[1:]]
    assert taproot_sighash(tx, 0, richer, SIGHASH_DEFAULT) != default
    assert keypath_witness_stack(bytes(64), SIGHASH_DEFAULT) == [bytes(64)]
    assert keypath_witness_stack(bytes(64), SIGHASH_ALL) == [bytes(64) + b"\x01"]
