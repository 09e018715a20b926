"""A member's configuration file (TOML), validated at start so that mistakes surface as one clear
message instead of a failure deep inside a signing session."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from frostfed.bitcoin.networks import NetworkError, canonical
from frostfed.net import addresses
from frostfed.net.addresses import ValidationError


class ConfigError(Exception):
    """The configuration is unusable; the message says which setting and why."""


@dataclass(frozen=True)
class MemberEntry:
    id: bytes  # 33-byte compressed public key
    host: str
    port: int


@dataclass(frozen=True)
class BitcoindSettings:
    rpc_url: str
    cookie_file: str | None = None
    user: str | None = None
    password: str | None = None
    wallet: str = "frostfed"


@dataclass(frozen=True)
class PolicySettings:
    min_feerate: float = 1.0
    max_feerate: float = 200.0
    max_fee_sats: int = 200_000
    min_confirmations: int = 1
    payout_check_command: str | None = None
    fee_budget_sats: int = 1_000_000  # all approved fees together, per fee_budget_blocks
    fee_budget_blocks: int = 144
    allow_version_3: bool = False
    allow_op_return: bool = False
    allow_consolidation: bool = False  # sign transactions that pay nobody outside the federation


@dataclass(frozen=True)
class MembershipSettings:
    min_bond_sats: int = 100_000
    min_bond_blocks: int = 1_000
    max_members: int = 100
    transition_confirmations: int = 6
    max_transition_fee_sats: int = 100_000
    expel_after_seconds: float = 0.0  # 0: never propose an expulsion by itself, nor agree to one unasked
    change_timeout_seconds: float = 300.0
    admit: frozenset[bytes] = frozenset()  # joiners this member's operator admits in advance
    admission_command: str | None = None  # asked about a join or an expulsion no operator decided
    min_change_interval_blocks: int = 6  # blocks after a change before this member takes part in the next
    min_change_interval_seconds: float = 0.0


@dataclass(frozen=True)
class Config:
    identity_key_file: Path
    listen_host: str
    listen_port: int
    data_dir: Path
    members: tuple[MemberEntry, ...]
    threshold: int
    bitcoind: BitcoindSettings | None
    policy: PolicySettings = field(default_factory=PolicySettings)
    passphrase_file: Path | None = None
    heartbeat_seconds: float = 2.0
    offline_after_seconds: float = 10.0
    roast_grace_seconds: float = 0.25
    membership: MembershipSettings = field(default_factory=MembershipSettings)
    joining: bool = False
    network: str = "regtest"  # Bitcoin Core's name (getblockchaininfo's chain)


def _hostport(value: Any, where: str) -> tuple[str, int]:
    try:
        return addresses.host_port(value, where)
    except ValidationError as e:
        raise ConfigError(str(e)) from None


def _pubkey(value: Any, where: str) -> bytes:
    try:
        return addresses.member_id(value, where)
    except ValidationError as e:
        raise ConfigError(str(e)) from None


def network_setting(value: Any, where: str) -> str:
    """A network by Bitcoin Core's or Core Lightning's name, as Bitcoin Core's name."""
    try:
        return canonical(value)
    except NetworkError as e:
        raise ConfigError(f"{where}: {e}") from None


def default_threshold(n: int) -> int:
    """Braidpool's "66% + 1": floor(2n/3) + 1."""
    return (2 * n) // 3 + 1


def threshold_setting(value: Any, n: int, where: str, *, zero_is_default: bool = False) -> int:
    """t of n signers, for the daemon's file and the plugin's option alike: a whole number in 1..n;
    absent (or 0, where an option cannot be absent) means the default, floor(2n/3) + 1."""
    if value is None or (zero_is_default and isinstance(value, int) and not isinstance(value, bool) and value == 0):
        return min(default_threshold(n), max(n, 1))
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= max(n, 1):
        raise ConfigError(f"{where} must be a whole number in 1..{max(n, 1)}, got {value!r}")
    return value


def _section(doc: dict[str, Any], name: str, required: bool) -> dict[str, Any]:
    sec = doc.get(name)
    if sec is None:
        if required:
            raise ConfigError(f"missing section [{name}]")
        return {}
    if not isinstance(sec, dict):
        raise ConfigError(f"[{name}] must be a table")
    return sec


