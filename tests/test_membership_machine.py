"""The membership machine without I/O: every row of its transition table, from the proposer's side, a
participant's and the joiner's, scripted message by message; what a malicious member's messages do
(nothing); and a restart from every state a record can be left in."""

from __future__ import annotations

import dataclasses

import pytest
from bitcoin.core import CTransaction
from membership_script import (
    IDS,
    JOINER,
    SETTINGS,
    TIP,
    approve,
    expel,
    join,
    judged,
    keys,
    leave,
    machine,
    msg,
    only,
    random_txid,
    results,
    sends,
    txid,
)

from frostfed.federation.change_judgement import OperatorDecisions
from frostfed.federation.membership import effects as fx
from frostfed.federation.membership.machine import TRANSITIONS, Event, Machine
from frostfed.federation.membership.record import TERMINAL, ChangeRecord, State
from frostfed.federation.messages import Message, MessageError, Prevout
from frostfed.federation.transition import TransitionPlan

S = State
T = SETTINGS.change_timeout_seconds
SEEN: set[tuple[State | None, Event]] = set()


@pytest.fixture(autouse=True)
def _record_moves(monkeypatch):
    """Every (state, event) any test moves through, for the table's coverage test."""
    original = Machine._move

    def move(self, rec, event, now, new=None):
        SEEN.add((rec.state if rec is not None else None, event))
        return original(self, rec, event, now, new)

    monkeypatch.setattr(Machine, "_move", move)


# -- a participant ---------------------------------------------------------------------------------


def adopted(me=IDS[0], p=None):
    p = p or expel()
    m = machine(me)
    assert only(m.receive(p.proposer, Message("change_proposal", p.to_body()), 0.0), fx.Judge)
    out = judged(m, p, p.proposer)
    return m, p, out


def key_ready(me=IDS[0], p=None):
    m, p, _ = adopted(me, p)
    out = m.dkg_done(results(p)[me], 1, 2.0)
    return m, p, out


def confirming(me=IDS[0], approved=True):
    m, p, _ = key_ready(me)
    tx = txid("the transition")
    if approved:
        m.approved(m.current, [("ab" * 32, 0)], tx, 3.0)
    else:
        m.receive(p.proposer, msg("change_done", epoch=1, txid=tx), 3.0)
    return m, p, tx


def test_a_proposal_judged_and_accepted_is_adopted_and_its_dkg_started() -> None:
    m, p, out = adopted()
    rec = m.current
    assert rec is not None and rec.state is S.ADOPTED and rec.anchor == ("ab" * 32, 0)
    assert [(s.peer, s.body["ok"]) for s in sends(out, "change_ack")] == [(p.proposer, True)]
    assert only(out, fx.StartDkg) == [fx.StartDkg(1, p.members, p.threshold)]
    assert only(out, fx.Persist) and only(out, fx.LearnPeers)


def test_a_proposal_this_member_refuses_is_answered_recorded_and_never_adopted() -> None:
    m = machine(IDS[0])
    p = expel()
    out = judged(m, p, p.proposer, decisions=OperatorDecisions())  # nobody approved it, the target is online
    assert m.current is None and m.records == {}
    [refusal] = only(out, fx.RecordRefusal)
    assert refusal.code == "expel_not_approved"
    [ack] = sends(out, "change_ack")
    assert ack.body["ok"] is False and ack.body["reason"].startswith("expel_not_approved")
    assert not only(out, fx.StartDkg)


def test_an_admission_command_is_asked_only_when_no_operator_decided() -> None:
    m = machine(IDS[0])
    m.settings = dataclasses.replace(SETTINGS, admission_command="/bin/true")
    p = expel()
    out = judged(m, p, p.proposer, decisions=OperatorDecisions())
    assert only(out, fx.AskAdmission) and m.current is None
    out = m.judged(p, p.proposer, False, TIP, 1.0, {}, OperatorDecisions(), None, asked=True)
    assert only(out, fx.RecordRefusal) and m.current is None  # the command did not answer yes: refused


