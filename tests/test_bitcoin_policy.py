"""The payout policy on a real regtest bitcoind: what a member signs, and every reason it refuses.

The federation here is a handful of single Taproot keys (BIP 86 outputs) so the policy is tested on its
own; the threshold-signed end-to-end run is in test_bitcoin_frost.py.
"""

from __future__ import annotations

import json
import os
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest
from bitcoin.core import COutPoint, CTransaction, CTxIn, CTxOut, lx
from bitcoin.core.script import CScript
from chain_tracking import reconcile
from coincurve import PrivateKey

from frostfed.bitcoin.chain import BitcoindChainSource, BitcoindRpc, ChainUnavailable, Utxo
from frostfed.bitcoin.ledger import Ledger, LedgerError
from frostfed.bitcoin.payout import PayoutBuildError, build_payout_tx, sign_payout
from frostfed.bitcoin.policy import (
    ChainChecks,
    CommandPolicy,
    FeeBounds,
    LedgerPolicy,
    PayoutPolicy,
    PolicyRejection,
)
from frostfed.bitcoin.regtest import free_port
from frostfed.bitcoin.taproot import bip86_output_key, p2tr_address, p2tr_script, taproot_tweak_seckey
from frostfed.frost.secp import schnorr_verify


class SingleKeyFederation:
    """Stand-in signer: each address is its own key, spent by key path like the federation's."""

    def __init__(self, count: int):
        self.keys = {}
        for _ in range(count):
            sk = os.urandom(32)
            internal = PrivateKey(sk).public_key.format()[1:]
            script = p2tr_script(bip86_output_key(internal))
            self.keys[script] = taproot_tweak_seckey(sk)
        self.scripts = list(self.keys)
        self.calls: list[int] = []

    def address(self, i: int) -> str:
        return p2tr_address(self.scripts[i][2:], "regtest")

    def sign(self, index: int, sighash: bytes, utxo: Utxo) -> bytes:
        self.calls.append(index)
        sig = PrivateKey(self.keys[utxo.script_pubkey]).sign_schnorr(sighash, os.urandom(32))
        assert schnorr_verify(sighash, utxo.script_pubkey[2:], sig)
        return sig


@pytest.fixture
def fed() -> SingleKeyFederation:
    return SingleKeyFederation(4)


@pytest.fixture
def ledger(tmp_path) -> Ledger:
    return Ledger(tmp_path / "ledger.sqlite")


@pytest.fixture
def miners(regtest) -> list[bytes]:
    """Three miner payout scripts of different kinds (P2WPKH, P2TR, P2PKH)."""
    from frostfed.bitcoin.taproot import script_from_address

    kinds = ["bech32", "bech32m", "legacy"]
    return [script_from_address(regtest.rpc("getnewaddress", "", k, wallet="miner"), "regtest") for k in kinds]


BOUNDS = FeeBounds(min_sat_per_vb=1, max_sat_per_vb=50)


def make_policy(chain, fed, ledger, *extra):
    return PayoutPolicy(ChainChecks(chain, fed.scripts, BOUNDS), [LedgerPolicy(ledger), *extra])


def fund(regtest, chain, fed, i: int, sats: int, confirm: bool = True) -> Utxo:
    txid, vout = regtest.send_to(fed.address(i), sats, confirm=confirm)
    utxo = chain.get_utxo(txid, vout)
    assert utxo is not None
    return utxo


def assert_refused(policy, tx, fed, ledger, code: str, words: str):
    reserved_before = ledger.reserved_txids()
    with pytest.raises(PolicyRejection) as err:
        sign_payout(tx, policy, fed.sign)
    assert err.value.code == code, err.value
    assert words in err.value.message, err.value.message
    assert fed.calls == [], "a refused payout must not be signed"
    assert ledger.reserved_txids() == reserved_before, "a refused payout must not be reserved"
    return err.value


