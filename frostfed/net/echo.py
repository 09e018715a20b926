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
that anyone can check with S's public key alone (`verify_equivocation_proof`). The member that finds
one aborts the session and sends the proof to every member, who check it and abort too.

Statements are BIP340 signatures by the member's identity key (x-only form of its 33-byte id) over
tagged_hash("frostfed/echo/statement", sid || S || d). `EchoCore` is the protocol without I/O;
`EchoBroadcast` runs it over a `Channel` (normally a `ReliableChannel` or one port of a `Mux`).
`SessionCore` is the session handling it shares with `round_echo.RoundEchoCore`.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import ClassVar, Generic, Protocol, TypeVar

from coincurve import PrivateKey, PublicKeyXOnly

from ..frost.secp import tagged_hash
from .broadcast_driver import (
    Aborted,
    BroadcastDriver,
    Delivered,
    EchoError,
    EchoViolation,
    EquivocationDetected,
    Event,
    Transmit,
)
from .channel import Channel, PeerId
from .wire import SESSION_ID_LEN, EchoAbort, EchoEcho, EchoSend, Statement, decode_echo

STATEMENT_TAG = "frostfed/echo/statement"
MESSAGE_TAG = "frostfed/echo/message"

log = logging.getLogger("frostfed.net.echo")


class InvalidProof(EchoError):
    pass


def message_digest(payload: bytes) -> bytes:
    return tagged_hash(MESSAGE_TAG, payload)


def statement_hash(session_id: bytes, sender: PeerId, digest: bytes) -> bytes:
    return tagged_hash(STATEMENT_TAG, session_id + sender + digest)


def sign_statement(secret_key: bytes, session_id: bytes, sender: PeerId, digest: bytes) -> Statement:
    key = PrivateKey(secret_key)
    sig = key.sign_schnorr(statement_hash(session_id, sender, digest), os.urandom(32))
    return Statement(session_id, sender, digest, key.public_key.format(), sig)


def verify_statement(st: Statement) -> bool:
    try:
        xonly = PublicKeyXOnly(st.signer[1:])
    except ValueError:
        return False
    return xonly.verify(st.signature, statement_hash(st.session_id, st.sender, st.digest))


@dataclass(frozen=True)
class EquivocationProof:
    first: Statement
    second: Statement

    @property
    def sender(self) -> PeerId:
        return self.first.sender

    @property
    def session_id(self) -> bytes:
        return self.first.session_id

    def encode(self) -> bytes:
        return EchoAbort(self.first, self.second).encode()

    @classmethod
    def decode(cls, data: bytes) -> EquivocationProof:
        frame = decode_echo(data)
        if not isinstance(frame, EchoAbort):
            raise InvalidProof("not an equivocation proof")
        return cls(frame.first, frame.second)


def verify_equivocation_proof(proof: EquivocationProof) -> PeerId:
    """Check the proof and return the id of the member it convicts; raises InvalidProof."""
    a, b = proof.first, proof.second
    if a.session_id != b.session_id or a.sender != b.sender:
        raise InvalidProof("statements are about different broadcasts")
    if a.signer != a.sender or b.signer != b.sender:
        raise InvalidProof("statements are not signed by the sender")
    if a.digest == b.digest:
        raise InvalidProof("statements agree")
    if not (verify_statement(a) and verify_statement(b)):
        raise InvalidProof("invalid signature")
    return a.sender


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


class _Frame(Protocol):
    @property
    def session_id(self) -> bytes: ...


class _SessionState(Protocol):
    members: tuple[PeerId, ...]
    proof: EquivocationProof | None


S = TypeVar("S", bound=_SessionState)
F = TypeVar("F", bound=_Frame)


