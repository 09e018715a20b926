"""Frames of the round echo broadcast (`round_echo`), where every member broadcasts once per round:
one member's message, one member's signature over the whole round's digests, and the proof of an
equivocation.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from .wire import (
    DIGEST_LEN,
    PEER_ID_LEN,
    SESSION_ID_LEN,
    SIG_LEN,
    Malformed,
    Oversized,
    Reader,
    Truncated,
    frame_header,
    read_peer_id,
)
from .wire_echo import MessageFrame, ProofFrame, Statement, read_two_statements

ROUND_SEND = 0x31
ROUND_ECHO = 0x32
ROUND_ABORT = 0x33

MAX_ROUND_MEMBERS = 1024
ROUND_ENTRY_LEN = PEER_ID_LEN + DIGEST_LEN + SIG_LEN


@dataclass(frozen=True)
class RoundSend(MessageFrame):
    """One member's message of the round, with its own signed statement over the message's hash."""

    KIND = ROUND_SEND


@dataclass(frozen=True)
class RoundEcho:
    """`signer`'s signature over the digests of every message of the round, in member order, with the
    senders' own statements so that a differing digest proves an equivocation without another round trip.

    Each statement is about this session and signed by its sender, so the frame carries only sender,
    digest and signature of each."""

    session_id: bytes
    signer: bytes
    statements: tuple[Statement, ...]
    signature: bytes

    def encode(self) -> bytes:
        if not 1 <= len(self.statements) <= MAX_ROUND_MEMBERS:
            raise Oversized(f"{len(self.statements)} statements, limit {MAX_ROUND_MEMBERS}")
        body = [frame_header(ROUND_ECHO), self.session_id, self.signer, struct.pack(">H", len(self.statements))]
        for st in self.statements:
            if st.session_id != self.session_id or st.signer != st.sender:
                raise Malformed("a round echo carries only its session's statements signed by their senders")
            body.append(st.sender + st.digest + st.signature)
        body.append(self.signature)
        return b"".join(body)


@dataclass(frozen=True)
class RoundAbort(ProofFrame):
    """The round echo broadcast's equivocation proof."""

    KIND = ROUND_ABORT


def decode_round(data: bytes) -> RoundSend | RoundEcho | RoundAbort:
    r = Reader(data)
    kind = r.header({ROUND_SEND, ROUND_ECHO, ROUND_ABORT})
    if kind == ROUND_SEND:
        return RoundSend.read(r)
    if kind == ROUND_ABORT:
        return RoundAbort(*read_two_statements(r))
    sid = r.take(SESSION_ID_LEN, "session id")
    signer = read_peer_id(r, "signer")
    count = r.u16("statement count")
    if not 1 <= count <= MAX_ROUND_MEMBERS:
        raise Malformed(f"{count} statements, expected 1 to {MAX_ROUND_MEMBERS}")
    if r.remaining() < count * ROUND_ENTRY_LEN + SIG_LEN:
        raise Truncated(f"{count} statements need {count * ROUND_ENTRY_LEN + SIG_LEN} bytes, {r.remaining()} left")
    statements = []
    for _ in range(count):
        sender = read_peer_id(r, "sender")
        statements.append(Statement(sid, sender, r.take(DIGEST_LEN, "digest"), sender, r.take(SIG_LEN, "signature")))
    if len({st.sender for st in statements}) != count:
        raise Malformed("a sender appears twice")
    signature = r.take(SIG_LEN, "signature")
    r.end()
    return RoundEcho(sid, signer, tuple(statements), signature)
