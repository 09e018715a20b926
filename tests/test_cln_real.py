"""The plugin on real Core Lightning nodes (pyln-testing's node_factory), when lightningd is installed.

The same scenarios as the stand-in suite, against the real thing: manifest and options, bad
arguments, custom messages between four nodes over their BOLT 8 links (with the reliable layer),
reconnection after a dropped link, and the host-key binding checked by another node's lightningd.
"""

from __future__ import annotations

import asyncio
import shutil
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from coincurve import PrivateKey
from pyln.client import RpcError
from pyln.testing.fixtures import *  # noqa: F403  (node_factory, bitcoind, directory, ...)

from frostfed.bitcoin.ledger import Ledger
from frostfed.bitcoin.taproot import script_from_address
from frostfed.federation import commands
from frostfed.plugin.hostkey import HOSTSEED_LABEL, check_binding, sign_binding

pytestmark = [
    pytest.mark.lightningd,
    pytest.mark.skipif(
        shutil.which("lightningd") is None,
        reason="lightningd isn't installed (Core Lightning not on PATH; tests/clnsim stands in)",
    ),
    pytest.mark.skipif(
        shutil.which("bitcoind") is None,
        reason="bitcoind isn't installed (pyln-testing runs one for lightningd)",
    ),
]

ROOT = Path(__file__).resolve().parent.parent
PLUGIN = str(ROOT / "frostfed-plugin.py")
MESH = str(Path(__file__).parent / "plugins" / "mesh_plugin.py")


class AsyncRpc:
    """pyln's blocking RPC behind the async `call` the host-key functions expect."""

    def __init__(self, rpc: Any) -> None:
        self.rpc = rpc

    async def call(self, method: str, params: Any = None) -> Any:
        return self.rpc.call(method, params)


def wait_until(pred, timeout: float = 60.0) -> None:
    end = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > end:
            raise TimeoutError("condition not reached")
        time.sleep(0.2)


def test_manifest_options_and_not_ready(node_factory):
    l1 = node_factory.get_node(options={"plugin": PLUGIN, "frost-threshold": 2})
    helps = {c["command"].split()[0] for c in l1.rpc.help()["help"]}
    assert set(commands.COMMANDS) <= helps
    configs = l1.rpc.listconfigs()["configs"]
    assert configs["frost-threshold"]["value_int"] == 2
    assert configs["frost-reconnect-interval"]["value_int"] == 10
    with pytest.raises(RpcError) as e:
        l1.rpc.call("frost-status")
    assert e.value.error["code"] == commands.NOT_READY
    assert Path(l1.daemon.lightning_dir, "regtest", "frostfed").is_dir()


def test_bad_arguments_leave_the_plugin_up(node_factory):
    l1 = node_factory.get_node(options={"plugin": PLUGIN})
    for name, params in [
        ("frost-payout", []),
        ("frost-payout", {"outputs": "not json"}),
        ("frost-sign", [42]),
        ("frost-requests", {"id": ""}),
        ("frost-status", ["extra"]),
        ("frost-newaddr", {"label": "x"}),
    ]:
        with pytest.raises(RpcError) as e:
            l1.rpc.call(name, params)
        assert e.value.error["code"] == commands.INVALID_PARAMS
    with pytest.raises(RpcError) as e:
        l1.rpc.call("frost-members")
    assert e.value.error["code"] == commands.NOT_READY


def test_four_nodes_exchange_messages_and_reconnect(node_factory):
    nodes = node_factory.get_nodes(4, opts={"plugin": MESH, "frost-reconnect-interval": 1})
    for a in nodes:
        for b in nodes:
            if a is not b and a.info["id"] < b.info["id"]:
                a.rpc.connect(b.info["id"], "localhost", b.port)
    for a in nodes:
        for b in nodes:
            if a is not b:
                a.rpc.call("mesh-send", [b.info["id"], f"{a.info['id'][:8]}->{b.info['id'][:8]}"])
    for b in nodes:
        wait_until(lambda b=b: len(b.rpc.call("mesh-inbox")["messages"]) == 3)
        got = sorted(m["text"] for m in b.rpc.call("mesh-inbox")["messages"])
        want = sorted(f"{a.info['id'][:8]}->{b.info['id'][:8]}" for a in nodes if a is not b)
        assert got == want
    l1, l2 = nodes[0], nodes[1]
    l1.rpc.disconnect(l2.info["id"], force=True)
    l1.rpc.call("mesh-send", [l2.info["id"], "after the drop"])
    l1.rpc.connect(l2.info["id"], "localhost", l2.port)
    wait_until(lambda: any(m["text"] == "after the drop" for m in l2.rpc.call("mesh-inbox")["messages"]))


def test_host_key_binding_checked_by_another_node(node_factory):
    l1, l2 = node_factory.get_nodes(2)
    seed = bytes.fromhex(l1.rpc.call("makesecret", {"string": HOSTSEED_LABEL})["secret"])
    assert seed.hex() == l1.rpc.call("makesecret", {"string": HOSTSEED_LABEL})["secret"]
    pub = PrivateKey(seed).public_key.format()
    id1, id2 = bytes.fromhex(l1.info["id"]), bytes.fromhex(l2.info["id"])

    async def scenario() -> tuple[bool, bool]:
        zbase = await sign_binding(AsyncRpc(l1.rpc), id1, pub)
        return (
            await check_binding(AsyncRpc(l2.rpc), id1, pub, zbase),
            await check_binding(AsyncRpc(l2.rpc), id2, pub, zbase),
        )

    assert asyncio.run(scenario()) == (True, False)


def test_federation_of_four_real_nodes_pays_out_with_one_down(node_factory, bitcoind):
    nodes = node_factory.get_nodes(4)
    for node in nodes:
        others = ",".join(f"{o.info['id']}@127.0.0.1:{o.port}" for o in nodes if o is not node)
        node.rpc.call(
            "plugin",
            {"subcommand": "start", "plugin": PLUGIN, "frost-members": others, "frost-threshold": 3},
        )

    def group_keys(members) -> set:
        keys = set()
        for n in members:
            try:
                keys.add(n.rpc.call("frost-status").get("group_key"))
            except RpcError:
                keys.add(None)
        return keys

    wait_until(lambda: len(group_keys(nodes)) == 1 and None not in group_keys(nodes), timeout=300)

    def credit(members, address: str, sats: int) -> None:
        script = script_from_address(address, "regtest")
        for n in members:
            ledger = Ledger(Path(n.daemon.lightning_dir) / "regtest" / "frostfed" / "ledger.sqlite")
            try:
                ledger.credit(script, sats)
            finally:
                ledger.close()

    def pay(via, members, sats: int) -> str:
        address = via.rpc.call("frost-newaddr")["address"]
        bitcoind.rpc.sendtoaddress(address, float(Decimal(sats * 4) / Decimal(100_000_000)))
        bitcoind.generate_block(1)
        miner = bitcoind.rpc.getnewaddress()
        credit(members, miner, sats)
        result = via.rpc.call("frost-payout", {"outputs": [{"address": miner, "sats": sats}]})
        assert result["status"] == "broadcast" and len(result["signers"]) == 3
        bitcoind.generate_block(1)
        assert bitcoind.rpc.gettransaction(result["txid"])["confirmations"] >= 1
        return result["txid"]

    pay(nodes[0], nodes, 50_000)
    nodes[3].stop()
    pay(nodes[1], nodes[:3], 30_000)
