"""Frames of the reliable delivery layer (`reliable_core`): data chunks, acknowledgements, and the
bundle format that packs several small messages into one.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from .wire import MAX_CHUNK, Malformed, Oversized, Reader, frame_header

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
            frame_header(DATA)
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
        body = struct.pack(">QQQQ", self.incarnation, self.receiver, self.cumulative, self.selective)
        return frame_header(ACK) + body


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