def test_the_dkg_done_makes_the_share_pending_and_tells_the_proposer() -> None:
    m, p, out = key_ready()
    assert m.current.state is S.KEY_READY and m.current.share_made
    [save] = only(out, fx.SaveShare)
    assert save.epoch == 1
    [key] = sends(out, "change_key")
    assert key.peer == p.proposer and key.body["recovery"] == results(p)[IDS[0]].recovery.hex()
    # recovered a second time (a peer's recovery data): still the same state
    m.dkg_done(results(p)[IDS[0]], 1, 2.5)
    assert m.current.state is S.KEY_READY


def test_the_proposers_done_names_a_candidate_and_confirmation_activates() -> None:
    m, _p, tx = confirming(approved=False)
    rec = m.current
    assert rec.state is S.CONFIRMING and rec.candidates == {tx: TIP} and rec.latest == tx
    out = m.tick(4.0, TIP + 1)
    assert only(out, fx.Watch) and only(out, fx.CheckDead)
    assert not only(m.tick(5.0, TIP + 1), fx.CheckDead)  # the dead check runs every 15 s only
    out = m.confirmed(rec, tx, False, TIP + 2, 6.0)
    assert rec.state is S.ACTIVATED and m.current is None
    assert only(out, fx.Activate) == [fx.Activate(rec)]
    assert rec.activation == {"txid": tx, "judged": False, "height": TIP + 2, "time": 6.0, "left": False}


def test_a_member_approving_the_transition_keeps_its_inputs_and_the_txid() -> None:
    m, _p, tx = confirming()
    rec = m.current
    assert rec.judged == [("ab" * 32, 0)] and tx in rec.candidates and rec.state is S.CONFIRMING
    m.approved(rec, [("ab" * 32, 0), ("cd" * 32, 1)], None, 4.0)  # a second request of the same change
    assert rec.state is S.CONFIRMING and len(rec.judged) == 2


def test_an_adopted_member_approving_before_its_dkg_ended() -> None:
    m, p, _ = adopted(IDS[0])
    m.approved(m.current, [("ab" * 32, 0)], None, 2.0)
    assert m.current.state is S.ADOPTED and m.current.judged == [("ab" * 32, 0)]
    m.receive(p.proposer, msg("change_done", epoch=1, txid=txid("t")), 3.0)
    assert m.current.state is S.CONFIRMING
    m.dkg_done(results(p)[IDS[0]], 1, 4.0)  # its share arrives late (recovery data)
    assert m.current.state is S.CONFIRMING and m.current.share_made


def test_the_proposers_abort_drops_the_change_and_sets_its_share_aside() -> None:
    m, p, _ = key_ready()
    rec = m.current
    out = m.receive(p.proposer, msg("change_abort", epoch=1, nonce=p.nonce, reason="no"), 3.0)
    assert rec.state is S.ABORTED and m.current is None and "the proposer aborted: no" in m.last_error
    assert only(out, fx.SetAside) == [fx.SetAside(rec, delete=True, keep_foreign=True)]
    assert only(out, fx.StopDkg) == [fx.StopDkg(1)]
    # the same proposal again (the abort came after it) is not taken up: a proposer retries with a new nonce
    assert judged(m, p, p.proposer) == []
    # nor after a restart, when the abort is forgotten: the record (and the share kept with it) stays
    restarted = machine(IDS[0], [rec])
    out = judged(restarted, p, p.proposer)
    assert restarted.current is None and "already took part" in sends(out, "change_ack")[0].body["reason"]


def test_an_abort_from_the_adopted_state() -> None:
    m, p, _ = adopted()
    m.receive(p.proposer, msg("change_abort", epoch=1, nonce=p.nonce, reason="no"), 3.0)
    assert m.records[(p.proposer, p.nonce)].state is S.ABORTED


def test_an_approved_transition_outlives_the_proposers_abort() -> None:
    m, p, _tx = confirming()
    m.receive(p.proposer, msg("change_abort", epoch=1, nonce=p.nonce, reason="never mind"), 4.0)
    assert m.current is not None and m.current.state is S.CONFIRMING  # the chain decides
    m2, p2, _ = confirming(approved=False)  # only named, never approved here: the abort counts
    m2.receive(p2.proposer, msg("change_abort", epoch=1, nonce=p2.nonce, reason="never mind"), 4.0)
    assert m2.current is None


