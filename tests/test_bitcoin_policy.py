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
from typing import Any

import pytest
from bitcoin.core import COutPoint, CTransaction, CTxIn, CTxOut, b2lx, lx
from bitcoin.core.script import CScript
from chain_tracking import reconcile
from coincurve import PrivateKey
from hypothesis import event, given, settings
from hypothesis import strategies as st
from mempool import mempool_verdict

from frostfed.bitcoin.chain import BitcoindChainSource, BitcoindRpc, ChainSource, ChainUnavailable, Utxo
from frostfed.bitcoin.chain_checks import ChainChecks, FeeBounds
from frostfed.bitcoin.fee_budget import FeeBudget
from frostfed.bitcoin.ledger import Ledger, LedgerError
from frostfed.bitcoin.payout import PayoutBuildError, build_payout_tx, sign_payout
from frostfed.bitcoin.policy import CommandPolicy, LedgerPolicy, PayoutPolicy
from frostfed.bitcoin.psbt import PSBT_IN_NON_WITNESS_UTXO, PSBT_IN_SIGHASH_TYPE, Psbt
from frostfed.bitcoin.psbt_claims import check_psbt_claims
from frostfed.bitcoin.regtest import free_port
from frostfed.bitcoin.rejection import PolicyRejection
from frostfed.bitcoin.standardness import MAX_STANDARD_TX_WEIGHT, Standardness, dust_limit, keypath_weight, output_type
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
    verdict = mempool_verdict(regtest, signed)
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
    assert mempool_verdict(regtest, mature).allowed  # and bitcoind agrees on the maturity rule
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
    assert mempool_verdict(regtest, signed).allowed
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
    assert mempool_verdict(regtest, signed).allowed


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


# -- standardness, the no-payee rule, the fee budget and PSBT claims, on a fake chain (fast) ------

FED = b"\x51\x20" + b"\x11" * 32
P2TR = b"\x51\x20" + b"\x22" * 32
P2WSH = b"\x00\x20" + b"\x33" * 32
P2WPKH = b"\x00\x14" + b"\x44" * 20
P2PKH = b"\x76\xa9\x14" + b"\x55" * 20 + b"\x88\xac"
P2SH = b"\xa9\x14" + b"\x66" * 20 + b"\x87"


class FakeChain(ChainSource):
    def __init__(self, tip: int = 1_000) -> None:
        self.tip = tip
        self.utxos: dict[tuple[str, int], Utxo] = {}

    def add(self, sats: int, script: bytes = FED) -> Utxo:
        txid = os.urandom(32).hex()
        utxo = Utxo(txid, 0, sats, script, 10, False)
        self.utxos[(txid, 0)] = utxo
        return utxo

    def get_utxo(self, txid: str, vout: int) -> Utxo | None:
        return self.utxos.get((txid, vout))

    def tip_height(self) -> int:
        return self.tip

    def block_transactions(self, height: int) -> list[CTransaction]:
        return []

    def broadcast(self, tx: CTransaction) -> str:
        raise AssertionError("a policy test never broadcasts")

    def fee_rate(self, target_blocks: int = 6) -> float | None:
        return None


def spend(
    utxos: list[Utxo], outputs: list[tuple[bytes, int]], version: int = 2, locktime: int = 0, sequence: int = 0xFFFFFFFD
) -> CTransaction:
    vin = [CTxIn(COutPoint(lx(u.txid), u.vout), nSequence=sequence) for u in utxos]
    return CTransaction(vin, [CTxOut(s, CScript(script)) for script, s in outputs], locktime, version)


def checks(chain: FakeChain, **rules: bool) -> ChainChecks:
    return ChainChecks(chain, [FED], FeeBounds(1, 1000, None), standardness=Standardness(**rules))


def refusal(check: ChainChecks, tx: CTransaction) -> str:
    with pytest.raises(PolicyRejection) as err:
        check.check(tx)
    assert err.value.message  # a reason a person can act on
    return err.value.code


def test_dust_limits_are_bitcoin_cores() -> None:
    assert [dust_limit(s) for s in (P2TR, P2WSH, P2WPKH, P2PKH, P2SH)] == [330, 330, 294, 546, 540]
    assert dust_limit(b"\x6a\x04abcd") == 0
    assert [output_type(s) for s in (P2TR, P2WSH, P2WPKH, P2PKH, P2SH)] == ["p2tr", "p2wsh", "p2wpkh", "p2pkh", "p2sh"]
    bare_multisig = b"\x51\x21" + b"\x02" * 33 + b"\x51\xae"
    for script in (bare_multisig, b"\x52\x20" + b"\x00" * 32, b"\x51\x02\x4e\x73", b"", b"\x6a\xac"):
        assert output_type(script) is None


