"""The machine's common part: its state (the change in progress and every record), the moves through
the transition table, what it knows, a candidate transition named, and a change dropped."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from frostfed.federation.change_judgement import OwnRecords
from frostfed.federation.config import MembershipSettings
from frostfed.federation.epoch_keys import EpochKeys
from frostfed.federation.membership import effects as fx
from frostfed.federation.membership.record import ChangeRecord, State
from frostfed.federation.membership.transitions import (
    _DROPPED,
    MAX_NAMED,
    TRANSITIONS,
    Event,
    IllegalTransition,
)
from frostfed.federation.transition import BondOffer, Proposal

PeerId = bytes
S = State


@dataclass
class Seat:
    """Where this member sits: its active epoch's keys (None: a joiner), the host keys of that epoch's
    members (to check a new key's certificate), the peers it was told about (a joiner's contacts)."""

    keys: EpochKeys | None = None
    hostkeys: Callable[[], dict[PeerId, bytes]] = dict  # asked only when a new key is reported
    contacts: frozenset[PeerId] = frozenset()


@dataclass
class ProposerRun:
    """What the proposer keeps in memory while it drives its change (a restart ends the change)."""

    targets: list[PeerId]
    reported: dict[PeerId, bytes] = field(default_factory=dict)  # new member -> the key it holds a share of
    refusals: dict[str, str] = field(default_factory=dict)
    recovery: bytes = b""
    group_key: bytes = b""
    offer: BondOffer | None = None
    plan: Any = None


@dataclass(frozen=True)
class Waiting:
    """A step of the proposer's change that waits on other members."""

    what: str
    peers: tuple[PeerId, ...]
    since: float