def test_a_silent_proposer_times_out_and_the_share_stays() -> None:
    m, p, _ = key_ready()
    rec = m.current
    assert m.tick(2 * T, TIP) == []
    out = m.tick(2 * T + 2, TIP)
    assert rec.state is S.TIMED_OUT and "went silent" in rec.reason
    assert only(out, fx.SetAside) == [fx.SetAside(rec, delete=False, keep_foreign=False)]
    m2, _, _ = adopted()
    m2.tick(2 * T + 2, TIP)
    assert m2.records[(p.proposer, p.nonce)].state is S.TIMED_OUT


def test_a_transition_that_can_no_longer_confirm_gives_the_change_up_for_good() -> None:
    m, p, _tx = confirming()
    rec = m.current
    out = m.impossible(rec, "a coin it spends was spent by another transaction", 5.0)
    assert rec.state is S.GIVEN_UP and m.current is None
    assert [r.code for r in only(out, fx.RecordRefusal)] == ["transition_impossible"]
    assert only(out, fx.SetAside) == [fx.SetAside(rec, delete=True, keep_foreign=False)]
    assert "no longer confirm" in m.dropped(p)
    out = judged(m, p, p.proposer)  # proposed again: refused
    [ack] = sends(out, "change_ack")
    assert ack.body["ok"] is False and "dropped this change" in ack.body["reason"]


@pytest.mark.parametrize(
    "where", ["adopted", "key_ready", "confirming", "collecting", "await_offer", "building", "bond_sig", "signing"]
)
def test_the_operator_aborts_the_change_in_any_live_state(where: str) -> None:
    m = {
        "adopted": lambda: adopted()[0],
        "key_ready": lambda: key_ready()[0],
        "confirming": lambda: confirming()[0],
        "collecting": lambda: proposing()[0],
        "await_offer": lambda: joining_proposer("await_offer")[0],
        "building": lambda: leave_keys_collected()[0],
        "bond_sig": lambda: joining_proposer("bond_sig")[0],
        "signing": lambda: signing()[0],
    }[where]()
    rec = m.current
    got, why, out = m.abort_change("it never confirms", 9.0)
    assert got is rec and rec.state is S.GIVEN_UP and "operator" in why
    assert not sends(out)  # local: nothing is sent
    assert [r.code for r in only(out, fx.RecordRefusal)] == ["operator_abort"]
    assert machine(IDS[0]).abort_change(None, 0.0)[0] is None  # nothing in progress: nothing to abort


@pytest.mark.parametrize("state", [S.ABORTED, S.TIMED_OUT, S.GIVEN_UP])
def test_a_dropped_change_found_on_chain_is_taken_over(state: State) -> None:
    share = {"epoch": 1, "group_key": "02" + "11" * 32}
    rec = ChangeRecord(expel(), state, share_made=True, aside=share, reason="dropped")
    m = machine(IDS[0], [rec])
    assert m.current is None
    [check] = only(m.tick(0.0, TIP), fx.CheckSetAside)
    assert check.records == [rec]
    out = m.take_over(rec, txid("t"), TIP + 3, 1.0)
    assert rec.state is S.ACTIVATED and out[0] == fx.RestoreShare(share) and only(out, fx.Activate)
    assert rec.aside is None  # the share is back in the epochs; no second copy
    assert m.take_over(rec, txid("t"), TIP + 3, 1.0) == []  # once


