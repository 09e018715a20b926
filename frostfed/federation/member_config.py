"""One member, whichever front end starts it: the settings and the parts a `Member` is assembled from.

The standalone daemon (Noise over TCP, bitcoind) and the Core Lightning plugin (custom messages,
lightningd's backend) differ only in the parts they bring; what the operator configured goes through
`MemberConfig.create`, which applies the same checks to both (threshold in range, this member in the
list, no more members than `max_members`, a known network), and `build_member` is the one place that
calls `Member(...)`. A data directory remembers the network it was made for, so a signet store is never
opened on mainnet.
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from frostfed.bitcoin.chain import BitcoindRpc, ChainSource
from frostfed.bitcoin.chain_index import ChainIndex
from frostfed.bitcoin.ledger import Ledger
from frostfed.bitcoin.networks import NetworkError, canonical
from frostfed.federation.bond_wallet import BondWallet
from frostfed.federation.config import ConfigError, MembershipSettings, PolicySettings, threshold_setting
from frostfed.federation.node import Member
from frostfed.federation.sealing import Sealer
from frostfed.federation.store import Store
from frostfed.net.channel import Channel, PeerId

NETWORK_META = "network"
STORE_FILE = "frostfed.sqlite"


@dataclass(frozen=True)
class MemberConfig:
    """What the operator decided, checked: the same fields from the daemon's TOML file or the plugin's
    options and `frost-config` file."""

    network: str
    """Bitcoin Core's name of the network (`main`, `test`, `testnet4`, `signet`, `regtest`)."""
    members: tuple[PeerId, ...]
    """The founding members (this one included); empty for a member waiting to be admitted."""
    threshold: int
    policy: PolicySettings = field(default_factory=PolicySettings)
    membership: MembershipSettings = field(default_factory=MembershipSettings)
    joining: bool = False
    heartbeat_seconds: float = 2.0
    offline_after_seconds: float = 10.0
    roast_grace_seconds: float = 0.25
    """How long ROAST holds a second session back while the first may still complete (0: never)."""
    directory: Mapping[PeerId, str] = field(default_factory=dict)
    """Member id -> its address (`validators.PeerAddress` form), for reaching members after a change."""

    @classmethod
    def create(
        cls,
        *,
        me: PeerId,
        network: str,
        members: Iterable[PeerId],
        threshold: int | None,
        where_threshold: str = "threshold",
        zero_threshold_is_default: bool = False,
        **settings: Any,
    ) -> MemberConfig:
        """Check the settings both front ends share; ConfigError names the one that is wrong."""
        try:
            net = canonical(network)
        except NetworkError as e:
            raise ConfigError(str(e)) from None
        joining = bool(settings.get("joining", False))
        ids = () if joining else tuple(members)  # in the order given: it fixes the DKG's participant indexes
        if len(set(ids)) != len(ids):
            raise ConfigError("the member list names a member twice")
        if not joining:
            if me not in ids:
                raise ConfigError("this member's own id is not in the member list")
            if len(ids) < 2:
                raise ConfigError("a federation needs at least 2 members")
        t = threshold_setting(
            threshold, len(ids), where_threshold, zero_is_default=zero_threshold_is_default
        ) if not joining else max(1, int(threshold or 1))
        membership = settings.get("membership") or MembershipSettings()
        if len(ids) > membership.max_members:
            raise ConfigError(
                f"{len(ids)} members are more than membership.max_members ({membership.max_members})"
            )
        heartbeat = float(settings.get("heartbeat_seconds", 2.0))
        offline = float(settings.get("offline_after_seconds", 10.0))
        if offline <= heartbeat:
            raise ConfigError("offline_after_seconds must be longer than heartbeat_seconds")
        grace = float(settings.get("roast_grace_seconds", 0.25))
        if not 0 <= grace <= 60:
            raise ConfigError("roast_grace_seconds must be between 0 and 60")
        return cls(
            network=net,
            members=ids,
            threshold=t,
            policy=settings.get("policy") or PolicySettings(),
            membership=membership,
            joining=joining,
            heartbeat_seconds=heartbeat,
            offline_after_seconds=offline,
            roast_grace_seconds=grace,
            directory=dict(settings.get("directory") or {}),
        )


@dataclass
class MemberParts:
    """What a front end brings: identity secrets, transport, storage and chain access."""

    me: PeerId
    echo_secret: bytes = field(repr=False)
    host_seckey: bytes = field(repr=False)
    sealer: Sealer = field(repr=False)
    store: Store
    channel: Channel
    chain: ChainSource | None
    ledger: Ledger | None
    chain_index: ChainIndex
    rpc: BitcoindRpc | None = None
    bond_key: bytes | None = field(default=None, repr=False)
    bond_wallet: BondWallet | None = None
    add_peer: Callable[[PeerId, str], None] | None = None


def check_store_network(store: Store, network: str, where: str) -> None:
    """A data directory serves one network for ever: its coins, chain index and ledger belong to it."""
    recorded = store.get_meta(NETWORK_META)
    if recorded and recorded != network:
        raise ConfigError(
            f"data directory {where} belongs to network {recorded}, not {network}: use another data directory"
        )
    if not recorded:
        store.set_meta(NETWORK_META, network)


def recorded_network(data_dir: Path) -> str | None:
    """The network a member's data directory was made for (None before its first start); read-only, so an
    offline command never creates or changes a store."""
    path = data_dir / STORE_FILE
    if not path.exists():
        return None
    try:
        with contextlib.closing(sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)) as db:
            row = db.execute("SELECT value FROM meta WHERE key=?", (NETWORK_META,)).fetchone()
    except sqlite3.Error:
        return None
    return str(row[0]) if row else None


def offline_network(data_dir: Path, given: str | None) -> str:
    """The network an offline command on `data_dir` works in: the directory's own; a `--network` naming
    another is refused (ValueError), and without either it is regtest."""
    recorded = recorded_network(data_dir)
    if given is None:
        return recorded or "regtest"
    try:
        name = canonical(given)
    except NetworkError as e:
        raise ValueError(str(e)) from None
    if recorded is not None and recorded != name:
        raise ValueError(f"data directory {data_dir} belongs to network {recorded}, not {name}")
    return name


def build_member(config: MemberConfig, parts: MemberParts, **options: Any) -> Member:
    """The `Member` for `config` over `parts` (`options` are Member's tuning arguments, e.g. timeouts)."""
    return Member(
        me=parts.me,
        echo_secret=parts.echo_secret,
        host_seckey=parts.host_seckey,
        sealer=parts.sealer,
        store=parts.store,
        channel=parts.channel,
        members=list(config.members),
        threshold=config.threshold,
        chain=parts.chain,
        ledger=parts.ledger,
        policy=config.policy,
        network=config.network,
        heartbeat_seconds=config.heartbeat_seconds,
        offline_after_seconds=config.offline_after_seconds,
        roast_grace_seconds=config.roast_grace_seconds,
        membership=config.membership,
        joining=config.joining,
        directory=dict(config.directory),
        rpc=parts.rpc,
        bond_key=parts.bond_key,
        bond_wallet=parts.bond_wallet,
        add_peer=parts.add_peer,
        chain_index=parts.chain_index,
        **options,
    )
