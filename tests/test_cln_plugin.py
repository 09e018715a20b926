"""The frostfed plugin driven the way lightningd drives it (through the strict stand-in)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from clnsim import CliError, Faults, PluginDied, SimNetwork, SimNode

from frostfed.federation import commands
from frostfed.net.cln_channel import FROSTFED_MSGTYPE

ROOT = Path(__file__).resolve().parent.parent
PLUGIN = ROOT / "frostfed-plugin.py"
MESH = Path(__file__).parent / "plugins" / "mesh_plugin.py"
TYPE = FROSTFED_MSGTYPE.to_bytes(2, "big")
MEMBER = "02" + "ab" * 32

# Arguments lightning-cli users get wrong, per command: each must give a JSON-RPC error.
BAD_ARGS: dict[str, list[tuple[list[Any] | dict[str, Any], int]]] = {
    "frost-status": [(["extra"], -32602), ({"verbose": True}, -32602)],
    "frost-newaddr": [([1], -32602), ({"label": "x"}, -32602)],
    "frost-descriptor": [(["x", "y"], -32602), ({"private": True}, -32602)],
    "frost-members": [([None, 1], -32602), ({"all": 1}, -32602)],
    "frost-payout": [
        ([], -32602),
        (["not json"], -32602),
        ([[]], -32602),
        ([[{"address": "bcrt1qxyz", "sats": 1000}]], -32602),
        ([[{"address": "bcrt1p" + "q" * 58, "sats": -5}]], -32602),
        ([[{"address": "bcrt1p" + "q" * 58, "sats": 5, "extra": 1}]], -32602),
        ({"outputs": [{"address": "bcrt1p" + "q" * 58, "sats": 5}], "feerate": "fast"}, -32602),
        ({"outputs": [{"address": "bcrt1p" + "q" * 58, "sats": 5}], "feerate": 0}, -32602),
        ({"feerate": 2}, -32602),
        (["a", "b", "c"], -32602),
    ],
    "frost-bumpfee": [
        ([], -32602),
        (["abc", "fast"], -32602),
        ({"id": "abc", "feerate": 0}, -32602),
        ({"feerate": 5}, -32602),
        (["abc", 5, 6], -32602),
    ],
    "frost-sign": [
        ([], -32602),
        ([""], -32602),
        ([42], -32602),
        ({"psbt": None}, -32602),
        ({"tx": "x"}, -32602),
    ],
    "frost-abort-change": [([5], -32602), ({"reason": ""}, -32602), (["why", "more"], -32602), ({"epoch": 1}, -32602)],
    "frost-requests": [
        ([5], -32602),
        ({"id": ""}, -32602),
        ({"id": "x" * 300}, -32602),
        (["a", "b"], -32602),
    ],
    "frost-join": [
        ([], -32602),
        (["04" + "ab" * 32, "127.0.0.1:9735"], -32602),
        ([MEMBER, "no-port"], -32602),
        ([MEMBER, "127.0.0.1:99999"], -32602),
        ({"id": MEMBER, "address": "127.0.0.1:9735", "bond_sats": -1}, -32602),
        ({"id": MEMBER, "address": "127.0.0.1:9735", "lock_blocks": "soon"}, -32602),
        ({"id": MEMBER}, -32602),
    ],
    "frost-leave": [(["now"], -32602), ({"force": True}, -32602)],
    "frost-expel": [([], -32602), (["zz"], -32602), ({"member": 7}, -32602), ({"id": MEMBER}, -32602)],
    "frost-epochs": [([1], -32602), ({"all": True}, -32602)],
    "frost-admit": [([], -32602), (["zz"], -32602), ([MEMBER, 0], -32602), ({"member": MEMBER}, -32602)],
    "frost-approve-expel": [([], -32602), (["zz"], -32602), ({"id": MEMBER}, -32602)],
    "frost-revoke": [([], -32602), ([MEMBER, 1], -32602)],
    "frost-bond-claim": [([], -32602), (["short"], -32602), ({"address": None}, -32602), ({"to": "x"}, -32602)],
    "frost-ledger-credit": [
        ([], -32602),
        (["bcrt1p" + "q" * 58, 0, "k1"], -32602),
        (["bcrt1p" + "q" * 58, -5, "k1"], -32602),
        (["bcrt1p" + "q" * 58, 1000], -32602),
        (["bcrt1p" + "q" * 58, 1000, "bad key!"], -32602),
        ({"address": "short", "sats": 1, "key": "k"}, -32602),
        (["bcrt1p" + "q" * 58, True, "k"], -32602),
    ],
    "frost-ledger": [(["short"], -32602), ({"miner": "x"}, -32602), ([1, 2], -32602)],
    "frost-ledger-history": [([42], -32602), ({"address": ""}, -32602)],
}
GOOD_ARGS: dict[str, list[Any] | dict[str, Any]] = {
    "frost-status": [],
    "frost-newaddr": {},
    "frost-descriptor": [],
    "frost-members": {},
    "frost-payout": {"outputs": [{"address": "bcrt1p" + "q" * 58, "sats": 1000}], "feerate": 2},
    "frost-bumpfee": ["abc", 5],
    "frost-sign": ["cHNidP8BAAoCAAAAAAAAAAAAAAAA"],
    "frost-requests": {"id": "abc"},
    "frost-join": [MEMBER, MEMBER + "@127.0.0.1:9735"],
    "frost-leave": [],
    "frost-expel": {"member": MEMBER},
    "frost-epochs": {},
    "frost-admit": [MEMBER, 100_000],
    "frost-approve-expel": [MEMBER],
    "frost-revoke": {"member": MEMBER},
    "frost-bond-claim": ["bcrt1p" + "q" * 58],
    "frost-ledger-credit": ["bcrt1p" + "q" * 58, 1000, "window-1"],
    "frost-ledger": [],
    "frost-ledger-history": {},
}


async def settle(pred, timeout: float = 15.0, interval: float = 0.05) -> None:
    async with asyncio.timeout(timeout):
        while not await pred():
            await asyncio.sleep(interval)


def call(node: SimNode, method: str, params: Any) -> Any:
    return node.call(method, params, rid=f"cli:{method}#1", timeout=15)


@pytest.fixture
async def net():
    network = SimNetwork(seed=11)
    yield network
    await network.close()


async def test_manifest_registers_every_command_with_its_usage(net):
    node = await net.add_node(PLUGIN)
    m = node.manifest
    assert set(commands.COMMANDS) <= set(m.rpcmethods)
    for name, cmd in commands.COMMANDS.items():
        usage, _, doc = m.rpcmethods[name]["usage"].partition("  \n ")
        assert usage == cmd.usage and doc.startswith(cmd.summary)  # lightningd's help shows only the usage
        assert all(f"\n {p.name}" in doc and p.doc for p in cmd.params)
        assert m.rpcmethods[name]["description"] == cmd.summary
    assert "custommsg" in m.hooks and {"connect", "disconnect"} <= m.subscriptions
    configs = (await node.cli("listconfigs"))["configs"]
    assert configs["frost-reconnect-interval"] == {
        "value_int": 10,
        "source": "default",
        "plugin": str(PLUGIN),
    }
    assert configs["frost-config"]["value_str"] == "" and configs["frost-threshold"]["value_int"] == 0
    assert (node.lightning_dir / "frostfed").is_dir()


async def test_options_given_show_in_listconfigs_and_reach_the_plugin(net):
    datadir = net.base_dir / "elsewhere"
    node = await net.add_node(PLUGIN, {"frost-threshold": 3, "frost-datadir": str(datadir)})
    configs = (await node.cli("listconfigs"))["configs"]
    assert configs["frost-threshold"] == {"value_int": 3, "source": "cmdline", "plugin": str(PLUGIN)}
    assert datadir.is_dir() and not (node.lightning_dir / "frostfed").exists()


async def test_without_a_service_every_command_is_not_ready(net):
    node = await net.add_node(PLUGIN)
    for name, params in GOOD_ARGS.items():
        with pytest.raises(CliError) as e:
            await call(node, name, params)
        assert e.value.code == commands.NOT_READY, name
        assert "not ready" in e.value.message
    assert node.fatal == []


async def test_bad_arguments_to_every_command_give_errors_and_the_plugin_stays_up(net):
    node = await net.add_node(PLUGIN)
    assert set(BAD_ARGS) == set(commands.COMMANDS)
    for name, cases in BAD_ARGS.items():
        for params, code in cases:
            with pytest.raises(CliError) as e:
                await call(node, name, params)
            assert e.value.code == code, (name, params, e.value.message)
            assert name in e.value.message or "parameter" in e.value.message
    with pytest.raises(CliError) as e:
        await node.cli("frost-nosuch")
    assert e.value.code == -32601
    assert node.alive and node.fatal == []
    with pytest.raises(CliError) as e:
        await node.cli("frost-status")
    assert e.value.code == commands.NOT_READY


async def test_a_bad_member_list_stops_the_plugin_at_init(net):
    with pytest.raises(PluginDied, match="init failed"):
        await net.add_node(PLUGIN, {"frost-members": "02abcd@127.0.0.1:9735"})


async def test_foreign_and_malformed_custom_messages_are_ignored(net):
    a = await net.add_node(PLUGIN)
    b = await net.add_node(PLUGIN)
    await a.builtin("connect", {"id": f"{b.node_id}@127.0.0.1:{b.port}"})
    for junk in (b"\x00", b"\x80\x01cafe", TYPE[:1], b"\xf0\x57" + b"x" * 10):
        b.enqueue(a.node_id, junk)
    await a.builtin("sendcustommsg", {"node_id": b.node_id, "msg": (TYPE + b"hello").hex()})

    async def all_answered() -> bool:  # every hook call made has had its answer checked
        calls = len(a.hook_calls) + len(b.hook_calls)
        return b._inbox.empty() and len(b.hook_calls) >= 6 and net.counts.delivered == calls

    await settle(all_answered)
    assert b.fatal == [] and a.fatal == [] and b.alive
    assert any(h["payload"].startswith("0007") for h in b.hook_calls)


async def mesh(net: SimNetwork, n: int, interval: int = 1) -> list[SimNode]:
    nodes = [await net.add_node(MESH, start=False) for _ in range(n)]
    for node in nodes:
        others = ",".join(f"{o.node_id}@127.0.0.1:{o.port}" for o in nodes if o is not node)
        node.given_options = {
            "frost-members": others,
            "frost-reconnect-interval": interval,
            "frost-threshold": 3,
        }
    for node in nodes:
        await node.start()
    return nodes


async def connected_all(nodes: list[SimNode]) -> bool:
    for node in nodes:
        if len(node.peers) != len(nodes) - 1:
            return False
        try:
            status = await node.cli("frost-status")
        except CliError:  # still starting
            return False
        if len(status["connected"]) != len(nodes) - 1:
            return False
    return True


async def inbox(node: SimNode) -> list[dict[str, str]]:
    return (await node.cli("mesh-inbox"))["messages"]


async def test_four_members_connect_and_exchange_messages(net):
    nodes = await mesh(net, 4)
    await settle(lambda: connected_all(nodes))
    status = await nodes[0].cli("frost-status")
    assert status["node_id"] == nodes[0].node_id and status["threshold"] == 3
    assert status["data_dir"] == str(nodes[0].lightning_dir / "frostfed")
    for src in nodes:
        for dst in nodes:
            if dst is not src:
                await src.cli("mesh-send", dst.node_id, f"{src.index}->{dst.index}")

    async def all_in() -> bool:
        return [len(await inbox(n)) for n in nodes] == [3] * len(nodes)

    await settle(all_in)
    for dst in nodes:
        got = sorted((m["peer"], m["text"]) for m in await inbox(dst))
        want = sorted((s.node_id, f"{s.index}->{dst.index}") for s in nodes if s is not dst)
        assert got == want
        # the 0x0007 messages of every connect reached the hook and were not delivered
        assert any(h["payload"].startswith("0007") for h in dst.hook_calls)
        assert dst.fatal == []
    # commands bind keyword parameters through the service
    assert await nodes[1].cli("frost-requests", id="known") == {"id": "known"}
    with pytest.raises(CliError) as e:
        await nodes[1].cli("frost-requests", "unknown")
    assert e.value.code == commands.NOT_FOUND
    with pytest.raises(CliError) as e:
        await nodes[1].cli("frost-newaddr")
    assert e.value.code == commands.INTERNAL_ERROR
    with pytest.raises(CliError) as e:
        await nodes[1].cli("frost-epochs")
    assert e.value.code == commands.INTERNAL_ERROR and "not JSON" in e.value.message
    assert (await nodes[1].cli("frost-requests", "known")) == {"id": "known"}  # still answering


async def test_members_reconnect_after_a_link_drops(net):
    nodes = await mesh(net, 3)
    await settle(lambda: connected_all(nodes))
    a, b, _ = nodes
    await net.disconnect(a, b)
    assert b.node_id not in a.peers
    await settle(lambda: connected_all(nodes))
    await a.cli("mesh-send", b.node_id, "after reconnect")

    async def arrived() -> bool:
        return any(m["text"] == "after reconnect" for m in await inbox(b))

    await settle(arrived)


async def test_reliable_layer_delivers_everything_in_order_through_faults():
    net = SimNetwork(seed=5, faults=Faults(drop=0.2, delay=0.2, max_delay=0.1, disconnect=0.02, seed=3))
    try:
        nodes = await mesh(net, 4)
        await settle(lambda: connected_all(nodes), timeout=30)
        count = 15
        for i in range(count):
            for src in nodes:
                for dst in nodes:
                    if dst is not src:
                        await src.cli("mesh-send", dst.node_id, f"{src.index}:{i}")

        async def complete() -> bool:
            return [len(await inbox(n)) for n in nodes] == [3 * count] * len(nodes)

        await settle(complete, timeout=90, interval=0.2)
        for dst in nodes:
            msgs = await inbox(dst)
            for src in nodes:
                if src is not dst:
                    texts = [m["text"] for m in msgs if m["peer"] == src.node_id]
                    assert texts == [f"{src.index}:{i}" for i in range(count)]
            assert dst.fatal == []
        c = net.counts
        assert c.dropped > 0 and c.delayed > 0 and c.disconnects > 0
    finally:
        await net.close()


def test_policy_file_is_read_and_checked(tmp_path):
    from frostfed.federation.config import ConfigError, PolicySettings
    from frostfed.plugin.cln_member import load_policy

    assert load_policy("") == PolicySettings()
    good = tmp_path / "good.toml"
    good.write_text(
        "[policy]\nmax_fee_sats = 5000\nmin_confirmations = 3\nfee_budget_sats = 9000\nallow_op_return = true\n"
    )
    assert load_policy(good) == PolicySettings(
        max_fee_sats=5000, min_confirmations=3, fee_budget_sats=9000, allow_op_return=True
    )
    for text, why in [
        ("[policy]\nmax_fee = 1\n", "unknown setting"),
        ('[policy]\nmin_confirmations = "3"\n', "min_confirmations must be a whole number"),
        ("[policy]\nmin_feerate = 50\nmax_feerate = 2\n", "min_feerate is above policy.max_feerate"),
        ("[policy]\nallow_op_return = 1\n", "allow_op_return must be true or false"),
        ("policy = 3\n", "must be a table"),
        ("[policy\n", "frost-config"),
    ]:
        bad = tmp_path / "bad.toml"
        bad.write_text(text)
        with pytest.raises(ConfigError, match=why):
            load_policy(bad)
    with pytest.raises(ConfigError):
        load_policy(tmp_path / "missing.toml")


def test_membership_table_is_read_and_checked(tmp_path):
    from frostfed.federation.config import ConfigError, MembershipSettings
    from frostfed.plugin.cln_member import load_membership

    assert load_membership("") == MembershipSettings()
    good = tmp_path / "good.toml"
    good.write_text("[policy]\nmax_fee_sats = 5000\n[membership]\nmin_bond_sats = 50000\nmin_bond_blocks = 20\n")
    assert load_membership(good) == MembershipSettings(min_bond_sats=50_000, min_bond_blocks=20)
    for text, why in [
        ("[membership]\nmin_bond = 1\n", "unknown setting membership.min_bond"),
        ("[membership]\nmax_members = 1\n", "max_members must be a whole number"),
        ('[membership]\ntransition_confirmations = "6"\n', "transition_confirmations"),
        ("membership = 3\n", "must be a table"),
    ]:
        bad = tmp_path / "bad.toml"
        bad.write_text(text)
        with pytest.raises(ConfigError, match=why):
            load_membership(bad)


def test_own_address_comes_from_getinfo():
    from frostfed.plugin.cln_member import own_address

    node = "02" + "ab" * 32
    listening = {"id": node, "address": [], "binding": [{"type": "ipv4", "address": "127.0.0.1", "port": 9735}]}
    assert own_address(listening) == f"{node}@127.0.0.1:9735"
    announced = {**listening, "address": [{"type": "ipv6", "address": "2001:db8::1", "port": 9736}]}
    assert own_address(announced) == f"{node}@[2001:db8::1]:9736"
    assert own_address({"id": node, "binding": [{"type": "local socket", "socket": "/tmp/x"}]}) is None


async def test_a_bad_policy_file_is_reported_by_every_command(net):
    bad = net.base_dir / "frost.toml"
    bad.write_text("[policy]\nmax_fee = 1\n")
    other = "02" + "ab" * 32
    node = await net.add_node(PLUGIN, {"frost-config": str(bad), "frost-members": f"{other}@127.0.0.1:1"})

    async def failed() -> bool:
        try:
            await node.cli("frost-status")
        except CliError as e:
            return "start-up failed" in e.message
        return False

    await settle(failed)
    with pytest.raises(CliError) as e:
        await node.cli("frost-members")
    assert e.value.code == commands.NOT_READY and "unknown setting policy.max_fee" in e.value.message
    assert node.alive
