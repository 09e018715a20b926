"""The member's wiring of its own judgement: a refused proposal is answered with its reason, recorded in
the store and never adopted (no DKG); an operator's admission makes the same join acceptable; a
transition of a change this member does not take part in is refused and recorded."""

from __future__ import annotations

import pytest
from bitcoin.core import CTransaction
from membership_records import activated, take_part
from test_epoch_activation import _member

from frostfed.bitcoin.rejection import PolicyRejection
from frostfed.federation.config import MembershipSettings
from frostfed.federation.messages import Message
from frostfed.federation.signing_request import SigningRequest
from frostfed.federation.transition import Proposal


def _capture(member) -> list[tuple[bytes, str, dict]]:
    sent: list[tuple[bytes, str, dict]] = []

    async def send(peer, kind, body):
        sent.append((peer, kind, body))

    member._send = send
    return sent


def _expel(ids, proposer, subject) -> Proposal:
    members = [m for m in ids if m != subject]
    return Proposal(
        1, "expel", members, 3, {m: f"127.0.0.1:{9000 + i}" for i, m in enumerate(members)}, proposer, subject
    )


@pytest.mark.asyncio
async def test_an_expulsion_of_an_online_member_is_refused_recorded_and_not_adopted(tmp_path, chain) -> None:
    member, ids = _member(tmp_path, chain, 0)
    sent = _capture(member)
    p = _expel(ids, ids[1], ids[2])
    await member.membership.receive(ids[1], Message("change_proposal", p.to_body()))
    assert member.membership.proposal is None and member.dkg.run is None
    [(peer, kind, body)] = sent
    assert peer == ids[1] and kind == "change_ack" and body["ok"] is False
    assert body["reason"].startswith("expel_not_approved: ")
    [row] = member.store.refusals()
    assert row["stage"] == "proposal" and row["code"] == "expel_not_approved" and row["subject"] == ids[2].hex()
    assert member.store.epoch(1) is None
    member.store.close()


@pytest.mark.asyncio
async def test_the_operators_approval_makes_the_same_expulsion_acceptable(tmp_path, chain) -> None:
    member, ids = _member(tmp_path, chain, 0)
    sent = _capture(member)
    member.store.approve("expel", ids[2])
    p = _expel(ids, ids[1], ids[2])
    await member.membership.receive(ids[1], Message("change_proposal", p.to_body()))
    assert member.membership.proposal is not None and member.membership.proposal.nonce == p.nonce
    assert member.dkg.run is not None and member.dkg.run.epoch == 1  # it takes part: the new list's DKG runs
    assert [k for _, k, b in sent if k == "change_ack" and b["ok"]] == ["change_ack"]
    assert member.store.refusals() == []
    # a second change proposed meanwhile is refused: one change at a time
    other = _expel(ids, ids[3], ids[1])
    member.store.approve("expel", ids[1])
    await member.membership.receive(ids[3], Message("change_proposal", other.to_body()))
    assert member.membership.proposal.nonce == p.nonce
    assert "already in progress" in member.store.refusals()[-1]["reason"]
    member.dkg.stop()
    member.store.close()


@pytest.mark.asyncio
async def test_a_change_right_after_the_last_one_waits_the_interval(tmp_path, chain) -> None:
    member, ids = _member(tmp_path, chain, 0)
    _capture(member)
    member.membership.settings = MembershipSettings(min_change_interval_blocks=3)
    member.store.approve("expel", ids[2])
    activated(member, _expel(ids, ids[2], ids[3]), chain.tip_height() - 1)  # the last change
    await member.membership.receive(ids[1], Message("change_proposal", _expel(ids, ids[1], ids[2]).to_body()))
    assert member.membership.proposal is None
    assert member.store.refusals()[-1]["code"] == "too_soon"
    member.store.close()


@pytest.mark.asyncio
async def test_a_transition_of_a_change_this_member_does_not_take_part_in_is_refused(tmp_path, chain) -> None:
    member, ids = _member(tmp_path, chain, 0)
    p = _expel(ids, ids[1], ids[3])
    req = SigningRequest("t1", 0, "transition", CTransaction(), (), {}, {"proposal": p.to_body(), "recovery": ""})
    with pytest.raises(PolicyRejection) as e:
        member.membership.transition_tasks(req)
    assert e.value.code == "not_this_change"
    [row] = member.store.refusals()
    assert row["stage"] == "transition" and row["nonce"] == p.nonce
    member.store.close()


