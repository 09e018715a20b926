"""Open membership inside Core Lightning: three plugin members (t = 3) behind the lightningd stand-in
on a real regtest bitcoind admit a fourth node started with `frost-joining`. Its bond is paid from
its node wallet (fundpsbt / signpsbt), the transition confirms, the four-member epoch pays a payout,
and the bond can be claimed only once its lock time has passed."""

from __future__ import annotations

import asyncio
from decimal import Decimal
from pathlib import Path

import pytest
from clnsim import CliError, SimNetwork, SimNode
from test_cln_federation import credit, fund, statuses, wait_for_epoch

pytestmark = pytest.mark.slow

FEDERATION = Path(__file__).resolve().parent.parent / "frostfed-plugin.py"
CONFIG = """
[membership]
min_bond_sats = 50000
min_bond_blocks = 20
transition_confirmations = 1
change_timeout_seconds = 60.0
"""
BOND = 60_000
LOCK_BLOCKS = 25


async def ready(node: SimNode, timeout: float = 60) -> dict:
    async with asyncio.timeout(timeout):
        while True:
            try:
                return await node.cli("frost-status", timeout=20)
            except CliError as e:
                if e.code != 1401:
                    raise
            await asyncio.sleep(0.5)


async def test_a_plugin_node_joins_with_a_bond_from_its_node_wallet(regtest, tmp_path):
    config = tmp_path / "frost.toml"
    config.write_text(CONFIG)
    net = SimNetwork(seed=61, bitcoind=regtest.rpc_client)
    try:
        nodes = [await net.add_node(FEDERATION, start=False) for _ in range(3)]
        for node in nodes:
            others = ",".join(f"{o.node_id}@127.0.0.1:{o.port}" for o in nodes if o is not node)
            node.given_options = {"frost-members": others, "frost-reconnect-interval": 1, "frost-config": str(config)}
        for node in nodes:
            await node.start()
        old_key = await wait_for_epoch(nodes)
        assert (await statuses(nodes))[0]["threshold"] == 3
        await fund(regtest, nodes[0], 300_000)

        joiner = await net.add_node(FEDERATION, start=False)
        contacts = ",".join(f"{o.node_id}@127.0.0.1:{o.port}" for o in nodes)
        joiner.given_options = {
            "frost-members": contacts,
            "frost-joining": True,
            "frost-reconnect-interval": 1,
            "frost-config": str(config),
        }
        await joiner.start()
        funding = (await joiner.cli("newaddr"))["p2tr"]
        regtest.rpc("sendtoaddress", funding, Decimal("0.01"), wallet="miner")
        regtest.mine(1)
        status = await ready(joiner)
        assert status["epoch"] is None and status["group_key"] is None

        for node in nodes[1:]:  # each operator admits the joiner; nodes[0]'s does so by proposing it
            await node.cli("frost-admit", status["id"])
        tip = regtest.rpc("getblockcount")
        joined = await nodes[0].cli(
            "frost-join", status["id"], f"{joiner.node_id}@127.0.0.1:{joiner.port}", BOND, LOCK_BLOCKS, timeout=240
        )
        assert joined["epoch"] == 1 and joined["kind"] == "join" and len(joined["members"]) == 4
        assert status["id"] in joined["members"] and joined["threshold"] == 3
        # the joiner's input is the coin its node wallet funded and signed (fundpsbt, signpsbt)
        tx = regtest.rpc("getrawtransaction", joined["txid"], True)
        calls = {req["method"]: (req, resp) for req, resp in joiner.rpc_log}
        [reservation] = calls["fundpsbt"][1]["result"]["reservations"]
        assert (reservation["txid"], reservation["vout"]) in {(i["txid"], i["vout"]) for i in tx["vin"]}
        assert "result" in calls["signpsbt"][1] and len(calls["signpsbt"][0]["params"]["signonly"]) == 1
        bonds = [o for o in tx["vout"] if round(o["value"] * 100_000_000) == BOND]
        assert len(bonds) == 1
        regtest.mine(1)

        new_key = await wait_for_epoch([*nodes, joiner])
        assert new_key != old_key
        st = await ready(joiner)
        assert st["epoch"] == 1 and st["n"] == 4
        # the joiner's change came back to its node wallet
        funds = await joiner.cli("listfunds")
        change = [o for o in funds["outputs"] if o["txid"] == joined["txid"]]
        assert len(change) == 1 and 0 < change[0]["amount_msat"] < (1_000_000 - BOND) * 1000
        assert all(not o["reserved"] for o in funds["outputs"])

        miner = regtest.rpc("getnewaddress", wallet="miner")
        credit([*nodes, joiner], miner, 20_000)
        payout = await joiner.cli("frost-payout", [{"address": miner, "sats": 20_000}], timeout=180)
        assert payout["status"] == "broadcast" and len(payout["signers"]) == 3
        regtest.mine(1)
        assert regtest.rpc("gettransaction", payout["txid"], wallet="miner")["confirmations"] == 1

        dest = regtest.rpc("getnewaddress", wallet="miner")
        with pytest.raises(CliError) as refused:
            await joiner.cli("frost-bond-claim", dest)
        assert "locked until block" in refused.value.message
        regtest.mine(tip + LOCK_BLOCKS - regtest.rpc("getblockcount"))
        claim = await joiner.cli("frost-bond-claim", dest, timeout=60)
        regtest.mine(1)
        assert regtest.rpc("gettransaction", claim["txid"], wallet="miner")["confirmations"] == 1
        assert regtest.rpc("getreceivedbyaddress", dest, 1, wallet="miner") == Decimal(claim["sats"]) / 100_000_000
        for n in [*nodes, joiner]:
            assert n.fatal == []
    finally:
        await net.close()