def test_hints_count_only_from_new_members_after_this_members_approval() -> None:
    m, p, _ = key_ready()
    rec = m.current
    assert m.hint(p.members[1], 1, txid("h"), 3.0) == []  # nothing approved yet: only the proposer's word
    m.approved(rec, [("ab" * 32, 0)], None, 3.0)
    assert m.hint(IDS[3], 1, txid("h"), 3.0) == []  # the expelled member is not in the new epoch
    assert m.hint(p.members[1], 2, txid("h"), 3.0) == []  # another epoch
    assert m.hint(p.members[1], 1, "zz" * 32, 3.0) == []
    m.hint(p.members[1], 1, txid("h1"), 3.0)
    m.hint(p.members[1], 1, txid("h2"), 3.0)  # each member's first hint only
    assert list(rec.candidates) == [txid("h1")] and rec.state is S.CONFIRMING


def test_the_proposers_made_up_transactions_are_capped_but_others_still_count() -> None:
    m, p, _ = key_ready()
    rec = m.current
    m.approved(rec, [("ab" * 32, 0)], None, 3.0)
    for i in range(40):
        m.receive(p.proposer, msg("change_done", epoch=1, txid=txid(f"made up {i}")), 3.0)
    assert len(rec.candidates) == 16
    m.hint(p.members[2], 1, txid("the transition"), 3.0)
    assert txid("the transition") in rec.candidates


# -- the malicious member's messages ---------------------------------------------------------------


def test_a_proposal_must_come_from_its_proposer() -> None:
    p = expel(proposer=IDS[1])
    with pytest.raises(MessageError):
        machine(IDS[0]).receive(IDS[2], Message("change_proposal", p.to_body()), 0.0)


def test_a_proposal_for_another_members_leave_is_refused() -> None:
    m = machine(IDS[0])
    p = leave(who=IDS[3], proposer=IDS[2])
    out = judged(m, p, IDS[2])
    assert m.current is None and sends(out, "change_ack")[0].body["ok"] is False
    assert "leave" in only(out, fx.RecordRefusal)[0].reason


def test_one_change_at_a_time() -> None:
    m, p, _ = adopted()
    other = expel(who=IDS[2], proposer=IDS[3], nonce="dd" * 8)
    out = m.receive(IDS[3], Message("change_proposal", other.to_body()), 1.0)
    assert "already in progress" in sends(out, "change_ack")[0].body["reason"]
    assert m.receive(p.proposer, Message("change_proposal", p.to_body()), 1.0) == []  # a repeat: nothing
    # judged while the first was adopted (both arrived before either was judged)
    m2 = machine(IDS[0])
    m2.receive(p.proposer, Message("change_proposal", p.to_body()), 0.0)
    m2.receive(IDS[3], Message("change_proposal", other.to_body()), 0.0)
    judged(m2, p, p.proposer)
    out = judged(m2, other, IDS[3], decisions=approve(IDS[2]))
    assert m2.current.proposal.nonce == p.nonce and sends(out, "change_ack")[0].body["ok"] is False


def test_an_abort_from_anyone_but_the_proposer_changes_nothing() -> None:
    m, p, _ = key_ready()
    for forger in (IDS[2], IDS[3], JOINER):
        assert m.receive(forger, msg("change_abort", epoch=1, nonce=p.nonce, reason="forged"), 3.0) == []
    assert m.receive(p.proposer, msg("change_abort", epoch=1, nonce="ee" * 8, reason="other"), 3.0) == []
    assert m.current is not None and m.current.state is S.KEY_READY
    # a forged abort heard before the proposal does not veto it either
    m2 = machine(IDS[0])
    m2.receive(IDS[3], msg("change_abort", epoch=1, nonce=p.nonce, reason="forged"), 0.0)
    judged(m2, p, p.proposer)
    assert m2.current is not None


def test_a_done_from_anyone_but_the_proposer_names_nothing() -> None:
    m, p, _ = key_ready()
    for forger in (IDS[2], IDS[3], JOINER):
        assert m.receive(forger, msg("change_done", epoch=1, txid=random_txid()), 3.0) == []
    assert m.receive(p.proposer, msg("change_done", epoch=2, txid=random_txid()), 3.0) == []
    assert m.current.candidates == {} and m.current.state is S.KEY_READY


