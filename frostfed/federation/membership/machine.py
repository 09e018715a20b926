"""The membership change, from both sides, as a state machine without I/O.

Inputs: messages (`receive`), the end of this member's DKG (`dkg_done`), time and the chain tip
(`tick`), the operator (`propose`, `abort_change`) and the answers to the effects it asked for
(`judged`, `built`, `signed`, `confirmed` …). Outputs: a list of effects (effects.py) for the driver.
Every state change goes through `TRANSITIONS`; an input a state has no row for is ignored, which is
what keeps a member's word from moving another member's change (see the guards in each input).

The flow (the proposer coordinates; any failure leaves epoch e untouched):
  change_proposal   proposer -> old and new members: the proposal; each judges it and answers `change_ack`
  DKG               the members of the new list run ChillDKG
  change_key        new members -> proposer: the recovery data, whose certificate proves the new key
  bond_request / bond_offer / bond_sign / bond_signed   on a join, the joiner's input and its signature
  sign_request ...  ROAST among epoch e's members, each checking the transition itself (transition_check)
  change_done       proposer -> everyone: the transaction; activation waits for this member's own chain
  change_abort      proposer -> everyone: the change failed; drop it
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from frostfed.federation.dkg_run import DkgResult
from frostfed.federation.membership import effects as fx
from frostfed.federation.membership.base import MachineBase, ProposerRun, Seat
from frostfed.federation.membership.participant import ParticipantSide
from frostfed.federation.membership.proposer import ProposerSide
from frostfed.federation.membership.record import ChangeRecord, State
from frostfed.federation.membership.transitions import TIMED_STATES, TRANSITIONS, Event, IllegalTransition
from frostfed.federation.messages import ChangeKey, Kind, Message, MessageError

PeerId = bytes
S = State

__all__ = ["TRANSITIONS", "Event", "IllegalTransition", "Machine", "MachineBase", "ProposerRun", "Seat"]


class Machine(ProposerSide, ParticipantSide):
    def receive(self, peer: PeerId, msg: Message, now: float) -> list[fx.Effect]:
        handlers: dict[str, Callable[[PeerId, Message, float], list[fx.Effect]]] = {
            Kind.CHANGE_PROPOSAL: self._on_tprop,
            Kind.CHANGE_ACK: self._on_tack,
            Kind.CHANGE_KEY: self._on_tdkg,
            Kind.BOND_REQUEST: self._on_bond_req,
            Kind.BOND_OFFER: self._on_bond_offer,
            Kind.BOND_SIGN: self._on_bond_sign,
            Kind.BOND_SIGNED: self._on_bond_signed,
            Kind.CHANGE_DONE: self._on_tdone,
            Kind.CHANGE_ABORT: self._on_tabort,
        }
        handler = handlers.get(msg.kind)
        if handler is None:
            raise MessageError(f"not a membership message: {msg.kind!r}")
        return handler(peer, msg, now)

    def dkg_done(self, result: DkgResult, epoch: int, now: float) -> list[fx.Effect]:
        rec = self.current
        if rec is None or rec.epoch != epoch or not self.allowed(Event.DKG_DONE):
            return []
        rec.share_made = True
        self._move(rec, Event.DKG_DONE, now)
        out: list[fx.Effect] = [fx.SaveShare(result, epoch), fx.Persist(rec)]
        if rec.proposal.proposer == self.me:
            return out + self._key_reported(rec, self.me, result.group_key, result.recovery, now)
        return [*out, fx.send(rec.proposal.proposer, ChangeKey(epoch, result.recovery))]

    def approved(
        self, rec: ChangeRecord, judged: list[tuple[str, int]], txid: str | None, now: float
    ) -> list[fx.Effect]:
        """This member's signer check passed the transition: the inputs it approved, kept before its
        partial signature leaves (they decide which transaction it accepts as the transition)."""
        if rec is not self.current or not self.allowed(Event.APPROVED):
            return []
        rec.judged = sorted(judged)
        self._move(rec, Event.APPROVED, now)
        out: list[fx.Effect] = [fx.Persist(rec)]
        if txid is not None:
            out += self.candidate(rec, txid, None, now)
        return out

    def bond_recorded(self, rec: ChangeRecord, bond: dict[str, Any]) -> list[fx.Effect]:
        """The joiner signed its input: its bond output, kept with the change (frost-bond-claim reads it)."""
        rec.bond = bond
        return [fx.Persist(rec)]

    def note_anchor(self, rec: ChangeRecord, anchor: tuple[str, int]) -> list[fx.Effect]:
        """The anchor the change starts from, once this member's index knows it."""
        if rec.anchor is not None:
            return []
        rec.anchor = anchor
        return [fx.Persist(rec)]

    def give_up(self, code: str, reason: str, now: float) -> list[fx.Effect]:
        """Drop the change for good at this member: its share set aside with the record (out of the
        epochs, so a later change to the same epoch runs a DKG of its own), the reason recorded, and
        the change refused if proposed or asked to sign again."""
        rec = self.current
        event = Event.OPERATOR_ABORT if code == "operator_abort" else Event.IMPOSSIBLE
        if rec is None or not self.allowed(event):
            return []
        out: list[fx.Effect] = [
            fx.SetAside(rec, delete=True, keep_foreign=False),
            fx.RecordRefusal("dropped", rec.proposal.to_body(), code, reason),
        ]
        return out + self._drop(rec, event, reason, False, now)

    def abort_change(self, reason: str | None, now: float) -> tuple[ChangeRecord | None, str, list[fx.Effect]]:
        """The operator's own decision to stop taking part in the change in progress. Local: nothing is
        sent; this member refuses that change's transition from now on."""
        rec = self.current
        why = f"aborted by this member's operator: {reason or 'no reason given'}"
        return rec, why, self.give_up("operator_abort", why, now)

    def confirmed(self, rec: ChangeRecord, txid: str, judged: bool, tip: int, now: float) -> list[fx.Effect]:
        if rec is not self.current or not self.allowed(Event.CONFIRMED):
            return []
        return self._activate(rec, Event.CONFIRMED, txid, judged, tip, now)

    def watched(self, rec: ChangeRecord, tip: int) -> list[fx.Effect]:
        """The activation watcher looked up to `tip` and found no transition yet."""
        self.tip = max(self.tip, tip)
        if rec is not self.current or rec.watched_tip == tip:
            return []
        rec.watched_tip = tip
        return [fx.Persist(rec)]

    def impossible(self, rec: ChangeRecord, reason: str, now: float) -> list[fx.Effect]:
        if rec is not self.current:
            return []
        return self.give_up("transition_impossible", f"its transition can no longer confirm: {reason}", now)

    def take_over(self, rec: ChangeRecord, txid: str, tip: int, now: float) -> list[fx.Effect]:
        """A change this member dropped took place all the same (its own chain shows the coins at the
        key of its own share of that change): the share back, the new epoch active."""
        if self.current is not None or rec.key not in self.records or not rec.aside:
            return []
        share = rec.aside
        return [fx.RestoreShare(share), *self._activate(rec, Event.TAKE_OVER, txid, False, tip, now)]

    def _activate(
        self, rec: ChangeRecord, event: Event, txid: str, judged: bool, tip: int, now: float
    ) -> list[fx.Effect]:
        self.tip = max(self.tip, tip)
        left = self.me not in rec.proposal.members
        rec.activation = {"txid": txid, "judged": judged, "height": self.tip, "time": now, "left": left}
        self._move(rec, event, now)
        self.run = None
        for other in self.records.values():  # copies kept aside for this epoch are dead (or in the epochs) now
            if other.epoch == rec.epoch:
                other.aside = other.foreign_aside = None
        return [fx.Activate(rec)]

    def tick(self, now: float, tip: int) -> list[fx.Effect]:
        self.tip = max(self.tip, tip)
        rec = self.current
        if rec is None:
            out: list[fx.Effect] = []
            if self._due("set_aside", now, 5) and (aside := self.set_aside(self._next_epoch())):
                out.append(fx.CheckSetAside(aside))
            if self._due("sweep", now, 30):
                out.append(fx.Sweep())
            return out
        timeout = self.settings.change_timeout_seconds
        if self.run is not None and rec.state in TIMED_STATES and now - self.state_at > timeout:
            why = "; ".join(f"{k[:16]}: {v}" for k, v in self.run.refusals.items()) or self.silence(self.waiting())
            return self.fail(f"the change did not complete ({why})", now)
        if not rec.candidates:
            if now - self.adopted_at <= 2 * timeout or self.run is not None:
                return []
            if rec.proposal.proposer == self.me:  # it proposed, then restarted
                return self.fail("the proposer restarted before the change completed", now)
            reason = "the change never completed (its proposer went silent)"
            return self._drop(rec, Event.STALE, reason, False, now)
        out = [fx.Watch(rec)]
        if self._due("dead", now, 15):
            out.append(fx.CheckDead(rec))
        return out

    def _due(self, what: str, now: float, every: float) -> bool:
        if now - self.last_checks.get(what, float("-inf")) < every:
            return False
        self.last_checks[what] = now
        return True

    def _next_epoch(self) -> int:
        return self.seat.keys.epoch + 1 if self.seat.keys is not None else -1
