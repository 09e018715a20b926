"""Round echo broadcast: one echo per member for a whole round instead of one per member per sender.

In a ChillDKG round every member broadcasts exactly one message. The per-sender echo broadcast
(`echo.py`) costs every member about n² messages and n² signature checks per round; this variant
needs O(n) of each, with the same guarantees. Protocol for one session (a 32-byte id and a member
list, in the same order everywhere):

1. Each member S signs the statement "in session sid, S broadcast the message with hash d"
   (`echo_base.sign_statement`) and sends the message with that statement to every member.
2. A member that holds the messages of all n members signs the vector of their hashes, in member
   order, and sends every member ONE echo: that signature plus the n sender statements.
3. A member delivers the whole round once it holds all n messages and, from every member, a validly
   signed echo whose vector equals the hashes of the messages it holds.

Sender statements carried in echoes are checked only when their hash differs from the one held here
(or from an earlier echo's, for a sender whose message has not arrived yet): two valid statements of
one sender with different hashes are an `echo_base.EquivocationProof`, the same transferable object the
per-sender echo produces. The member that finds one aborts the session, sends the proof to every
member (who check it and abort too) and delivers nothing of that session. An echo that carries a
forged statement convicts its signer of misbehaving, not the sender, and is dropped.

`RoundEchoCore` is the protocol without I/O; `RoundEchoBroadcast` runs it over a `Channel` (normally
the `ROUND_ECHO_PORT` of a member's `Mux`).
"""

from __future__ import annotations

import logging
import os
import struct
from collections.abc import Sequence
from dataclasses import dataclass, field

from coincurve import PrivateKey, PublicKeyXOnly

from ..frost.secp import tagged_hash
from .broadcast_driver import BroadcastDriver
from .channel import Channel, PeerId
from .echo_base import (
    Delivered,
    EchoError,
    EchoViolation,
    EquivocationProof,
    Event,
    SessionCore,
    Transmit,
    message_digest,
    sign_statement,
    verify_statement,
)
from .wire_echo import Statement
from .wire_round import MAX_ROUND_MEMBERS, RoundAbort, RoundEcho, RoundSend, decode_round

VECTOR_TAG = "frostfed/round-echo/vector"

log = logging.getLogger("frostfed.net.round_echo")


def vector_hash(session_id: bytes, senders: Sequence[PeerId], digests: Sequence[bytes]) -> bytes:
    """What an echo signs: the session, and each member with the hash of the message it holds from it."""
    body = [session_id, struct.pack(">H", len(senders))]
    body += [s + d for s, d in zip(senders, digests, strict=True)]
    return tagged_hash(VECTOR_TAG, b"".join(body))


def sign_echo(secret_key: bytes, session_id: bytes, statements: Sequence[Statement]) -> RoundEcho:
    key = PrivateKey(secret_key)
    msg = vector_hash(session_id, [st.sender for st in statements], [st.digest for st in statements])
    return RoundEcho(session_id, key.public_key.format(), tuple(statements), key.sign_schnorr(msg, os.urandom(32)))


def verify_echo(echo: RoundEcho) -> bool:
    try:
        xonly = PublicKeyXOnly(echo.signer[1:])
    except ValueError:
        return False
    msg = vector_hash(echo.session_id, [st.sender for st in echo.statements], [st.digest for st in echo.statements])
    return xonly.verify(echo.signature, msg)


@dataclass
class _Session:
    members: tuple[PeerId, ...]
    held: dict[PeerId, Statement] = field(default_factory=dict)
    """Sender statements received from the senders themselves, verified."""
    payloads: dict[PeerId, bytes] = field(default_factory=dict)
    echoes: dict[PeerId, RoundEcho] = field(default_factory=dict)
    """Echoes with a valid signature and no proven conflict, by signer (the first one counts)."""
    hearsay: dict[PeerId, tuple[Statement, bool]] = field(default_factory=dict)
    """For senders not heard from directly: the first statement an echo carried, and whether it was checked."""
    echoed: bool = False
    delivered: bool = False
    proof: EquivocationProof | None = None

    def index(self, sender: PeerId) -> int:
        return self.members.index(sender)


