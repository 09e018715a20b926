"""The plugin on real Core Lightning nodes (pyln-testing's node_factory, a real bitcoind), driven as a user
drives it with lightning-cli.

lightningd comes from PATH or from the Core Lightning bundle beside the checkout (tests/lightningd_bundle.py).
The plugin runs as a user installs it: the `frostfed-plugin` script of the virtual environment the project
is installed in. pyln-testing's lightning-dirs are deep, so every RPC socket path here is longer than a
unix socket address can hold.
"""

from __future__ import annotations

import json
import os
import sys
from decimal import Decimal
from pathlib import Path
from typing import Any

import lightningd_bundle

lightningd_bundle.require()

import pytest  # noqa: E402
from coincurve import PrivateKey  # noqa: E402
from pyln.client import RpcError  # noqa: E402
from pyln.testing.fixtures import *  # noqa: E402, F403  (node_factory, bitcoind, directory, ...)
from pyln.testing.utils import sync_blockheight, wait_for  # noqa: E402
from test_cln_plugin import BAD_ARGS  # noqa: E402

from frostfed.federation import commands  # noqa: E402
from frostfed.frost.secp import tagged_hash  # noqa: E402
from frostfed.net.cln_channel import FROSTFED_MSGTYPE  # noqa: E402
from frostfed.net.cln_members import DATA, HELLO_ASK, HELLO_TAG  # noqa: E402

pytestmark = [pytest.mark.slow, pytest.mark.lightningd]

PLUGIN = str(Path(sys.executable).parent / "frostfed-plugin")
MESH = str(Path(__file__).parent / "plugins" / "mesh_plugin.py")
STRANGER = str(Path(__file__).parent / "plugins" / "stranger_plugin.py")
TYPE = FROSTFED_MSGTYPE.to_bytes(2, "big")
CONFIG = """
[membership]
min_bond_sats = 50000
min_bond_blocks = 20
transition_confirmations = 1
change_timeout_seconds = 120.0
"""
BOND = 60_000


def error_of(node: Any, method: str, params: Any = None) -> dict[str, Any]:
    """The JSON-RPC error a lightning-cli user sees; it must be {code, message[, data]} and nothing else."""
    with pytest.raises(RpcError) as e:
        node.rpc.call(method, params)
    err = e.value.error
    assert set(err) <= {"code", "message", "data"}, err
    assert "Traceback" not in json.dumps(err)
    return err


def rpc_socket(node: Any) -> str:
    return os.path.join(node.daemon.lightning_dir, "regtest", "lightning-rpc")


def members_opt(node: Any, others: list[Any]) -> str:
    return ",".join(f"{o.info['id']}@127.0.0.1:{o.port}" for o in others if o is not node)


def status(node: Any) -> dict[str, Any] | None:
    try:
        return node.rpc.call("frost-status")
    except RpcError:
        return None


def wait_for_epoch(nodes: list[Any], epoch: int, n: int) -> str:
    """Wait until every node is in `epoch` with `n` members and one group key; returns the key."""

    def agreed() -> bool:
        sts = [status(x) for x in nodes]
        return all(s is not None and s["epoch"] == epoch and s["n"] == n for s in sts) and (
            len({s["group_key"] for s in sts}) == 1  # type: ignore[index]
        )

    wait_for(agreed, timeout=300)
    return status(nodes[0])["group_key"]  # type: ignore[index]


def credit(nodes: list[Any], address: str, sats: int, key: str) -> None:
    """What the pool's share accounting does at every member; a retry of the same call credits nothing more."""
    for node in nodes:
        first = node.rpc.call("frost-ledger-credit", [address, sats, key])
        again = node.rpc.call("frost-ledger-credit", {"address": address, "sats": sats, "key": key})
        assert first["credited"] is True and again["credited"] is False
        assert again["total_credited"] == first["total_credited"]


def fund(bitcoind: Any, via: Any, sats: int) -> None:
    address = via.rpc.call("frost-newaddr")["address"]
    bitcoind.rpc.sendtoaddress(address, float(Decimal(sats) / Decimal(100_000_000)))
    bitcoind.generate_block(1)


def pay(bitcoind: Any, via: Any, members: list[Any], sats: int, key: str) -> dict[str, Any]:
    fund(bitcoind, via, sats * 4)
    miner = bitcoind.rpc.getnewaddress()
    credit(members, miner, sats, key)
    result = via.rpc.call("frost-payout", {"outputs": [{"address": miner, "sats": sats}]})
    assert result["status"] == "broadcast"
    bitcoind.generate_block(1)
    assert bitcoind.rpc.gettransaction(result["txid"])["confirmations"] >= 1
    signers = [n for n in members if status(n)["id"] in result["signers"]]  # type: ignore[index]
    assert len(signers) == len(result["signers"])
    for node in signers:  # each signer approved it, and its own ledger counts it paid once its scan sees the block
        wait_for(lambda node=node: node.rpc.call("frost-ledger", [miner])["debts"][0]["paid"] == sats)
    return {**result, "miner": miner}