def test_forged_acks_keys_and_bond_messages_do_not_move_the_proposer() -> None:
    m, _p, _ = joining_proposer("collecting")
    rec = m.current
    outsider = "03" + "77" * 32
    assert m.receive(bytes.fromhex(outsider), msg("change_ack", epoch=1, ok=False, reason="forged"), 1.0) == []
    foreign = results(leave())[IDS[0]]  # a valid certificate, of another member list
    assert m.receive(IDS[2], msg("change_key", epoch=1, recovery=foreign.recovery.hex()), 1.0) == []
    assert m.receive(IDS[2], msg("change_key", epoch=1, recovery="00" * 40), 1.0) == []
    assert (
        m.receive(
            IDS[2],
            msg("bond_offer", epoch=1, txid="aa" * 32, vout=0, amount=1, bond_key="bb" * 32, change_script="00"),
            1.0,
        )
        == []
    )
    assert m.receive(JOINER, msg("bond_signed", epoch=1, script_sig="", witness=[]), 1.0) == []
    assert rec.state is S.COLLECTING and m.run.reported == {}


def test_a_participant_ignores_what_only_the_proposer_receives() -> None:
    m, p, _ = key_ready()
    assert m.receive(IDS[2], msg("change_ack", epoch=1, ok=False, reason="x"), 3.0) == []
    r = results(p)[IDS[2]]
    assert m.receive(IDS[2], msg("change_key", epoch=1, recovery=r.recovery.hex()), 3.0) == []
    assert m.current.state is S.KEY_READY


def test_an_approval_for_a_change_that_is_not_the_one_in_progress_records_nothing() -> None:
    m, _p, _ = key_ready()
    stale = ChangeRecord(expel(nonce="ff" * 8), S.KEY_READY)
    assert m.approved(stale, [("ab" * 32, 0)], txid("t"), 3.0) == []
    assert m.current.judged is None and m.current.candidates == {}
    assert m.confirmed(stale, txid("t"), True, TIP, 3.0) == [] and m.current.state is S.KEY_READY


# -- the joiner ------------------------------------------------------------------------------------


def joiner_ready():
    m = machine(JOINER, joiner=True)
    p = join()
    assert only(m.receive(p.proposer, Message("change_proposal", p.to_body()), 0.0), fx.Judge)
    out = judged(m, p, p.proposer)
    assert m.current.state is S.ADOPTED and sends(out, "change_ack")[0].body["ok"]
    assert not only(out, fx.RecordRefusal)  # a joiner keeps no refusals (it has no epoch yet)
    m.dkg_done(results(p)[JOINER], 1, 1.0)
    return m, p


def test_a_joiner_takes_part_only_in_its_own_join_through_a_member_it_knows() -> None:
    m = machine(JOINER, joiner=True)
    out = m.receive(IDS[1], Message("change_proposal", expel().to_body()), 0.0)
    assert sends(out, "change_ack")[0].body["ok"] is False and not only(out, fx.RecordRefusal)
    stranger = "02" + "99" * 32
    p = dataclasses.replace(join(), proposer=bytes.fromhex(stranger))
    out = m.receive(bytes.fromhex(stranger), Message("change_proposal", p.to_body()), 0.0)
    assert sends(out, "change_ack")[0].body["ok"] is False and m.current is None


def test_the_joiner_offers_and_signs_only_when_its_proposer_asks() -> None:
    m, p = joiner_ready()
    rec = m.current
    assert m.receive(IDS[2], msg("bond_request", epoch=1), 2.0) == []
    assert m.receive(p.proposer, msg("bond_request", epoch=1), 2.0) == [fx.MakeOffer(rec)]
    assert m.receive(IDS[2], msg("bond_sign", epoch=1, tx="00", prevouts=[]), 2.0) == []
    [sign] = m.receive(p.proposer, msg("bond_sign", epoch=1, tx="00", prevouts=[]), 2.0)
    assert isinstance(sign, fx.SignBond) and sign.record is rec
    m.bond_recorded(rec, {"txid": "11" * 32, "vout": 1, "sats": p.bond_sats, "locktime": p.bond_locktime})
    m.receive(p.proposer, msg("change_done", epoch=1, txid="22" * 32), 3.0)
    assert rec.bond["txid"] == "22" * 32 and rec.state is S.CONFIRMING  # the final txid (a legacy input)


