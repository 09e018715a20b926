"""Takeover through membership, by one malicious member of a 5-member federation (t = 3), on member
processes and a regtest bitcoind: it expels an online honest member (and one offline for a few
seconds), admits joiners it controls, proposes someone else's leave, runs a DKG, aborts it and asks for
the transition to that key anyway, and proposes changes at once or too fast. Every honest member
refuses each with a reason it records itself; no honest member holds a share of a new key from a
refused change or makes a partial signature for its transition; the coins stay at the federation's
key."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator, Sequence
from contextlib import closing
from decimal import Decimal
from typing import Any

import pytest
from coincurve import PrivateKey

from adversary.harness import (
    MEMBERSHIP,
    AdversaryCluster,
    address_script,
    build_tx,
    log_count,
    nonces_for,
    request_body,
    unspent,
    wait_for,
    wait_for_refusals,
)
from frostfed.bitcoin.regtest import RegtestBitcoind
from frostfed.bitcoin.taproot import p2tr_address
from frostfed.federation.dkg_run import chain_code_of
from frostfed.federation.epoch_keys import EpochKeys
from frostfed.federation.messages import Message
from frostfed.federation.transition import TRANSITION_PATH, Proposal
from frostfed.plugin.localcluster import LocalMember, wait_for_epoch

pytestmark = pytest.mark.slow



@pytest.fixture(scope="module")
def fed(tmp_path_factory: pytest.TempPathFactory, regtest: RegtestBitcoind) -> Iterator[AdversaryCluster]:
    cluster = AdversaryCluster(tmp_path_factory.mktemp("advm5"), regtest, 5, 3, attackers=(0,), membership=MEMBERSHIP)
    cluster.start()
    cluster.fund_coin(300_000)
    yield cluster
    cluster.stop()


# -- what honest members recorded --------------------------------------------------------------


def refused_changes(member: LocalMember) -> list[dict[str, Any]]:
    with closing(sqlite3.connect(f"file:{member.data_dir / 'frostfed.sqlite'}?mode=ro", uri=True, timeout=10)) as db:
        rows = db.execute("SELECT stage, nonce, code, reason, kind, subject FROM refusals ORDER BY id").fetchall()
    return [dict(zip(("stage", "nonce", "code", "reason", "kind", "subject"), r, strict=True)) for r in rows]


def wait_for_change_refusals(members: Sequence[LocalMember], nonce: str, stage: str = "proposal") -> dict[int, dict]:
    """Each member's own record of its refusal of the proposal `nonce`."""

    def found() -> dict[int, dict] | None:
        got = {
            m.index: next((r for r in refused_changes(m) if r["nonce"] == nonce and r["stage"] == stage), None)
            for m in members
        }
        return got if all(got.values()) else None

    return wait_for(found, f"members {[m.index for m in members]} to refuse {nonce}")


def epochs_held(member: LocalMember) -> list[int]:
    """The epochs whose key share this member holds (a DKG share of a new key shows as 'pending')."""
    with closing(sqlite3.connect(f"file:{member.data_dir / 'frostfed.sqlite'}?mode=ro", uri=True, timeout=10)) as db:
        return [r[0] for r in db.execute("SELECT epoch FROM epochs ORDER BY epoch")]


def last_tip(member: LocalMember) -> int:
    """The tip at this member's last look for the transition among the candidates it was told of."""
    with closing(sqlite3.connect(f"file:{member.data_dir / 'frostfed.sqlite'}?mode=ro", uri=True, timeout=10)) as db:
        rows = db.execute("SELECT record FROM changes").fetchall()
    return max((json.loads(r[0]).get("watched_tip", -1) for r in rows), default=-1)


def federation_coins(fed: AdversaryCluster) -> list[dict[str, Any]]:
    return fed.attacker.evil("coins")


def assert_untouched(fed: AdversaryCluster, coins: list[dict[str, Any]]) -> None:
    """No honest member holds a share of any new epoch's key; every coin is still unspent at the key."""
    for m in fed.honest:
        assert epochs_held(m) == [0], m.index
        assert m.call("frost-status")["epoch"] == 0
    assert coins and all(unspent(fed.btc, c) for c in coins)