# Every setting the file may hold: a misspelt one ("threshhold") would otherwise fall back to its
# default without a word.
KNOWN = {
    "member": {
        "identity_key_file",
        "listen",
        "data_dir",
        "passphrase_file",
        "heartbeat_seconds",
        "offline_after_seconds",
        "roast_grace_seconds",
        "joining",
    },
    "federation": {"members", "threshold", "network"},
    "bitcoind": {"rpc_url", "cookie_file", "user", "password", "wallet"},
    "policy": {
        "min_feerate",
        "max_feerate",
        "max_fee_sats",
        "min_confirmations",
        "payout_check_command",
        "fee_budget_sats",
        "fee_budget_blocks",
        "allow_version_3",
        "allow_op_return",
        "allow_consolidation",
    },
    "membership": {
        "min_bond_sats",
        "min_bond_blocks",
        "max_members",
        "transition_confirmations",
        "max_transition_fee_sats",
        "expel_after_seconds",
        "change_timeout_seconds",
        "admit",
        "admission_command",
        "min_change_interval_blocks",
        "min_change_interval_seconds",
    },
}
MEMBER_ENTRY = {"id", "address"}


def _unknown(keys: Any, known: set[str], where: str) -> None:
    extra = sorted(str(k) for k in set(keys) - known)
    if extra:
        raise ConfigError(f"unknown setting {where}{extra[0]} (known: {', '.join(sorted(known))})")


def _number(sec: dict[str, Any], key: str, default: float, lo: float, hi: float, where: str) -> float:
    v = sec.get(key, default)
    if isinstance(v, bool) or not isinstance(v, int | float) or not lo <= v <= hi:
        raise ConfigError(f"{where}.{key} must be a number in {lo}..{hi}, got {v!r}")
    return v


def _whole(sec: dict[str, Any], key: str, default: int, lo: int, hi: int, where: str) -> int:
    v = sec.get(key, default)
    if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi:
        raise ConfigError(f"{where}.{key} must be a whole number in {lo}..{hi}, got {v!r}")
    return v


def _text(sec: dict[str, Any], key: str, where: str) -> str | None:
    v = sec.get(key)
    if v is not None and (not isinstance(v, str) or not v):
        raise ConfigError(f"{where}.{key} must be a non-empty string")
    return v


def _rpc_url(value: Any) -> str:
    """Checked here because the daemon parses host and port out of it at start."""
    if not isinstance(value, str):
        raise ConfigError(f"bitcoind.rpc_url must be an http:// URL, got {value!r}")
    try:
        url = urlparse(value)
        port = url.port
    except ValueError:
        port = -1
    if url.scheme not in ("http", "https") or not url.hostname or port == -1:
        raise ConfigError(f"bitcoind.rpc_url must be an http:// URL with a host and a valid port, got {value!r}")
    return value