@pytest.mark.asyncio
async def test_an_approved_transition_is_kept_until_a_coin_it_spends_is_spent_elsewhere(
    tmp_path, regtest, chain
) -> None:
    """A member that approved a transition ignores the proposer's abort (the signed transaction could
    still be broadcast); it gives the change up once another transaction spent one of its coins."""
    member, ids = _member(tmp_path, chain, 0)
    _capture(member)
    member.store.approve("expel", ids[3])
    p = _expel(ids, ids[1], ids[3])
    await member.membership.receive(ids[1], Message("change_proposal", p.to_body()))
    member.dkg.stop()
    txid, vout = regtest.send_to(regtest.rpc("getnewaddress", wallet="miner"), 100_000)
    rec = member.membership.machine.current
    member.membership.approved(rec, [(txid, vout)], "ab" * 32)  # what transition_tasks leaves: never broadcast
    abort = {"epoch": 1, "nonce": p.nonce, "reason": "never mind"}
    await member.membership.receive(ids[1], Message("change_abort", abort))
    assert member.membership.proposal is not None
    await member.membership.tick()
    assert member.membership.proposal is not None  # its coin is unspent: the transition may still come
    spend = regtest.rpc(
        "createrawtransaction", [{"txid": txid, "vout": vout}], {regtest.rpc("getnewaddress", wallet="miner"): 0.0009}
    )
    signed = regtest.rpc("signrawtransactionwithwallet", spend, wallet="miner")["hex"]
    regtest.rpc("sendrawtransaction", signed)
    regtest.mine(1)
    member.membership.machine.last_checks.pop("dead", None)
    await member.membership.tick()
    assert member.membership.proposal is None
    assert "can no longer confirm" in (member.membership.last_error or "")
    member.store.close()


@pytest.mark.asyncio
async def test_an_abort_from_another_member_does_not_veto_a_proposal(tmp_path, chain) -> None:
    """A member that received the proposal first (the attacker) sends `change_abort` with its nonce to the
    others before they judge it: only the proposer's abort counts, or one member could veto every
    change (its own expulsion included)."""
    member, ids = _member(tmp_path, chain, 0)
    sent = _capture(member)
    member.store.approve("expel", ids[2])
    p = _expel(ids, ids[1], ids[2])
    await member.membership.receive(ids[3], Message("change_abort", {"epoch": 1, "nonce": p.nonce, "reason": "forged"}))
    await member.membership.receive(ids[1], Message("change_proposal", p.to_body()))
    assert member.membership.proposal is not None and member.membership.proposal.nonce == p.nonce
    assert [b["ok"] for _, k, b in sent if k == "change_ack"] == [True]
    # the proposer's own abort, even one that overtakes its proposal, still counts
    await member.membership.receive(ids[1], Message("change_abort", {"epoch": 1, "nonce": p.nonce, "reason": "test"}))
    q = _expel(ids, ids[1], ids[2])
    abort = {"epoch": 1, "nonce": q.nonce, "reason": "changed mind"}
    await member.membership.receive(ids[1], Message("change_abort", abort))
    await member.membership.receive(ids[1], Message("change_proposal", q.to_body()))
    assert member.membership.proposal is None
    member.dkg.stop()
    member.store.close()


@pytest.mark.asyncio
async def test_a_new_change_starts_without_the_transition_records_of_an_aborted_one(tmp_path, chain) -> None:
    """The attacker proposes its own leave, has every member judge a transition of it (recording the
    coins each checked and the txid it named) and aborts. A later change to the same epoch number must
    not inherit them: the old inputs would make a member that does not sign the new transition ignore
    it for good, and the old txid would keep a silent proposer's change from ever timing out."""
    member, ids = _member(tmp_path, chain, 0)
    _capture(member)
    store = member.store
    earlier = _expel(ids, ids[3], ids[3])  # its leave, judged by this member and aborted
    earlier.kind = "leave"
    take_part(member, earlier, judged=[("ab" * 32, 0)], candidates={"cd" * 32: 100})
    member.membership.abort_change("the transition never confirms")  # its operator ends it
    assert member.membership.proposal is None
    store.approve("expel", ids[2])
    p = _expel(ids, ids[1], ids[2])
    await member.membership.receive(ids[1], Message("change_proposal", p.to_body()))
    assert member.membership.proposal is not None and member.membership.proposal.nonce == p.nonce
    rec = member.membership.machine.current
    assert rec.judged is None and rec.candidates == {} and rec.latest is None
    member.dkg.stop()
    store.close()
