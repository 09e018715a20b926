"""One durable record per membership change this member took part in: its state, what it checked and
what it keeps, so a restarted member resumes from the record alone (one row of the store's `changes`
table, as JSON)."""

from __future__ import annotations

import enum
import json
from dataclasses import dataclass, field
from typing import Any

from frostfed.federation.messages import Message
from frostfed.federation.store import EpochRecord
from frostfed.federation.transition import Proposal


class State(enum.Enum):
    # the proposer's side
    COLLECTING = "collecting"  # change_proposal sent; every new member's key (change_key) awaited
    AWAIT_OFFER = "await_offer"  # a join: bond_request sent to the joiner
    BUILDING = "building"  # the transition transaction is being built
    AWAIT_BOND_SIG = "await_bond_sig"  # a join: bond_sign sent, the joiner's input signature awaited
    SIGNING = "signing"  # ROAST among the old epoch's members
    # a participant's side (the joiner's too)
    ADOPTED = "adopted"  # judged and accepted (change_ack sent); this member's DKG runs if it is in the new list
    KEY_READY = "key_ready"  # its share of the new key is pending in the store, change_key sent
    # both sides
    CONFIRMING = "confirming"  # a candidate transition is named; activation waits for the chain
    ACTIVATED = "activated"  # the new epoch took over (or this member left with it)
    ABORTED = "aborted"  # the proposer aborted it (or this proposer did)
    TIMED_OUT = "timed_out"  # nothing happened for too long; the share is kept
    GIVEN_UP = "given_up"  # dropped for good (operator, or its transition can no longer confirm)

    @property
    def live(self) -> bool:
        return self not in TERMINAL

    @property
    def proposing(self) -> bool:
        return self in PROPOSING


TERMINAL = frozenset({State.ACTIVATED, State.ABORTED, State.TIMED_OUT, State.GIVEN_UP})
PROPOSING = frozenset({State.COLLECTING, State.AWAIT_OFFER, State.BUILDING, State.AWAIT_BOND_SIG, State.SIGNING})

Outpoint = tuple[str, int]


@dataclass
class ChangeRecord:
    proposal: Proposal
    state: State
    anchor: Outpoint | None = None  # the old epoch's anchor when this member took part (None: not known yet)
    share_made: bool = False  # this change's own DKG made the pending share of the new epoch
    candidates: dict[str, int] = field(default_factory=dict)  # named transition txid -> tip when named
    latest: str | None = None  # the latest candidate named
    judged: list[Outpoint] | None = None  # the inputs of the transition this member approved
    signed_tx: str | None = None  # a transition signed but perhaps not broadcast: broadcast again
    aside: dict[str, Any] | None = None  # this change's own share, kept aside when it was dropped
    foreign_aside: dict[str, Any] | None = None  # another change's share of the same epoch, kept, never taken over
    reason: str | None = None  # why it was dropped
    bond: dict[str, Any] | None = None  # the joiner's bond output
    activation: dict[str, Any] | None = None  # txid, judged, height, time, left
    watched_tip: int = -1  # the tip at this member's last look for the transition

    @property
    def key(self) -> tuple[bytes, str]:
        return (self.proposal.proposer, self.proposal.nonce)

    @property
    def epoch(self) -> int:
        return self.proposal.epoch

    def to_json(self) -> str:
        return json.dumps(
            {
                "proposal": self.proposal.to_body(),
                "state": self.state.value,
                "anchor": list(self.anchor) if self.anchor else None,
                "share_made": self.share_made,
                "candidates": self.candidates,
                "latest": self.latest,
                "judged": [list(o) for o in self.judged] if self.judged is not None else None,
                "signed_tx": self.signed_tx,
                "aside": self.aside,
                "foreign_aside": self.foreign_aside,
                "reason": self.reason,
                "bond": self.bond,
                "activation": self.activation,
                "watched_tip": self.watched_tip,
            },
            sort_keys=True,
        )

    @classmethod
    def from_json(cls, raw: str) -> ChangeRecord:
        d = json.loads(raw)
        return cls(
            proposal=Proposal.from_message(Message("change_proposal", d["proposal"])),
            state=State(d["state"]),
            anchor=(str(d["anchor"][0]), int(d["anchor"][1])) if d.get("anchor") else None,
            share_made=bool(d.get("share_made")),
            candidates={str(k): int(v) for k, v in (d.get("candidates") or {}).items()},
            latest=d.get("latest"),
            judged=[(str(t), int(v)) for t, v in d["judged"]] if d.get("judged") is not None else None,
            signed_tx=d.get("signed_tx"),
            aside=d.get("aside"),
            foreign_aside=d.get("foreign_aside"),
            reason=d.get("reason"),
            bond=d.get("bond"),
            activation=d.get("activation"),
            watched_tip=int(d.get("watched_tip", -1)),
        )


def epoch_json(rec: EpochRecord) -> dict[str, Any]:
    return {
        "epoch": rec.epoch,
        "members": [m.hex() for m in rec.members],
        "threshold": rec.threshold,
        "group_key": rec.group_key.hex(),
        "chain_code": rec.chain_code.hex(),
        "pubshares": [x.hex() for x in rec.pubshares],
        "recovery": rec.recovery.hex(),
        "sealed_share": rec.sealed_share.hex() if rec.sealed_share else None,
    }


def epoch_of(raw: dict[str, Any]) -> EpochRecord:
    """A set-aside share back, as the pending share it was."""
    return EpochRecord(
        epoch=int(raw["epoch"]),
        status="pending",
        members=[bytes.fromhex(m) for m in raw["members"]],
        threshold=int(raw["threshold"]),
        group_key=bytes.fromhex(raw["group_key"]),
        chain_code=bytes.fromhex(raw["chain_code"]),
        pubshares=[bytes.fromhex(x) for x in raw["pubshares"]],
        recovery=bytes.fromhex(raw["recovery"]),
        sealed_share=bytes.fromhex(raw["sealed_share"]) if raw["sealed_share"] else None,
    )