class SessionCore(Generic[S, F]):
    """What both echo cores (`EchoCore`, `round_echo.RoundEchoCore`) do with sessions, apart from the
    protocol itself: opening and closing them, keeping frames that arrive before their session starts,
    and aborting on an equivocation proof. No I/O."""

    name: ClassVar[str]
    """How log lines name the protocol."""
    logger: ClassVar[logging.Logger]
    max_members: ClassVar[int | None] = None

    def __init__(self, secret_key: bytes, *, max_pending: int = 4096) -> None:
        self._secret = secret_key
        self.node_id: PeerId = PrivateKey(secret_key).public_key.format()
        self._sessions: dict[bytes, S] = {}
        self._pending: list[tuple[PeerId, F]] = []
        self._max_pending = max_pending
        self._closed: set[bytes] = set()

    def start_session(self, session_id: bytes, members: Sequence[PeerId]) -> list[Event]:
        """Open a session; frames that arrived for it early are processed now."""
        if len(session_id) != SESSION_ID_LEN:
            raise EchoError(f"session id must be {SESSION_ID_LEN} bytes")
        if session_id in self._sessions:
            raise EchoError(f"session {session_id.hex()[:16]} already started")
        if self.node_id not in members or len(set(members)) != len(members):
            raise EchoError("members must be distinct and include this member")
        if self.max_members is not None and len(members) > self.max_members:
            raise EchoError(f"at most {self.max_members} members")
        self._closed.discard(session_id)  # a closed session may be started afresh
        self._sessions[session_id] = self._new_session(tuple(members))
        early = [p for p in self._pending if p[1].session_id == session_id]
        self._pending = [p for p in self._pending if p[1].session_id != session_id]
        out: list[Event] = []
        for peer, frame in early:
            try:
                out += self._handle(peer, frame)
            except EchoViolation as exc:
                self.logger.warning("%s: %s", self.name, exc)
        return out

    def close_session(self, session_id: bytes) -> None:
        """Forget a finished session; frames still arriving for it are dropped."""
        self._sessions.pop(session_id, None)
        self._closed.add(session_id)

    def proof(self, session_id: bytes) -> EquivocationProof | None:
        s = self._sessions.get(session_id)
        return s.proof if s is not None else None

    def receive(self, peer: PeerId, data: bytes) -> list[Event]:
        """Raises WireError for undecodable frames and EchoViolation for forbidden ones."""
        frame = self._decode(data)
        sid = frame.session_id
        if sid in self._closed:
            return []
        if sid not in self._sessions:
            if len(self._pending) >= self._max_pending:
                raise EchoViolation(peer, "too many frames for sessions not started here")
            self._pending.append((peer, frame))
            return []
        return self._handle(peer, frame)

    # -- what each protocol defines ----------------------------------------------------------------

    def _new_session(self, members: tuple[PeerId, ...]) -> S:
        raise NotImplementedError

    def _decode(self, data: bytes) -> F:
        raise NotImplementedError

    def _handle(self, peer: PeerId, frame: F) -> list[Event]:
        """A frame of a started session."""
        raise NotImplementedError

    def _abort_frame(self, proof: EquivocationProof) -> bytes:
        raise NotImplementedError

    # -- shared by both protocols ------------------------------------------------------------------

    def _session(self, session_id: bytes) -> S:
        s = self._sessions.get(session_id)
        if s is None:
            raise EchoError(f"session {session_id.hex()[:16]} not started")
        return s

    def _live_session(self, session_id: bytes) -> S:
        """A started session this member may still broadcast in."""
        session = self._session(session_id)
        if session.proof is not None:
            raise EquivocationDetected(session_id, session.proof)
        return session

    def _abort(self, session: S, proof: EquivocationProof) -> list[Event]:
        session.proof = proof
        frame = self._abort_frame(proof)
        out: list[Event] = [Transmit(m, frame) for m in session.members if m != self.node_id]
        return [*out, Aborted(proof.session_id, proof)]

    def _on_abort(self, peer: PeerId, session: S, proof: EquivocationProof) -> list[Event]:
        if session.proof is not None:
            return []
        try:
            sender = verify_equivocation_proof(proof)
        except InvalidProof as exc:
            raise EchoViolation(peer, f"invalid equivocation proof: {exc}") from exc
        if sender not in session.members:
            raise EchoViolation(peer, "proof names a non-member")
        session.proof = proof
        return [Aborted(proof.session_id, proof)]


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
