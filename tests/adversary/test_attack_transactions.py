"""Transactions no honest member may sign, coordinated by one malicious member of a 5-member
federation (t = 3): ones that could never confirm (and would keep the debts they pay reserved),
ones that burn the federation's money in fees, and PSBTs that lie. The per-transaction fee bounds
here are wide on purpose, so only the rules under test stand in the way.

Each test asserts from the honest members' own stores that none of them made even a presignature
for the request, from the chain that the coin is unspent, and that an honest payout still goes
through afterwards."""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest
from bitcoin.core import CTxOut
from bitcoin.core.script import CScript

from adversary.harness import (
    AdversaryCluster,
    address_script,
    anchored_payout,
    build_tx,
    nonce_used_for,
    nonces_for,
    request_body,
    unspent,
    wait_for_refusals,
)
from frostfed.bitcoin.psbt import PSBT_IN_SIGHASH_TYPE, Psbt
from frostfed.bitcoin.regtest import RegtestBitcoind
from frostfed.plugin.rpcclient import RpcCallError

pytestmark = pytest.mark.slow

FEE_BUDGET = 300_000


@pytest.fixture(scope="module")
def fed(tmp_path_factory: pytest.TempPathFactory, regtest: RegtestBitcoind) -> Iterator[AdversaryCluster]:
    policy = {"max_feerate": 5000.0, "max_fee_sats": 200_000, "fee_budget_sats": FEE_BUDGET, "fee_budget_blocks": 144}
    cluster = AdversaryCluster(tmp_path_factory.mktemp("advtx"), regtest, 5, 3, attackers=(0,), policy=policy)
    cluster.start()
    yield cluster
    cluster.stop()



def owed_miner(fed: AdversaryCluster, sats: int, kind: str = "bech32") -> bytes:
    """A miner script every member's ledger owes `sats`."""
    address = fed.btc.rpc("getnewaddress", "", kind, wallet="miner")
    fed.credit(address, sats)
    return address_script(address)


def attack(fed: AdversaryCluster, body: dict[str, Any], code: str) -> None:
    """The attacker asks every honest member (and signs itself); each refuses with `code` and makes
    no presignature; nothing is signed."""
    out = fed.attacker.evil("sign", {"request": body, "to": "all", "self": True})
    assert out["signed"] is False and out["shares"] == [], out
    assert out["ready"] == [fed.attacker.id.hex()]
    codes = wait_for_refusals(fed.honest, body["id"])
    assert codes == {m.index: code for m in fed.honest}, out["rejected"]
    for m in fed.honest:
        assert nonces_for(m, body["id"]) == []


def epoch(fed: AdversaryCluster) -> int:
    return fed.attacker.evil("keys")["epoch"]


@pytest.mark.parametrize(
    ("fields", "code"),
    [
        ({"locktime": 100_000}, "locktime_in_future"),  # added to the tip below
        ({"locktime": 1_900_000_000}, "locktime_time_based"),
        ({"version": 0x7FFFFFFF}, "nonstandard_version"),
        ({"version": 3}, "nonstandard_version"),
        ({"sequence": 0xFFFF}, "nonstandard_sequence"),  # a 65535-block relative lock
    ],
)
def test_transactions_that_cannot_confirm_soon_are_refused(
    fed: AdversaryCluster, fields: dict[str, int], code: str
) -> None:
    coin = fed.fund_coin(50_000)
    pay = coin["sats"] - 500
    miner = owed_miner(fed, pay)
    if fields.get("locktime") == 100_000:
        fields = {"locktime": fed.btc.rpc("getblockcount") + 100_000}
    tx = build_tx([coin], [(miner, pay)], **fields)
    attack(fed, request_body(tx, [coin], epoch(fed)), code)
    assert unspent(fed.btc, coin)
    fed.honest_payout_succeeds(via=1)


def test_a_dust_output_is_refused(fed: AdversaryCluster) -> None:
    coin = fed.fund_coin(50_000)
    tiny, rest = owed_miner(fed, 100), owed_miner(fed, coin["sats"])
    tx = build_tx([coin], [(tiny, 100), (rest, coin["sats"] - 100 - 500)])
    attack(fed, request_body(tx, [coin], epoch(fed)), "dust_output")
    assert unspent(fed.btc, coin)
    fed.honest_payout_succeeds(via=1)


def test_a_transaction_above_the_standard_weight_is_refused(fed: AdversaryCluster) -> None:
    coin = fed.fund_coin(900_000)
    count = 2_401  # P2TR outputs of 43 bytes: about 103 kvB
    miner = owed_miner(fed, 330 * count, "bech32m")
    tx = build_tx([coin], [(miner, 330)] * count)
    fee = coin["sats"] - 330 * count
    assert len(tx.serialize()) > 103_000 and fee < 200_000 and fee / (len(tx.serialize()) + 17) > 1
    attack(fed, request_body(tx, [coin], epoch(fed)), "tx_too_large")
    assert unspent(fed.btc, coin)
    fed.honest_payout_succeeds(via=1)


