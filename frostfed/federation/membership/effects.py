"""What the membership machine asks its driver to do: send a message, touch the store, run a DKG, ask
the chain or the operator's admission command. Each is a plain value; the driver carries them out and
feeds the answers back into the machine."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from frostfed.federation.dkg_run import DkgResult
from frostfed.federation.membership.record import ChangeRecord
from frostfed.federation.messages import BondSign, Typed
from frostfed.federation.transition import BondOffer, Proposal

PeerId = bytes


@dataclass(frozen=True)
class Send:
    peer: PeerId
    kind: str
    body: dict[str, Any]


def send(peer: PeerId, message: Typed) -> Send:
    return Send(peer, message.KIND, message.body())


@dataclass(frozen=True)
class Persist:
    """Write the change's record (the driver writes a step's store effects in one transaction)."""

    record: ChangeRecord


@dataclass(frozen=True)
class Judge:
    """Gather this member's operator decisions and offline clock and pass them to `Machine.judged`."""

    proposal: Proposal
    peer: PeerId
    proposing: bool


@dataclass(frozen=True)
class AskAdmission:
    """No operator decided: ask `membership.admission_command`, then `Machine.judged` again."""

    proposal: Proposal
    peer: PeerId
    proposing: bool


@dataclass(frozen=True)
class RecordRefusal:
    stage: str
    body: dict[str, Any]
    code: str
    reason: str


@dataclass(frozen=True)
class LearnPeers:
    addresses: dict[PeerId, str]


@dataclass(frozen=True)
class StartDkg:
    epoch: int
    members: list[PeerId]
    threshold: int


@dataclass(frozen=True)
class StopDkg:
    epoch: int


@dataclass(frozen=True)
class SaveShare:
    """This member's share of the new key, pending until the transition confirms."""

    result: DkgResult
    epoch: int


@dataclass(frozen=True)
class SetAside:
    """Keep the pending share of a dropped change with its record (`delete`: out of the epochs as well;
    `keep_foreign`: a share another change to the same epoch made is kept too, never taken over)."""

    record: ChangeRecord
    delete: bool
    keep_foreign: bool


@dataclass(frozen=True)
class RestoreShare:
    """A set-aside share back into the epochs, as the pending share it was."""

    share: dict[str, Any]


@dataclass(frozen=True)
class BuildTransition:
    record: ChangeRecord
    group_key: bytes
    recovery: bytes
    offer: BondOffer | None


@dataclass(frozen=True)
class SignTransition:
    record: ChangeRecord
    plan: Any  # transition.TransitionPlan
    recovery: bytes
    offer: BondOffer | None
    extra: dict[int, tuple[bytes, list[bytes]]] = field(default_factory=dict)


@dataclass(frozen=True)
class MakeOffer:
    """The joiner: offer a coin of its bond wallet."""

    record: ChangeRecord


@dataclass(frozen=True)
class SignBond:
    """The joiner: sign its input of the join transaction, if it spends its coin only into its bond."""

    record: ChangeRecord
    request: BondSign


@dataclass(frozen=True)
class ReleaseBond:
    pass


@dataclass(frozen=True)
class Activate:
    """The new epoch takes over (or this member leaves with it); the record is written with it."""

    record: ChangeRecord


@dataclass(frozen=True)
class Finished:
    """The end of a change this member proposed: the answer `propose` waits for."""

    nonce: str
    result: dict[str, Any] | None = None
    error: str | None = None


@dataclass(frozen=True)
class Watch:
    """Look for the change's transition among its candidates in the blocks (and broadcast a signed one
    again); report it with `Machine.confirmed`."""

    record: ChangeRecord


@dataclass(frozen=True)
class CheckDead:
    """Whether the chain shows that no transition of the change can confirm any more (`Machine.impossible`)."""

    record: ChangeRecord


@dataclass(frozen=True)
class CheckSetAside:
    """Whether a dropped change took place all the same (`Machine.take_over`)."""

    records: list[ChangeRecord]


@dataclass(frozen=True)
class Sweep:
    """Delete retired epochs' shares whose coins are all gone."""


Effect = (
    Send
    | Persist
    | Judge
    | AskAdmission
    | RecordRefusal
    | LearnPeers
    | StartDkg
    | StopDkg
    | SaveShare
    | SetAside
    | RestoreShare
    | BuildTransition
    | SignTransition
    | MakeOffer
    | SignBond
    | ReleaseBond
    | Activate
    | Finished
    | Watch
    | CheckDead
    | CheckSetAside
    | Sweep
)
