"""Binary encoding of every message the transport layers exchange.

Each frame starts with a version byte and a type byte, and every variable-length field carries an
explicit length with a ceiling. Decoders read a frame whole or raise a `WireError` subclass that says
what was wrong; a peer that sends such input is cut off by the layer that decoded it, and nothing
else is affected. Nothing here performs I/O.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import ClassVar, Self

WIRE_VERSION = 1

MAX_CHUNK = 65535
MAX_ECHO_PAYLOAD = 4 * 1024 * 1024
SESSION_ID_LEN = 32
PEER_ID_LEN = 33
DIGEST_LEN = 32
SIG_LEN = 64


class WireError(ValueError):
    """Input that is not a valid frame of this protocol."""


class UnknownVersion(WireError):
    pass


class UnknownType(WireError):
    pass


class Truncated(WireError):
    pass


class Oversized(WireError):
    pass


class TrailingBytes(WireError):
    pass


class Malformed(WireError):
    """A field has a length or value that the protocol never produces."""


class Reader:
    """Cursor over one frame; every read checks the bytes are there."""

    def __init__(self, data: bytes) -> None:
        self._data = bytes(data)
        self._pos = 0

    def take(self, n: int, what: str) -> bytes:
        if self._pos + n > len(self._data):
            raise Truncated(f"{what}: need {n} bytes, {len(self._data) - self._pos} left")
        out = self._data[self._pos : self._pos + n]
        self._pos += n
        return out

    def u8(self, what: str) -> int:
        return self.take(1, what)[0]

    def u16(self, what: str) -> int:
        return struct.unpack(">H", self.take(2, what))[0]

    def u32(self, what: str) -> int:
        return struct.unpack(">I", self.take(4, what))[0]

    def u64(self, what: str) -> int:
        return struct.unpack(">Q", self.take(8, what))[0]

    def var_bytes(self, max_len: int, what: str) -> bytes:
        n = self.u32(f"{what} length")
        if n > max_len:
            raise Oversized(f"{what}: {n} bytes, limit {max_len}")
        return self.take(n, what)

    def header(self, known_types: set[int]) -> int:
        version = self.u8("version")
        if version != WIRE_VERSION:
            raise UnknownVersion(f"wire version {version}, expected {WIRE_VERSION}")
        kind = self.u8("type")
        if kind not in known_types:
            raise UnknownType(f"frame type {kind}")
        return kind

    def remaining(self) -> int:
        return len(self._data) - self._pos

    def end(self) -> None:
        if self._pos != len(self._data):
            raise TrailingBytes(f"{len(self._data) - self._pos} bytes after the frame")


def _header(kind: int) -> bytes:
    return bytes((WIRE_VERSION, kind))


def _var(b: bytes) -> bytes:
    return struct.pack(">I", len(b)) + b


def _peer_id(r: Reader, what: str) -> bytes:
    b = r.take(PEER_ID_LEN, what)
    if b[0] not in (2, 3):
        raise Malformed(f"{what}: not a compressed public key")
    return b


# --- reliable delivery -------------------------------------------------------------------------

DATA = 0x01
ACK = 0x02

FLAG_LAST = 0x01
"""Set on the final chunk of a message."""

DATA_HEADER_LEN = 2 + 8 + 8 + 8 + 1 + 2
"""Bytes a data frame adds around its chunk."""


@dataclass(frozen=True)
class DataFrame:
    """One chunk of a message. `base` is where the sender's oldest unacknowledged message starts, so a
    receiver that lost its state (restart) knows where to pick up."""

    incarnation: int
    base: int
    seq: int
    last: bool
    chunk: bytes

    def encode(self) -> bytes:
        flags = FLAG_LAST if self.last else 0
        if len(self.chunk) > MAX_CHUNK:
            raise Oversized(f"chunk of {len(self.chunk)} bytes")
        return (
            _header(DATA)
            + struct.pack(">QQQBH", self.incarnation, self.base, self.seq, flags, len(self.chunk))
            + self.chunk
        )


@dataclass(frozen=True)
class AckFrame:
    """Acknowledges every seq below `cumulative`, plus seq cumulative+1+i for each bit i of `selective`.

    `incarnation` is the sender's being acknowledged; `receiver` is the acknowledging member's own, so a
    sender notices when the receiver restarted and lost the chunks it had only selectively acknowledged.
    """

    incarnation: int
    receiver: int
    cumulative: int
    selective: int

    def encode(self) -> bytes:
        return _header(ACK) + struct.pack(">QQQQ", self.incarnation, self.receiver, self.cumulative, self.selective)


def decode_reliable(data: bytes) -> DataFrame | AckFrame:
    r = Reader(data)
    kind = r.header({DATA, ACK})
    if kind == DATA:
        incarnation = r.u64("incarnation")
        base = r.u64("base")
        seq = r.u64("seq")
        if base > seq:
            raise Malformed(f"base {base} after seq {seq}")
        flags = r.u8("flags")
        if flags & ~FLAG_LAST:
            raise Malformed(f"unknown flags {flags:#x}")
        n = r.u16("chunk length")
        chunk = r.take(n, "chunk")
        r.end()
        return DataFrame(incarnation, base, seq, bool(flags & FLAG_LAST), chunk)
    incarnation = r.u64("incarnation")
    receiver = r.u64("receiver")
    cumulative = r.u64("cumulative")
    selective = r.u64("selective")
    r.end()
    return AckFrame(incarnation, receiver, cumulative, selective)


def encode_bundle(messages: list[bytes]) -> bytes:
    """Several messages sent as one, so that a burst of small messages costs one frame."""
    return b"".join(struct.pack(">I", len(m)) + m for m in messages)


def decode_bundle(data: bytes, max_message: int) -> list[bytes]:
    r = Reader(data)
    out = []
    while r.remaining():
        out.append(r.var_bytes(max_message, "bundled message"))
    if not out:
        raise Malformed("empty bundle")
    return out


# --- echo broadcast ---------------------------------------------------------------------------

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


def _statement(r: Reader) -> Statement:
    return Statement(
        session_id=r.take(SESSION_ID_LEN, "session id"),
        sender=_peer_id(r, "sender"),
        digest=r.take(DIGEST_LEN, "digest"),
        signer=_peer_id(r, "signer"),
        signature=r.take(SIG_LEN, "signature"),
    )


def _statements_frame(kind: int, *statements: Statement) -> bytes:
    return _header(kind) + b"".join(st.encode_body() for st in statements)


def _two_statements(r: Reader) -> tuple[Statement, Statement]:
    first = _statement(r)
    second = _statement(r)
    r.end()
    return first, second


@dataclass(frozen=True)
class _MessageFrame:
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
        return _header(self.KIND) + self.statement.encode_body() + _var(self.payload)

    @classmethod
    def read(cls, r: Reader) -> Self:
        """The frame's body, after the header."""
        statement = _statement(r)
        payload = r.var_bytes(MAX_ECHO_PAYLOAD, "payload")
        r.end()
        return cls(statement, payload)