def test_a_joiner_that_drops_its_join_releases_its_bond_coin() -> None:
    m, p = joiner_ready()
    out = m.receive(p.proposer, msg("change_abort", epoch=1, nonce=p.nonce, reason="no"), 2.0)
    assert only(out, fx.ReleaseBond)


# -- the proposer ----------------------------------------------------------------------------------


def proposing(p=None, me=None):
    p = p or expel(proposer=IDS[1])
    me = me or p.proposer
    m = machine(me)
    assert m.propose(p) == [fx.Judge(p, me, True)] and m.proposing
    out = judged(m, p, me, proposing=True)
    return m, p, out


def leave_keys_collected():
    p = leave()
    m, p, _ = proposing(p)
    for member, r in results(p).items():
        out = m.receive(member, msg("change_key", epoch=1, recovery=r.recovery.hex()), 1.0)
    return m, p, out


def joining_proposer(until: str):
    p = join(proposer=IDS[1])
    m, p, out = proposing(p)
    if until == "collecting":
        return m, p, out
    res = results(p)
    out = m.dkg_done(res[IDS[1]], 1, 1.0)
    for member in (IDS[0], IDS[2], IDS[3], JOINER):
        out = m.receive(member, msg("change_key", epoch=1, recovery=res[member].recovery.hex()), 1.0)
    assert m.current.state is S.AWAIT_OFFER and sends(out, "bond_request")[0].peer == JOINER
    if until == "await_offer":
        return m, p, out
    offer = {
        "txid": "aa" * 32,
        "vout": 0,
        "amount": 500_000,
        "bond_key": "bb" * 32,
        "change_script": "0014" + "00" * 20,
    }
    [build] = only(m.receive(JOINER, msg("bond_offer", epoch=1, **offer), 2.0), fx.BuildTransition)
    assert m.current.state is S.BUILDING and build.offer is not None
    plan = TransitionPlan(CTransaction(), [(0, (0, 0))], 1)
    out = m.built(m.current, plan, [Prevout("ab" * 32, 0, b"\x51", 1000)], 3.0)
    assert m.current.state is S.AWAIT_BOND_SIG
    return m, p, out


def signing():
    m, p, out = leave_keys_collected()
    m.built(m.current, TransitionPlan(None, [(0, (0, 0))]), [], 2.0)  # type: ignore[arg-type]
    return m, p, out


def test_a_proposal_of_its_own_is_judged_by_the_proposer_first() -> None:
    m, p, out = proposing()
    assert m.current.state is S.COLLECTING
    assert sorted(s.peer for s in sends(out, "change_proposal")) == sorted(set(IDS[:4]) - {IDS[1]})
    assert only(out, fx.StartDkg)
    m2 = machine(IDS[1])
    m2.propose(p)
    out = judged(m2, p, IDS[1], proposing=True, decisions=OperatorDecisions())
    assert out == [fx.Finished(p.nonce, error=out[0].error)] and "approve" in out[0].error and not m2.proposing
    assert m2.judged_failed(p, "no chain") == [fx.Finished(p.nonce, error="no chain")]


def test_a_new_members_refusal_ends_the_proposal_with_an_abort_to_all() -> None:
    m, _p, _ = proposing()
    rec = m.current
    assert m.receive(IDS[3], msg("change_ack", epoch=1, ok=False, reason="mine"), 1.0) == []  # the expelled: noted
    out = m.receive(IDS[2], msg("change_ack", epoch=1, ok=False, reason="not approved"), 1.0)
    assert rec.state is S.ABORTED and not m.proposing
    assert sorted(s.peer for s in sends(out, "change_abort")) == sorted(set(IDS[:4]) - {IDS[1]})
    [done] = only(out, fx.Finished)
    assert "refuses: not approved" in done.error