def parse_config(doc: dict[str, Any], base: Path) -> Config:
    sections = set(doc) - set(KNOWN)
    if sections:
        raise ConfigError(f"unknown section [{sorted(sections)[0]}] (known: {', '.join(sorted(KNOWN))})")
    member = _section(doc, "member", True)
    fed = _section(doc, "federation", True)
    btc = _section(doc, "bitcoind", False)
    pol = _section(doc, "policy", False)
    mem = _section(doc, "membership", False)

    for name, sec in (("member", member), ("federation", fed), ("bitcoind", btc), ("policy", pol), ("membership", mem)):
        _unknown(sec, KNOWN[name], f"{name}.")

    def path(v: Any, where: str) -> Path:
        if not isinstance(v, str) or not v:
            raise ConfigError(f"{where} must be a path")
        p = Path(v)
        return p if p.is_absolute() else base / p

    key_file = path(member.get("identity_key_file"), "member.identity_key_file")
    host, port = _hostport(member.get("listen"), "member.listen")
    data_dir = path(member.get("data_dir", "."), "member.data_dir")
    passphrase_file = path(member["passphrase_file"], "member.passphrase_file") if "passphrase_file" in member else None

    joining = member.get("joining", False)
    if not isinstance(joining, bool):
        raise ConfigError("member.joining must be true or false")
    raw_members = fed.get("members")
    least = 1 if joining else 2
    if not isinstance(raw_members, list) or len(raw_members) < least:
        raise ConfigError(f"federation.members must list at least {least} members ([[federation.members]])")
    members = []
    for i, m in enumerate(raw_members):
        where = f"federation.members[{i}]"
        if not isinstance(m, dict):
            raise ConfigError(f"{where} must be a table with 'id' and 'address'")
        _unknown(m, MEMBER_ENTRY, f"{where}.")
        h, p = _hostport(m.get("address"), f"{where}.address")
        members.append(MemberEntry(_pubkey(m.get("id"), f"{where}.id"), h, p))
    first: dict[bytes, int] = {}
    for i, m in enumerate(members):
        if m.id in first:
            raise ConfigError(f"federation.members[{i}].id repeats federation.members[{first[m.id]}].id")
        first[m.id] = i
    at: dict[tuple[str, int], int] = {}
    for i, m in enumerate(members):
        if (m.host, m.port) in at:
            raise ConfigError(
                f"federation.members[{i}].address repeats federation.members[{at[(m.host, m.port)]}].address"
            )
        at[(m.host, m.port)] = i
    n = len(members)
    if "threshold" in fed and fed["threshold"] is None:
        raise ConfigError(f"federation.threshold must be a whole number in 1..{n}, got None")
    t = threshold_setting(fed.get("threshold", 1 if joining else None), n, "federation.threshold")
    network = network_setting(fed.get("network", "regtest"), "federation.network")

    bitcoind = None
    if "bitcoind" in doc:
        url = _rpc_url(btc.get("rpc_url"))
        cookie = btc.get("cookie_file")
        user, password = _text(btc, "user", "bitcoind"), _text(btc, "password", "bitcoind")
        if (user is None) != (password is None):
            raise ConfigError("bitcoind.user and bitcoind.password go together")
        if cookie is None and user is None:
            raise ConfigError("[bitcoind] needs cookie_file, or user and password")
        wallet = _text(btc, "wallet", "bitcoind") or "frostfed"
        bitcoind = BitcoindSettings(
            url,
            str(path(cookie, "bitcoind.cookie_file")) if cookie is not None else None,
            user,
            password,
            wallet,
        )

    policy = policy_settings(pol)
    heartbeat = _number(member, "heartbeat_seconds", 2.0, 0.05, 3600, "member")
    offline_after = _number(member, "offline_after_seconds", 10.0, 0.1, 86400, "member")
    if offline_after <= heartbeat:
        raise ConfigError("member.offline_after_seconds must be longer than member.heartbeat_seconds")
    roast_grace = _number(member, "roast_grace_seconds", 0.25, 0.0, 60, "member")
    membership = membership_settings(mem)
    if len(members) > membership.max_members:
        raise ConfigError(
            f"federation.members lists {len(members)} members, more than membership.max_members "
            f"({membership.max_members})"
        )
    return Config(
        identity_key_file=key_file,
        listen_host=host,
        listen_port=port,
        data_dir=data_dir,
        members=tuple(members),
        threshold=t,
        bitcoind=bitcoind,
        policy=policy,
        passphrase_file=passphrase_file,
        heartbeat_seconds=heartbeat,
        offline_after_seconds=offline_after,
        roast_grace_seconds=roast_grace,
        membership=membership,
        joining=joining,
        network=network,
    )