def test_fee_burns_are_refused_by_the_no_payee_rule_and_the_fee_budget(fed: AdversaryCluster) -> None:
    # No payout at all: 199,000 sats of fee and the rest back to the federation, asked again and again.
    for _ in range(3):
        coin = fed.fund_coin(250_000)
        back = bytes.fromhex(coin["script"])  # to the coin's own address: no change path needed
        tx = build_tx([coin], [(back, coin["sats"] - 199_000)])
        attack(fed, request_body(tx, [coin], epoch(fed)), "no_payee")
        assert unspent(fed.btc, coin)
    # A token payout with the same fee: the first fits the budget and is signed, the second does not.
    big = fed.fund_coin(250_000)
    miner = owed_miner(fed, 2_000)
    body, _ = anchored_payout(fed, [(miner, 1_000)], fee=199_000, more_coins=[big])
    out = fed.attacker.evil("sign", {"request": body, "to": "all", "self": True})
    assert out["signed"] is True, out  # within every bound: a fair, if expensive, payout
    assert sum(nonce_used_for(m, body["id"]) for m in fed.honest) >= 2
    body, second = anchored_payout(fed, [(miner, 1_000)], fee=199_100, more_coins=[big])  # a new txid
    attack(fed, body, "fee_budget_exceeded")
    assert unspent(fed.btc, second)
    fed.honest_payout_succeeds(via=1)  # a normal fee still fits in what is left of the budget


def _psbt_body(fed: AdversaryCluster, coin: dict[str, Any], miner: bytes, mutate: Any) -> dict[str, Any]:
    tx = build_tx([coin], [(miner, coin["sats"] - 500)])
    psbt = Psbt.from_unsigned_tx(tx)
    psbt.inputs[0].witness_utxo = CTxOut(coin["sats"], CScript(bytes.fromhex(coin["script"])))
    mutate(psbt)
    body = request_body(tx, [coin], epoch(fed), kind="psbt")
    body["psbt"] = psbt.serialize().hex()
    return body


def _lie_about_amount(psbt: Psbt) -> None:
    real = psbt.inputs[0].witness_utxo
    assert real is not None
    psbt.inputs[0].witness_utxo = CTxOut(real.nValue + 5_000_000, real.scriptPubKey)


def _sighash(value: int) -> Any:
    return lambda psbt: psbt.inputs[0].set(PSBT_IN_SIGHASH_TYPE, value.to_bytes(4, "little"))


@pytest.mark.parametrize(
    ("mutate", "code"),
    [
        (_lie_about_amount, "psbt_utxo_mismatch"),
        (_sighash(0x02), "unsupported_sighash"),  # NONE
        (_sighash(0x03), "unsupported_sighash"),  # SINGLE
        (_sighash(0x81), "unsupported_sighash"),  # ALL | ANYONECANPAY
    ],
    ids=["witness_utxo_lie", "none", "single", "anyonecanpay"],
)
def test_lying_or_open_psbts_coordinated_by_the_attacker_are_refused(
    fed: AdversaryCluster, mutate: Any, code: str
) -> None:
    coin = fed.fund_coin(40_000)
    miner = owed_miner(fed, coin["sats"])
    attack(fed, _psbt_body(fed, coin, miner, mutate), code)
    assert unspent(fed.btc, coin)


def test_a_psbt_request_without_its_psbt_is_refused(fed: AdversaryCluster) -> None:
    coin = fed.fund_coin(40_000)
    miner = owed_miner(fed, coin["sats"])
    body = _psbt_body(fed, coin, miner, lambda p: None)
    del body["psbt"]
    attack(fed, body, "psbt_missing")


def test_frost_sign_refuses_a_lying_psbt_and_open_sighash_types_with_a_reason(fed: AdversaryCluster) -> None:
    from frostfed.bitcoin.watchonly import create_watch_only_wallet

    fed.fund_coin(150_000)
    desc = fed.honest[0].call("frost-descriptor")
    watch = create_watch_only_wallet(fed.btc.rpc_client, "advtx-watch", desc["descriptor"], range_end=100)
    change = {"desc": desc["change_descriptor"], "range": [0, 100], "timestamp": 0, "internal": True, "active": True}
    assert watch.call("importdescriptors", [change])[0]["success"]
    miner = fed.miner_address()
    fed.credit(miner, 20_000)
    member = fed.honest[2]
    # the honest PSBT must spend the anchor and return change to the canonical change address
    status = member.call("frost-status")
    anchor_txid, anchor_vout = status["anchor"].split(":")
    anchor = [{"txid": anchor_txid, "vout": int(anchor_vout)}]
    options = {"fee_rate": 2, "changeAddress": status["change_address"], "add_inputs": True}
    for mutate, code in [(_lie_about_amount, "psbt_utxo_mismatch"), (_sighash(0x83), "unsupported_sighash")]:
        funded = watch.call("walletcreatefundedpsbt", anchor, [{miner: Decimal("0.0002")}], 0, options)
        psbt = Psbt.from_base64(funded["psbt"])
        mutate(psbt)
        used_before = [m.call("frost-status")["nonces"].get("used", 0) for m in fed.honest]
        with pytest.raises(RpcCallError) as err:
            member.call("frost-sign", [psbt.to_base64()])
        assert err.value.code == 1402 and f"{code}: input 0" in str(err.value.data), err.value
        assert [m.call("frost-status")["nonces"].get("used", 0) for m in fed.honest] == used_before
    funded = watch.call("walletcreatefundedpsbt", anchor, [{miner: Decimal("0.0002")}], 0, options)
    signed = member.call("frost-sign", [funded["psbt"]])  # the honest PSBT is still signed
    final = fed.btc.rpc("finalizepsbt", signed["psbt"])
    assert final["complete"] and fed.btc.rpc("testmempoolaccept", [final["hex"]])[0]["allowed"]