def joiner_id(seed: int) -> str:
    return PrivateKey(bytes([seed]) * 32).public_key.format().hex()


# -- the attacks ---------------------------------------------------------------------------------


def test_the_attacker_alone_cannot_expel_an_online_honest_member(fed: AdversaryCluster) -> None:
    coins = federation_coins(fed)
    victim = fed.honest[0]
    out = fed.attacker.evil("propose", {"kind": "expel", "subject": victim.id.hex(), "to": "all"})
    nonce = out["proposal"]["nonce"]
    refused = wait_for_change_refusals(fed.honest, nonce)
    assert {r["code"] for r in refused.values()} == {"expel_not_approved"}
    assert all(victim.id.hex() in r["reason"] and "did not approve" in r["reason"] for r in refused.values())
    acks = wait_for(lambda: (a := fed.attacker.evil("acks", {"epoch": 1})) and len(a) == 4 and a, "4 answers")
    assert all(a["ok"] is False and a["reason"].startswith("expel_not_approved") for a in acks.values())
    # it asks for the transition all the same: no honest member signs a change it never took part in
    tx = build_tx(coins, [(address_script(fed.miner_address()), sum(c["sats"] for c in coins) - 500)])
    body = request_body(tx, coins, 0, kind="transition")
    body["transition"] = {"proposal": out["proposal"], "recovery": "", "bond_key": ""}
    signed = fed.attacker.evil("sign", {"request": body, "to": "all", "self": True})
    assert signed["signed"] is False and signed["shares"] == []
    assert wait_for_refusals(fed.honest, body["id"]) == {m.index: "not_this_change" for m in fed.honest}
    for m in fed.honest:
        assert nonces_for(m, body["id"]) == []
    for shown in (fed.honest[1].call("frost-epochs"), fed.honest[1].call("frost-requests")):
        assert any(r["nonce"] == nonce and r["code"] == "expel_not_approved" for r in shown["refused_changes"])
        assert any(r["stage"] == "transition" and r["code"] == "not_this_change" for r in shown["refused_changes"])
    assert_untouched(fed, coins)


def test_joiners_the_attacker_controls_are_not_admitted(fed: AdversaryCluster) -> None:
    coins = federation_coins(fed)
    stranger, cheap, tiny = joiner_id(71), joiner_id(72), joiner_id(73)
    for m in fed.honest:  # the honest operators admitted `cheap`, asking a bond of 500,000 sats
        m.call("frost-admit", [cheap, 500_000])
    unknown = fed.attacker.evil("propose", {"kind": "join", "subject": stranger, "bond_sats": 60_000})
    low = fed.attacker.evil("propose", {"kind": "join", "subject": cheap, "bond_sats": 60_000})
    dust = fed.attacker.evil("propose", {"kind": "join", "subject": tiny, "bond_sats": 1_000})
    for out, code, said in (
        (unknown, "not_admitted", "is not admitted by this member's operator"),
        (low, "bond_below_minimum", "below this member's minimum of 500000 sats"),
        (dust, "bad_proposal", "below the minimum of 50000"),
    ):
        refused = wait_for_change_refusals(fed.honest, out["proposal"]["nonce"])
        assert {r["code"] for r in refused.values()} == {code}
        assert all(said in r["reason"] for r in refused.values()), refused
    for m in fed.honest:
        m.call("frost-revoke", [cheap])
    assert_untouched(fed, coins)


def test_a_leave_proposed_for_someone_else_is_refused(fed: AdversaryCluster) -> None:
    coins = federation_coins(fed)
    victim = fed.honest[1]
    out = fed.attacker.evil("propose", {"kind": "leave", "subject": victim.id.hex()})
    refused = wait_for_change_refusals(fed.honest, out["proposal"]["nonce"])
    assert all("only a member itself can propose its leave" in r["reason"] for r in refused.values())
    assert_untouched(fed, coins)


