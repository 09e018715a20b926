"""A participant's side of a change (the joiner's included): a proposal judged by this member itself
and adopted or refused, the joiner's bond exchange asked for, the proposer's `change_done` and `change_abort`,
and another member's hint of the transition."""

from __future__ import annotations

from frostfed.federation.change_judgement import (
    BAD_PROPOSAL,
    OPERATOR_CODES,
    Decision,
    OperatorDecisions,
    judge_proposal,
)
from frostfed.federation.membership import effects as fx
from frostfed.federation.membership.base import MachineBase, ProposerRun
from frostfed.federation.membership.record import ChangeRecord, State
from frostfed.federation.membership.transitions import _PARTICIPATING, MAX_ABORTS_HEARD, Event
from frostfed.federation.messages import (
    BondRequest,
    BondSign,
    ChangeAbort,
    ChangeAck,
    ChangeDone,
    Kind,
    Message,
    MessageError,
)
from frostfed.federation.transition import Proposal, ProposalRefused, check_proposal

PeerId = bytes
S = State


class ParticipantSide(MachineBase):
    def judged(
        self,
        p: Proposal,
        peer: PeerId,
        proposing: bool,
        tip: int,
        now: float,
        offline: dict[PeerId, float],
        decisions: OperatorDecisions,
        anchor: tuple[str, int] | None = None,
        asked: bool = False,
    ) -> list[fx.Effect]:
        """This member's own judgement of `p` (change_judgement), from its own records and its operator's
        decisions; `anchor`: the old epoch's anchor now (every transition of the change comes after it);
        `asked`: the admission command answered (`decisions.command`)."""
        self.tip = max(self.tip, tip)
        try:
            if not proposing and self.seat.keys is not None:
                check_proposal(p, self.seat.keys, self.settings, tip)
                if self.current is not None or self.proposing:
                    raise ProposalRefused("this member is taking part in another change")
            decision = Decision(True)
            if self.seat.keys is not None:
                decision = judge_proposal(p, self.settings, self.own_records(tip, now, offline), decisions)
                operator_may = decision.code in OPERATOR_CODES and self.settings.admission_command
                if not decision.accept and operator_may and not asked:
                    return [fx.AskAdmission(p, peer, proposing)]
        except ProposalRefused as e:
            decision = Decision(False, BAD_PROPOSAL, str(e))
        if proposing:
            if not decision.accept:
                self.proposing = False
                return [fx.Finished(p.nonce, error=decision.reason)]
            return self._adopt(p, now, Event.PROPOSE, anchor)
        if decision.accept and (p.proposer, p.nonce) in self.aborted:
            return []  # its abort overtook it
        if decision.accept and (why := self.dropped(p)):
            decision = Decision(False, BAD_PROPOSAL, f"this member dropped this change: {why}")
        if decision.accept and (p.proposer, p.nonce) in self.records:  # its record (a set-aside share) stays
            decision = Decision(False, BAD_PROPOSAL, "this member already took part in this change")
        if decision.accept and self.current is not None:
            decision = Decision(False, BAD_PROPOSAL, f"a change to epoch {self.current.epoch} is already in progress")
        if not decision.accept:
            return self._refuse(p, peer, decision)
        return [
            *self._adopt(p, now, Event.ADOPT, anchor),
            fx.send(peer, ChangeAck(p.epoch, True)),
        ]

    def refuse(self, p: Proposal, peer: PeerId, decision: Decision) -> list[fx.Effect]:
        return self._refuse(p, peer, decision)

    def _refuse(self, p: Proposal, peer: PeerId, decision: Decision) -> list[fx.Effect]:
        out: list[fx.Effect] = []
        if self.seat.keys is not None:
            out.append(fx.RecordRefusal("proposal", p.to_body(), decision.code, decision.reason))
        reason = f"{decision.code}: {decision.reason}"[:500]
        return [*out, fx.send(peer, ChangeAck(p.epoch, False, reason))]

    def _adopt(self, p: Proposal, now: float, event: Event, anchor: tuple[str, int] | None) -> list[fx.Effect]:
        keys = self.seat.keys
        rec = self._move(None, event, now, ChangeRecord(p, S.ADOPTED, anchor))
        self.records[rec.key] = rec
        self.current = rec
        self.adopted_at = now
        self.named = {k: v for k, v in self.named.items() if k[0] != p.nonce}
        out: list[fx.Effect] = [fx.LearnPeers(dict(p.addresses)), fx.Persist(rec)]
        if event is Event.PROPOSE:
            old = set(keys.members) if keys is not None else set()
            self.run = ProposerRun(sorted((old | set(p.members)) - {self.me}))
            out += [fx.Send(t, Kind.CHANGE_PROPOSAL, p.to_body()) for t in self.run.targets]
        if self.me in p.members:
            out.append(fx.StartDkg(p.epoch, p.members, p.threshold))
        return out

    def _on_tprop(self, peer: PeerId, msg: Message, now: float) -> list[fx.Effect]:
        p = Proposal.from_message(msg)
        if peer != p.proposer:
            raise MessageError("a proposal must come from its proposer")
        if self.current is not None and self.current.proposal.to_body() == p.to_body():
            return []  # a repeat
        if self.current is not None:
            reason = f"a change to epoch {self.current.epoch} is already in progress"
            return self._refuse(p, peer, Decision(False, BAD_PROPOSAL, reason))
        joiner = self.seat.keys is None  # a joiner: only a join of itself, proposed by a member it was told about
        if joiner and (p.kind != "join" or p.subject != self.me or peer not in self.seat.contacts):
            reason = "this node only joins, and only through the members it knows"
            return self._refuse(p, peer, Decision(False, BAD_PROPOSAL, reason))
        return [fx.Judge(p, peer, False)]

    def _joiner_asked(self, peer: PeerId, epoch: int) -> ChangeRecord | None:
        rec = self._mine(epoch, False)
        if rec is None or rec.proposal.subject != self.me or peer != rec.proposal.proposer:
            return None
        return rec if rec.state in _PARTICIPATING else None

    def _on_bond_req(self, peer: PeerId, msg: Message, now: float) -> list[fx.Effect]:
        rec = self._joiner_asked(peer, BondRequest.decode(msg).epoch)
        return [fx.MakeOffer(rec)] if rec is not None else []

    def _on_bond_sign(self, peer: PeerId, msg: Message, now: float) -> list[fx.Effect]:
        ask = BondSign.decode(msg)
        rec = self._joiner_asked(peer, ask.epoch)
        return [fx.SignBond(rec, ask)] if rec is not None else []

    def _on_tdone(self, peer: PeerId, msg: Message, now: float) -> list[fx.Effect]:
        done = ChangeDone.decode(msg)
        rec = self._mine(done.epoch, False)
        if rec is None or peer != rec.proposal.proposer:
            return []
        txid = done.txid
        if rec.bond is not None and rec.proposal.subject == self.me:  # a legacy joiner input changes the txid
            rec.bond = {**rec.bond, "txid": txid}
        return self.candidate(rec, txid, None, now)

    def _on_tabort(self, peer: PeerId, msg: Message, now: float) -> list[fx.Effect]:
        abort = ChangeAbort.decode(msg)
        nonce = abort.nonce
        if len(self.aborted) >= MAX_ABORTS_HEARD:  # a peer's stream of aborts must not grow without bound
            self.aborted.clear()
        self.aborted.add((peer, nonce))  # only its proposer's abort counts for a proposal
        rec = self.current
        if rec is None or peer != rec.proposal.proposer or nonce != rec.proposal.nonce or peer == self.me:
            return []
        if rec.judged is not None and rec.candidates:
            return []  # a signed transition cannot be called back: the chain decides (Watch, CheckDead)
        return self._drop(rec, Event.ABORT_HEARD, f"the proposer aborted: {abort.reason}", True, now)

    def hint(self, peer: PeerId, epoch: int, txid: str, now: float) -> list[fx.Effect]:
        """A member of the proposed epoch runs it already: its transaction id is a hint, if this member
        holds its share of that epoch and approved the transition (only then are its inputs known)."""
        rec = self.current
        if rec is None or rec.epoch != epoch or peer not in rec.proposal.members or not rec.share_made:
            return []
        if rec.judged is None or len(txid) != 64:
            return []
        try:
            bytes.fromhex(txid)
        except ValueError:
            return []
        return self.candidate(rec, txid, peer, now)
