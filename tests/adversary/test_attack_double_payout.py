"""Double payouts and stranded coins tried by one malicious member of a 5-member federation, at the
default threshold (t = 4) and at t = floor(n/2) + 1 = 3, on member processes and a regtest bitcoind.

The attacker gets honest signatures on two payouts of the same debt (shown to different members,
through two coordinators, or after a forged "failed" completion message). Every payout must spend
the federation's anchor coin, so at most one of them can confirm: after every attempt blocks are
mined and the test checks, with bitcoind, that the miner received exactly what it was owed, and,
from each honest member's own ledger, that paid equals what the chain paid."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import closing
from typing import Any

import pytest

from adversary.harness import (
    AdversaryCluster,
    _db,
    address_script,
    build_tx,
    ledger_reserved,
    nonces_for,
    request_body,
    wait_for,
    wait_for_refusals,
)
from frostfed.bitcoin.chain import ChainRpcError
from frostfed.bitcoin.regtest import RegtestBitcoind
from frostfed.plugin.localcluster import LocalMember
from frostfed.plugin.rpcclient import RpcCallError

pytestmark = pytest.mark.slow

OWED = 30_000


@pytest.fixture(scope="module", params=[4, 3], ids=["t4-default", "t3-majority"])
def fed(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, regtest: RegtestBitcoind
) -> Iterator[AdversaryCluster]:
    t = request.param
    cluster = AdversaryCluster(tmp_path_factory.mktemp(f"double{t}"), regtest, 5, t, attackers=(0,))
    cluster.start()
    yield cluster
    cluster.stop()


# -- what the chain and the honest members say ---------------------------------------------------


def confirmed_to(fed: AdversaryCluster, address: str) -> int:
    return int(fed.btc.rpc("getreceivedbyaddress", address, 1, wallet="miner") * 100_000_000)


def ledger_paid(member: LocalMember, script: bytes) -> int:
    with closing(_db(member, "ledger.sqlite")) as db:
        return int(db.execute("SELECT COALESCE(SUM(sats), 0) FROM payout WHERE script = ?", (script,)).fetchone()[0])


def assert_paid_once(fed: AdversaryCluster, address: str) -> None:
    """On chain the miner got exactly its debt, and every honest ledger says so (once it has read the
    block: the heartbeat reads new blocks every few seconds)."""
    assert confirmed_to(fed, address) == OWED, "the miner was paid more (or less) than it is owed"
    script = address_script(address)
    for m in fed.honest:
        wait_for(lambda m=m: ledger_paid(m, script) == OWED, f"member {m.index}'s ledger to show the payout")


def broadcast_all(fed: AdversaryCluster, txs: list[str]) -> int:
    """Send every signed transaction the attacker holds, then mine; returns how many the node took."""
    taken = 0
    for raw in txs:
        try:
            fed.btc.rpc("sendrawtransaction", raw)
            taken += 1
        except ChainRpcError:  # conflicts with one already sent (or replaced it)
            pass
    fed.btc.mine(1)
    return taken


# -- building the attacker's requests --------------------------------------------------------------


def anchor_and_other(fed: AdversaryCluster) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """The anchor coin, another spendable coin (funded if none), and the canonical change."""
    wait_for(lambda: fed.attacker.evil("anchor")["outpoint"], "the anchor to exist")
    anchor = fed.attacker.evil("anchor")
    coins = fed.attacker.evil("coins")
    if len([c for c in coins if [c["txid"], c["vout"]] != anchor["outpoint"]]) == 0:
        fed.fund_coin(100_000)
        coins = fed.attacker.evil("coins")
    a = next(c for c in coins if [c["txid"], c["vout"]] == anchor["outpoint"])
    other = next(c for c in coins if [c["txid"], c["vout"]] != anchor["outpoint"])
    return a, other, anchor


def payout_request(
    fed: AdversaryCluster, coin: dict[str, Any], miner: bytes, anchor: dict[str, Any], fee: int = 500
) -> dict[str, Any]:
    change = bytes.fromhex(anchor["change_script"])
    tx = build_tx([coin], [(miner, OWED), (change, coin["sats"] - OWED - fee)])
    return request_body(tx, [coin], fed.attacker.evil("keys")["epoch"], change_paths={1: anchor["change_path"]})


def sign(fed: AdversaryCluster, body: dict[str, Any], to: list[LocalMember]) -> dict[str, Any]:
    return fed.attacker.evil("sign", {"request": body, "to": [m.id.hex() for m in to], "self": True})


def try_sign(fed: AdversaryCluster, body: dict[str, Any], to: list[LocalMember]) -> dict[str, Any]:
    """`sign`, when the coin may already be spent in the mempool (then the attacker has nothing to ask)."""
    try:
        return sign(fed, body, to)
    except RpcCallError as e:
        assert "not in the UTXO set" in e.message, e
        return {"signed": False, "shares": [], "reason": e.message}


def owe_new_miner(fed: AdversaryCluster) -> str:
    address = fed.miner_address()
    fed.credit(address, OWED)
    return address


def funded(fed: AdversaryCluster) -> None:
    """Two fresh coins; the first anchor is large enough that its change covers every later payout."""
    fed.fund_coin(1_000_000)
    fed.fund_coin(1_000_000)


# -- the attacks ---------------------------------------------------------------------------------


def test_two_payouts_of_one_debt_shown_to_different_members_never_both_confirm(fed: AdversaryCluster) -> None:
    """(a) The first payout is shown only to some members, the second to the others."""
    funded(fed)
    miner = owe_new_miner(fed)
    script = address_script(miner)
    t = fed.attacker.evil("keys")["threshold"]
    anchor_coin, other, anchor = anchor_and_other(fed)
    first_group, second_group = fed.honest[: t - 1], fed.honest[-(t - 1) :]

    first = payout_request(fed, anchor_coin, script, anchor)
    out1 = sign(fed, first, first_group)
    assert out1["signed"], out1  # a valid payout: the members shown it sign

    # the same debt from another coin, to the others: each refuses (it is not the anchor, or the debt
    # is reserved by the first payout it approved)
    dodge = payout_request(fed, other, script, anchor)
    out2 = sign(fed, dodge, second_group)
    assert not out2["signed"] and out2["shares"] == []
    codes = wait_for_refusals(second_group, dodge["id"])
    assert all(c in ("not_anchor", "already_paid") for c in codes.values()), codes
    assert "not_anchor" in codes.values()
    for m in second_group:
        assert nonces_for(m, dodge["id"]) == []

    # the same debt from the anchor again (a replacement): it may be signed, but it conflicts
    replacement = payout_request(fed, anchor_coin, script, anchor, fee=1_500)
    out3 = sign(fed, replacement, second_group)
    signed = [o["tx"] for o in (out1, out3) if o.get("signed") and o.get("tx")]
    assert broadcast_all(fed, signed) >= 1
    assert_paid_once(fed, miner)

    # and once it confirmed, no member pays that debt again from the new anchor
    anchor_coin, _, anchor = anchor_and_other(fed)
    again = payout_request(fed, anchor_coin, script, anchor)
    out4 = sign(fed, again, fed.honest)
    assert not out4["signed"]
    assert set(wait_for_refusals(fed.honest, again["id"]).values()) == {"already_paid"}
    fed.btc.mine(1)
    assert_paid_once(fed, miner)


def test_one_debt_through_two_coordinators_at_once_is_paid_once(fed: AdversaryCluster) -> None:
    """(b) An honest coordinator and the attacker pay the same debt at the same time, and so do two
    honest coordinators."""
    funded(fed)
    miner = owe_new_miner(fed)
    script = address_script(miner)
    anchor_coin, other, anchor = anchor_and_other(fed)
    results: dict[str, Any] = {}

    def honest_payout(member: LocalMember, key: str) -> None:
        try:
            results[key] = member.call("frost-payout", {"outputs": [{"address": miner, "sats": OWED}]})
        except RpcCallError as e:
            results[key] = e

    worker = threading.Thread(target=honest_payout, args=(fed.honest[0], "honest"))
    worker.start()
    evil_outs = [
        try_sign(fed, payout_request(fed, other, script, anchor), fed.honest[1:]),
        try_sign(fed, payout_request(fed, anchor_coin, script, anchor, fee=2_000), fed.honest[1:]),
    ]
    worker.join(120)
    assert not evil_outs[0]["signed"]  # not the anchor: nobody signs it
    broadcast_all(fed, [o["tx"] for o in evil_outs if o.get("signed") and o.get("tx")])
    assert_paid_once(fed, miner)

    # two honest coordinators at once
    funded(fed)
    miner = owe_new_miner(fed)
    workers = [threading.Thread(target=honest_payout, args=(m, f"h{m.index}")) for m in fed.honest[:2]]
    for w in workers:
        w.start()
    for w in workers:
        w.join(120)
    fed.btc.mine(1)
    assert_paid_once(fed, miner)


def test_a_forged_failed_completion_releases_no_reservation(fed: AdversaryCluster) -> None:
    """(c) Every honest member approves (and reserves) the attacker's payout, a few of them sign it;
    then the attacker tells everyone the request failed. No honest member drops its reservation, and
    a second payout of the debt to the members outside the signing session is refused, or conflicts
    with the first."""
    funded(fed)
    miner = owe_new_miner(fed)
    script = address_script(miner)
    anchor_coin, other, anchor = anchor_and_other(fed)
    t = fed.attacker.evil("keys")["threshold"]
    inside, outside = fed.honest[: t - 1], fed.honest[t - 1 :]
    first = payout_request(fed, anchor_coin, script, anchor)
    # the payout reaches the members outside the session too (as a request of its own, so their
    # presignatures never join a session): they approve and reserve it
    shown = {**first, "id": first["id"] + "-b"}
    fed.attacker.evil("send", {"to": [m.id.hex() for m in outside], "kind": "sign_request", "body": shown})
    out = sign(fed, first, inside)
    assert out["signed"], out
    assert set(out["shares"]) <= {m.id.hex() for m in inside} | {fed.attacker.id.hex()}
    txid = out["txid"]
    for m in fed.honest:
        wait_for(lambda m=m: txid in ledger_reserved(m), f"member {m.index} to reserve the payout")
    for rid in (first["id"], shown["id"]):
        forged = {"id": rid, "status": "failed", "txid": ""}
        fed.attacker.evil("send", {"to": "all", "kind": "sign_done", "body": forged})
    for m, rid in [(m, first["id"]) for m in inside] + [(m, shown["id"]) for m in outside]:
        # the forged message was taken in (the nonce discarded), the ledger kept the reservation
        wait_for(lambda m=m, rid=rid: "issued" not in nonces_for(m, rid), f"member {m.index} to read sign_done")
        assert txid in pending(m)
    for m in outside:
        assert nonces_for(m, shown["id"]) == ["discarded"]  # it never signed, yet keeps the reservation

    dodge = payout_request(fed, other, script, anchor)
    out2 = sign(fed, dodge, outside)
    assert not out2["signed"] and out2["shares"] == []
    assert set(wait_for_refusals(outside, dodge["id"]).values()) == {"already_paid"}
    replacement = payout_request(fed, anchor_coin, script, anchor, fee=1_500)
    out3 = sign(fed, replacement, outside)
    broadcast_all(fed, [o["tx"] for o in (out, out3) if o.get("signed") and o.get("tx")])
    assert_paid_once(fed, miner)
    for m in fed.honest:  # the chain settled the reservation
        wait_for(lambda m=m: txid not in pending(m), f"member {m.index} to settle the reservation")


def pending(member: LocalMember) -> list[str]:
    with closing(_db(member, "ledger.sqlite")) as db:
        return [r[0] for r in db.execute("SELECT txid FROM reserved WHERE settled_by IS NULL")]


@pytest.mark.parametrize("where", ["m/1/2147483647", "ahead", "reused"])
def test_change_where_no_member_looks_is_refused(fed: AdversaryCluster, where: str) -> None:
    """Stranded coins: change at m/1/2147483647 (beyond any scan), ahead of the index every member
    computes, or at the last payout's change address (reuse) is refused; no nonce is spent on it."""
    funded(fed)
    miner = owe_new_miner(fed)
    anchor_coin, _, anchor = anchor_and_other(fed)
    canonical = anchor["change_path"][1]
    assert canonical > 0  # earlier payouts moved the anchor on
    path = [1, {"m/1/2147483647": 2**31 - 1, "ahead": canonical + 3, "reused": canonical - 1}[where]]
    change = bytes.fromhex(fed.attacker.evil("script", {"path": path})["script"])
    tx = build_tx([anchor_coin], [(address_script(miner), OWED), (change, anchor_coin["sats"] - OWED - 500)])
    body = request_body(tx, [anchor_coin], fed.attacker.evil("keys")["epoch"], change_paths={1: path})
    out = sign(fed, body, fed.honest)
    assert not out["signed"] and out["shares"] == []
    assert set(wait_for_refusals(fed.honest, body["id"]).values()) == {"bad_change"}
    for m in fed.honest:
        assert nonces_for(m, body["id"]) == []
    fed.btc.mine(1)
    assert confirmed_to(fed, miner) == 0
    # the honest path still works: the federation pays the debt, change at the canonical index
    result = fed.honest[0].call("frost-payout", {"outputs": [{"address": miner, "sats": OWED}]})
    assert result["status"] == "broadcast"
    fed.btc.mine(1)
    assert_paid_once(fed, miner)
