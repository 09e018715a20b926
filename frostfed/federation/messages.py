"""Federation protocol messages: canonical JSON (sorted keys, byte strings in hex), versioned, with
every field type- and length-checked on decode, so that a malformed or hostile message becomes a
`MessageError` naming the problem and never reaches protocol logic half-parsed."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

VERSION = 1
MAX_MESSAGE = 4 * 1024 * 1024
MAX_KIND = 32
_HEX = frozenset("0123456789abcdefABCDEF")


class MessageError(Exception):
    """A received message is malformed; the sender is at fault."""


def encode(kind: str, body: dict[str, Any]) -> bytes:
    return json.dumps({"v": VERSION, "type": kind, "body": body}, sort_keys=True, separators=(",", ":")).encode()


@dataclass(frozen=True)
class Message:
    kind: str
    body: dict[str, Any]

    def get(self, key: str, typ: type | tuple[type, ...]) -> Any:
        if key not in self.body:
            raise MessageError(f"{self.kind}: missing field '{key}'")
        value = self.body[key]
        if (isinstance(value, bool) and typ is not bool) or not isinstance(value, typ):
            raise MessageError(f"{self.kind}: field '{key}' has the wrong type")
        return value

    def text(self, key: str, max_len: int = 256) -> str:
        value = self.get(key, str)
        if len(value) > max_len:
            raise MessageError(f"{self.kind}: field '{key}' is too long")
        try:
            value.encode()  # JSON may carry lone surrogates, which SQLite and UTF-8 logs cannot take
        except UnicodeEncodeError:
            raise MessageError(f"{self.kind}: field '{key}' is not valid Unicode") from None
        return value

    def integer(self, key: str, lo: int = 0, hi: int = 2**63) -> int:
        value = self.get(key, int)
        if not lo <= value <= hi:
            raise MessageError(f"{self.kind}: field '{key}' is out of range")
        return value

    def hexbytes(self, key: str, length: int | None = None, max_len: int = MAX_MESSAGE) -> bytes:
        return _hex(self.kind, key, self.get(key, str), length, max_len)

    def hexlist(self, key: str, length: int | None = None, max_items: int = 10_000) -> list[bytes]:
        items = self.get(key, list)
        if len(items) > max_items:
            raise MessageError(f"{self.kind}: field '{key}' has too many items")
        out = []
        for i, item in enumerate(items):
            if not isinstance(item, str):
                raise MessageError(f"{self.kind}: {key}[{i}] has the wrong type")
            out.append(_hex(self.kind, f"{key}[{i}]", item, length, MAX_MESSAGE))
        return out


def _hex(kind: str, key: str, value: str, length: int | None, max_len: int) -> bytes:
    # bytes.fromhex also skips whitespace; a canonical message has none.
    if len(value) % 2 or not _HEX.issuperset(value):
        raise MessageError(f"{kind}: field '{key}' is not hex")
    raw = bytes.fromhex(value)
    if length is not None and len(raw) != length:
        raise MessageError(f"{kind}: field '{key}' must be {length} bytes")
    if len(raw) > max_len:
        raise MessageError(f"{kind}: field '{key}' is too long")
    return raw


def _not_json(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def decode(data: bytes) -> Message:
    if len(data) > MAX_MESSAGE:
        raise MessageError("message too large")
    try:
        obj = json.loads(data, parse_constant=_not_json)
    except (ValueError, RecursionError):  # RecursionError: nesting too deep for the parser
        raise MessageError("message is not JSON") from None
    if not isinstance(obj, dict) or set(obj) != {"v", "type", "body"}:
        raise MessageError("message must be an object with v, type and body")
    v = obj["v"]
    if type(v) is not int or v != VERSION:  # neither true nor 1.0
        raise MessageError(f"unknown message version {str(v)[:20]!r}")
    kind = obj["type"]
    if not isinstance(kind, str) or not isinstance(obj["body"], dict):
        raise MessageError("message type or body has the wrong type")
    if not 0 < len(kind) <= MAX_KIND or not kind.isascii() or not kind.isprintable():
        raise MessageError("message type must be a short printable name")
    return Message(kind, obj["body"])
