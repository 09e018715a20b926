"""Four plugin instances (t = 3) behind the lightningd stand-in, with a real regtest bitcoind: DKG over
custom messages, an address, funding, a confirmed payout, one member stopped, a second payout."""

from __future__ import annotations

import asyncio
import json
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from clnsim import CliError, Faults, SimNetwork, SimNode

from frostfed.bitcoin.ledger import Ledger
from frostfed.bitcoin.taproot import script_from_address

pytestmark = pytest.mark.slow

FEDERATION = Path(__file__).resolve().parent.parent / "frostfed-plugin.py"


async def statuses(nodes: list[SimNode]) -> list[dict[str, Any]]:
    out = []
    for n in nodes:
        try:
            out.append(await n.cli("frost-status", timeout=20))
        except CliError as e:
            out.append({"error": e.message})
    return out


async def wait_for_epoch(nodes: list[SimNode], timeout: float = 180) -> str:
    async with asyncio.timeout(timeout):
        while True:
            keys = {s.get("group_key") for s in await statuses(nodes)}
            if len(keys) == 1 and None not in keys:
                return keys.pop()
            await asyncio.sleep(0.5)


def credit(nodes: list[SimNode], address: str, sats: int) -> None:
    script = script_from_address(address, "regtest")
    for n in nodes:
        ledger = Ledger(n.lightning_dir / "frostfed" / "ledger.sqlite")
        try:
            ledger.credit(script, sats)
        finally:
            ledger.close()


async def fund(regtest, node: SimNode, sats: int) -> str:
    address = (await node.cli("frost-newaddr"))["address"]
    regtest.rpc("sendtoaddress", address, Decimal(sats) / Decimal(100_000_000), wallet="miner")
    regtest.mine(1)
    return address


@pytest.mark.parametrize(
    "faults",
    [None, Faults(drop=0.1, delay=0.1, max_delay=0.1, disconnect=0.003, seed=8)],
    ids=["clean-links", "lossy-links"],
)
async def test_federation_of_plugins_pays_out_with_a_member_down(regtest, faults):
    net = SimNetwork(seed=51, bitcoind=regtest.rpc_client, faults=faults)
    try:
        nodes = [await net.add_node(FEDERATION, start=False) for _ in range(4)]
        for node in nodes:
            others = ",".join(f"{o.node_id}@127.0.0.1:{o.port}" for o in nodes if o is not node)
            node.given_options = {"frost-members": others, "frost-threshold": 3, "frost-reconnect-interval": 1}
        for node in nodes:
            await node.start()
        group_key = await wait_for_epoch(nodes)
        st = (await statuses(nodes))[0]
        assert st["threshold"] == 3 and st["n"] == 4 and group_key
        descs = {(await n.cli("frost-descriptor"))["descriptor"] for n in nodes}
        assert len(descs) == 1

        await fund(regtest, nodes[0], 200_000)
        miner = regtest.rpc("getnewaddress", wallet="miner")
        credit(nodes, miner, 50_000)
        result = await nodes[1].cli("frost-payout", [{"address": miner, "sats": 50_000}], timeout=120)
        assert result["status"] == "broadcast" and len(result["signers"]) == 3
        regtest.mine(1)
        assert regtest.rpc("gettransaction", result["txid"], wallet="miner")["confirmations"] == 1

        await nodes[3].stop()
        miner2 = regtest.rpc("getnewaddress", wallet="miner")
        credit(nodes[:3], miner2, 30_000)
        result2 = await nodes[0].cli("frost-payout", outputs=[{"address": miner2, "sats": 30_000}], timeout=180)
        assert result2["status"] == "broadcast"
        pairs = json.loads((nodes[0].lightning_dir / "frostfed" / "member-keys.json").read_text())
        assert pairs[nodes[3].node_id] not in result2["signers"] and len(result2["signers"]) == 3
        assert pairs[nodes[3].node_id] != nodes[3].node_id  # members sign as their member keys
        regtest.mine(1)
        assert regtest.rpc("gettransaction", result2["txid"], wallet="miner")["confirmations"] == 1

        # the stopped member comes back with its share and pairing from its data directory
        await nodes[3].start()
        assert await wait_for_epoch(nodes) == group_key
        for n in nodes:
            assert n.fatal == []
        if faults is not None:
            assert net.counts.dropped > 0 and net.counts.delayed > 0 and net.counts.disconnects > 0
    finally:
        await net.close()