@pytest.mark.parametrize(
    ("field", "code"),
    [
        ({"version": 0x7FFFFFFF}, "nonstandard_version"),
        ({"version": 1}, "nonstandard_version"),
        ({"version": 3}, "nonstandard_version"),
        ({"locktime": 1_002}, "locktime_in_future"),  # tip + 2
        ({"locktime": 1_000 + 100_000}, "locktime_in_future"),
        ({"locktime": 500_000_000}, "locktime_time_based"),
        ({"sequence": 0xFFFF}, "nonstandard_sequence"),
        ({"sequence": 0}, "nonstandard_sequence"),
        ({"sequence": 0x00400001}, "nonstandard_sequence"),  # a 512-second relative lock
    ],
)
def test_fields_that_keep_a_transaction_from_confirming_are_refused(field, code) -> None:
    chain = FakeChain()
    tx = spend([chain.add(100_000)], [(P2TR, 99_000)], **field)
    assert refusal(checks(chain), tx) == code


def test_standard_fields_at_their_limits_are_accepted() -> None:
    chain = FakeChain()
    for field in ({"locktime": 1_001}, {"locktime": 0}, {"sequence": 0xFFFFFFFE}, {"sequence": 0xFFFFFFFF}):
        checks(chain).check(spend([chain.add(100_000)], [(P2TR, 99_000)], **field))
    checks(chain, allow_version_3=True).check(spend([chain.add(100_000)], [(P2TR, 99_000)], version=3))


@pytest.mark.parametrize("script", [P2TR, P2WSH, P2WPKH, P2PKH, P2SH])
def test_an_output_below_its_dust_limit_is_refused(script) -> None:
    chain = FakeChain()
    limit = dust_limit(script)
    checks(chain).check(spend([chain.add(100_000)], [(script, limit), (P2TR, 99_000 - limit)]))
    tx = spend([chain.add(100_000)], [(script, limit - 1), (P2TR, 99_000 - limit)])
    assert refusal(checks(chain), tx) == "dust_output"


def test_nonstandard_scripts_and_op_return_unless_configured() -> None:
    chain = FakeChain()
    weird = spend([chain.add(100_000)], [(P2TR, 90_000), (b"\x52\x20" + b"\x00" * 32, 1_000)])
    assert refusal(checks(chain), weird) == "nonstandard_output"
    data = spend([chain.add(100_000)], [(P2TR, 99_000), (b"\x6a\x04" + b"frst", 0)])
    assert refusal(checks(chain), data) == "op_return"
    payout = checks(chain, allow_op_return=True).check(data)
    assert payout.payouts == {P2TR: 99_000}  # the data output pays nobody
    too_long = spend([chain.add(100_000)], [(P2TR, 99_000), (b"\x6a\x4c\x51" + b"x" * 81, 0)])
    assert refusal(checks(chain, allow_op_return=True), too_long) == "nonstandard_output"
    burning = spend([chain.add(100_000)], [(P2TR, 90_000), (b"\x6a\x01x", 5_000)])
    assert refusal(checks(chain, allow_op_return=True), burning) == "nonstandard_output"


def test_weight_above_the_standard_limit_is_refused() -> None:
    chain = FakeChain()
    fits = spend([chain.add(2_000_000)], [(P2TR, 330)] * 2_300)
    assert keypath_weight(fits) <= MAX_STANDARD_TX_WEIGHT
    checks(chain).check(fits)
    big = spend([chain.add(2_000_000)], [(P2TR, 330)] * 2_401)
    assert keypath_weight(big) > MAX_STANDARD_TX_WEIGHT
    assert refusal(checks(chain), big) == "tx_too_large"


def test_a_transaction_that_pays_nobody_is_refused_unless_consolidations_are_allowed() -> None:
    chain = FakeChain()
    burn = spend([chain.add(250_000)], [(FED, 51_000)])  # 199,000 sats of fee, the rest back
    assert refusal(ChainChecks(chain, [FED], FeeBounds(1, 5000, 200_000)), burn) == "no_payee"
    merge = spend([chain.add(50_000), chain.add(50_000)], [(FED, 99_500)])
    assert refusal(checks(chain), merge) == "no_payee"
    assert checks(chain, allow_consolidation=True).check(merge).payouts == {}


