"""What both echo broadcasts share: signed statements, equivocation proofs, the events a sans-I/O core
returns, and the session handling of a core.

A statement is a BIP340 signature by a member's identity key (x-only form of its 33-byte id) over
tagged_hash("frostfed/echo/statement", sid || S || d): "in session sid, S broadcast the message with
hash d". Two statements signed by S over the same (sid, S) with different hashes are an equivocation
proof that anyone can check with S's public key alone (`verify_equivocation_proof`); both protocols
(`echo.EchoCore`, `round_echo.RoundEchoCore`) produce and accept the same proof. `SessionCore` opens and
closes sessions, keeps frames that arrive early, and aborts on a proof; `broadcast_driver` carries the
events out over a channel.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar, Generic, Protocol, TypeVar

from coincurve import PrivateKey, PublicKeyXOnly

from ..frost.secp import tagged_hash
from .channel import PeerId
from .wire import SESSION_ID_LEN
from .wire_echo import EchoAbort, Statement, decode_echo

STATEMENT_TAG = "frostfed/echo/statement"
MESSAGE_TAG = "frostfed/echo/message"


class EchoError(Exception):
    pass


class EchoViolation(EchoError):
    """A member sent a well-formed frame the protocol forbids (bad signature, wrong signer...)."""

    def __init__(self, peer: PeerId, reason: str) -> None:
        super().__init__(f"{peer.hex()[:16]}: {reason}")
        self.peer = peer
        self.reason = reason


class EquivocationDetected(EchoError):
    """The session aborted: `proof` shows that `proof.sender` broadcast two different messages."""

    def __init__(self, session_id: bytes, proof: EquivocationProof) -> None:
        super().__init__(f"session {session_id.hex()[:16]}: {proof.sender.hex()} equivocated")
        self.session_id = session_id
        self.proof = proof


@dataclass(frozen=True)
class Transmit:
    peer: PeerId
    frame: bytes


@dataclass(frozen=True)
class Delivered:
    session_id: bytes
    sender: PeerId
    payload: bytes


@dataclass(frozen=True)
class Aborted:
    session_id: bytes
    proof: EquivocationProof


Event = Transmit | Delivered | Aborted


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



class _Frame(Protocol):
    @property
    def session_id(self) -> bytes: ...


class _SessionState(Protocol):
    members: tuple[PeerId, ...]
    proof: EquivocationProof | None


S = TypeVar("S", bound=_SessionState)
F = TypeVar("F", bound=_Frame)


class SessionCore(Generic[S, F]):
    """What both echo cores (`echo.EchoCore`, `round_echo.RoundEchoCore`) do with sessions, apart from the
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