def test_payout_to_three_miners_is_signed_accepted_mined_and_recorded(regtest, chain, fed, ledger, miners):
    inputs = [fund(regtest, chain, fed, 0, 40_000_000), fund(regtest, chain, fed, 1, 25_000_000)]
    owed = [10_000_000, 20_000_000, 30_000_000]
    for script, sats in zip(miners, owed, strict=True):
        ledger.credit(script, sats)
    tx = build_payout_tx(inputs, list(zip(miners, owed, strict=True)), fed.scripts[3], fee_rate=2.0)
    policy = make_policy(chain, fed, ledger)

    signed, payout = sign_payout(tx, policy, fed.sign)

    assert fed.calls == [0, 1]
    assert payout.change_outputs == (3,) and payout.payouts == dict(zip(miners, owed, strict=True))
    assert 2.0 <= payout.fee_rate < 2.1
    verdict = chain.test_accept(signed)
    assert verdict.allowed, verdict.reason
    assert verdict.vsize == payout.vsize and verdict.fee_sats == payout.fee_sats
    assert ledger.reserved_txids() == [payout.txid]
    assert chain.broadcast(signed) == payout.txid
    assert reconcile(ledger, chain, fed.scripts) == []  # not in a block yet
    regtest.mine(1)
    assert reconcile(ledger, chain, fed.scripts) == [payout.txid]
    for script, sats in zip(miners, owed, strict=True):
        status = ledger.status(script)
        assert (status.credited, status.paid, status.available) == (sats, sats, 0)
    assert chain.get_utxo(payout.txid, 3).amount_sats == 65_000_000 - sum(owed) - payout.fee_sats

    # The same debts requested again, from fresh federation coins: this member has paid them.
    fed.calls.clear()
    again = build_payout_tx([fund(regtest, chain, fed, 2, 70_000_000)], [(miners[1], 20_000_000)], fed.scripts[3], 2)
    assert_refused(policy, again, fed, ledger, "already_paid", "owed nothing more")


def test_every_output_must_be_owed_or_change(regtest, chain, fed, ledger, miners):
    utxo = fund(regtest, chain, fed, 0, 30_000_000)
    ledger.credit(miners[0], 5_000_000)
    policy = make_policy(chain, fed, ledger)
    unknown = build_payout_tx([utxo], [(miners[0], 5_000_000), (miners[1], 1_000_000)], fed.scripts[1], 2)
    assert_refused(policy, unknown, fed, ledger, "unknown_output", "neither a federation key nor in the ledger")
    over = build_payout_tx([utxo], [(miners[0], 5_000_001)], fed.scripts[1], 2)
    assert_refused(policy, over, fed, ledger, "overpayment", "owed 5000000")
    # Two outputs to the same miner count together.
    split = build_payout_tx([utxo], [(miners[0], 3_000_000), (miners[0], 3_000_000)], fed.scripts[1], 2)
    assert_refused(policy, split, fed, ledger, "overpayment", "paid 6000000 sats")


def test_fee_bounds(regtest, chain, fed, ledger, miners):
    utxo = fund(regtest, chain, fed, 0, 30_000_000)
    ledger.credit(miners[0], 5_000_000)
    policy = make_policy(chain, fed, ledger)
    high = build_payout_tx([utxo], [(miners[0], 5_000_000)], fed.scripts[1], fee_rate=51)
    assert_refused(policy, high, fed, ledger, "fee_too_high", "above the limit 50")
    # No change at all: everything left over would be fee.
    all_fee = CTransaction(high.vin, high.vout[:1], 0, 2)
    assert_refused(policy, all_fee, fed, ledger, "fee_too_high", "sat/vB")
    low = build_payout_tx([utxo], [(miners[0], 5_000_000)], fed.scripts[1], fee_rate=0.5)
    assert_refused(policy, low, fed, ledger, "fee_too_low", "below the minimum 1")
    capped = PayoutPolicy(ChainChecks(chain, fed.scripts, FeeBounds(max_fee_sats=100)), [LedgerPolicy(ledger)])
    ok_rate = build_payout_tx([utxo], [(miners[0], 5_000_000)], fed.scripts[1], fee_rate=2)
    assert_refused(capped, ok_rate, fed, ledger, "fee_too_high", "above the limit 100 sats")
    negative = CTransaction(high.vin, [CTxOut(30_000_001, CScript(fed.scripts[1]))], 0, 2)
    assert_refused(policy, negative, fed, ledger, "fee_negative", "hold only 30000000")


