"""Forged fee bumps: a malicious member of a 4-member federation (t = 3) asks the others to sign a
"replacement" of a stuck honest payout that is anything but a fee bump: one that adds a payee,
changes an amount (even to what the ledger still owes), spends another coin or drops the anchor, pays
a fee above the budget or the fee-rate bound, or replaces a payout the members never signed or
refused.

Each is refused by every honest member on its own record of the payout; asserted from their stores
(the refusal and its code, no nonce, nothing in the fee-budget journal or the ledger's reservations)
and from the chain (the forgery is nowhere, the stuck payout still in the mempool). Then an honest
member bumps the payout, the replacement confirms, and every honest ledger counts the debt paid once."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from contextlib import closing
from typing import Any

import pytest
from bitcoin.core import CTransaction, CTxOut, b2lx
from bitcoin.core.script import CScript

from adversary.harness import (
    AdversaryCluster,
    address_script,
    build_tx,
    ledger_reserved,
    nonces_for,
    request_body,
    request_record,
    wait_for,
    wait_for_refusals,
)
from frostfed.bitcoin.regtest import RegtestBitcoind
from frostfed.plugin.localcluster import LocalMember

pytestmark = pytest.mark.slow

FEE_BUDGET = 6_000
OWED = 30_000
PAID = 20_000


@pytest.fixture(scope="module")
def fed(tmp_path_factory: pytest.TempPathFactory, regtest: RegtestBitcoind) -> Iterator[AdversaryCluster]:
    policy = {"max_feerate": 200.0, "max_fee_sats": 50_000, "fee_budget_sats": FEE_BUDGET, "fee_budget_blocks": 144}
    cluster = AdversaryCluster(tmp_path_factory.mktemp("advbump"), regtest, 4, 3, attackers=(0,), policy=policy)
    cluster.start()
    yield cluster
    cluster.stop()


def payload(member: LocalMember, rid: str) -> dict[str, Any]:
    """The request body as the member recorded it (what it judged)."""
    with closing(sqlite3.connect(f"file:{member.data_dir / 'frostfed.sqlite'}?mode=ro", uri=True)) as db:
        return json.loads(db.execute("SELECT payload FROM requests WHERE id = ?", (rid,)).fetchone()[0])


def budget_txids(member: LocalMember) -> set[str]:
    with closing(sqlite3.connect(f"file:{member.data_dir / 'frostfed.sqlite'}?mode=ro", uri=True)) as db:
        return {r[0] for r in db.execute("SELECT txid FROM fee_budget")}


def on_chain_or_mempool(btc: RegtestBitcoind, txid: str) -> bool:
    if txid in btc.rpc("getrawmempool"):
        return True
    tip = btc.rpc("getblockcount")
    return any(txid in btc.rpc("getblock", btc.rpc("getblockhash", h))["tx"] for h in range(max(0, tip - 20), tip + 1))


def forged_bump(
    original: dict[str, Any],
    tx: CTransaction,
    coins: list[dict[str, Any]],
    change_index: int | None,
    replaces: str,
) -> dict[str, Any]:
    change_path = next(iter(original["change_paths"].values()))
    changes = {change_index: change_path} if change_index is not None else {}
    body = request_body(tx, coins, original["epoch"], kind="bump", change_paths=changes)
    body["replaces"] = replaces
    return body


def test_forged_bumps_are_refused_and_the_honest_bump_pays_the_debt_once(fed: AdversaryCluster) -> None:
    fed.fund(200_000, via=fed.honest[0])
    other = fed.fund_coin(60_000)  # another federation coin, confirmed (before the payout: a block confirms all)
    miner = fed.miner_address()
    fed.credit(miner, OWED)
    stuck = fed.honest[0].call("frost-payout", {"outputs": [{"address": miner, "sats": PAID}], "feerate": 1})
    assert stuck["status"] == "broadcast", stuck
    for m in fed.honest:  # every honest member recorded the payout (a slow one refuses it: its coin is spent)
        wait_for(lambda m=m: request_record(m, stuck["id"]), f"member {m.index} to answer")
    original = payload(fed.honest[0], stuck["id"])
    tx = CTransaction.deserialize(bytes.fromhex(original["tx"]))
    (change_index,) = (int(k) for k in original["change_paths"])
    assert change_index == 1
    anchor = {"txid": b2lx(tx.vin[0].prevout.hash), "vout": tx.vin[0].prevout.n, "path": original["input_paths"][0]}
    pay, change = tx.vout[0], tx.vout[1]
    miner_script, change_script = bytes(pay.scriptPubKey), bytes(change.scriptPubKey)
    theirs = address_script(fed.miner_address())  # the attacker's own address: no ledger owes it anything

    def with_outputs(outputs: list[tuple[bytes, int]], coins: list[dict[str, Any]] | None = None) -> CTransaction:
        return build_tx(coins or [anchor], outputs)

    # a payout the attacker pays itself with, from the other coin, which every honest member refuses
    refused_payout = request_body(build_tx([other], [(theirs, other["sats"] - 500)]), [other], original["epoch"])
    fed.attacker.evil("send", {"to": "all", "kind": "sign_request", "body": refused_payout})
    assert set(wait_for_refusals(fed.honest, refused_payout["id"]).values()) == {"unknown_output"}

    forgeries = {
        "add a payee": (
            forged_bump(
                original,
                with_outputs([(miner_script, PAID), (theirs, 5_000), (change_script, change.nValue - 5_400)]),
                [anchor],
                2,
                stuck["id"],
            ),
            "bump_outputs_changed",
        ),
        "pay the miner more (the ledger still owes it)": (
            forged_bump(
                original,
                with_outputs([(miner_script, PAID + 5_000), (change_script, change.nValue - 5_400)]),
                [anchor],
                1,
                stuck["id"],
            ),
            "bump_amount_changed",
        ),
        "spend another coin too": (
            forged_bump(
                original,
                with_outputs(
                    [(miner_script, PAID), (change_script, change.nValue + other["sats"] - 400)], [anchor, other]
                ),
                [anchor, other],
                1,
                stuck["id"],
            ),
            "bump_inputs_changed",
        ),
        "drop the anchor": (
            forged_bump(
                original,
                with_outputs([(miner_script, PAID), (change_script, other["sats"] - PAID - 600)], [other]),
                [other],
                1,
                stuck["id"],
            ),
            "bump_inputs_changed",
        ),
        "a fee above the budget": (
            forged_bump(
                original,
                with_outputs([(miner_script, PAID), (change_script, change.nValue - FEE_BUDGET)]),
                [anchor],
                1,
                stuck["id"],
            ),
            "fee_budget_exceeded",
        ),
        "a fee rate above the policy's bound": (
            forged_bump(
                original,
                with_outputs([(miner_script, PAID), (change_script, change.nValue - 30_000)]),
                [anchor],
                1,
                stuck["id"],
            ),
            "fee_too_high",
        ),
        "a payout never sent to anyone": (
            forged_bump(
                original,
                with_outputs([(miner_script, PAID), (change_script, change.nValue - 400)]),
                [anchor],
                1,
                "evil-never-sent",
            ),
            "unknown_original",
        ),
        "a payout every honest member refused": (
            forged_bump(
                original,
                build_tx([other], [(theirs, other["sats"] - 1_000)]),
                [other],
                None,
                refused_payout["id"],
            ),
            "original_not_approved",
        ),
    }
    for body, _ in forgeries.values():
        fed.attacker.evil("send", {"to": "all", "kind": "sign_request", "body": body})
    for what, (body, code) in forgeries.items():
        codes = wait_for_refusals(fed.honest, body["id"])
        assert codes == {m.index: code for m in fed.honest}, (what, codes)
        txid = b2lx(CTransaction.deserialize(bytes.fromhex(body["tx"])).GetTxid())
        for m in fed.honest:  # no nonce, no approval, no reservation
            assert nonces_for(m, body["id"]) == [], what
            assert txid not in budget_txids(m) and txid not in ledger_reserved(m), what
        assert not on_chain_or_mempool(fed.btc, txid), what
    assert stuck["txid"] in fed.btc.rpc("getrawmempool")

    # the honest bump: coordinated by another honest member, signed by the three honest ones
    bump = fed.honest[1].call("frost-bumpfee", [stuck["id"], 5])
    assert bump["status"] == "broadcast", bump
    assert len(bump["signers"]) == 3 and fed.attacker.id.hex() not in bump["signers"]
    assert stuck["txid"] not in fed.btc.rpc("getrawmempool")
    fed.btc.mine(1)
    assert fed.received(miner) == PAID
    assert not on_chain_or_mempool(fed.btc, stuck["txid"]) and on_chain_or_mempool(fed.btc, bump["txid"])
    for m in fed.honest:
        wait_for(lambda m=m: m.call("frost-ledger", [miner])["debts"][0]["paid"] == PAID, f"{m.index}'s ledger")
        debt = m.call("frost-ledger", [miner])["debts"][0]
        assert (debt["reserved"], debt["available"]) == (0, OWED - PAID)
        assert [p["txid"] for p in m.call("frost-ledger-history", [miner])["payouts"]] == [bump["txid"]]
    assert CTxOut(PAID, CScript(miner_script)) in CTransaction.deserialize(bytes.fromhex(bump["tx"])).vout
    fed.honest_payout_succeeds(via=2)  # the anchor moved on with the bump's change
