"""A member's own judgement of a proposed membership change.

A proposal that is well formed (`transition.check_proposal`) may still be an attack: one member alone
could expel honest members one by one and admit joiners it controls until it holds t shares. So every
member decides for itself, on what it has seen and what its operator decided, never on the proposer's
word:
- a join only of a joiner this member's operator admitted, with at least the bond it asked for;
- an expulsion only of a member this member has itself seen offline long enough, or whose
  expulsion its operator approved;
- a leave only when the leaving member proposes it;
- one change at a time, and not sooner than the configured interval after the last one.

This module is sans-I/O: the caller gathers the records and the operator's decisions (the store, the
clock, the chain tip, the admission command's answer) and gets a decision with its reason.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from frostfed.federation.config import MembershipSettings
from frostfed.federation.transition import Proposal

NOT_ADMITTED = "not_admitted"
BOND_TOO_SMALL = "bond_below_minimum"
NOT_APPROVED = "expel_not_approved"
LEAVE_BY_OTHER = "leave_not_by_leaver"
IN_PROGRESS = "change_in_progress"
TOO_SOON = "too_soon"
BAD_PROPOSAL = "bad_proposal"

OPERATOR_CODES = frozenset({NOT_ADMITTED, NOT_APPROVED})
"""Refusals an admission command may overturn: no operator decided, so the command is asked."""


@dataclass(frozen=True)
class Decision:
    accept: bool
    code: str = ""
    reason: str = ""


ACCEPT = Decision(True)


@dataclass(frozen=True)
class OwnRecords:
    """What this member itself knows when it judges a proposal."""

    tip_height: int
    now: float
    change_in_progress: str | None = None  # the change this member takes part in (nonce), if any
    last_change_height: int | None = None  # the tip when this member activated the last change
    last_change_time: float | None = None
    offline_seconds: dict[bytes, float] = field(default_factory=dict)


@dataclass(frozen=True)
class CommandVerdict:
    """The admission command's answer (a failure to answer is a refusal)."""

    accept: bool
    reason: str


@dataclass(frozen=True)
class OperatorDecisions:
    admitted: dict[bytes, int] = field(default_factory=dict)  # joiner -> the bond its operator asks for
    expel_approved: frozenset[bytes] = frozenset()
    command: CommandVerdict | None = None


def judge_proposal(
    p: Proposal, settings: MembershipSettings, records: OwnRecords, decisions: OperatorDecisions
) -> Decision:
    """Whether this member takes part in `p` (its form already checked), and if not, why."""
    if p.kind == "leave" and p.proposer != p.subject:
        return Decision(False, LEAVE_BY_OTHER, "only the leaving member itself may propose its leave")
    if records.change_in_progress is not None and records.change_in_progress != p.nonce:
        return Decision(False, IN_PROGRESS, "this member takes part in another change; one change at a time")
    soon = _too_soon(settings, records)
    if soon is not None:
        return soon
    if p.kind == "join":
        return _judge_join(p, settings, decisions)
    if p.kind == "expel":
        return _judge_expel(p, settings, records, decisions)
    return ACCEPT


def _too_soon(settings: MembershipSettings, r: OwnRecords) -> Decision | None:
    need_blocks = settings.min_change_interval_blocks
    if r.last_change_height is not None and r.tip_height - r.last_change_height < need_blocks:
        return Decision(
            False,
            TOO_SOON,
            f"the last change took effect at block {r.last_change_height}, {r.tip_height - r.last_change_height} "
            f"block(s) ago; this member waits {need_blocks} block(s) between changes",
        )
    need_seconds = settings.min_change_interval_seconds
    if r.last_change_time is not None and r.now - r.last_change_time < need_seconds:
        return Decision(
            False,
            TOO_SOON,
            f"the last change took effect {r.now - r.last_change_time:.0f} s ago; this member waits "
            f"{need_seconds:.0f} s between changes",
        )
    return None


def _judge_join(p: Proposal, settings: MembershipSettings, d: OperatorDecisions) -> Decision:
    joiner = p.subject.hex()
    asked = d.admitted.get(p.subject)
    if asked is None and p.subject in settings.admit:
        asked = 0
    if asked is None and d.command is not None and d.command.accept:
        asked = 0
    if asked is None:
        why = f"; the admission command refused: {d.command.reason}" if d.command is not None else ""
        return Decision(
            False,
            NOT_ADMITTED,
            f"joiner {joiner} is not admitted by this member's operator "
            f"(frost-admit, membership.admit or membership.admission_command){why}",
        )
    minimum = max(settings.min_bond_sats, asked)
    if p.bond_sats < minimum:
        return Decision(
            False, BOND_TOO_SMALL, f"the bond of {p.bond_sats} sats is below this member's minimum of {minimum} sats"
        )
    return ACCEPT


def _judge_expel(p: Proposal, settings: MembershipSettings, r: OwnRecords, d: OperatorDecisions) -> Decision:
    if p.subject in d.expel_approved or (d.command is not None and d.command.accept):
        return ACCEPT
    limit = settings.expel_after_seconds
    seen = r.offline_seconds.get(p.subject, 0.0)
    if limit > 0 and seen >= limit:
        return ACCEPT
    why = f"; the admission command refused: {d.command.reason}" if d.command is not None else ""
    if limit > 0:
        detail = f"this member has seen it offline for {seen:.0f} s, not the {limit:.0f} s it requires"
    else:
        detail = "this member expels only with its operator's approval (expel_after_seconds = 0)"
    return Decision(
        False,
        NOT_APPROVED,
        f"will not expel {p.subject.hex()}: {detail}, and its operator did not approve the expulsion "
        f"(frost-approve-expel){why}",
    )


class OfflineClock:
    """How long this member has itself seen each peer offline, counting only time it was running.

    Restored from the store after a restart, so the member neither forgets what it saw nor counts its
    own downtime as the peer's: time passes on the clock only between two ticks of a running member,
    at most `max_step` per tick (a process that was suspended does not invent an outage), and only
    once the member has run long enough to have heard everyone once (`watching`). A peer heard from is
    back at zero."""

    def __init__(self, offline: dict[bytes, float] | None = None, max_step: float = 30.0) -> None:
        self.offline: dict[bytes, float] = dict(offline or {})
        self.max_step = max_step
        self._last: float | None = None

    def tick(self, now: float, online: dict[bytes, bool], watching: bool) -> set[bytes]:
        """Advance to `now`; `online` holds every peer watched. Returns the peers whose clock went back
        to zero (what a caller persists at once: forgetting a return could invent an outage)."""
        step = 0.0 if self._last is None else min(max(now - self._last, 0.0), self.max_step)
        self._last = now
        reset = set()
        for peer in list(self.offline):
            if peer not in online:
                del self.offline[peer]
        for peer, up in online.items():
            if up:
                if self.offline.get(peer, 0.0) != 0.0:
                    reset.add(peer)
                self.offline[peer] = 0.0
            elif watching:
                self.offline[peer] = self.offline.get(peer, 0.0) + step
            else:
                self.offline.setdefault(peer, 0.0)
        return reset

    def seconds(self, peer: bytes) -> float:
        return self.offline.get(peer, 0.0)

    def watched(self) -> Iterable[bytes]:
        return self.offline.keys()
