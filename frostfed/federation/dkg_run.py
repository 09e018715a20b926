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

from frostfed.frost import chilldkg, secp
from frostfed.frost.secp import tagged_hash


class DkgFailed(Exception):
    def __init__(self, reason: str, blame: bytes | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.blame = blame


def chain_code_of(recovery: bytes) -> bytes:
    """All members derive the same BIP32 chain code from the public recovery data: from its transcript,
    without the certificate. Each member can sign its part of the certificate again (another BIP340
    nonce), which gives the same key a second valid recovery data; a chain code hashed over the
    certificate would then let that member move the epoch's addresses where no other member looks.
    Raises ValueError on data that does not parse."""
    *_, cert = chilldkg.deserialize_recovery_data(recovery)
    return tagged_hash("frostfed/chaincode", recovery[: len(recovery) - len(cert)])


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
        return chain_code_of(self.recovery)


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
        prefix, _, rnd = session.rpartition("/")
        if prefix != self.session("")[:-1] or rnd not in ("hostkey", "r1", "r2"):
            raise DkgFailed(f"unknown DKG round {session[:60]!r}", sender)
        received = {"hostkey": self.hostkeys, "r1": self.pmsgs1, "r2": self.pmsgs2}[rnd]
        if sender in received:
            raise DkgFailed(f"second {rnd} message from one member", sender)
        if rnd == "hostkey":
            try:
                secp.cpoint(payload)
            except ValueError:
                raise DkgFailed("malformed host public key", sender) from None
            self.hostkeys[sender] = payload
            if len(self.hostkeys) == len(self.members):
                if len(set(self.hostkeys.values())) != len(self.members):
                    raise DkgFailed("two members announced the same host key")
                try:
                    self._state1, pmsg1 = chilldkg.participant_step1(self.hostseckey, self._params(), os.urandom(32))
                except Exception as e:
                    raise DkgFailed(f"cannot start the DKG: {e}", _blame(e, self.members)) from e
                return [(self.session("r1"), pmsg1)]
        elif rnd == "r1":
            self.pmsgs1[sender] = payload
            if len(self.pmsgs1) == len(self.members):
                if self._state1 is None:
                    raise DkgFailed("first-round messages before all host keys")
                ordered = [self.pmsgs1[m] for m in self.members]
                try:
                    self._cstate, cmsg1 = chilldkg.aggregate_round1(ordered, self._params())
                    self._state2, pmsg2 = chilldkg.participant_step2(
                        self.hostseckey, self._state1, cmsg1, os.urandom(32)
                    )
                except chilldkg.UnknownFaultyParticipantOrCoordinatorError as e:
                    raise self._investigate(e, ordered) from e
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
        return []

    def _investigate(self, err: chilldkg.UnknownFaultyParticipantOrCoordinatorError, pmsgs1: list[bytes]) -> DkgFailed:
        """A share sent to this member does not match its sender's commitment; only this member can
        tell, from the broadcast first messages, who sent it."""
        try:
            cinv = chilldkg.investigation_msg_for(pmsgs1, self._params(), self.members.index(self.me))
            chilldkg.participant_investigate(err, cinv)
        except chilldkg.FaultyParticipantOrCoordinatorError as e:
            return DkgFailed(
                f"first round failed: a member sent this member a wrong share: {e}", _blame(e, self.members)
            )
        except Exception as e:  # FaultyCoordinatorError cannot come from the local aggregation
            return DkgFailed(f"first round failed and the investigation found no one: {e}")
        return DkgFailed("first round failed and the investigation found no one")


def _blame(e: Exception, members: list[bytes]) -> bytes | None:
    idx = getattr(e, "participant_id", None)
    if isinstance(idx, int) and 0 <= idx < len(members):
        return members[idx]
    return None
