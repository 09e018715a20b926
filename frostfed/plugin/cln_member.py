"""The federation member inside lightningd: the default service factory of the plugin.

Member identity: the plugin cannot sign with the node key, so each member signs as a *member key*
derived from `makesecret` and paired with its node id over the node's links (MemberKeyChannel). The
ChillDKG host key and the sealing seed come from `makesecret` too: nothing secret is stored in clear.
Chain data comes from lightningd's backend, confirmations and fees from the node's own bitcoind
(ClnChainSource). The first start waits until every configured member has told its member key; the
pairing is then kept in the data directory so a member restarts while others are down.
"""

from __future__ import annotations

import json
import tomllib
from pathlib import Path
from typing import Any

from frostfed.bitcoin.chain_index import ChainIndex
from frostfed.bitcoin.cln_chain import ClnChainSource, LightningSocket, bitcoind_from_configs
from frostfed.bitcoin.ledger import Ledger
from frostfed.federation.bond_wallet import ClnBondWallet
from frostfed.federation.config import (
    ConfigError,
    MembershipSettings,
    PolicySettings,
    default_threshold,
    membership_settings,
    policy_settings,
)
from frostfed.federation.node import Member
from frostfed.federation.sealing import Sealer
from frostfed.federation.service import FederationService
from frostfed.federation.store import Store
from frostfed.net.channel import PeerId
from frostfed.net.cln_channel import parse_member
from frostfed.net.cln_members import MemberKeyChannel
from frostfed.plugin.cln import PluginContext
from frostfed.plugin.hostkey import MEMBERKEY_LABEL, derive_secret

SEAL_LABEL = "frostfed/seal/v1"
BONDKEY_LABEL = "frostfed/bond-key/v1"
PAIRS_FILE = "member-keys.json"


class PluginService(FederationService):
    """The federation service, plus a clean stop when lightningd shuts the plugin down."""

    async def close(self) -> None:
        await self.member.stop()


def _config_table(path: str | Path, name: str) -> dict[str, Any]:
    try:
        doc = tomllib.loads(Path(path).read_text())
    except (OSError, tomllib.TOMLDecodeError) as e:
        raise ConfigError(f"frost-config {path}: {e}") from None
    table = doc.get(name, {})
    if not isinstance(table, dict):
        raise ConfigError(f"frost-config {path}: [{name}] must be a table")
    return table


def load_membership(path: str | Path | None) -> MembershipSettings:
    """The [membership] table of the `frost-config` file (the daemon's keys), or the defaults."""
    if not path:
        return MembershipSettings()
    try:
        return membership_settings(_config_table(path, "membership"))
    except ConfigError as e:
        raise ConfigError(f"frost-config {path}: {e}") from None


def own_address(info: dict[str, Any]) -> str | None:
    """`<node id>@<host>:<port>` of this node from `getinfo`: its announced address, else where it
    listens (what other members dial to reach it after a membership change)."""
    for entry in [*(info.get("address") or []), *(info.get("binding") or [])]:
        if isinstance(entry, dict) and entry.get("type") in ("ipv4", "ipv6", "dns") and entry.get("port"):
            host = str(entry["address"])
            host = f"[{host}]" if entry["type"] == "ipv6" else host
            return f"{info['id']}@{host}:{int(entry['port'])}"
    return None


def load_policy(path: str | Path | None) -> PolicySettings:
    """The [policy] table of the `frost-config` file (the daemon's keys, parsed alike), or the default policy."""
    if not path:
        return PolicySettings()
    try:
        return policy_settings(_config_table(path, "policy"))
    except ConfigError as e:
        raise ConfigError(f"frost-config {path}: {e}") from None


def load_pairs(ctx: PluginContext) -> dict[PeerId, PeerId]:
    """Node id -> member key, as learnt in earlier runs (each proven by a hello over the node's link)."""
    path = ctx.data_dir / PAIRS_FILE
    if not path.exists():
        return {}
    return {bytes.fromhex(n): bytes.fromhex(m) for n, m in json.loads(path.read_text()).items()}