def admit_at_every_member(members: list[Any], joiner_id: str) -> None:
    """Each member's operator admits the joiner: a member takes part only in joins it admitted."""
    for node in members:
        assert node.rpc.call("frost-admit", [joiner_id])


def start_plugin(node: Any, options: dict[str, Any]) -> None:
    node.rpc.call("plugin", {"subcommand": "start", "plugin": PLUGIN, **options})


# ---- one node: start-up through a long socket path, help, bad arguments -------------------------------


def test_one_node_long_socket_path_help_and_bad_arguments(node_factory):
    l1 = node_factory.get_node(options={"plugin": PLUGIN, "frost-threshold": 2})
    assert len(os.fsencode(rpc_socket(l1))) > 107  # beyond what a unix socket address holds
    configs = l1.rpc.listconfigs()["configs"]
    assert configs["frost-threshold"]["value_int"] == 2
    assert configs["frost-reconnect-interval"]["value_int"] == 10
    # the plugin reached lightningd's RPC (getinfo, makesecret) and waits only for a member list
    wait_for(lambda: "no members configured" in error_of(l1, "frost-status")["message"])
    assert error_of(l1, "frost-status")["code"] == commands.NOT_READY
    assert Path(l1.daemon.lightning_dir, "regtest", "frostfed").is_dir()

    helps = {c["command"].split()[0]: c["command"] for c in l1.rpc.help()["help"]}
    for name, cmd in commands.COMMANDS.items():
        [entry] = l1.rpc.help(name)["help"]
        assert entry["command"].startswith(f"{name} {cmd.usage}") and cmd.summary in entry["command"], entry
        for p in cmd.params:
            assert f"{p.name}" in entry["command"] and p.doc in entry["command"], (name, p.name)
        assert helps[name] == entry["command"]

    for name, cases in BAD_ARGS.items():
        for params, code in cases:
            err = error_of(l1, name, params)
            assert err["code"] == code, (name, params, err)
    assert error_of(l1, "frost-members")["code"] == commands.NOT_READY
    assert not l1.daemon.is_in_log(r"Traceback")


def test_a_frost_network_other_than_lightningds_refuses_to_start(node_factory):
    member = "02" + "ab" * 32
    options = {"plugin": PLUGIN, "frost-network": "signet", "frost-members": f"{member}@127.0.0.1:1"}
    l1 = node_factory.get_node(options=options, broken_log="network mismatch")  # the one broken line expected
    wait_for(lambda: l1.daemon.is_in_log(r"BROKEN.*network mismatch: .* for signet .* lightningd is on regtest"))
    err = error_of(l1, "frost-status")
    assert err["code"] == commands.NOT_READY and "network mismatch" in err["message"]
    assert not Path(l1.daemon.lightning_dir, "regtest", "frostfed", "frostfed.sqlite").exists()  # nothing made
    assert not l1.daemon.is_in_log(r"Traceback")


# ---- non-members: no answer, no record, a rate-limited log line --------------------------------------


def stranger_hello(node_id: bytes, secret: bytes) -> bytes:
    """A correctly signed member-key hello (asking for an answer) from a node that is no member."""
    member = PrivateKey(secret).public_key.format()
    sig = PrivateKey(secret).sign_schnorr(tagged_hash(HELLO_TAG, node_id + member), os.urandom(32))
    return TYPE + bytes([HELLO_ASK]) + member + sig


