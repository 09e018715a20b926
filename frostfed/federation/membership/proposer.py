"""The proposer's side of a change: its own proposal (judged by itself first), every new member's key,
the joiner's bond, the transition built and signed, and the abort when any step fails."""

from __future__ import annotations

from typing import Any

from frostfed.bitcoin.rejection import PolicyRejection
from frostfed.federation.membership import effects as fx
from frostfed.federation.membership.base import MachineBase
from frostfed.federation.membership.record import ChangeRecord, State
from frostfed.federation.membership.transitions import _BEFORE_SIGNING, TIMED_STATES, Event
from frostfed.federation.messages import (
    MAX_EPOCH,
    BondRequest,
    BondSign,
    BondSigned,
    ChangeAbort,
    ChangeAck,
    ChangeDone,
    ChangeKey,
    Message,
    Prevout,
)
from frostfed.federation.transition import BondOffer, Proposal, verify_new_epoch_key

PeerId = bytes
S = State


class ProposerSide(MachineBase):
    def propose(self, p: Proposal) -> list[fx.Effect]:
        """This member's own proposal, to be judged by itself first (the driver answers `Judge`)."""
        self.proposing = True
        return [fx.Judge(p, self.me, True)]

    def judged_failed(self, p: Proposal, reason: str) -> list[fx.Effect]:
        """This member could not judge its own proposal (its chain source failed)."""
        self.proposing = False
        return [fx.Finished(p.nonce, error=reason)]

    def _on_tack(self, peer: PeerId, msg: Message, now: float) -> list[fx.Effect]:
        ack = ChangeAck.decode(msg)
        rec, run = self._mine(ack.epoch, True), self.run
        if rec is None or run is None or ack.ok:
            return []
        reason = ack.reason
        run.refusals[peer.hex()] = reason
        if peer in rec.proposal.members and rec.state in _BEFORE_SIGNING:  # every new member is needed
            return self.fail(f"member {peer.hex()[:16]} refuses: {reason}", now)
        return []

    def _on_tdkg(self, peer: PeerId, msg: Message, now: float) -> list[fx.Effect]:
        key = ChangeKey.decode(msg)
        rec = self._mine(key.epoch, True)
        if rec is None or peer not in rec.proposal.members or rec.state is not S.COLLECTING:
            return []
        recovery = key.recovery
        try:
            group_key = verify_new_epoch_key(recovery, rec.proposal, self.seat.hostkeys())
        except PolicyRejection:
            return []
        return self._key_reported(rec, peer, group_key, recovery, now)

    def _key_reported(
        self, rec: ChangeRecord, peer: PeerId, group_key: bytes, recovery: bytes, now: float
    ) -> list[fx.Effect]:
        """The transition is signed only once every member of the new list holds its share of the same
        new key: each says so (`change_key`), the proposer's own DKG counts for itself."""
        run = self.run
        if run is None:
            return []
        run.reported[peer] = group_key
        if not all(run.reported.get(m) == group_key for m in rec.proposal.members):
            return []
        run.group_key, run.recovery = group_key, recovery
        if rec.proposal.kind == "join":
            self._move(rec, Event.KEYS_JOIN, now)
            return [fx.Persist(rec), fx.send(rec.proposal.subject, BondRequest(rec.epoch))]
        self._move(rec, Event.KEYS, now)
        return [fx.Persist(rec), fx.BuildTransition(rec, group_key, recovery, None)]

    def _on_bond_offer(self, peer: PeerId, msg: Message, now: float) -> list[fx.Effect]:
        rec, run = self._mine(msg.integer("epoch", 0, MAX_EPOCH), True), self.run
        if rec is None or run is None or peer != rec.proposal.subject or rec.state is not S.AWAIT_OFFER:
            return []
        run.offer = BondOffer.from_message(msg)
        self._move(rec, Event.OFFER, now)
        return [fx.Persist(rec), fx.BuildTransition(rec, run.group_key, run.recovery, run.offer)]

    def _on_bond_signed(self, peer: PeerId, msg: Message, now: float) -> list[fx.Effect]:
        signed = BondSigned.decode(msg)
        rec, run = self._mine(signed.epoch, True), self.run
        if rec is None or run is None or peer != rec.proposal.subject or rec.state is not S.AWAIT_BOND_SIG:
            return []
        signature = (signed.script_sig, list(signed.witness))
        self._move(rec, Event.BOND_SIGNED, now)
        extra = {run.plan.bond_input: signature}
        return [fx.Persist(rec), fx.SignTransition(rec, run.plan, run.recovery, run.offer, extra)]

    def built(self, rec: ChangeRecord, plan: Any, prevouts: list[Prevout], now: float) -> list[fx.Effect]:
        """The transition transaction (`prevouts`: the federation's inputs, which the joiner checks)."""
        run = self.run
        if rec is not self.current or run is None or rec.state is not S.BUILDING:
            return []
        run.plan = plan
        if run.offer is not None and plan.bond_input is not None:
            self._move(rec, Event.BUILT_JOIN, now)
            ask = BondSign(rec.epoch, plan.tx.serialize(), tuple(prevouts))
            return [fx.Persist(rec), fx.send(rec.proposal.subject, ask)]
        self._move(rec, Event.BUILT, now)
        return [fx.Persist(rec), fx.SignTransition(rec, plan, run.recovery, run.offer)]

    def signed(self, rec: ChangeRecord, outcome: dict[str, Any], now: float) -> list[fx.Effect]:
        """ROAST produced the transition (perhaps not broadcast: `signed_tx` is broadcast again)."""
        if rec is not self.current or rec.state not in (S.SIGNING, S.CONFIRMING) or self.run is None:
            return []
        run = self.run
        txid = str(outcome["txid"])
        if outcome.get("broadcast_failed"):
            rec.signed_tx = str(outcome["tx"])
        self._move(rec, Event.SIGNED, now)
        out = self.candidate(rec, txid, None, now)
        out += [fx.Persist(rec), *(fx.send(t, ChangeDone(rec.epoch, txid)) for t in run.targets)]
        p = rec.proposal
        result = {
            "epoch": p.epoch,
            "kind": p.kind,
            "subject": p.subject.hex(),
            "txid": txid,
            "members": [m.hex() for m in p.members],
            "threshold": p.threshold,
            "group_key": run.group_key.hex(),
            "signers": outcome.get("signers"),
            "activation": f"after {self.settings.transition_confirmations} confirmation(s)",
        }
        self.proposing = False
        return [*out, fx.Finished(p.nonce, result=result)]

    def fail(self, reason: str, now: float) -> list[fx.Effect]:
        """The proposer gives its change up: change_abort to every member it told."""
        rec, run = self.current, self.run
        if rec is None or rec.proposal.proposer != self.me or not self.allowed(Event.FAILED):
            return []
        targets = run.targets if run is not None else sorted(set(rec.proposal.members) - {self.me})
        abort = ChangeAbort(rec.epoch, rec.proposal.nonce, reason[:500])
        out: list[fx.Effect] = [fx.send(t, abort) for t in targets]
        return out + self._drop(rec, Event.FAILED, reason, True, now)

    def next_deadline(self) -> float | None:
        rec = self.current
        if rec is not None and self.run is not None and rec.state in TIMED_STATES:
            return self.state_at + self.settings.change_timeout_seconds
        return None
