"""Every state change of a membership change, in one table: (state, event) -> next state. `None` is
"no change yet". An input whose (state, event) has no row changes nothing."""

from __future__ import annotations

import enum

from frostfed.federation.membership.record import State

S = State


class Event(enum.Enum):
    PROPOSE = "propose"  # this member's proposal, judged by itself
    ADOPT = "adopt"  # another member's proposal, judged and accepted
    KEYS = "keys"  # every new member holds the same new key (not a join)
    KEYS_JOIN = "keys_join"  # … a join: ask the joiner for its bond coin
    OFFER = "offer"  # the joiner's coin
    BUILT = "built"  # the transition transaction, ready to sign
    BUILT_JOIN = "built_join"  # … with the joiner's input to sign first
    BOND_SIGNED = "bond_signed"  # the joiner's input signature
    SIGNED = "signed"  # ROAST produced the transition
    FAILED = "failed"  # the proposer gives up (a refusal, a timeout, a failed step): change_abort to all
    DKG_DONE = "dkg_done"  # this member's share of the new key
    APPROVED = "approved"  # this member's signer check passed the transition
    CANDIDATE = "candidate"  # a transition txid named (change_done, a hint, this member's own approval)
    ABORT_HEARD = "abort_heard"  # the proposer's change_abort
    STALE = "stale"  # nothing named for 2 x change_timeout_seconds
    CONFIRMED = "confirmed"  # this member's chain shows the transition, deep enough
    IMPOSSIBLE = "impossible"  # this member's chain shows no transition of the change can confirm
    OPERATOR_ABORT = "operator_abort"  # frost-abort-change
    TAKE_OVER = "take_over"  # a dropped change took place all the same: its share takes the new epoch


_BEFORE_SIGNING = (S.COLLECTING, S.AWAIT_OFFER, S.BUILDING, S.AWAIT_BOND_SIG)
_PARTICIPATING = (S.ADOPTED, S.KEY_READY)
_LIVE = (*_BEFORE_SIGNING, S.SIGNING, *_PARTICIPATING, S.CONFIRMING)
_DROPPED = (S.ABORTED, S.TIMED_OUT, S.GIVEN_UP)

TRANSITIONS: dict[tuple[State | None, Event], State] = {
    (None, Event.PROPOSE): S.COLLECTING,
    (None, Event.ADOPT): S.ADOPTED,
    (S.COLLECTING, Event.DKG_DONE): S.COLLECTING,
    (S.COLLECTING, Event.KEYS): S.BUILDING,
    (S.COLLECTING, Event.KEYS_JOIN): S.AWAIT_OFFER,
    (S.AWAIT_OFFER, Event.OFFER): S.BUILDING,
    (S.BUILDING, Event.BUILT): S.SIGNING,
    (S.BUILDING, Event.BUILT_JOIN): S.AWAIT_BOND_SIG,
    (S.AWAIT_BOND_SIG, Event.BOND_SIGNED): S.SIGNING,
    (S.SIGNING, Event.APPROVED): S.SIGNING,
    (S.SIGNING, Event.CANDIDATE): S.CONFIRMING,
    (S.SIGNING, Event.SIGNED): S.CONFIRMING,
    (S.CONFIRMING, Event.SIGNED): S.CONFIRMING,
    **{(s, Event.FAILED): S.ABORTED for s in (*_BEFORE_SIGNING, S.SIGNING, S.CONFIRMING)},
    (S.ADOPTED, Event.DKG_DONE): S.KEY_READY,
    (S.KEY_READY, Event.DKG_DONE): S.KEY_READY,  # recovered from a peer's recovery data after all
    (S.CONFIRMING, Event.DKG_DONE): S.CONFIRMING,
    (S.ADOPTED, Event.APPROVED): S.ADOPTED,
    (S.KEY_READY, Event.APPROVED): S.KEY_READY,
    (S.CONFIRMING, Event.APPROVED): S.CONFIRMING,
    (S.ADOPTED, Event.CANDIDATE): S.CONFIRMING,
    (S.KEY_READY, Event.CANDIDATE): S.CONFIRMING,
    (S.CONFIRMING, Event.CANDIDATE): S.CONFIRMING,
    **{(s, Event.ABORT_HEARD): S.ABORTED for s in (*_PARTICIPATING, S.CONFIRMING)},
    **{(s, Event.STALE): S.TIMED_OUT for s in _PARTICIPATING},
    (S.CONFIRMING, Event.CONFIRMED): S.ACTIVATED,
    (S.CONFIRMING, Event.IMPOSSIBLE): S.GIVEN_UP,
    **{(s, Event.OPERATOR_ABORT): S.GIVEN_UP for s in _LIVE},
    **{(s, Event.TAKE_OVER): S.ACTIVATED for s in _DROPPED},
}

TIMED_STATES = (S.COLLECTING, S.AWAIT_OFFER, S.AWAIT_BOND_SIG)
"""States in which the proposer waits for its peers, at most `change_timeout_seconds` each."""
MAX_NAMED = 16  # a proposer's change_done candidates per change (each hinting member: 1)
MAX_ABORTS_HEARD = 1000


class IllegalTransition(Exception):
    """A state change outside the table: a bug, never a peer's doing (peers' inputs are guarded)."""
