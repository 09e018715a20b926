"""What lightningd accepts in a plugin's `getmanifest` answer.

lightningd refuses to start a plugin whose manifest is malformed (wrong types, options without a
known type, methods without a usage, unknown hooks, names clashing with built-in commands). The
stand-in applies the same rules so a broken manifest fails in tests as it would on a node.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

OPTION_TYPES = {"string", "int", "bool", "flag"}
KNOWN_HOOKS = {
    "peer_connected", "commitment_revocation", "db_write", "invoice_payment", "openchannel",
    "openchannel2", "openchannel2_changed", "openchannel2_sign", "rbf_channel", "htlc_accepted",
    "rpc_command", "custommsg", "onion_message_recv", "onion_message_recv_secret", "recover",
}  # fmt: skip
BUILTIN_COMMANDS = {
    "getinfo", "help", "stop", "connect", "disconnect", "listpeers", "sendcustommsg", "makesecret",
    "signmessage", "checkmessage", "listconfigs", "setconfig", "plugin", "getchaininfo", "getutxout",
    "getrawblockbyheight", "sendrawtransaction", "estimatefees", "getmanifest", "init",
}  # fmt: skip


class ManifestError(Exception):
    """lightningd would kill the plugin for this manifest."""


@dataclass
class Option:
    name: str
    type: str
    default: Any
    description: str
    multi: bool
    dynamic: bool


@dataclass
class Manifest:
    options: dict[str, Option] = field(default_factory=dict)
    rpcmethods: dict[str, dict[str, Any]] = field(default_factory=dict)
    subscriptions: set[str] = field(default_factory=set)
    hooks: set[str] = field(default_factory=set)
    dynamic: bool = True
    nonnumericids: bool = False
    custommessages: list[int] = field(default_factory=list)


def _expect(cond: bool, message: str) -> None:
    if not cond:
        raise ManifestError(message)


def _option(tok: Any) -> Option:
    _expect(isinstance(tok, dict), "option must be an object")
    name = tok.get("name")
    _expect(isinstance(name, str) and name != "", f"option without a name: {tok}")
    otype = tok.get("type")
    _expect(otype in OPTION_TYPES, f"Unknown option type {otype!r} for {name}")
    desc = tok.get("description")
    _expect(isinstance(desc, str), f"option {name} has no description")
    for flag in ("multi", "dynamic"):
        _expect(isinstance(tok.get(flag, False), bool), f"option {name}: {flag} must be a bool")
    dep = tok.get("deprecated", False)
    _expect(isinstance(dep, bool | list), f"option {name}: deprecated must be a bool or a list")
    default = tok.get("default")
    if otype == "flag":
        _expect(default is None or default is False, f"flag option {name} cannot have a default")
    elif default is not None:
        ok = {
            "string": isinstance(default, str),
            "int": isinstance(default, int) and not isinstance(default, bool),
            "bool": isinstance(default, bool),
        }[otype]
        _expect(ok, f"option {name}: default {default!r} is not a valid {otype}")
    return Option(name, otype, default, desc, tok.get("multi", False), tok.get("dynamic", False))


def parse_manifest(result: Any) -> Manifest:
    """Validate a `getmanifest` result; raise ManifestError with lightningd's reason."""
    _expect(isinstance(result, dict), "Invalid/missing result tok in getmanifest response")
    m = Manifest()
    for key, kind in (("dynamic", bool), ("nonnumericids", bool)):
        if key in result:
            _expect(isinstance(result[key], kind), f"Bad '{key}' field in manifest")
    m.dynamic = result.get("dynamic", True)
    m.nonnumericids = result.get("nonnumericids", False)

    options = result.get("options", [])
    _expect(isinstance(options, list), '"options" is not an array')
    for tok in options:
        opt = _option(tok)
        _expect(opt.name not in m.options, f"option {opt.name} registered twice")
        m.options[opt.name] = opt

    methods = result.get("rpcmethods", [])
    _expect(isinstance(methods, list), '"rpcmethods" is not an array')
    for tok in methods:
        _expect(isinstance(tok, dict), "rpcmethod must be an object")
        name = tok.get("name")
        _expect(isinstance(name, str) and name != "", "rpcmethod has no name")
        _expect(isinstance(tok.get("usage"), str), f'"usage" not provided by plugin for {name}')
        if "description" in tok:
            _expect(isinstance(tok["description"], str), f"rpcmethod {name}: description must be a string")
        _expect(
            name not in BUILTIN_COMMANDS and name not in m.rpcmethods,
            f'Could not register method "{name}", a method with that name is already registered',
        )
        m.rpcmethods[name] = tok

    subs = result.get("subscriptions", [])
    _expect(isinstance(subs, list) and all(isinstance(s, str) for s in subs), "Bad subscriptions")
    m.subscriptions = set(subs)

    hooks = result.get("hooks", [])
    _expect(isinstance(hooks, list), '"hooks" is not an array')
    for tok in hooks:
        name = tok.get("name") if isinstance(tok, dict) else tok
        _expect(name in KNOWN_HOOKS, f"Unknown hook {name}")
        m.hooks.add(name)

    custom = result.get("custommessages", [])
    _expect(
        isinstance(custom, list) and all(isinstance(t, int) and 0 <= t <= 0xFFFF for t in custom),
        "custommessages must be an array of u16",
    )
    m.custommessages = list(custom)
    notifs = result.get("notifications", [])
    _expect(isinstance(notifs, list), '"notifications" is not an array')
    return m