def _checked(chain: FakeChain, fee: int) -> Any:
    tx = spend([chain.add(1_000_000)], [(P2TR, 1_000_000 - fee)])
    return ChainChecks(chain, [FED], FeeBounds(0.1, 10_000, None)).check(tx)


def test_fee_budget_bounds_the_fees_of_a_rolling_window(tmp_path) -> None:
    chain = FakeChain(tip=1_000)
    budget = FeeBudget(tmp_path / "fees.sqlite", 300_000, 144)
    first = _checked(chain, 199_000)
    budget.check(first)
    budget.approved(first)
    budget.approved(first)  # the same transaction approved again counts once
    budget.check(first)  # ... and is not judged against its own fee
    second = _checked(chain, 199_000)
    with pytest.raises(PolicyRejection) as err:
        budget.check(second)
    assert err.value.code == "fee_budget_exceeded" and "398000" in err.value.message
    small = _checked(chain, 100_000)
    budget.check(small)  # 299,000 fits
    budget.approved(small)
    with pytest.raises(PolicyRejection):
        budget.check(_checked(chain, 1_001))
    budget.close()
    # the journal survives a restart, and the window moves with the chain
    budget = FeeBudget(tmp_path / "fees.sqlite", 300_000, 144)
    chain.tip = 1_143
    with pytest.raises(PolicyRejection):
        budget.check(_checked(chain, 1_001))
    chain.tip = 1_144  # approvals at height 1000 have left the window
    budget.check(_checked(chain, 300_000))
    assert budget.spent(1_144) == 0 and budget.spent(1_143) == 299_000


def test_fee_budget_counts_the_fees_the_chain_shows_whoever_signed(tmp_path) -> None:
    """With t = 3 of 5 the attacker asks a different pair of honest members each time: each sees only some
    of the payouts that burn fees, so a budget of its own approvals alone lets the federation burn
    several budgets per window. The fees of every confirmed federation transaction count, whoever
    signed it (a fee this member approved itself counts once)."""
    import fake_chain

    from frostfed.bitcoin.chain_index import ChainIndex

    blocks = fake_chain.FakeChain()
    coin = fake_chain.payment([(fake_chain.script("fed/0/0"), 1_000_000)])
    burn = fake_chain.spend([(b2lx(coin.GetTxid()), 0)], [(P2TR, 500_000), (fake_chain.script("fed/1/0"), 250_000)])
    blocks.add([coin])
    blocks.add([burn])
    index = ChainIndex(":memory:")
    index.watch(0, lambda chain, idx: fake_chain.script(f"fed/{chain}/{idx}"), 0)
    index.sync(blocks)
    assert index.fees_since(-1) == {b2lx(burn.GetTxid()): 250_000}
    chain = FakeChain(tip=blocks.tip_height())
    budget = FeeBudget(tmp_path / "fees.sqlite", 300_000, 144, chain_fees=index.fees_since)
    with pytest.raises(PolicyRejection) as err:
        budget.check(_checked(chain, 100_000))  # 250,000 burnt without this member + 100,000
    assert err.value.code == "fee_budget_exceeded" and "350000" in err.value.message
    budget.check(_checked(chain, 50_000))
    budget.close()


def test_fee_budget_counts_every_approval_through_the_policy(tmp_path) -> None:
    chain = FakeChain()
    ledger = Ledger(tmp_path / "ledger.sqlite")
    ledger.credit(P2TR, 10**8)
    budget = FeeBudget(tmp_path / "fees.sqlite", 250_000, 144)
    policy = PayoutPolicy(ChainChecks(chain, [FED], FeeBounds(0.1, 10_000, None)), [LedgerPolicy(ledger), budget])
    tx = spend([chain.add(1_000_000)], [(P2TR, 800_000)])
    policy.approve(tx)
    with pytest.raises(PolicyRejection) as err:
        policy.approve(spend([chain.add(1_000_000)], [(P2TR, 800_000)]))
    assert err.value.code == "fee_budget_exceeded"
    assert ledger.reserved_txids() == [b2lx(tx.GetTxid())]  # the refused one reserved nothing


