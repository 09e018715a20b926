"""Frames of the echo broadcast (`echo`): the signed statement both echo protocols are built on,
the frame shapes they share (a message with its statement, an equivocation proof), and the echo
broadcast's own send, echo and abort frames.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Self

from .wire import (
    DIGEST_LEN,
    MAX_ECHO_PAYLOAD,
    PEER_ID_LEN,
    SESSION_ID_LEN,
    SIG_LEN,
    Oversized,
    Reader,
    frame_header,
    read_peer_id,
    var_field,
)

SEND = 0x11
ECHO = 0x12
ABORT = 0x13


@dataclass(frozen=True)
class Statement:
    """`signer` says: in session `session_id`, `sender` broadcast the message hashing to `digest`."""

    session_id: bytes
    sender: bytes
    digest: bytes
    signer: bytes
    signature: bytes

    def encode_body(self) -> bytes:
        return self.session_id + self.sender + self.digest + self.signer + self.signature


STATEMENT_LEN = SESSION_ID_LEN + PEER_ID_LEN + DIGEST_LEN + PEER_ID_LEN + SIG_LEN


def read_statement(r: Reader) -> Statement:
    return Statement(
        session_id=r.take(SESSION_ID_LEN, "session id"),
        sender=read_peer_id(r, "sender"),
        digest=r.take(DIGEST_LEN, "digest"),
        signer=read_peer_id(r, "signer"),
        signature=r.take(SIG_LEN, "signature"),
    )


def statements_frame(kind: int, *statements: Statement) -> bytes:
    return frame_header(kind) + b"".join(st.encode_body() for st in statements)


def read_two_statements(r: Reader) -> tuple[Statement, Statement]:
    first = read_statement(r)
    second = read_statement(r)
    r.end()
    return first, second


@dataclass(frozen=True)
class MessageFrame:
    """A sender's message with its own signed statement over the message's hash; `KIND` is the frame
    type byte of the protocol it belongs to."""

    KIND: ClassVar[int]
    statement: Statement
    payload: bytes

    @property
    def session_id(self) -> bytes:
        return self.statement.session_id

    def encode(self) -> bytes:
        if len(self.payload) > MAX_ECHO_PAYLOAD:
            raise Oversized(f"payload of {len(self.payload)} bytes")
        return frame_header(self.KIND) + self.statement.encode_body() + var_field(self.payload)

    @classmethod
    def read(cls, r: Reader) -> Self:
        """The frame's body, after the header."""
        statement = read_statement(r)
        payload = r.var_bytes(MAX_ECHO_PAYLOAD, "payload")
        r.end()
        return cls(statement, payload)


@dataclass(frozen=True)
class ProofFrame:
    """An equivocation proof: two statements signed by the sender with different digests; `KIND` is the
    frame type byte of the protocol it belongs to."""

    KIND: ClassVar[int]
    first: Statement
    second: Statement

    @property
    def session_id(self) -> bytes:
        return self.first.session_id

    def encode(self) -> bytes:
        return statements_frame(self.KIND, self.first, self.second)


@dataclass(frozen=True)
class EchoSend(MessageFrame):
    """The sender's message with its own signed statement over the message's hash."""

    KIND = SEND


@dataclass(frozen=True)
class EchoEcho:
    """A member's statement about what it received, carrying the sender's own statement it echoes."""

    sender_statement: Statement
    echo_statement: Statement

    @property
    def session_id(self) -> bytes:
        return self.sender_statement.session_id

    def encode(self) -> bytes:
        return statements_frame(ECHO, self.sender_statement, self.echo_statement)


@dataclass(frozen=True)
class EchoAbort(ProofFrame):
    """The echo broadcast's equivocation proof."""

    KIND = ABORT


def decode_echo(data: bytes) -> EchoSend | EchoEcho | EchoAbort:
    r = Reader(data)
    kind = r.header({SEND, ECHO, ABORT})
    if kind == SEND:
        return EchoSend.read(r)
    first, second = read_two_statements(r)
    if kind == ECHO:
        return EchoEcho(first, second)
    return EchoAbort(first, second)