def policy_settings(pol: dict[str, Any]) -> PolicySettings:
    """The [policy] table (the daemon's config file, or the plugin's `frost-config`)."""
    _unknown(pol, KNOWN["policy"], "policy.")
    cmd = pol.get("payout_check_command")
    if cmd is not None and (not isinstance(cmd, str) or not cmd.strip()):
        raise ConfigError("policy.payout_check_command must be a command line")
    policy = PolicySettings(
        min_feerate=_number(pol, "min_feerate", 1.0, 0.1, 10_000, "policy"),
        max_feerate=_number(pol, "max_feerate", 200.0, 0.1, 10_000, "policy"),
        max_fee_sats=_whole(pol, "max_fee_sats", 200_000, 0, 10**8, "policy"),
        min_confirmations=_whole(pol, "min_confirmations", 1, 1, 1000, "policy"),
        payout_check_command=cmd,
        fee_budget_sats=_whole(pol, "fee_budget_sats", 1_000_000, 0, 21 * 10**14, "policy"),
        fee_budget_blocks=_whole(pol, "fee_budget_blocks", 144, 1, 1_000_000, "policy"),
        allow_version_3=_flag(pol, "allow_version_3"),
        allow_op_return=_flag(pol, "allow_op_return"),
        allow_consolidation=_flag(pol, "allow_consolidation"),
    )
    if policy.min_feerate > policy.max_feerate:
        raise ConfigError("policy.min_feerate is above policy.max_feerate")
    return policy


def _flag(sec: dict[str, Any], key: str) -> bool:
    v = sec.get(key, False)
    if not isinstance(v, bool):
        raise ConfigError(f"policy.{key} must be true or false, got {v!r}")
    return v


def membership_settings(mem: dict[str, Any]) -> MembershipSettings:
    """The [membership] table (the daemon's config file, or the plugin's `frost-config`)."""
    _unknown(mem, KNOWN["membership"], "membership.")
    admit = mem.get("admit", [])
    if not isinstance(admit, list) or len(admit) > 1000:
        raise ConfigError("membership.admit must be a list of member ids")
    cmd = mem.get("admission_command")
    if cmd is not None and (not isinstance(cmd, str) or not cmd.strip()):
        raise ConfigError("membership.admission_command must be a command line")
    return MembershipSettings(
        min_bond_sats=_whole(mem, "min_bond_sats", 100_000, 0, 21 * 10**14, "membership"),
        min_bond_blocks=_whole(mem, "min_bond_blocks", 1_000, 1, 500_000, "membership"),
        max_members=_whole(mem, "max_members", 100, 2, 1000, "membership"),
        transition_confirmations=_whole(mem, "transition_confirmations", 6, 1, 1000, "membership"),
        max_transition_fee_sats=_whole(mem, "max_transition_fee_sats", 100_000, 0, 10**8, "membership"),
        expel_after_seconds=_number(mem, "expel_after_seconds", 0, 0, 10**8, "membership"),
        change_timeout_seconds=_number(mem, "change_timeout_seconds", 300, 1, 86400, "membership"),
        admit=frozenset(_pubkey(v, f"membership.admit[{i}]") for i, v in enumerate(admit)),
        admission_command=cmd,
        min_change_interval_blocks=_whole(mem, "min_change_interval_blocks", 6, 0, 100_000, "membership"),
        min_change_interval_seconds=_number(mem, "min_change_interval_seconds", 0, 0, 10**8, "membership"),
    )


def read_toml(path: str | Path) -> dict[str, Any]:
    p = Path(path)
    try:
        return tomllib.loads(p.read_text())
    except OSError as e:
        raise ConfigError(f"cannot read configuration {p}: {e.strerror}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"configuration {p} is not UTF-8 text") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"configuration {p} is not valid TOML: {e}") from None


def load_config(path: str | Path) -> Config:
    return parse_config(read_toml(path), Path(path).parent)


PLUGIN_SECTIONS = ("policy", "membership")
"""What the plugin's `frost-config` file holds; the rest comes from lightningd and the frost-* options."""


def load_plugin_settings(path: str | Path | None) -> tuple[PolicySettings, MembershipSettings]:
    """The [policy] and [membership] tables of the plugin's `frost-config` file, by the daemon's rules
    (the same keys, ranges and errors); the defaults without a file."""
    if not path:
        return PolicySettings(), MembershipSettings()
    try:
        doc = read_toml(path)
        extra = sorted(set(doc) - set(PLUGIN_SECTIONS))
        if extra:
            raise ConfigError(
                f"unknown section [{extra[0]}] (frost-config holds only {', '.join(f'[{s}]' for s in PLUGIN_SECTIONS)})"
            )
        return (
            policy_settings(_section(doc, "policy", False)),
            membership_settings(_section(doc, "membership", False)),
        )
    except ConfigError as e:
        raise ConfigError(f"frost-config {path}: {e}") from None