def test_every_new_members_key_lets_the_proposer_build_the_transition() -> None:
    m, p, out = leave_keys_collected()  # a leave: the proposer is not in the new list
    [build] = only(out, fx.BuildTransition)
    assert m.current.state is S.BUILDING and build.offer is None
    assert m.accepted_key(p) == results(p)[IDS[0]].group_key
    out = m.built(m.current, TransitionPlan(None, [(0, (0, 0))]), [], 2.0)  # type: ignore[arg-type]
    assert m.current.state is S.SIGNING and only(out, fx.SignTransition)


def test_the_proposers_own_key_counts_for_itself() -> None:
    m, p, _ = proposing()
    res = results(p)
    m.dkg_done(res[IDS[1]], 1, 1.0)
    assert m.current.state is S.COLLECTING and m.current.share_made
    m.receive(IDS[0], msg("change_key", epoch=1, recovery=res[IDS[0]].recovery.hex()), 1.0)
    out = m.receive(IDS[2], msg("change_key", epoch=1, recovery=res[IDS[2]].recovery.hex()), 1.0)
    assert only(out, fx.BuildTransition) and m.current.state is S.BUILDING


def test_a_join_exchanges_the_bond_before_signing() -> None:
    m, _p, out = joining_proposer("bond_sig")
    [ask] = sends(out, "bond_sign")
    assert ask.peer == JOINER and ask.body["prevouts"] == [
        {"txid": "ab" * 32, "vout": 0, "scriptPubKey": "51", "amount": 1000}
    ]
    out = m.receive(JOINER, msg("bond_signed", epoch=1, script_sig="", witness=["aa"]), 4.0)
    [sign] = only(out, fx.SignTransition)
    assert sign.extra == {1: (b"", [b"\xaa"])} and m.current.state is S.SIGNING


def test_the_signed_transition_is_announced_and_the_proposal_answered() -> None:
    m, _p, _ = signing()
    rec = m.current
    m.approved(rec, [("ab" * 32, 0)], None, 3.0)  # its own signer check
    assert rec.state is S.SIGNING
    out = m.signed(rec, {"txid": "cc" * 32, "signers": ["x"], "tx": "00", "broadcast_failed": "down"}, 4.0)
    assert rec.state is S.CONFIRMING and rec.signed_tx == "00" and "cc" * 32 in rec.candidates
    assert sorted(s.peer for s in sends(out, "change_done")) == sorted(set(IDS[:4]) - {IDS[3]})
    [done] = only(out, fx.Finished)
    assert done.result["txid"] == "cc" * 32 and not m.proposing


def test_the_proposers_own_approval_names_the_transition_before_roast_ends() -> None:
    m, _p, _ = signing()
    rec = m.current
    m.approved(rec, [("ab" * 32, 0)], "cc" * 32, 3.0)
    assert rec.state is S.CONFIRMING
    m.signed(rec, {"txid": "cc" * 32}, 4.0)
    assert rec.state is S.CONFIRMING
    m2, _, _ = signing()
    m2.approved(m2.current, [("ab" * 32, 0)], "cc" * 32, 3.0)
    out = m2.fail("the current members did not sign", 4.0)  # ROAST failed after its own approval
    assert only(out, fx.Finished)[0].error and sends(out, "change_abort")


@pytest.mark.parametrize("where", ["collecting", "await_offer", "bond_sig"])
def test_a_proposer_waits_for_its_peers_no_longer_than_the_timeout(where: str) -> None:
    m, _p, _ = joining_proposer(where)
    rec = m.current
    deadline = m.next_deadline()
    assert deadline is not None and m.tick(deadline - 0.5, TIP) == []
    out = m.tick(deadline + 0.5, TIP)
    assert rec.state is S.ABORTED and "did not complete" in only(out, fx.Finished)[0].error
    assert sends(out, "change_abort")


@pytest.mark.parametrize("where", ["building", "signing"])
def test_a_failed_build_or_signature_aborts(where: str) -> None:
    m, p, _ = leave_keys_collected() if where == "building" else signing()
    assert m.next_deadline() is None  # the build and ROAST end by themselves
    out = m.fail("the anchor coin is not spendable yet", 3.0)
    assert m.records[(p.proposer, p.nonce)].state is S.ABORTED and sends(out, "change_abort")