def test_a_transition_to_an_aborted_changes_key_is_refused(fed: AdversaryCluster) -> None:
    """The attacker proposes its own leave (every honest member takes part: a leaver needs nobody's
    approval), lets the new list's DKG finish, aborts the change, then asks for the transition."""
    coins = federation_coins(fed)
    run = fed.attacker.evil("dkg_abort", {"kind": "leave", "subject": fed.attacker.id.hex(), "timeout": 60})
    nonce = run["proposal"]["nonce"]
    wait_for(lambda: all(m.call("frost-epochs")["change"]["in_progress"] is None for m in fed.honest), "the abort")
    out = fed.attacker.evil("transition", {"proposal": run["proposal"], "recovery": run["recovery"], "to": "all"})
    assert out["signed"] is False and out["shares"] == [] and not out["broadcast"]
    assert wait_for_refusals(fed.honest, out["id"]) == {m.index: "not_this_change" for m in fed.honest}
    for m in fed.honest:
        assert nonces_for(m, out["id"]) == []
    refused = wait_for_change_refusals(fed.honest, nonce, stage="transition")
    assert {r["code"] for r in refused.values()} == {"not_this_change"}
    assert_untouched(fed, coins)


def test_two_changes_at_once_are_refused(fed: AdversaryCluster) -> None:
    coins = federation_coins(fed)
    first = fed.attacker.evil("propose", {"kind": "leave", "subject": fed.attacker.id.hex()})
    wait_for(
        lambda: all((m.call("frost-epochs")["change"]["in_progress"] or {}).get("epoch") == 1 for m in fed.honest),
        "every honest member to take part in the first change",
    )
    second = fed.attacker.evil("propose", {"kind": "leave", "subject": fed.attacker.id.hex()})
    refused = wait_for_change_refusals(fed.honest, second["proposal"]["nonce"])
    assert all("already in progress" in r["reason"] for r in refused.values())
    body = {"epoch": 1, "nonce": first["proposal"]["nonce"], "reason": "done"}
    fed.attacker.evil("send", {"kind": "change_abort", "body": body, "to": "all"})
    wait_for(lambda: all(m.call("frost-epochs")["change"]["in_progress"] is None for m in fed.honest), "the abort")
    assert_untouched(fed, coins)


def test_a_transition_that_strands_coins_or_cannot_confirm_is_refused(fed: AdversaryCluster) -> None:
    """The attacker proposes its own leave (every honest member takes part), lets the new list's DKG
    finish and asks for transitions to the right new key that are wrong otherwise: one moving the anchor
    alone (every other coin would stay at the old key, which no member signs for once the new epoch is
    active), and ones that could never confirm (a lock time far ahead, a relative lock in nSequence, a
    version no node relays, a fee below the relay fee), which would hold the change open for good."""
    fed.fund_coin(120_000, confirmations=2)
    coins = federation_coins(fed)
    assert len(coins) >= 2
    run = fed.attacker.evil(
        "dkg_abort", {"kind": "leave", "subject": fed.attacker.id.hex(), "timeout": 60, "abort_to": []}
    )
    nonce = run["proposal"]["nonce"]
    assert all((m.call("frost-epochs")["change"]["in_progress"] or {}).get("epoch") == 1 for m in fed.honest)
    tip = fed.btc.rpc("getblockcount")
    attacks = (
        ({"only_anchor": True}, "coins_left_behind"),
        ({"locktime": tip + 500}, "locktime_in_future"),
        ({"sequence": 0xFFFF}, "nonstandard_sequence"),
        ({"version": 0x7FFFFFFF}, "nonstandard_version"),
        ({"fee_rate": 0.0}, "fee_too_low"),  # 1 sat: below the relay fee, it never leaves a node
    )
    for extra, code in attacks:
        out = fed.attacker.evil(
            "transition", {"proposal": run["proposal"], "recovery": run["recovery"], "to": "all", **extra}
        )
        assert out["signed"] is False and out["shares"] == [] and not out["broadcast"], extra
        assert wait_for_refusals(fed.honest, out["id"]) == {m.index: code for m in fed.honest}, extra
        for m in fed.honest:
            assert nonces_for(m, out["id"]) == [], (extra, m.index)
    refused = wait_for_change_refusals(fed.honest, nonce, stage="transition")
    assert {r["code"] for r in refused.values()} <= {code for _, code in attacks}
    abort = {"epoch": 1, "nonce": nonce, "reason": "done"}
    fed.attacker.evil("send", {"kind": "change_abort", "body": abort, "to": "all"})
    wait_for(lambda: all(m.call("frost-epochs")["change"]["in_progress"] is None for m in fed.honest), "the abort")
    assert_untouched(fed, coins)