def test_inputs_must_be_confirmed_mature_owned_and_unspent(regtest, chain, fed, ledger, miners):
    ledger.credit(miners[0], 1_000_000)
    policy = make_policy(chain, fed, ledger)
    pay = [(miners[0], 1_000_000)]

    unconfirmed = fund(regtest, chain, fed, 0, 5_000_000, confirm=False)
    tx = build_payout_tx([unconfirmed], pay, fed.scripts[1], 2)
    assert_refused(policy, tx, fed, ledger, "input_unconfirmed", "0 confirmations, 1 required")
    regtest.mine(1)

    # A coinbase paying the federation directly, as a pool's block would.
    block = regtest.rpc("generatetoaddress", 1, fed.address(2))[0]
    coinbase_txid = regtest.rpc("getblock", block)["tx"][0]
    coinbase = chain.get_utxo(coinbase_txid, 0)
    assert coinbase.coinbase
    tx = build_payout_tx([coinbase], pay, fed.scripts[1], 2)
    assert_refused(policy, tx, fed, ledger, "input_immature", "matures at 100")
    regtest.mine(98)
    assert_refused(policy, tx, fed, ledger, "input_immature", "99 confirmations")
    regtest.mine(1)
    assert policy.check(tx).inputs[0].confirmations == 100  # mature now: the same payout passes
    mature, _ = sign_payout(tx, policy, fed.sign)
    assert chain.test_accept(mature).allowed  # and bitcoind agrees on the maturity rule
    fed.calls.clear()
    ledger.credit(miners[0], 1_000_000)  # that payout stays reserved (never broadcast); owe the next one

    foreign_txid, foreign_vout = regtest.send_to(regtest.rpc("getnewaddress", wallet="miner"), 5_000_000)
    foreign = chain.get_utxo(foreign_txid, foreign_vout)
    tx = build_payout_tx([foreign], pay, fed.scripts[1], 2)
    assert_refused(policy, tx, fed, ledger, "input_not_owned", "not a federation key")

    # Spent: pay it out for real once, then try to spend it again.
    utxo = fund(regtest, chain, fed, 3, 5_000_000)
    first = build_payout_tx([utxo], pay, fed.scripts[1], 2)
    signed, _ = sign_payout(first, policy, fed.sign)
    chain.broadcast(signed)
    regtest.mine(1)
    fed.calls.clear()
    reconcile(ledger, chain, fed.scripts)
    ledger.credit(miners[0], 1_000_000)
    assert_refused(policy, first, fed, ledger, "input_spent", "already spent or does not exist")
    made_up = CTransaction([CTxIn(COutPoint(lx("11" * 32), 0))], first.vout, 0, 2)
    assert_refused(policy, made_up, fed, ledger, "input_spent", "11111111")
    fresh = build_payout_tx([fund(regtest, chain, fed, 3, 5_000_000)], pay, fed.scripts[1], 2)
    doubled = CTransaction([fresh.vin[0], fresh.vin[0]], fresh.vout, 0, 2)
    assert_refused(policy, doubled, fed, ledger, "duplicate_input", "spent twice")


def test_reserved_payout_blocks_a_second_request_until_replaced(regtest, chain, fed, ledger, miners):
    ledger.credit(miners[0], 4_000_000)
    policy = make_policy(chain, fed, ledger)
    a = fund(regtest, chain, fed, 0, 10_000_000)
    b = fund(regtest, chain, fed, 1, 10_000_000)
    first = build_payout_tx([a], [(miners[0], 4_000_000)], fed.scripts[2], 2)
    sign_payout(first, policy, fed.sign)  # approved and signed, never broadcast
    fed.calls.clear()
    second = build_payout_tx([b], [(miners[0], 4_000_000)], fed.scripts[2], 2)
    assert_refused_keeping = pytest.raises(PolicyRejection)
    with assert_refused_keeping as err:
        sign_payout(second, policy, fed.sign)
    assert err.value.code == "already_paid" and "awaiting confirmation 4000000" in err.value.message
    assert fed.calls == []
    # A fee bump of the first (same input) replaces it and is allowed.
    bump = build_payout_tx([a], [(miners[0], 4_000_000)], fed.scripts[2], 5)
    signed, payout = sign_payout(bump, policy, fed.sign)
    assert chain.test_accept(signed).allowed
    chain.broadcast(signed)
    regtest.mine(1)
    assert reconcile(ledger, chain, fed.scripts) == [payout.txid]
    assert ledger.reserved_txids() == []  # the replaced one is dropped: its input was spent
    assert ledger.status(miners[0]).paid == 4_000_000


def _script(tmp_path: Path, body: str) -> list[str]:
    path = tmp_path / "check.py"
    path.write_text(textwrap.dedent(body))
    return [sys.executable, str(path)]


