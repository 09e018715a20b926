"""Binary encoding of every message the transport layers exchange.

Each frame starts with a version byte and a type byte, and every variable-length field carries an
explicit length with a ceiling. Decoders read a frame whole or raise a `WireError` subclass that says
what was wrong; a peer that sends such input is cut off by the layer that decoded it, and nothing
else is affected. Nothing here performs I/O.

This module holds what every frame shares (version, limits, errors, the `Reader` and the field
encoders); each family of frames has its own module: `wire_reliable` (data and acknowledgements),
`wire_echo` (echo broadcast), `wire_round` (round echo broadcast), `wire_mux` (ports). Their type
bytes never overlap: 0x01-0x02 reliable, 0x11-0x13 echo, 0x21 mux, 0x31-0x33 round echo.
"""

from __future__ import annotations

import struct

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


def frame_header(kind: int) -> bytes:
    return bytes((WIRE_VERSION, kind))


def var_field(b: bytes) -> bytes:
    return struct.pack(">I", len(b)) + b


def read_peer_id(r: Reader, what: str) -> bytes:
    b = r.take(PEER_ID_LEN, what)
    if b[0] not in (2, 3):
        raise Malformed(f"{what}: not a compressed public key")
    return b
