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
from pathlib import Path
from typing import Any

from frostfed.bitcoin.chain_index import ChainIndex
from frostfed.bitcoin.cln_chain import ClnChainSource, LightningSocket, bitcoind_from_configs
from frostfed.bitcoin.ledger import Ledger
from frostfed.bitcoin.networks import NetworkError, check_chain
from frostfed.federation.bond_wallet import ClnBondWallet
from frostfed.federation.config import MembershipSettings, PolicySettings, load_plugin_settings
from frostfed.federation.member_config import MemberConfig, MemberParts, build_member, check_store_network
from frostfed.federation.sealing import Sealer
from frostfed.federation.service import FederationService
from frostfed.federation.store import Store
from frostfed.net.addresses import PeerAddress, peer_address
from frostfed.net.channel import PeerId
from frostfed.net.cln_members import MemberKeyChannel
from frostfed.plugin.cln import PluginContext
from frostfed.plugin.hostkey import MEMBERKEY_LABEL, derive_secret

SEAL_LABEL = "frostfed/seal/v1"
BONDKEY_LABEL = "frostfed/bond-key/v1"
PAIRS_FILE = "member-keys.json"
SETTINGS_OPTIONS = ("heartbeat_seconds", "offline_after_seconds")
"""Member options a test harness may pass that are settings (checked by MemberConfig), not tuning."""


class PluginService(FederationService):
    """The federation service, plus a clean stop when lightningd shuts the plugin down."""

    async def close(self) -> None:
        await self.member.stop()


def load_membership(path: str | Path | None) -> MembershipSettings:
    """The [membership] table of the `frost-config` file (the daemon's keys and rules), or the defaults."""
    return load_plugin_settings(path)[1]


def own_address(info: dict[str, Any]) -> str | None:
    """`<node id>@<host>:<port>` of this node from `getinfo`: its announced address, else where it
    listens (what other members dial to reach it after a membership change)."""
    for entry in [*(info.get("address") or []), *(info.get("binding") or [])]:
        if isinstance(entry, dict) and entry.get("type") in ("ipv4", "ipv6", "dns") and entry.get("port"):
            return str(PeerAddress(bytes.fromhex(info["id"]), str(entry["address"]), int(entry["port"])))
    return None


def load_policy(path: str | Path | None) -> PolicySettings:
    """The [policy] table of the `frost-config` file (the daemon's keys and rules), or the default policy."""
    return load_plugin_settings(path)[0]


def plugin_network(option: Any, lightningd_network: str) -> str:
    """The network this member runs on: lightningd's own (`getinfo`), which `frost-network`, when set,
    must name too; a mismatch refuses to start."""
    return check_chain(option or lightningd_network, lightningd_network, "lightningd").name


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
    info = await ctx.rpc.call("getinfo")
    try:
        network = plugin_network(ctx.options.get("frost-network"), str(info.get("network") or ctx.network))
    except NetworkError as e:  # nothing is made or dialled on the wrong network
        ctx.report(str(e))
        ctx.log(str(e), level="broken")
        await ctx.channel.close()
        return None
    policy, membership = load_plugin_settings(ctx.options.get("frost-config"))
    joining = bool(ctx.options.get("frost-joining"))
    member_secret = await derive_secret(ctx.rpc, MEMBERKEY_LABEL)
    channel = MemberKeyChannel(ctx.channel, member_secret)
    pairs = load_pairs(ctx)
    pairs[ctx.node_id] = channel.member_id
    for node, member_key in pairs.items():
        if node != ctx.node_id:
            channel.remember(node, member_key)

    running: list[Any] = []

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
    directory = {
        pairs[n]: str(peer_address(f"{n.hex()}@{addr}", "frost-members")) for n, addr in ctx.members.items()
        if addr and n in pairs
    }
    me = own_address(info)
    if me is not None:
        directory[channel.member_id] = me
    settings = MemberConfig.create(
        me=channel.member_id,
        network=network,
        members=members,
        threshold=int(ctx.options.get("frost-threshold") or 0),
        where_threshold="frost-threshold",
        zero_threshold_is_default=True,
        policy=policy,
        membership=membership,
        joining=joining,
        directory=directory,
        **{k: v for k, v in (member_options or {}).items() if k in SETTINGS_OPTIONS},
    )

    def add_peer(member: PeerId, address: str) -> None:
        """A member learnt from a membership change: `address` is `<node id>@<host>:<port>`."""
        addr = peer_address(address, "member address")
        if addr.peer is None:
            raise ValueError(f"address {address} does not name the member's node id")
        ctx.channel.set_members({**ctx.channel.members, addr.peer: f"{addr.host}:{addr.port}"})

    configs = (await ctx.rpc.call("listconfigs"))["configs"]
    bitcoind = bitcoind_from_configs(configs)
    chain = ClnChainSource(LightningSocket(ctx.rpc.socket_path), bitcoind)
    store = Store(ctx.data_dir / "frostfed.sqlite")
    check_store_network(store, settings.network, str(ctx.data_dir))
    parts = MemberParts(
        me=channel.member_id,
        echo_secret=member_secret,
        host_seckey=ctx.host_seed,
        sealer=Sealer.from_seed(await derive_secret(ctx.rpc, SEAL_LABEL)),
        store=store,
        channel=channel,
        chain=chain,
        ledger=Ledger(ctx.data_dir / "ledger.sqlite"),
        chain_index=ChainIndex(ctx.data_dir / "chain.sqlite"),
        rpc=bitcoind,
        bond_key=await derive_secret(ctx.rpc, BONDKEY_LABEL),
        bond_wallet=ClnBondWallet(LightningSocket(ctx.rpc.socket_path)),
        add_peer=add_peer,
    )
    tuning = {k: v for k, v in (member_options or {}).items() if k not in SETTINGS_OPTIONS}
    member = build_member(settings, parts, **tuning)
    running.append(member)
    await member.start()
    return PluginService(member, bitcoind)