class RoundEchoCore(SessionCore[_Session, RoundSend | RoundEcho | RoundAbort]):
    """Round echo broadcast for one member across any number of sessions; no I/O."""

    name = "round echo"
    logger = log
    max_members = MAX_ROUND_MEMBERS

    def broadcast(self, session_id: bytes, payload: bytes) -> list[Event]:
        session = self._live_session(session_id)
        if self.node_id in session.held:
            raise EchoError("this member already broadcast in this session")
        st = sign_statement(self._secret, session_id, self.node_id, message_digest(payload))
        frame = RoundSend(st, payload).encode()
        out: list[Event] = [Transmit(m, frame) for m in session.members if m != self.node_id]
        return out + self._hold(session, st, payload)

    # -- protocol --------------------------------------------------------------------------------

    def _new_session(self, members: tuple[PeerId, ...]) -> _Session:
        return _Session(members)

    def _decode(self, data: bytes) -> RoundSend | RoundEcho | RoundAbort:
        return decode_round(data)

    def _abort_frame(self, proof: EquivocationProof) -> bytes:
        return RoundAbort(proof.first, proof.second).encode()

    def _handle(self, peer: PeerId, frame: RoundSend | RoundEcho | RoundAbort) -> list[Event]:
        session = self._sessions[frame.session_id]
        if isinstance(frame, RoundAbort):
            return self._on_abort(peer, session, EquivocationProof(frame.first, frame.second))
        if session.proof is not None:
            return []
        if peer not in session.members:
            raise EchoViolation(peer, "not a member of the session")
        if isinstance(frame, RoundSend):
            return self._on_send(peer, session, frame)
        return self._on_echo(peer, session, frame)

    def _on_send(self, peer: PeerId, session: _Session, frame: RoundSend) -> list[Event]:
        st = frame.statement
        if st.sender != peer or st.signer != peer:
            raise EchoViolation(peer, "message sent on behalf of another member")
        if message_digest(frame.payload) != st.digest:
            raise EchoViolation(peer, "message does not match its statement")
        known = session.held.get(peer)
        if known is not None and known.digest == st.digest:
            return []  # duplicate
        if not verify_statement(st):
            raise EchoViolation(peer, "invalid sender signature")
        if known is not None:
            return self._abort(session, EquivocationProof(known, st))
        return self._hold(session, st, frame.payload)

    def _hold(self, session: _Session, st: Statement, payload: bytes) -> list[Event]:
        """Keep a sender's (verified) message and check it against every echo already here."""
        sender = st.sender
        session.held[sender] = st
        session.payloads[sender] = payload
        session.hearsay.pop(sender, None)
        i = session.index(sender)
        for signer, echo in list(session.echoes.items()):
            carried = echo.statements[i]
            if carried.digest == st.digest:
                continue
            if verify_statement(carried):
                return self._abort(session, EquivocationProof(st, carried))
            log.warning("round echo: %s echoed a forged statement of %s", signer.hex()[:16], sender.hex()[:16])
            del session.echoes[signer]
        out: list[Event] = []
        if not session.echoed and len(session.held) == len(session.members):
            session.echoed = True
            echo = sign_echo(self._secret, st.session_id, [session.held[m] for m in session.members])
            session.echoes[self.node_id] = echo
            data = echo.encode()
            out += [Transmit(m, data) for m in session.members if m != self.node_id]
        return out + self._check_delivery(session)

    def _on_echo(self, peer: PeerId, session: _Session, echo: RoundEcho) -> list[Event]:
        if echo.signer != peer:
            raise EchoViolation(peer, "echo not signed by the member that sent it")
        if tuple(st.sender for st in echo.statements) != session.members:
            raise EchoViolation(peer, "echo does not list the session's members in order")
        if peer in session.echoes:
            return []  # the first echo from a member counts
        if not verify_echo(echo):
            raise EchoViolation(peer, "invalid echo signature")
        for carried in echo.statements:
            out = self._compare(peer, session, carried)
            if out:
                return out
        session.echoes[peer] = echo
        return self._check_delivery(session)

    def _compare(self, peer: PeerId, session: _Session, carried: Statement) -> list[Event]:
        """Check one statement an echo carries against what is known of its sender; statements are
        verified only here, when the hashes differ."""
        sender = carried.sender
        known = session.held.get(sender)
        if known is None:
            first = session.hearsay.get(sender)
            if first is None:
                session.hearsay[sender] = (carried, False)
                return []
            known, checked = first
            if known.digest == carried.digest:
                return []
            if not checked and not verify_statement(known):
                session.hearsay[sender] = (carried, False)  # the earlier echo lied; this one may too
                return self._compare(peer, session, carried)
            session.hearsay[sender] = (known, True)
        elif known.digest == carried.digest:
            return []
        if not verify_statement(carried):
            raise EchoViolation(peer, f"echo carries a forged statement of {sender.hex()[:16]}")
        return self._abort(session, EquivocationProof(known, carried))

    def _check_delivery(self, session: _Session) -> list[Event]:
        n = len(session.members)
        if session.delivered or len(session.held) != n or len(session.echoes) != n:
            return []
        digests = [session.held[m].digest for m in session.members]
        for echo in session.echoes.values():
            if [st.digest for st in echo.statements] != digests:
                return []
        session.delivered = True
        sid = session.held[session.members[0]].session_id
        return [Delivered(sid, m, session.payloads[m]) for m in session.members]


class RoundEchoBroadcast(BroadcastDriver):
    """Runs `RoundEchoCore` over `channel` (which must deliver reliably: a ReliableChannel or a Mux port).

    The API is `EchoBroadcast`'s: a delivered round calls the deliver callbacks once per sender, in
    member order, all within one step of the event loop, and the whole round is visible before the first
    callback runs."""

    name = "round echo"
    reject_reason = "round echo"
    logger = log
    whole_rounds = True
    core: RoundEchoCore

    def __init__(self, channel: Channel, secret_key: bytes) -> None:
        super().__init__(channel, RoundEchoCore(secret_key))

    async def receive_all(self, session_id: bytes) -> dict[PeerId, bytes]:
        """Wait for the whole round; raises EquivocationDetected if the session aborts."""
        return await self._wait(session_id, lambda got: dict(got) if got else None)