def test_a_member_briefly_offline_is_not_expelled_on_the_attackers_word(fed: AdversaryCluster) -> None:
    coins = federation_coins(fed)
    victim = fed.honest[2]
    judges = [m for m in fed.honest if m is not victim]
    victim.kill()

    def offline_for(m: LocalMember) -> float:
        return m.call("frost-epochs")["offline_seconds"].get(victim.id.hex(), 0.0)

    wait_for(lambda: all(offline_for(m) >= 2 for m in judges), "the honest members to see the victim offline")
    out = fed.attacker.evil("propose", {"kind": "expel", "subject": victim.id.hex()})
    refused = wait_for_change_refusals(judges, out["proposal"]["nonce"])
    assert {r["code"] for r in refused.values()} == {"expel_not_approved"}
    assert all("not the 600 s it requires" in r["reason"] for r in refused.values()), refused
    victim.start()
    victim.wait_ready()
    wait_for(lambda: all(offline_for(m) == 0 for m in judges), "the honest members to see the victim back")
    wait_for_change_refusals([victim], out["proposal"]["nonce"])  # it hears the proposal once back, and refuses
    assert_untouched(fed, coins)


def test_a_payment_to_the_new_key_named_by_the_proposer_does_not_retire_the_old_epoch(fed: AdversaryCluster) -> None:
    """The attacker proposes its own leave, lets the new list's DKG finish (their `change_key` tell it the
    new key), never asks for the transition, pays the new key from a wallet and names that payment in
    `change_done`. No honest member judged a transition, and the coins never moved: activating the new
    epoch would strand every coin at the retired key."""
    coins = federation_coins(fed)
    run = fed.attacker.evil(
        "dkg_abort", {"kind": "leave", "subject": fed.attacker.id.hex(), "timeout": 60, "abort_to": []}
    )
    p = Proposal.from_message(Message("change_proposal", run["proposal"]))
    recovery = bytes.fromhex(run["recovery"])
    new_keys = EpochKeys(
        1, p.members, p.threshold, bytes.fromhex(run["group_key"]), chain_code_of(recovery), [], "regtest"
    )
    address = p2tr_address(new_keys.output_key(TRANSITION_PATH), "regtest")
    raw = fed.btc.rpc("createrawtransaction", [], [{address: Decimal("0.0002")}])
    funded = fed.btc.rpc("fundrawtransaction", raw, {"changePosition": 1}, wallet="miner")  # the new key first
    signed = fed.btc.rpc("signrawtransactionwithwallet", funded["hex"], wallet="miner")
    txid = fed.btc.rpc("sendrawtransaction", signed["hex"])
    fed.btc.mine(1)
    fed.attacker.evil("send", {"kind": "change_done", "body": {"epoch": 1, "txid": txid}, "to": "all"})
    wait_for(
        lambda: all(m.call("frost-epochs")["change"]["in_progress"]["transition_txid"] == txid for m in fed.honest),
        "every honest member to take the txid as a candidate",
    )

    def looked(m: LocalMember, height: int) -> bool:  # (or it took the new epoch: the attack worked)
        return last_tip(m) >= height or m.call("frost-status")["epoch"] != 0

    for _ in range(2):  # a full look at the candidate ends before the look at the second block begins
        fed.btc.mine(1)
        tip = fed.btc.rpc("getblockcount")
        wait_for(lambda h=tip: all(looked(m, h) for m in fed.honest), f"every honest member to look at block {tip}")
    for m in fed.honest:
        assert m.call("frost-status")["epoch"] == 0, m.index
        assert log_count(m, f"transaction {txid} does not spend epoch 0's anchor coin; ignored"), m.index
    abort = {"epoch": 1, "nonce": p.nonce, "reason": "done"}
    fed.attacker.evil("send", {"kind": "change_abort", "body": abort, "to": "all"})
    wait_for(lambda: all(m.call("frost-epochs")["change"]["in_progress"] is None for m in fed.honest), "the abort")
    for m in fed.honest:  # (the new key's share is kept: a transaction was named, it might still be real)
        assert m.call("frost-status")["epoch"] == 0, m.index
    assert coins and all(unspent(fed.btc, c) for c in coins)


