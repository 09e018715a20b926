"""End to end on a real regtest bitcoind: a 3-of-5 threshold key's BIP 86 addresses receive coins, a
payout to three miners plus change passes the policy, every input is signed with BIP 445 by a different
signer subset, bitcoind accepts and mines it, and a watch-only wallet of the federation's descriptor sees
the change."""

from __future__ import annotations

import os

import pytest
from chain_tracking import reconcile
from dealer import trusted_dealer
from frost_session import full_sign
from mempool import mempool_verdict

from frostfed.bitcoin.chain import Utxo
from frostfed.bitcoin.chain_checks import ChainChecks, FeeBounds
from frostfed.bitcoin.descriptor import (
    DescriptorError,
    descriptor_checksum,
    federation_descriptor,
    with_checksum,
)
from frostfed.bitcoin.ledger import Ledger
from frostfed.bitcoin.payout import build_payout_tx, sign_payout, sign_payout_psbt
from frostfed.bitcoin.policy import LedgerPolicy, PayoutPolicy
from frostfed.bitcoin.psbt import Psbt
from frostfed.bitcoin.rejection import PolicyRejection
from frostfed.bitcoin.taproot import p2tr_address, p2tr_script, script_from_address
from frostfed.bitcoin.watchonly import create_watch_only_wallet
from frostfed.frost.derivation import derive_path, group_xpub, signing_tweaks
from frostfed.frost.secp import schnorr_verify

pytestmark = pytest.mark.slow

T, N = 3, 5
BRANCH = 0
LOOKAHEAD = 20


class ThresholdFederation:
    """The federation's keys as the members know them: a dealt 3-of-5 key, its xpub, its addresses."""

    def __init__(self):
        self.keys = trusted_dealer(T, N)
        self.root = group_xpub(self.keys.thresh_pk, os.urandom(32))
        self.tpub = self.root.to_string("test")
        self.index_of: dict[bytes, int] = {}
        for i in range(LOOKAHEAD):
            _, _, output_key = signing_tweaks(self.root, [BRANCH, i])
            self.index_of[p2tr_script(output_key)] = i
        self.subsets = [[0, 1, 2], [1, 3, 4], [0, 2, 4], [2, 3, 4]]
        self.signed: list[tuple[int, list[int]]] = []

    def script(self, index: int) -> bytes:
        return p2tr_script(signing_tweaks(self.root, [BRANCH, index])[2])

    def address(self, index: int) -> str:
        return p2tr_address(self.script(index)[2:], "regtest")

    def owns(self, script: bytes) -> bool:
        return script in self.index_of

    def child_has_odd_y(self, index: int) -> bool:
        return derive_path(self.root, [BRANCH, index])[0].key[0] == 3

    def sign(self, input_index: int, sighash: bytes, utxo: Utxo) -> bytes:
        """BIP 445 with the derivation and Taproot tweaks of the address the chain says is spent."""
        index = self.index_of[utxo.script_pubkey]
        tweaks, is_xonly, output_key = signing_tweaks(self.root, [BRANCH, index])
        signers = self.subsets[input_index % len(self.subsets)]
        sig, *_ = full_sign(self.keys, T, signers, sighash, tweaks, is_xonly)
        assert schnorr_verify(sighash, output_key, sig)
        self.signed.append((index, signers))
        return sig


@pytest.fixture(scope="module")
def fed() -> ThresholdFederation:
    return ThresholdFederation()


@pytest.fixture(scope="module")
def watch_only(regtest, fed):
    return create_watch_only_wallet(regtest.rpc_client, "federation", federation_descriptor(fed.tpub, BRANCH))


def _indexes_with_both_parities(fed: ThresholdFederation, count: int) -> list[int]:
    """`count` distinct indexes, including at least one odd-y and one even-y child key."""
    odd = [i for i in range(LOOKAHEAD) if fed.child_has_odd_y(i)]
    even = [i for i in range(LOOKAHEAD) if not fed.child_has_odd_y(i)]
    assert odd and even, "20 children without both parities: astronomically unlikely"
    chosen = [odd[0], even[0]]
    chosen += [i for i in range(1, LOOKAHEAD) if i not in chosen][: count - 2]
    return chosen


def test_descriptor_checksum_and_addresses_match_bitcoind(regtest, fed):
    desc = federation_descriptor(fed.tpub, BRANCH)
    info = regtest.rpc("getdescriptorinfo", desc.split("#")[0])
    assert info["checksum"] == descriptor_checksum(desc.split("#")[0]) == desc.split("#")[1]
    assert regtest.rpc("deriveaddresses", desc, [0, 9]) == [fed.address(i) for i in range(10)]
    with pytest.raises(DescriptorError, match="checksum"):
        with_checksum(desc[:-1] + ("q" if desc[-1] != "q" else "p"))