class MachineBase:
    def __init__(
        self, me: PeerId, settings: MembershipSettings, records: list[ChangeRecord], seat: Seat, now: float
    ) -> None:
        self.me = me
        self.settings = settings
        self.seat = seat
        self.records: dict[tuple[bytes, str], ChangeRecord] = {r.key: r for r in records}
        self.tip = 0
        self.last_error: str | None = None
        self.proposing = False  # between `propose` and its Finished
        self.run: ProposerRun | None = None
        self.aborted: set[tuple[PeerId, str]] = set()  # (sender, nonce) of every abort heard
        self.named: dict[tuple[str, PeerId | None], int] = {}  # candidates named per (nonce, hinting member)
        self.adopted_at = now  # the change's clock (restarts with the member)
        self.state_at = now
        self.last_checks: dict[str, float] = {}
        self.silence: Callable[[Waiting | None], str] = lambda waiting: "no answer in time"
        """Words for a step that timed out: the driver names the members that did not answer (it knows
        who is online); the machine itself only knows what the step waited for."""
        live = [r for r in records if r.state.live]
        self.current: ChangeRecord | None = live[-1] if live else None

    def _move(
        self, rec: ChangeRecord | None, event: Event, now: float, new: ChangeRecord | None = None
    ) -> ChangeRecord:
        state = rec.state if rec is not None else None
        target = TRANSITIONS.get((state, event))
        if target is None:
            raise IllegalTransition(f"{event.value} in state {state}")
        rec = rec if rec is not None else new
        assert rec is not None
        if rec.state is not target:
            self.state_at = now
        rec.state = target
        if not target.live and self.current is rec:
            self.current = None
        return rec

    def waiting(self) -> Waiting | None:
        """What the change this member proposes waits for now, from whom, since when (None: nothing)."""
        rec = self.current
        if rec is None or self.run is None:
            return None
        p = rec.proposal
        if rec.state is S.COLLECTING:
            return Waiting(f"the DKG of epoch {p.epoch}", tuple(p.members), self.state_at)
        if rec.state is S.AWAIT_OFFER:
            return Waiting("the joiner's bond offer", (p.subject,), self.state_at)
        if rec.state is S.AWAIT_BOND_SIG:
            return Waiting("the joiner's signature of its bond input", (p.subject,), self.state_at)
        return None

    def allowed(self, event: Event) -> bool:
        state = self.current.state if self.current is not None else None
        return (state, event) in TRANSITIONS

    def dropped(self, p: Proposal) -> str | None:
        rec = self.records.get((p.proposer, p.nonce))
        return rec.reason if rec is not None and rec.state is S.GIVEN_UP else None

    def last_activation(self) -> dict[str, Any] | None:
        done = [r.activation for r in self.records.values() if r.activation]
        return done[-1] if done else None

    def activated(self, epoch: int) -> ChangeRecord | None:
        return next((r for r in self.records.values() if r.epoch == epoch and r.state is S.ACTIVATED), None)

    def set_aside(self, epoch: int) -> list[ChangeRecord]:
        return [r for r in self.records.values() if r.epoch == epoch and r.state in _DROPPED and r.aside][-16:]

    def accepted_key(self, p: Proposal) -> bytes | None:
        """The new key the proposer found every new member holding (for its own leave's transition)."""
        rec, run = self.current, self.run
        if rec is None or run is None or rec.proposal.nonce != p.nonce or not run.group_key:
            return None
        return run.group_key

    def own_records(self, tip: int, now: float, offline: dict[PeerId, float]) -> OwnRecords:
        last = self.last_activation() or {}
        return OwnRecords(
            tip_height=tip,
            now=now,
            change_in_progress=self.current.proposal.nonce if self.current is not None else None,
            last_change_height=last.get("height"),
            last_change_time=last.get("time"),
            offline_seconds=offline,
        )

    def extra_peers(self) -> set[PeerId]:
        peers: set[PeerId] = set()
        if self.current is not None:
            peers.update(self.current.proposal.members)
            peers.add(self.current.proposal.proposer)
        if self.seat.keys is None:
            peers.update(self.seat.contacts)
        return peers

    def _mine(self, epoch: int, proposer: bool) -> ChangeRecord | None:
        """The change in progress, if a message for `epoch` is for it and this member is (or is not) its
        proposer."""
        rec = self.current
        if rec is None or epoch != rec.epoch or (rec.proposal.proposer == self.me) != proposer:
            return None
        return rec

    def candidate(self, rec: ChangeRecord, txid: str, hinted_by: PeerId | None, now: float) -> list[fx.Effect]:
        """A candidate for the change's transition (the proposer's `change_done`, a hint, this member's own
        approval); it counts only once this member finds it in a block and checks what it spends and pays.
        Each member's hint counts once per change, and the proposer's at most MAX_NAMED times, so one
        member naming made-up transactions cannot crowd out the others' candidates."""
        if txid in rec.candidates or not self.allowed(Event.CANDIDATE) or rec is not self.current:
            return []
        source = (rec.proposal.nonce, hinted_by)
        if source in self.named and (hinted_by is not None or self.named[source] >= MAX_NAMED):
            return []
        self.named[source] = self.named.get(source, 0) + 1
        rec.candidates[txid] = self.tip
        rec.latest = txid
        self._move(rec, Event.CANDIDATE, now)
        return [fx.Persist(rec)]

    def _drop(self, rec: ChangeRecord, event: Event, reason: str, forget_key: bool, now: float) -> list[fx.Effect]:
        """Give up on the change. Its new key share leaves the epochs only when the change is known to
        have failed (an abort); after a mere timeout it stays, since the transition may still have been
        broadcast by a proposer this member no longer hears. Either way a copy stays with the record:
        an abort sent to some members only does not stop the others (Machine.take_over)."""
        self.last_error = reason
        out: list[fx.Effect] = [fx.StopDkg(rec.epoch)]
        if not rec.candidates and event is not Event.OPERATOR_ABORT and event is not Event.IMPOSSIBLE:
            out.append(fx.SetAside(rec, delete=forget_key, keep_foreign=forget_key))
        rec.reason = reason[:500]
        self._move(rec, event, now)
        if self.run is not None:
            self.run = None
        out.append(fx.Persist(rec))
        if rec.proposal.subject == self.me:
            out.append(fx.ReleaseBond())
        if self.proposing and rec.proposal.proposer == self.me:
            self.proposing = False
            out.append(fx.Finished(rec.proposal.nonce, error=reason))
        return out
