"""The exceptions of ChillDKG, under the specification's names, each carrying whom it blames.

A caller decides what to do with a failed session from the exception type alone: a
`FaultyParticipantError` (raised by the coordinator) or a `FaultyParticipantOrCoordinatorError` (raised by
a participant) names a participant id; a `FaultyCoordinatorError` blames the coordinator; an
`UnknownFaultyParticipantOrCoordinatorError` carries what `participant_investigate` needs to find out.
"""

from __future__ import annotations

from typing import Any


class ProtocolError(Exception):
    """Base exception for errors caused by received protocol messages."""


class FaultyParticipantError(ProtocolError):
    """Raised by the coordinator: participant `participant_id` deviated from the protocol."""

    def __init__(self, participant_id: int, *args: Any) -> None:
        self.participant_id = participant_id
        super().__init__(participant_id, *args)


class FaultyParticipantOrCoordinatorError(ProtocolError):
    """Raised by a participant: `participant_id` is faulty, or the coordinator framed it."""

    def __init__(self, participant_id: int, *args: Any) -> None:
        self.participant_id = participant_id
        super().__init__(participant_id, *args)


class FaultyCoordinatorError(ProtocolError):
    """Raised by a participant: the coordinator deviated from the protocol."""


class UnknownFaultyParticipantOrCoordinatorError(ProtocolError):
    """Raised by a participant whose secret share does not verify; `inv_data` feeds the investigation."""

    def __init__(self, inv_data: Any, *args: Any) -> None:
        self.inv_data = inv_data
        super().__init__(*args)


class MsgParseError(ValueError):
    """A message of the right length holds an invalid encoding (a point or scalar out of range)."""


class MessageLengthError(ValueError):
    """A message from `participant_id` (None: from the coordinator) has the wrong length or count."""

    def __init__(self, participant_id: int | None, *args: Any) -> None:
        self.participant_id = participant_id
        super().__init__(participant_id, *args)


class HostSeckeyError(ValueError):
    """Raised if the host secret key is invalid or matches no host public key."""


class SessionParamsError(ValueError):
    """Base exception for invalid `SessionParams`."""


class DuplicateHostPubkeyError(SessionParamsError):
    """Two participants have the same host public key: at least one of them is faulty."""

    def __init__(self, participant_id1: int, participant_id2: int, *args: Any) -> None:
        self.participant_id1 = participant_id1
        self.participant_id2 = participant_id2
        super().__init__(participant_id1, participant_id2, *args)


class InvalidHostPubkeyError(SessionParamsError):
    """The host public key of `participant_id` is not a compressed point."""

    def __init__(self, participant_id: int, *args: Any) -> None:
        self.participant_id = participant_id
        super().__init__(participant_id, *args)


class ThresholdOrCountError(SessionParamsError):
    """Raised if `1 <= t <= len(hostpubkeys) <= 2**32 - 1` does not hold."""


class RandomnessError(ValueError):
    """Raised if the session randomness is all zeroes (a broken random number generator)."""


class RecoveryDataError(ValueError):
    """Raised if recovery data is malformed, has invalid parameters or an invalid certificate."""


class InvalidRecoveryAckError(FaultyParticipantError):
    """The recovery acknowledgment signature of `participant_id` is invalid."""
