"""Echo broadcast with equivocation proofs, over a reliable channel.

ChillDKG's first round needs every honest member to end with the same message from each sender, or
to abort. Protocol for one session (a 32-byte id and a member list), for each sender S:

1. S signs the statement "in session sid, S broadcast the message with hash d" and sends the message
   with that statement to every member.
2. A member that receives it checks the statement, then signs the same kind of statement as its own
   echo and sends every member the echo together with S's statement.
3. A member delivers S's message once it holds the message and, for every member of the session, a
   valid statement over that same (sid, S, d); S's own statement counts as S's echo.

Two statements signed by S over the same (sid, S) with different hashes are an equivocation proof
(`echo_base.EquivocationProof`). The member that finds one aborts the session and sends the proof to
every member, who check it and abort too.

`EchoCore` is the protocol without I/O, on the session handling it shares with
`round_echo.RoundEchoCore` (`echo_base.SessionCore`); `EchoBroadcast` runs it over a `Channel`
(normally a `ReliableChannel` or one port of a `Mux`). A member's stack (`links`) does not build it: the
DKG's rounds, where every member speaks once, run on the round echo, with O(n) frames instead of O(n²).
This is the general protocol, for sessions whose senders do not all speak at once, and the baseline
`bench/net.py` measures the round echo against.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field

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
from .wire_echo import EchoAbort, EchoEcho, EchoSend, Statement, decode_echo

log = logging.getLogger("frostfed.net.echo")


@dataclass
class _Instance:
    """One sender's broadcast within a session, as seen here."""

    sender_statement: Statement | None = None
    payload: bytes | None = None
    echoes: dict[PeerId, Statement] = field(default_factory=dict)
    delivered: bool = False


@dataclass
class _Session:
    members: tuple[PeerId, ...]
    instances: dict[PeerId, _Instance]
    proof: EquivocationProof | None = None


class EchoCore(SessionCore[_Session, EchoSend | EchoEcho | EchoAbort]):
    """Echo broadcast for one member across any number of sessions; no I/O."""

    name = "echo"
    logger = log

    def broadcast(self, session_id: bytes, payload: bytes) -> list[Event]:
        session = self._live_session(session_id)
        inst = session.instances[self.node_id]
        if inst.sender_statement is not None:
            raise EchoError("this member already broadcast in this session")
        st = sign_statement(self._secret, session_id, self.node_id, message_digest(payload))
        inst.sender_statement, inst.payload = st, payload
        inst.echoes[self.node_id] = st
        frame = EchoSend(st, payload).encode()
        out: list[Event] = [Transmit(m, frame) for m in session.members if m != self.node_id]
        return out + self._check_delivery(session_id, session, self.node_id)

    # -- protocol --------------------------------------------------------------------------------

    def _new_session(self, members: tuple[PeerId, ...]) -> _Session:
        return _Session(members, {m: _Instance() for m in members})

    def _decode(self, data: bytes) -> EchoSend | EchoEcho | EchoAbort:
        return decode_echo(data)

    def _abort_frame(self, proof: EquivocationProof) -> bytes:
        return proof.encode()

    def _handle(self, peer: PeerId, frame: EchoSend | EchoEcho | EchoAbort) -> list[Event]:
        session = self._sessions[frame.session_id]
        if isinstance(frame, EchoAbort):
            return self._on_abort(peer, session, EquivocationProof(frame.first, frame.second))
        if session.proof is not None:
            return []
        if isinstance(frame, EchoSend):
            return self._on_send(peer, session, frame)
        return self._on_echo(peer, session, frame)

    def _sender_statement(self, peer: PeerId, session: _Session, st: Statement) -> _Instance:
        if st.sender not in session.instances:
            raise EchoViolation(peer, "sender is not a member of the session")
        if st.signer != st.sender:
            raise EchoViolation(peer, "sender statement not signed by the sender")
        inst = session.instances[st.sender]
        known = inst.sender_statement
        if known is not None and known.digest == st.digest and known.signature == st.signature:
            return inst
        if not verify_statement(st):
            raise EchoViolation(peer, "invalid sender signature")
        return inst

    def _on_send(self, peer: PeerId, session: _Session, frame: EchoSend) -> list[Event]:
        st = frame.statement
        if st.sender != peer:
            raise EchoViolation(peer, "message sent on behalf of another member")
        if message_digest(frame.payload) != st.digest:
            raise EchoViolation(peer, "message does not match its statement")
        inst = self._sender_statement(peer, session, st)
        out = self._note_sender_statement(session, inst, st)
        if session.proof is not None:
            return out
        if inst.payload is not None:
            return out  # duplicate
        inst.payload = frame.payload
        echo = sign_statement(self._secret, st.session_id, st.sender, st.digest)
        inst.echoes[self.node_id] = echo
        data = EchoEcho(st, echo).encode()
        out += [Transmit(m, data) for m in session.members if m != self.node_id]
        return out + self._check_delivery(st.session_id, session, st.sender)

    def _on_echo(self, peer: PeerId, session: _Session, frame: EchoEcho) -> list[Event]:
        st, echo = frame.sender_statement, frame.echo_statement
        if echo.signer != peer:
            raise EchoViolation(peer, "echo not signed by the member that sent it")
        if peer not in session.instances:
            raise EchoViolation(peer, "not a member of the session")
        if (echo.session_id, echo.sender, echo.digest) != (st.session_id, st.sender, st.digest):
            raise EchoViolation(peer, "echo does not match the statement it carries")
        inst = self._sender_statement(peer, session, st)
        out = self._note_sender_statement(session, inst, st)
        if session.proof is not None:
            return out
        if peer in inst.echoes:
            return out  # first echo from a member counts
        if not verify_statement(echo):
            raise EchoViolation(peer, "invalid echo signature")
        inst.echoes[peer] = echo
        return out + self._check_delivery(st.session_id, session, st.sender)

    def _note_sender_statement(self, session: _Session, inst: _Instance, st: Statement) -> list[Event]:
        """Record the sender's (verified) statement; a second digest is an equivocation."""
        known = inst.sender_statement
        if known is None:
            inst.sender_statement = st
            inst.echoes.setdefault(st.sender, st)
            return []
        if known.digest == st.digest:
            return []
        return self._abort(session, EquivocationProof(known, st))

    def _check_delivery(self, session_id: bytes, session: _Session, sender: PeerId) -> list[Event]:
        inst = session.instances[sender]
        if inst.delivered or inst.payload is None or inst.sender_statement is None:
            return []
        digest = inst.sender_statement.digest
        if all(m in inst.echoes and inst.echoes[m].digest == digest for m in session.members):
            inst.delivered = True
            return [Delivered(session_id, sender, inst.payload)]
        return []


class EchoBroadcast(BroadcastDriver):
    """Runs `EchoCore` over `channel` (which must deliver reliably: a ReliableChannel or a Mux port)."""

    name = "echo"
    reject_reason = "echo broadcast"
    logger = log
    core: EchoCore

    def __init__(self, channel: Channel, secret_key: bytes) -> None:
        super().__init__(channel, EchoCore(secret_key))

    async def receive(self, session_id: bytes, sender: PeerId) -> bytes:
        """Wait for `sender`'s message in the session; raises EquivocationDetected if it aborts."""
        return await self._wait(session_id, lambda got: got.get(sender))

    async def receive_all(self, session_id: bytes, members: Sequence[PeerId]) -> dict[PeerId, bytes]:
        """Wait for every member's message (what ChillDKG's round needs); raises EquivocationDetected."""
        return {m: await self.receive(session_id, m) for m in members}