def _psbt_case(chain: FakeChain) -> tuple[Psbt, Any]:
    utxo = chain.add(100_000)
    tx = spend([utxo], [(P2TR, 99_000)])
    psbt = Psbt.from_unsigned_tx(tx)
    psbt.inputs[0].witness_utxo = CTxOut(100_000, CScript(FED))
    return psbt, checks(chain).check(tx)


def test_psbt_claims_must_match_the_chain_and_ask_only_default_or_all() -> None:
    chain = FakeChain()
    psbt, payout = _psbt_case(chain)
    check_psbt_claims(psbt, payout)
    for value in (0x00, 0x01):
        psbt.inputs[0].set(PSBT_IN_SIGHASH_TYPE, value.to_bytes(4, "little"))
        check_psbt_claims(psbt, payout)
    for value in (0x02, 0x03, 0x81, 0x82, 0x83):
        psbt.inputs[0].set(PSBT_IN_SIGHASH_TYPE, value.to_bytes(4, "little"))
        with pytest.raises(PolicyRejection) as err:
            check_psbt_claims(psbt, payout)
        assert err.value.code == "unsupported_sighash" and f"0x{value:02x}" in err.value.message
    for lie in (CTxOut(100_001, CScript(FED)), CTxOut(100_000, CScript(P2TR))):
        psbt, payout = _psbt_case(chain)
        psbt.inputs[0].witness_utxo = lie
        with pytest.raises(PolicyRejection) as err:
            check_psbt_claims(psbt, payout)
        assert err.value.code == "psbt_utxo_mismatch"
    psbt, payout = _psbt_case(chain)
    other = spend([chain.add(5)], [(FED, 100_000)])  # not the transaction the input spends
    psbt.inputs[0].set(PSBT_IN_NON_WITNESS_UTXO, other.serialize())
    with pytest.raises(PolicyRejection) as err:
        check_psbt_claims(psbt, payout)
    assert err.value.code == "psbt_utxo_mismatch"
    psbt, _ = _psbt_case(chain)
    with pytest.raises(PolicyRejection) as err:
        check_psbt_claims(psbt, payout)  # a PSBT of another transaction
    assert err.value.code == "psbt_mismatch"


def _mostly(usual: Any, anything: Any) -> Any:
    """Usual values four times in five, so both accepted and refused transactions are drawn."""
    return st.one_of(usual, usual, usual, usual, anything)


@settings(max_examples=300, deadline=None)
@given(
    version=_mostly(st.sampled_from([2, 2, 2, 3]), st.integers(-(2**31), 2**31 - 1)),
    locktime=_mostly(st.integers(0, 803), st.integers(0, 2**32 - 1)),
    sequences=st.lists(
        _mostly(st.sampled_from([0xFFFFFFFD, 0xFFFFFFFF]), st.integers(0, 2**32 - 1)), min_size=1, max_size=3
    ),
    outputs=st.lists(
        st.tuples(
            _mostly(st.sampled_from([P2TR, P2WSH, P2WPKH, P2PKH, P2SH, FED]), st.binary(max_size=40)),
            _mostly(st.integers(540, 20_000), st.integers(0, 1_000)),
        ),
        min_size=1,
        max_size=4,
    ),
    rules=st.builds(Standardness, st.booleans(), st.booleans(), st.booleans()),
)
def test_any_transaction_fields_give_a_refusal_or_a_standard_transaction(
    version, locktime, sequences, outputs, rules
) -> None:
    chain = FakeChain(tip=800)
    utxos = [chain.add(100_000) for _ in sequences]
    tx = spend(utxos, outputs, version, locktime)
    tx = CTransaction(
        [CTxIn(i.prevout, nSequence=s) for i, s in zip(tx.vin, sequences, strict=True)], tx.vout, locktime, version
    )
    check = ChainChecks(chain, [FED], FeeBounds(0.1, 10**6, None), standardness=rules)
    try:
        payout = check.check(tx)
    except PolicyRejection as e:
        assert e.code and e.message
        event(e.code)
        return
    event("signed")
    assert tx.nVersion == 2 or (rules.allow_version_3 and tx.nVersion == 3)
    assert tx.nLockTime <= 801
    assert all(i.nSequence >= 0xFFFFFFFD for i in tx.vin)
    for out in tx.vout:
        kind = output_type(bytes(out.scriptPubKey))
        assert kind is not None and (kind != "op_return" or rules.allow_op_return)
        assert out.nValue >= dust_limit(bytes(out.scriptPubKey))
    assert payout.payouts or rules.allow_consolidation
