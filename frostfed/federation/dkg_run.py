"""ChillDKG among the members, with no central coordinator.

Each of the protocol's broadcasts travels by echo broadcast, so every honest member holds the same
n first-round messages and computes the coordinator's (deterministic) aggregation itself. A run is a
sans-I/O state machine: feed it delivered broadcasts, it returns what to broadcast next and, at the
end, the DKG output. Rounds, each one echo-broadcast session:
  hostkey  every member's ChillDKG host public key (the channel already authenticates the sender)
  r1       participant_step1's message
  r2       participant_step2's message (the CertEq signature over the transcript)
A run that fails (a faulty message, an equivocation, a timeout) fails for everyone; the members
then start the next attempt.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

from frostfed.frost import chilldkg
from frostfed.frost.secp import tagged_hash


class DkgFailed(Exception):
    def __init__(self, reason: str, blame: bytes | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.blame = blame


@dataclass
class DkgResult:
    threshold: int
    members: list[bytes]
    hostpubkeys: list[bytes]
    group_key: bytes  # 33-byte threshold public key
    pubshares: list[bytes]
    secshare: bytes
    recovery: bytes

    @property
    def chain_code(self) -> bytes:
        """All members derive the same BIP32 chain code from the public recovery data."""
        return tagged_hash("frostfed/chaincode", self.recovery)


@dataclass
class DkgRun:
    """One attempt of the DKG for one epoch, from one member's point of view."""

    epoch: int
    attempt: int
    members: list[bytes]  # identities, in the epoch's canonical order
    threshold: int
    me: bytes
    hostseckey: bytes
    hostkeys: dict[bytes, bytes] = field(default_factory=dict)
    pmsgs1: dict[bytes, bytes] = field(default_factory=dict)
    pmsgs2: dict[bytes, bytes] = field(default_factory=dict)
    _state1: Any = None
    _state2: Any = None
    _cstate: Any = None
    result: DkgResult | None = None

    def session(self, rnd: str) -> str:
        return f"dkg/{self.epoch}/{self.attempt}/{rnd}"

    def start(self) -> list[tuple[str, bytes]]:
        return [(self.session("hostkey"), chilldkg.hostpubkey_gen(self.hostseckey))]

    def _params(self) -> Any:
        return chilldkg.SessionParams([self.hostkeys[m] for m in self.members], self.threshold)

    def on_delivered(self, session: str, sender: bytes, payload: bytes) -> list[tuple[str, bytes]]:
        """A broadcast of this run was delivered (all members echoed it); returns what to send next."""
        if sender not in self.members:
            raise DkgFailed("broadcast from a non-member", sender)
        rnd = session.rsplit("/", 1)[-1]
        if rnd == "hostkey":
            if len(payload) != 33:
                raise DkgFailed("malformed host public key", sender)
            self.hostkeys[sender] = payload
            if len(self.hostkeys) == len(self.members):
                if len(set(self.hostkeys.values())) != len(self.members):
                    raise DkgFailed("two members announced the same host key")
                try:
                    self._state1, pmsg1 = chilldkg.participant_step1(self.hostseckey, self._params(), os.urandom(32))
                except Exception as e:
                    raise DkgFailed(f"cannot start the DKG: {e}") from e
                return [(self.session("r1"), pmsg1)]
        elif rnd == "r1":
            self.pmsgs1[sender] = payload
            if len(self.pmsgs1) == len(self.members):
                ordered = [self.pmsgs1[m] for m in self.members]
                try:
                    self._cstate, cmsg1 = chilldkg.aggregate_round1(ordered, self._params())
                    self._state2, pmsg2 = chilldkg.participant_step2(
                        self.hostseckey, self._state1, cmsg1, os.urandom(32)
                    )
                except Exception as e:
                    raise DkgFailed(f"first round failed: {e}", _blame(e, self.members)) from e
                return [(self.session("r2"), pmsg2)]
        elif rnd == "r2":
            self.pmsgs2[sender] = payload
            if len(self.pmsgs2) == len(self.members):
                ordered = [self.pmsgs2[m] for m in self.members]
                try:
                    cmsg2 = chilldkg.aggregate_round2(self._cstate, ordered)
                    out, recovery = chilldkg.participant_finalize(self._state2, cmsg2)
                except Exception as e:
                    raise DkgFailed(f"transcript agreement failed: {e}", _blame(e, self.members)) from e
                self.result = DkgResult(
                    threshold=self.threshold,
                    members=list(self.members),
                    hostpubkeys=[self.hostkeys[m] for m in self.members],
                    group_key=bytes(out.thresh_pk),
                    pubshares=[bytes(p) for p in out.pubshares],
                    secshare=bytes(out.secshare or b""),
                    recovery=bytes(recovery),
                )
        else:
            raise DkgFailed(f"unknown DKG round {rnd!r}", sender)
        return []


def _blame(e: Exception, members: list[bytes]) -> bytes | None:
    idx = getattr(e, "participant_id", None)
    if isinstance(idx, int) and 0 <= idx < len(members):
        return members[idx]
    return None