def test_a_non_member_gets_no_answer_and_leaves_no_state(node_factory):
    absent = "02" + "ab" * 32  # a configured member that never comes online (a valid key)
    l1 = node_factory.get_node(
        options={"plugin": PLUGIN, "frost-members": f"{absent}@127.0.0.1:1", "frost-reconnect-interval": 1},
    )
    stranger = node_factory.get_node(options={"plugin": STRANGER})
    wait_for(lambda: "waiting for the member keys" in error_of(l1, "frost-status")["message"])
    stranger.rpc.connect(l1.info["id"], "localhost", l1.port)
    hello = stranger_hello(bytes.fromhex(stranger.info["id"]), b"\x05" * 32)
    frames = [hello, TYPE + bytes([DATA]) + b"let me in", TYPE + b"\xff" * 40, TYPE]
    for _ in range(30):  # garbage, and the same frames replayed
        for frame in frames:
            stranger.rpc.call("sendcustommsg", {"node_id": l1.info["id"], "msg": frame.hex()})
    # a member pings its linked nodes every couple of seconds: the stranger must hear nothing, ever
    stranger.rpc.call("sendcustommsg", {"node_id": l1.info["id"], "msg": hello.hex()})
    for _ in range(3):  # three reconnection rounds (1 s apart) include a round of hello asks (every 2 s)
        l1.daemon.wait_for_log(r"connect to member \w+ at 127.0.0.1:1 failed", timeout=30)
    assert stranger.rpc.call("stranger-inbox")["messages"] == []
    assert l1.daemon.is_in_log(r"INFO .*frostfed\.net\.cln: dropped traffic .*non-members")
    # the node logs at debug (pyln-testing's log-level): the plugin's debug lines arrive at that level
    assert l1.daemon.is_in_log(r"DEBUG .*frostfed\.net\.cln: connect to member \w+ at 127\.0\.0\.1:1 failed")
    keys = Path(l1.daemon.lightning_dir, "regtest", "frostfed", "member-keys.json")
    assert not keys.exists() or stranger.info["id"] not in keys.read_text()
    assert sum("dropped traffic" in line for line in l1.daemon.logs) <= 2  # 121 frames, rate-limited lines
    assert "waiting for the member keys" in error_of(l1, "frost-status")["message"]


# ---- transport and host key on real links -------------------------------------------------------------


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
        wait_for(lambda b=b: len(b.rpc.call("mesh-inbox")["messages"]) == 3)
        got = sorted(m["text"] for m in b.rpc.call("mesh-inbox")["messages"])
        want = sorted(f"{a.info['id'][:8]}->{b.info['id'][:8]}" for a in nodes if a is not b)
        assert got == want
    l1, l2 = nodes[0], nodes[1]
    l1.rpc.disconnect(l2.info["id"], force=True)
    l1.rpc.call("mesh-send", [l2.info["id"], "after the drop"])
    l1.rpc.connect(l2.info["id"], "localhost", l2.port)
    wait_for(lambda: any(m["text"] == "after the drop" for m in l2.rpc.call("mesh-inbox")["messages"]))


# ---- the whole life cycle -----------------------------------------------------------------------------


