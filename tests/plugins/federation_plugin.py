#!/usr/bin/env python3
"""The frostfed plugin running the real federation member, as a service factory may assemble it.

Members are addressed by member keys (MemberKeyChannel), the ChillDKG host key, the member key and
the sealing seed all come from `makesecret`, chain data from lightningd (ClnChainSource) with the
node's bitcoind for confirmations. The pairing of node ids and member keys is kept in the data
directory after the first start, so a member restarts while others are down.
"""

import json

from frostfed.bitcoin.cln_chain import ClnChainSource, LightningSocket, bitcoind_from_configs
from frostfed.bitcoin.ledger import Ledger
from frostfed.federation.config import PolicySettings, default_threshold
from frostfed.federation.node import Member
from frostfed.federation.sealing import Sealer
from frostfed.federation.service import FederationService
from frostfed.federation.store import Store
from frostfed.net.cln_members import MemberKeyChannel
from frostfed.plugin.cln import FrostfedPlugin
from frostfed.plugin.hostkey import MEMBERKEY_LABEL, derive_secret

SEAL_LABEL = "frostfed/seal/v1"
PAIRS = "member-keys.json"


class PluginService(FederationService):
    async def close(self):
        await self.member.stop()


async def factory(ctx):
    member_secret = await derive_secret(ctx.rpc, MEMBERKEY_LABEL)
    channel = MemberKeyChannel(ctx.channel, member_secret, hello_interval=1.0)
    path = ctx.data_dir / PAIRS
    if path.exists():
        pairs = {bytes.fromhex(n): bytes.fromhex(m) for n, m in json.loads(path.read_text()).items()}
        for node, member in pairs.items():
            if node != ctx.node_id:
                channel.remember(node, member)
    else:
        pairs = await channel.wait_for_members(list(ctx.members), timeout=120)
        path.write_text(json.dumps({n.hex(): m.hex() for n, m in pairs.items()}))
    members = sorted(pairs.values())
    configs = (await ctx.rpc.call("listconfigs"))["configs"]
    bitcoind = bitcoind_from_configs(configs)
    chain = ClnChainSource(LightningSocket(ctx.lightning_dir / "lightning-rpc"), bitcoind)
    member = Member(
        me=channel.member_id,
        echo_secret=member_secret,
        host_seckey=ctx.host_seed,
        sealer=Sealer.from_seed(await derive_secret(ctx.rpc, SEAL_LABEL)),
        store=Store(ctx.data_dir / "frostfed.sqlite"),
        channel=channel,
        members=members,
        threshold=ctx.options["frost-threshold"] or default_threshold(len(members)),
        chain=chain,
        ledger=Ledger(ctx.data_dir / "ledger.sqlite"),
        policy=PolicySettings(),
        network=ctx.network,
        heartbeat_seconds=1.0,
        offline_after_seconds=5.0,
    )
    await member.start()
    return PluginService(member, bitcoind)


FrostfedPlugin(factory).run()