@dataclass(frozen=True)
class _ProofFrame:
    """An equivocation proof: two statements signed by the sender with different digests; `KIND` is the
    frame type byte of the protocol it belongs to."""

    KIND: ClassVar[int]
    first: Statement
    second: Statement

    @property
    def session_id(self) -> bytes:
        return self.first.session_id

    def encode(self) -> bytes:
        return _statements_frame(self.KIND, self.first, self.second)


@dataclass(frozen=True)
class EchoSend(_MessageFrame):
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
        return _statements_frame(ECHO, self.sender_statement, self.echo_statement)


@dataclass(frozen=True)
class EchoAbort(_ProofFrame):
    """The echo broadcast's equivocation proof."""

    KIND = ABORT


def decode_echo(data: bytes) -> EchoSend | EchoEcho | EchoAbort:
    r = Reader(data)
    kind = r.header({SEND, ECHO, ABORT})
    if kind == SEND:
        return EchoSend.read(r)
    first, second = _two_statements(r)
    if kind == ECHO:
        return EchoEcho(first, second)
    return EchoAbort(first, second)


# --- round echo broadcast ---------------------------------------------------------------------

ROUND_SEND = 0x31
ROUND_ECHO = 0x32
ROUND_ABORT = 0x33

MAX_ROUND_MEMBERS = 1024
ROUND_ENTRY_LEN = PEER_ID_LEN + DIGEST_LEN + SIG_LEN


@dataclass(frozen=True)
class RoundSend(_MessageFrame):
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
        body = [_header(ROUND_ECHO), self.session_id, self.signer, struct.pack(">H", len(self.statements))]
        for st in self.statements:
            if st.session_id != self.session_id or st.signer != st.sender:
                raise Malformed("a round echo carries only its session's statements signed by their senders")
            body.append(st.sender + st.digest + st.signature)
        body.append(self.signature)
        return b"".join(body)


@dataclass(frozen=True)
class RoundAbort(_ProofFrame):
    """The round echo broadcast's equivocation proof."""

    KIND = ROUND_ABORT


def decode_round(data: bytes) -> RoundSend | RoundEcho | RoundAbort:
    r = Reader(data)
    kind = r.header({ROUND_SEND, ROUND_ECHO, ROUND_ABORT})
    if kind == ROUND_SEND:
        return RoundSend.read(r)
    if kind == ROUND_ABORT:
        return RoundAbort(*_two_statements(r))
    sid = r.take(SESSION_ID_LEN, "session id")
    signer = _peer_id(r, "signer")
    count = r.u16("statement count")
    if not 1 <= count <= MAX_ROUND_MEMBERS:
        raise Malformed(f"{count} statements, expected 1 to {MAX_ROUND_MEMBERS}")
    if r.remaining() < count * ROUND_ENTRY_LEN + SIG_LEN:
        raise Truncated(f"{count} statements need {count * ROUND_ENTRY_LEN + SIG_LEN} bytes, {r.remaining()} left")
    statements = []
    for _ in range(count):
        sender = _peer_id(r, "sender")
        statements.append(Statement(sid, sender, r.take(DIGEST_LEN, "digest"), sender, r.take(SIG_LEN, "signature")))
    if len({st.sender for st in statements}) != count:
        raise Malformed("a sender appears twice")
    signature = r.take(SIG_LEN, "signature")
    r.end()
    return RoundEcho(sid, signer, tuple(statements), signature)


# --- port multiplexing ------------------------------------------------------------------------

MUX = 0x21


def encode_mux(port: int, body: bytes) -> bytes:
    if not 0 <= port <= 255:
        raise Malformed(f"port {port}")
    return _header(MUX) + bytes((port,)) + body


def decode_mux(data: bytes) -> tuple[int, bytes]:
    r = Reader(data)
    r.header({MUX})
    port = r.u8("port")
    return port, data[3:]