# -- a restart, from every state a record can be in -------------------------------------------------


@pytest.mark.parametrize("state", list(State))
def test_a_restart_resumes_from_the_record_alone(state: State) -> None:
    p = expel(proposer=IDS[1]) if state.proposing else expel()
    candidates = {txid("t"): TIP} if state is S.CONFIRMING else {}
    activation = {"txid": txid("t"), "judged": True, "height": TIP - 1, "time": 0.0, "left": False}
    rec = ChangeRecord(
        p,
        state,
        anchor=("ab" * 32, 0),
        share_made=True,
        candidates=candidates,
        judged=[("ab" * 32, 0)],
        aside={"epoch": 1} if state in (S.ABORTED, S.TIMED_OUT, S.GIVEN_UP) else None,
        reason="why" if state is S.GIVEN_UP else None,
        activation=activation if state is S.ACTIVATED else None,
    )
    back = ChangeRecord.from_json(rec.to_json())
    assert back == rec
    m = machine(IDS[0] if not state.proposing else IDS[1], [back], now=100.0)
    if state in TERMINAL:
        assert m.current is None
        out = m.tick(100.0, TIP)
        assert bool(only(out, fx.CheckSetAside)) == (back.aside is not None)
        if state is S.GIVEN_UP:
            assert m.dropped(p) == "why"
        if state is S.ACTIVATED:  # the last change: the next one waits the interval
            other = expel(who=IDS[2], proposer=IDS[3], nonce="dd" * 8)
            out = m.judged(other, IDS[3], False, TIP, 100.0, {}, approve(IDS[2]), None)
            assert only(out, fx.RecordRefusal)[0].code == "too_soon"
        return
    assert m.current is back and m.run is None
    if state is S.CONFIRMING:
        assert only(m.tick(100.0 + 3 * T, TIP), fx.Watch)
        return
    assert m.tick(100.0 + T, TIP) == []  # the change's clock restarted with the member
    out = m.tick(100.0 + 2 * T + 1, TIP)
    if state.proposing:  # it proposed, then restarted: it tells the new members the change is off
        assert back.state is S.ABORTED and sorted(s.peer for s in sends(out, "change_abort")) == sorted(
            set(p.members) - {IDS[1]}
        )
    else:
        assert back.state is S.TIMED_OUT


def test_records_keep_what_a_restart_needs() -> None:
    rec = ChangeRecord(
        join(),
        S.CONFIRMING,
        candidates={"aa" * 32: 3},
        latest="aa" * 32,
        signed_tx="00",
        bond={"txid": "bb" * 32, "vout": 1, "sats": 1, "locktime": 2},
        foreign_aside={"epoch": 1},
    )
    assert ChangeRecord.from_json(rec.to_json()) == rec
    assert ChangeRecord.from_json(rec.to_json()).key == (IDS[1], "cc" * 8)


# -- the table -------------------------------------------------------------------------------------


def test_every_row_of_the_table_is_exercised_and_no_other_move_is_possible() -> None:
    """Run every scenario above, then compare the moves made with the table's rows."""
    here = globals()
    for name, fn in list(here.items()):
        if (
            not name.startswith("test_")
            or name == "test_every_row_of_the_table_is_exercised_and_no_other_move_is_possible"
        ):
            continue
        marks = getattr(fn, "pytestmark", [])
        params = [m for m in marks if m.name == "parametrize"]
        if params:
            _argname, values = params[0].args
            for v in values:
                fn(v)
        else:
            fn()
    assert set(TRANSITIONS) >= SEEN
    assert set(TRANSITIONS) - SEEN == set(), sorted((str(s), e.value) for s, e in set(TRANSITIONS) - SEEN)
    with pytest.raises(Exception, match="in state"):
        m = machine(IDS[0])
        m._move(ChangeRecord(expel(), S.ACTIVATED), Event.CONFIRMED, 0.0)
    assert keys().epoch == 0