def test_a_change_right_after_the_last_one_waits_the_interval(fed: AdversaryCluster) -> None:
    """An honest member leaves (a real change, confirmed); the attacker's next proposal, one every
    member would otherwise take part in, is refused until the configured 6 blocks have passed."""
    leaver = fed.honest[3]
    r = leaver.call("frost-leave")
    fed.btc.mine(1)
    fed.members.remove(leaver)
    fed.honest.remove(leaver)
    wait_for_epoch(fed.members, 60, epoch=1)
    leaver.stop()
    soon = fed.attacker.evil("propose", {"kind": "leave", "subject": fed.attacker.id.hex()})
    refused = wait_for_change_refusals(fed.honest, soon["proposal"]["nonce"])
    assert {x["code"] for x in refused.values()} == {"too_soon"}
    assert all("waits 6 block(s) between changes" in x["reason"] for x in refused.values())
    fed.btc.mine(6)
    later = fed.attacker.evil("propose", {"kind": "leave", "subject": fed.attacker.id.hex()})
    wait_for(
        lambda: all((m.call("frost-epochs")["change"]["in_progress"] or {}).get("epoch") == 2 for m in fed.honest),
        "every honest member to take part once the interval has passed",
    )
    assert all(later["proposal"]["nonce"] not in {x["nonce"] for x in refused_changes(m)} for m in fed.honest)
    body = {"epoch": 2, "nonce": later["proposal"]["nonce"], "reason": "done"}
    fed.attacker.evil("send", {"kind": "change_abort", "body": body, "to": "all"})
    assert r["epoch"] == 1 and all(m.call("frost-status")["epoch"] == 1 for m in fed.honest)


def test_an_abort_after_the_transition_was_signed_strands_no_coin(fed: AdversaryCluster) -> None:
    """The attacker proposes its own leave, has the transition signed, aborts the change at every
    member, and only then broadcasts it: the honest members, who approved the transition, kept the
    change and take over the new epoch from the chain; it pays."""
    epoch = fed.attacker.evil("keys")["epoch"]
    run = fed.attacker.evil("dkg_abort", {"kind": "leave", "subject": fed.attacker.id.hex(), "abort_to": []})
    nonce = run["proposal"]["nonce"]
    signed = fed.attacker.evil(
        "transition", {"proposal": run["proposal"], "recovery": run["recovery"], "to": "all", "broadcast": False}
    )
    assert signed["signed"] is True and len(signed["shares"]) >= 2, signed
    body = {"epoch": epoch + 1, "nonce": nonce, "reason": "never mind"}
    fed.attacker.evil("send", {"kind": "change_abort", "body": body, "to": "all"})
    fed.btc.rpc("sendrawtransaction", signed["tx"])
    fed.btc.mine(1)
    key = wait_for_epoch(fed.honest, 60, epoch=epoch + 1)
    assert key == run["group_key"]
    for m in fed.honest:
        assert epoch + 1 in epochs_held(m)
    miner = fed.miner_address()
    fed.credit(miner, 15_000, fed.honest)
    payout = fed.honest[0].call("frost-payout", {"outputs": [{"address": miner, "sats": 15_000}]})
    fed.btc.mine(1)
    assert payout["status"] == "broadcast" and fed.received(miner) == 15_000
