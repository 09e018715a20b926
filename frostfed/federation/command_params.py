"""How a command's arguments are checked: one validator per kind of parameter.

Each takes the parameter's name and the value as it came (a JSON value from the daemon's JSON-RPC,
or a string from `lightning-cli`), and returns the value the service expects or raises ValueError
with a message naming the parameter. Kept apart from the command table (`commands`) so the table
reads as the list of commands, and the input rules a malicious or mistaken caller meets are in one place.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from frostfed.net import addresses

Validator = Callable[[str, Any], Any]


def psbt(name: str, value: Any) -> str:
    if not isinstance(value, str) or not value:
        raise ValueError(f"'{name}' must be a base64 PSBT string")
    return value


def text(name: str, value: Any) -> str:
    if not isinstance(value, str) or not value or len(value) > 200:
        raise ValueError(f"'{name}' must be a non-empty string")
    return value


def feerate(name: str, value: Any) -> float:
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            raise ValueError(f"'{name}' must be a number of sat/vB") from None
    if isinstance(value, bool) or not isinstance(value, int | float) or not 1 <= value <= 10_000:
        raise ValueError(f"'{name}' must be a number of sat/vB between 1 and 10000")
    return float(value)


def outputs(name: str, value: Any) -> list[dict[str, Any]]:
    """`[{"address": ..., "sats": ...}, ...]`, also accepted as a JSON string from `lightning-cli`."""
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except (ValueError, RecursionError):
            raise ValueError(f"'{name}' must be a JSON list of {{address, sats}}") from None
    if not isinstance(value, list) or not value or len(value) > 1000:
        raise ValueError(f"'{name}' must be a non-empty list of {{address, sats}}")
    out = []
    for i, item in enumerate(value):
        if not isinstance(item, dict) or set(item) != {"address", "sats"}:
            raise ValueError(f"{name}[{i}] must be an object with exactly 'address' and 'sats'")
        addr, sats = item["address"], item["sats"]
        if not isinstance(addr, str) or not 14 <= len(addr) <= 90:
            raise ValueError(f"{name}[{i}].address is not an address")
        if isinstance(sats, bool) or not isinstance(sats, int) or not 0 < sats <= 21_000_000 * 100_000_000:
            raise ValueError(f"{name}[{i}].sats must be a positive whole number of satoshis")
        out.append({"address": addr, "sats": sats})
    return out


def member_id(name: str, value: Any) -> str:
    """A compressed public key on the curve, returned in lowercase hex (the form member lists use)."""
    try:
        return addresses.member_id(value, f"'{name}'").hex()
    except addresses.ValidationError:
        raise ValueError(f"'{name}' must be a member id (33-byte compressed public key in hex)") from None


def hostport(name: str, value: Any) -> str:
    """A member's address, `<node id>@<host>:<port>` (Core Lightning) or `<host>:<port>` (daemon)."""
    try:
        return str(addresses.peer_address(value, f"'{name}'"))
    except addresses.ValidationError:
        raise ValueError(f"'{name}' must be host:port (or <node id>@host:port) with a port in 1..65535") from None


def whole(lo: int, hi: int) -> Validator:
    def check(name: str, value: Any) -> int:
        if isinstance(value, str) and value.isascii() and value.isdigit() and len(value) <= 20:
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
            raise ValueError(f"'{name}' must be a whole number in {lo}..{hi}")
        return value

    return check


def address(name: str, value: Any) -> str:
    if not isinstance(value, str) or not 14 <= len(value) <= 90:
        raise ValueError(f"'{name}' must be a Bitcoin address")
    return value


def key(name: str, value: Any) -> str:
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)  # lightning-cli sends a numeric-looking key as a number
    if (
        not isinstance(value, str)
        or not 0 < len(value) <= 128
        or not all(c.isascii() and (c.isalnum() or c in "-_.:/") for c in value)
    ):
        raise ValueError(f"'{name}' must be 1-128 letters, digits or -_.:/")
    return value


def flag(name: str, value: Any) -> bool:
    if isinstance(value, str) and value.lower() in ("true", "false"):
        value = value.lower() == "true"
    if not isinstance(value, bool):
        raise ValueError(f"'{name}' must be true or false")
    return value