def test_federation_life_cycle_on_real_nodes(node_factory, bitcoind, tmp_path):
    config = tmp_path / "frost.toml"
    config.write_text(CONFIG)
    nodes = node_factory.get_nodes(4, opts={"may_reconnect": True})
    l1, l2, l3, l4 = nodes

    def options(node: Any) -> dict[str, Any]:
        return {
            "frost-members": members_opt(node, nodes),
            "frost-threshold": 3,
            "frost-reconnect-interval": 1,
            "frost-config": str(config),
        }

    for node in nodes:
        start_plugin(node, options(node))
    key0 = wait_for_epoch(nodes, 0, 4)

    # lightningd's network decides the keys: regtest addresses and a tpub descriptor bitcoind derives alike
    new = l1.rpc.call("frost-newaddr")
    assert new["address"].startswith("bcrt1p")
    receive = l2.rpc.call("frost-descriptor")["descriptor"]
    assert receive.startswith("tr(tpub")
    assert bitcoind.rpc.deriveaddresses(receive, [new["index"], new["index"]]) == [new["address"]]

    # a payout the ledger never owed is refused, with every member's reason, and each refusal is logged
    fund(bitcoind, l1, 200_000)
    stranger_address = bitcoind.rpc.getnewaddress()
    with pytest.raises(RpcError) as refused:
        l1.rpc.call("frost-payout", {"outputs": [{"address": stranger_address, "sats": 10_000}]})
    l2.daemon.wait_for_log(r"INFO .*frostfed\.federation\.roast_signer: request \w+ from \w+ refused")
    l1.daemon.wait_for_log(r"UNUSUAL .*frost-payout refused \(1402\)")
    err = refused.value.error
    assert set(err) == {"code", "message", "data"} and err["code"] == commands.POLICY_REJECTED
    assert len(err["data"]["rejections"]) >= 2 and all(err["data"]["rejections"].values())

    # a non-member's garbage and replayed frames: no answer, no record, and the federation goes on paying
    stranger = node_factory.get_node(options={"plugin": STRANGER})
    stranger.rpc.connect(l1.info["id"], "localhost", l1.port)
    hello = stranger_hello(bytes.fromhex(stranger.info["id"]), b"\x06" * 32)
    for _ in range(10):
        for frame in (hello, TYPE + bytes([DATA]) + b"\x00" * 64, TYPE + os.urandom(300)):
            stranger.rpc.call("sendcustommsg", {"node_id": l1.info["id"], "msg": frame.hex()})
    # errors of a running member are plain too
    for method, params, code in [
        ("frost-requests", ["nosuch"], commands.NOT_FOUND),
        ("frost-bond-claim", [bitcoind.rpc.getnewaddress()], commands.NOT_FOUND),
        ("frost-payout", [[{"address": "bc1q" + "q" * 38, "sats": 1000}]], commands.INVALID_PARAMS),
        ("frost-sign", ["bm90IGEgcHNidA=="], commands.INVALID_PARAMS),
    ]:
        assert error_of(l1, method, params)["code"] == code, method

    first = pay(bitcoind, l1, nodes, 50_000, "window-1")
    assert stranger.rpc.call("stranger-inbox")["messages"] == []
    assert l1.daemon.is_in_log(r"dropped traffic .*non-members")
    keys = Path(l1.daemon.lightning_dir, "regtest", "frostfed", "member-keys.json")
    assert stranger.info["id"] not in keys.read_text()
    assert len(first["signers"]) == 3
    signer = next(n for n in nodes if status(n)["id"] == first["signers"][-1])  # type: ignore[index]
    history = signer.rpc.call("frost-ledger-history", [first["miner"]])
    assert [c["key"] for c in history["credits"]] == ["window-1"]
    assert [p["txid"] for p in history["payouts"]] == [first["txid"]]

    # one node down: the other three pay; back again, it drops the request it missed (settled on chain)
    l4.stop()
    second = pay(bitcoind, l2, nodes[:3], 30_000, "window-2")
    assert l4.info["id"] not in second["signers"]
    l4.daemon.opts.update({"plugin": PLUGIN, **options(l4)})
    l4.start()
    wait_for_epoch(nodes, 0, 4)
    l4.daemon.wait_for_log(rf"request {second['id']} from \w+ is (settled on chain|past its deadline)", timeout=120)
    mine = [r for r in l4.rpc.call("frost-requests")["requests"] if r["id"] == second["id"]]
    assert mine == [] or mine[0]["status"] != "refused"

    # plugin stop / start keeps the federation's state
    l1.rpc.call("plugin", {"subcommand": "stop", "plugin": "frostfed-plugin"})
    assert error_of(l1, "frost-status")["code"] == -32601
    start_plugin(l1, options(l1))
    assert wait_for_epoch(nodes, 0, 4) == key0
    credit(nodes, second["miner"], 1, "window-2b")  # the ledger survived: only the new credit is available
    assert l1.rpc.call("frost-ledger", [second["miner"]])["debts"][0]["available"] == 1
    pay(bitcoind, l1, nodes, 20_000, "window-3")

    # a fifth node joins with a bond from its node wallet, and the new epoch pays out
    l5 = node_factory.get_node(
        may_reconnect=True,
        options={
            "plugin": PLUGIN,
            "frost-joining": None,
            "frost-members": members_opt(None, nodes),
            "frost-reconnect-interval": 1,
            "frost-config": str(config),
        },
    )
    bitcoind.rpc.sendtoaddress(l5.rpc.newaddr("p2tr")["p2tr"], 0.01)
    bitcoind.generate_block(1)
    wait_for(lambda: any(o["status"] == "confirmed" for o in l5.rpc.listfunds()["outputs"]))
    wait_for(lambda: status(l5) is not None)
    joiner = status(l5)
    assert joiner["epoch"] is None
    admit_at_every_member(nodes, joiner["id"])
    joined = l1.rpc.call("frost-join", [joiner["id"], f"{l5.info['id']}@127.0.0.1:{l5.port}", BOND, 25])
    assert joined["epoch"] == 1 and len(joined["members"]) == 5
    bitcoind.generate_block(1)
    key1 = wait_for_epoch([*nodes, l5], 1, 5)
    assert key1 != key0
    in_new_epoch = pay(bitcoind, l5, [*nodes, l5], 15_000, "window-4")
    assert in_new_epoch["status"] == "broadcast"

    # a member leaves (once the members' minimum interval between changes, 6 blocks, has passed): the
    # others go on in the next epoch without it
    bitcoind.generate_block(6)
    sync_blockheight(bitcoind, [*nodes, l5])
    left = l2.rpc.call("frost-leave")
    assert left["epoch"] == 2
    bitcoind.generate_block(1)
    rest = [l1, l3, l4, l5]
    wait_for_epoch(rest, 2, 4)
    assert all(m["id"] != status(l2)["id"] for m in status(l1)["members"])
    for node in [*nodes, l5]:
        assert not node.daemon.is_in_log(r"Traceback")