def test_external_check_command(regtest, chain, fed, ledger, miners, tmp_path):
    ledger.credit(miners[0], 2_000_000)
    utxo = fund(regtest, chain, fed, 0, 10_000_000)
    tx = build_payout_tx([utxo], [(miners[0], 2_000_000)], fed.scripts[1], 2)
    seen = tmp_path / "seen.json"
    refuse = _script(
        tmp_path,
        f"""
        import json, sys
        tx = json.load(sys.stdin)
        open({str(seen)!r}, "w").write(json.dumps(tx))
        print(json.dumps({{"accept": False, "reason": "share window not closed"}}))
        """,
    )
    policy = make_policy(chain, fed, ledger, CommandPolicy(refuse))
    assert_refused(policy, tx, fed, ledger, "rejected_by_check_command", "share window not closed")
    decoded = json.loads(seen.read_text())
    assert decoded["inputs"][0]["amount_sats"] == 10_000_000
    assert [o["change"] for o in decoded["outputs"]] == [False, True]
    assert decoded["outputs"][0]["amount_sats"] == 2_000_000

    broken = _script(tmp_path, "import sys; sys.exit(3)")
    policy = make_policy(chain, fed, ledger, CommandPolicy(broken))
    assert_refused(policy, tx, fed, ledger, "check_command_failed", "exited with 3")
    garbled = _script(tmp_path, "print('sure')")
    policy = make_policy(chain, fed, ledger, CommandPolicy(garbled))
    assert_refused(policy, tx, fed, ledger, "check_command_failed", "answered 'sure'")
    missing = make_policy(chain, fed, ledger, CommandPolicy([str(tmp_path / "absent")]))
    assert_refused(missing, tx, fed, ledger, "check_command_failed", "could not run")

    accept = _script(tmp_path, 'import json, sys; json.load(sys.stdin); print(json.dumps({"accept": True}))')
    policy = make_policy(chain, fed, ledger, CommandPolicy(accept))
    signed, _ = sign_payout(tx, policy, fed.sign)
    assert chain.test_accept(signed).allowed


def test_unreachable_or_failing_chain_source_signs_nothing(regtest, chain, fed, ledger, miners):
    ledger.credit(miners[0], 1_000_000)
    utxo = fund(regtest, chain, fed, 0, 5_000_000)
    tx = build_payout_tx([utxo], [(miners[0], 1_000_000)], fed.scripts[1], 2)
    dead = BitcoindChainSource(BitcoindRpc("127.0.0.1", free_port(), user="u", password="p", timeout=5))
    with pytest.raises(ChainUnavailable, match="unreachable"):
        sign_payout(tx, make_policy(dead, fed, ledger), fed.sign)
    wrong_password = BitcoindChainSource(BitcoindRpc("127.0.0.1", regtest.rpc_port, user="x", password="y"))
    with pytest.raises(ChainUnavailable, match="refused our credentials"):
        sign_payout(tx, make_policy(wrong_password, fed, ledger), fed.sign)
    assert fed.calls == [] and ledger.reserved_txids() == []


def test_malformed_requests_and_bad_ledger_updates(regtest, chain, fed, ledger, miners):
    policy = make_policy(chain, fed, ledger)
    utxo = fund(regtest, chain, fed, 0, 5_000_000)
    vin = [CTxIn(COutPoint(lx(utxo.txid), utxo.vout))]
    assert_refused(policy, CTransaction(vin, [], 0, 2), fed, ledger, "malformed", "no outputs")
    assert_refused(
        policy, CTransaction([], [CTxOut(1, CScript(miners[0]))], 0, 2), fed, ledger, "malformed", "no inputs"
    )
    signed_in = CTransaction([CTxIn(vin[0].prevout, CScript(b"\x51"))], [CTxOut(1000, CScript(miners[0]))], 0, 2)
    assert_refused(policy, signed_in, fed, ledger, "malformed", "already carries signatures")
    with pytest.raises(LedgerError):
        ledger.credit(miners[0], 0)
    with pytest.raises(LedgerError):
        ledger.credit(miners[0], -5)
    with pytest.raises(PayoutBuildError, match="not enough"):
        build_payout_tx([utxo], [(miners[0], 5_000_000)], fed.scripts[1], 2)


class SlowCheck:
    """An external check that takes a moment (as `payout-check-command` does)."""

    def check(self, payout) -> None:
        time.sleep(0.5)

    def approved(self, payout) -> None:
        pass


def test_concurrent_requests_do_not_overpay_a_miner(regtest, chain, fed, ledger, miners):
    """Each member judges every request in a worker thread: two requests paying the same debt from
    different coins must not both be approved."""
    ledger.credit(miners[0], 4_000_000)
    a = fund(regtest, chain, fed, 0, 10_000_000)
    b = fund(regtest, chain, fed, 1, 10_000_000)
    txs = [
        build_payout_tx([a], [(miners[0], 4_000_000)], fed.scripts[2], 2),
        build_payout_tx([b], [(miners[0], 4_000_000)], fed.scripts[3], 2),
    ]
    outcomes: list[str] = []

    def judge(tx) -> None:
        try:
            make_policy(chain, fed, ledger, SlowCheck()).approve(tx)
            outcomes.append("approved")
        except PolicyRejection as e:
            outcomes.append(e.code)

    threads = [threading.Thread(target=judge, args=(tx,)) for tx in txs]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(outcomes) == ["already_paid", "approved"], outcomes
    assert ledger.status(miners[0]).reserved == 4_000_000
