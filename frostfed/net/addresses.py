"""Member ids and member addresses, checked one way wherever they arrive.

A value is judged alike whether it comes from the daemon's TOML file, a plugin option, a command
argument or a peer's membership proposal, so a member id or an address one path accepts is never one
another path refuses (or, worse, one another path would have let through). Each check raises
`ValidationError` (a ValueError) whose message names `where` the value came from; callers wrap it in
their own error type (ConfigError, MessageError, an RPC error).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

MAX_ADDRESS = 300
"""Longest member address accepted: a 66-character node id, '@', a DNS name of up to 253 and a port."""


class ValidationError(ValueError):
    """A value that is not what its setting, argument or message field must hold."""


def member_id(value: Any, where: str = "member id") -> bytes:
    """A member (or node) id: a 33-byte compressed public key on the curve, as 66 hex characters."""
    from frostfed.frost import secp

    try:
        if not isinstance(value, str) or len(value) != 66 or not value.isascii() or not value.isalnum():
            raise ValueError
        raw = bytes.fromhex(value)
        secp.cpoint(raw)
    except ValueError:
        raise ValidationError(f"{where} must be a 33-byte compressed public key in hex, got {value!r}") from None
    return raw


def member_id_bytes(value: Any, where: str = "member id") -> bytes:
    """The same check on the 33 raw bytes (ids that arrive already decoded)."""
    if not isinstance(value, bytes | bytearray):
        raise ValidationError(f"{where} must be 33 bytes")
    return member_id(bytes(value).hex(), where)


def host_port(value: Any, where: str = "address") -> tuple[str, int]:
    """`host:port` or `[v6 address]:port`, a port in 1..65535 and a host without spaces or separators."""
    if not isinstance(value, str) or ":" not in value or len(value) > MAX_ADDRESS:
        raise ValidationError(f"{where} must be 'host:port', got {value!r}")
    host, _, port_s = value.rpartition(":")
    if not (port_s.isascii() and port_s.isdigit()) or len(port_s) > 5:
        raise ValidationError(f"{where} has a port that is not a number: {value!r}")
    port = int(port_s)
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if not host or any(c.isspace() or c in "[]/@" for c in host) or not 0 < port < 65536:
        raise ValidationError(f"{where} must be 'host:port' with a port in 1..65535, got {value!r}")
    return host, port


def format_host_port(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


@dataclass(frozen=True)
class PeerAddress:
    """Where a member is reached: `<peer id>@<host>:<port>`, the one form a directory entry is written
    in. The peer id is the transport's name of the member: its member key for the daemon's Noise links,
    its node id inside Core Lightning. A bare `host:port` (an older directory, an operator's argument)
    is read with `peer` None."""

    peer: bytes | None
    host: str
    port: int

    def __str__(self) -> str:
        where = format_host_port(self.host, self.port)
        return f"{self.peer.hex()}@{where}" if self.peer is not None else where

    @property
    def host_port(self) -> tuple[str, int]:
        return self.host, self.port


def peer_address(value: Any, where: str = "address", *, need_host: bool = True) -> PeerAddress:
    """`[<peer id>@]<host>:<port>`; with `need_host` False also a bare `<peer id>` (a Core Lightning
    member the node already knows how to reach)."""
    if not isinstance(value, str) or len(value) > MAX_ADDRESS:
        raise ValidationError(f"{where} must be '<id>@<host>:<port>' or 'host:port', got {value!r}")
    text = value.strip()
    peer_s, at, rest = text.partition("@")
    if not at:
        if not need_host and ":" not in text:
            return PeerAddress(member_id(text, f"{where}: the id"), "", 0)
        host, port = host_port(text, where)
        return PeerAddress(None, host, port)
    peer = member_id(peer_s, f"{where}: the id")
    if not rest and not need_host:
        return PeerAddress(peer, "", 0)
    host, port = host_port(rest, where)
    return PeerAddress(peer, host, port)