def test_threshold_payout_end_to_end(regtest, chain, fed, watch_only, tmp_path):
    indexes = _indexes_with_both_parities(fed, 3)
    inputs = []
    for i, sats in zip(indexes, [30_000_000, 20_000_000, 15_000_000], strict=True):
        txid, vout = regtest.send_to(fed.address(i), sats, confirm=False)
        inputs.append((txid, vout))
    regtest.mine(1)
    utxos = [chain.get_utxo(*o) for o in inputs]
    assert all(u is not None and u.confirmations == 1 for u in utxos)
    assert {u["txid"] for u in watch_only.call("listunspent")} >= {t for t, _ in inputs}

    miners = [
        script_from_address(regtest.rpc("getnewaddress", "", kind, wallet="miner"), "regtest")
        for kind in ("bech32m", "bech32", "legacy")
    ]
    owed = [12_000_000, 9_000_000, 4_000_000]
    ledger = Ledger(tmp_path / "ledger.sqlite")
    for script, sats in zip(miners, owed, strict=True):
        ledger.credit(script, sats)
    change_index = 17
    tx = build_payout_tx(utxos, list(zip(miners, owed, strict=True)), fed.script(change_index), fee_rate=3)
    policy = PayoutPolicy(ChainChecks(chain, fed.owns, FeeBounds(1, 20)), [LedgerPolicy(ledger)])

    signed, payout = sign_payout(tx, policy, fed.sign)

    assert [i for i, _ in fed.signed] == indexes
    assert len({tuple(s) for _, s in fed.signed}) == 3  # three different signer subsets
    verdict = mempool_verdict(regtest, signed)
    assert verdict.allowed, verdict.reason
    assert chain.broadcast(signed) == payout.txid
    block = regtest.mine(1)[0]
    assert payout.txid in regtest.rpc("getblock", block)["tx"]
    assert reconcile(ledger, chain, [fed.script(i) for i in range(40)]) == [payout.txid]

    change_vout = payout.change_outputs[0]
    change_sats = 65_000_000 - sum(owed) - payout.fee_sats
    seen = {(u["txid"], u["vout"]): u for u in watch_only.call("listunspent")}
    assert (payout.txid, change_vout) in seen
    assert seen[(payout.txid, change_vout)]["address"] == fed.address(change_index)
    assert all(o not in seen for o in inputs)
    info = watch_only.call("getaddressinfo", fed.address(change_index))
    assert info["ismine"] and info["solvable"] and info["desc"].startswith("tr(")
    assert int(seen[(payout.txid, change_vout)]["amount"] * 100_000_000) == change_sats


def test_psbt_from_the_watch_only_wallet_signed_by_the_federation(regtest, chain, fed, watch_only, tmp_path):
    funded_inputs = [regtest.send_to(fed.address(i), 10_000_000, confirm=False) for i in (3, 4)]
    regtest.mine(1)
    miner = regtest.rpc("getnewaddress", "", "bech32m", wallet="miner")
    ledger = Ledger(tmp_path / "ledger.sqlite")
    ledger.credit(script_from_address(miner, "regtest"), 15_000_000)
    funded = watch_only.call(
        "walletcreatefundedpsbt",
        [{"txid": t, "vout": v} for t, v in funded_inputs],
        [{miner: "0.15"}],
        0,
        {"changeAddress": fed.address(18), "fee_rate": 4, "add_inputs": False},
        True,
    )
    raw = funded["psbt"]
    psbt = Psbt.from_base64(raw)
    assert psbt.to_base64() == raw  # byte-exact round trip of bitcoind's PSBT
    assert len(psbt.inputs) == 2
    for m in psbt.inputs:
        (xonly, derivation), *_ = m.tap_bip32_derivations.items()
        assert m.tap_internal_key == xonly
        assert derivation.leaf_hashes == ()
        assert derivation.origin.fingerprint == fed.root.fingerprint()
        branch, index = derivation.origin.path
        assert branch == BRANCH and fed.script(index) == bytes(m.witness_utxo.scriptPubKey)
    policy = PayoutPolicy(ChainChecks(chain, fed.owns, FeeBounds(1, 20)), [LedgerPolicy(ledger)])

    signed_psbt, payout = sign_payout_psbt(psbt, policy, fed.sign)

    assert all(m.tap_key_sig is not None and len(m.tap_key_sig) == 64 for m in signed_psbt.inputs)
    by_bitcoind = regtest.rpc("finalizepsbt", signed_psbt.to_base64())
    assert by_bitcoind["complete"]
    signed_psbt.finalize_keypath()
    ours = signed_psbt.extract()
    assert ours.serialize().hex() == by_bitcoind["hex"]
    assert mempool_verdict(regtest, ours).allowed
    chain.broadcast(ours)
    regtest.mine(1)
    assert reconcile(ledger, chain, [fed.script(i) for i in range(40)]) == [payout.txid]


def test_psbt_claiming_other_amounts_than_the_chain_is_refused_unsigned(regtest, chain, fed, tmp_path):
    from bitcoin.core import CTxOut
    from bitcoin.core.script import CScript

    txid, vout = regtest.send_to(fed.address(5), 10_000_000)
    utxo = chain.get_utxo(txid, vout)
    miner = script_from_address(regtest.rpc("getnewaddress", wallet="miner"), "regtest")
    ledger = Ledger(tmp_path / "ledger.sqlite")
    ledger.credit(miner, 1_000_000)
    psbt = Psbt.from_unsigned_tx(build_payout_tx([utxo], [(miner, 1_000_000)], fed.script(6), 2))
    psbt.inputs[0].witness_utxo = CTxOut(9_000_000, CScript(utxo.script_pubkey))  # lies about the amount
    policy = PayoutPolicy(ChainChecks(chain, fed.owns), [LedgerPolicy(ledger)])
    fed.signed.clear()
    with pytest.raises(PolicyRejection) as err:
        sign_payout_psbt(psbt, policy, fed.sign)
    assert err.value.code == "psbt_utxo_mismatch" and "the chain says 10000000 sats" in err.value.message
    assert fed.signed == [] and psbt.inputs[0].tap_key_sig is None and ledger.reserved_txids() == []
