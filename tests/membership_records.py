"""Change records as a member leaves them behind, for the tests that start from the middle of a change
(instead of running its DKG): what adoption, a DKG or an approval would have written."""

from __future__ import annotations

import time

from frostfed.federation.membership import Membership
from frostfed.federation.membership.record import ChangeRecord, State
from frostfed.federation.transition import Proposal


def take_part(
    member,
    p: Proposal,
    state: State = State.ADOPTED,
    share_made: bool = False,
    judged: list[tuple[str, int]] | None = None,
    candidates: dict[str, int] | None = None,
) -> ChangeRecord:
    """`member` takes part in `p` as if it had judged and adopted it (and, with `share_made`, finished
    its DKG; with `judged`, approved a transition spending those coins)."""
    rec = ChangeRecord(p, state, share_made=share_made, judged=judged, candidates=dict(candidates or {}))
    machine = member.membership.machine
    machine.records[rec.key] = rec
    machine.current = rec
    machine.adopted_at = machine.state_at = time.time()
    save(member, rec)
    return rec


def save(member, rec: ChangeRecord) -> None:
    member.store.save_change(rec.proposal.proposer.hex(), rec.proposal.nonce, rec.epoch, rec.state.value, rec.to_json())


def activated(member, p: Proposal, height: int, when: float | None = None) -> ChangeRecord:
    """A change `member` activated at `height` (the last change, for the minimum interval)."""
    rec = ChangeRecord(p, State.ACTIVATED)
    rec.activation = {"txid": "00" * 32, "judged": True, "height": height, "time": when or time.time(), "left": False}
    member.membership.machine.records[rec.key] = rec
    save(member, rec)
    return rec


def restart(member) -> Membership:
    """The member's membership as a restart builds it: from the store alone."""
    old = member.membership
    member.membership = Membership(old.ctx, old.hooks, old.settings, dict(old.directory), None, None, old.bond_wallet)
    member.membership.resume()
    return member.membership