def save_pairs(ctx: PluginContext, pairs: dict[PeerId, PeerId]) -> None:
    path = ctx.data_dir / PAIRS_FILE
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({n.hex(): m.hex() for n, m in sorted(pairs.items())}))
    tmp.replace(path)


async def from_plugin_context(
    ctx: PluginContext, *, member_options: dict[str, Any] | None = None
) -> PluginService | None:
    """The running member, or None (with the reason reported) when no members are configured."""
    if not ctx.members:
        ctx.report("no members configured: set frost-members to the other members' <node id>@<host>:<port>")
        return None
    policy = load_policy(ctx.options.get("frost-config"))
    membership = load_membership(ctx.options.get("frost-config"))
    joining = bool(ctx.options.get("frost-joining"))
    member_secret = await derive_secret(ctx.rpc, MEMBERKEY_LABEL)
    channel = MemberKeyChannel(ctx.channel, member_secret)
    pairs = load_pairs(ctx)
    pairs[ctx.node_id] = channel.member_id
    for node, member in pairs.items():
        if node != ctx.node_id:
            channel.remember(node, member)

    running: list[Member] = []

    def record(node: PeerId, member: PeerId) -> None:
        pairs[node] = member
        save_pairs(ctx, pairs)
        addr = ctx.members.get(node)
        if running and joining and addr:  # a contact paired late: the joiner now hears its proposals
            running[0].membership.directory.setdefault(member, f"{node.hex()}@{addr}")

    channel.on_paired(record)
    missing = [n for n in ctx.members if n not in pairs]
    if missing and not joining:  # a joiner's contacts answer only once a member proposes it (frost-join)
        ctx.report(f"waiting for the member keys of {len(missing)} members (each must be online once)")
        await channel.wait_for_members(missing, timeout=None)
    save_pairs(ctx, pairs)
    members = [] if joining else sorted(pairs[n] for n in [*ctx.members, ctx.node_id])
    directory = {pairs[n]: f"{n.hex()}@{addr}" for n, addr in ctx.members.items() if addr and n in pairs}
    me = own_address(await ctx.rpc.call("getinfo"))
    if me is not None:
        directory[channel.member_id] = me

    def add_peer(member: PeerId, address: str) -> None:
        """A member learnt from a membership change: `address` is `<node id>@<host>:<port>`."""
        node, addr = parse_member(address)
        ctx.channel.set_members({**ctx.channel.members, node: addr})

    configs = (await ctx.rpc.call("listconfigs"))["configs"]
    bitcoind = bitcoind_from_configs(configs)
    chain = ClnChainSource(LightningSocket(ctx.rpc.socket_path), bitcoind)
    member = Member(
        me=channel.member_id,
        echo_secret=member_secret,
        host_seckey=ctx.host_seed,
        sealer=Sealer.from_seed(await derive_secret(ctx.rpc, SEAL_LABEL)),
        store=Store(ctx.data_dir / "frostfed.sqlite"),
        channel=channel,
        members=members,
        threshold=int(ctx.options["frost-threshold"]) or default_threshold(len(members)),
        chain=chain,
        ledger=Ledger(ctx.data_dir / "ledger.sqlite"),
        policy=policy,
        network=ctx.network,
        add_peer=add_peer,
        membership=membership,
        joining=joining,
        directory=directory,
        rpc=bitcoind,
        bond_key=await derive_secret(ctx.rpc, BONDKEY_LABEL),
        bond_wallet=ClnBondWallet(LightningSocket(ctx.rpc.socket_path)),
        chain_index=ChainIndex(ctx.data_dir / "chain.sqlite"),
        **(member_options or {}),
    )
    running.append(member)
    await member.start()
    return PluginService(member, bitcoind)
