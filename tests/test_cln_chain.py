"""Chain calls through lightningd (the stand-in answering from a real regtest bitcoind) and ClnChainSource."""

from __future__ import annotations

import asyncio
import json
from decimal import Decimal
from pathlib import Path

import pytest
from bitcoin.core import CTransaction, b2lx, x
from clnsim import SimNetwork
from test_clnsim import recorded

from frostfed.bitcoin.chain import ChainError, ChainRpcError, ChainUnavailable
from frostfed.bitcoin.chain_index import ChainIndex
from frostfed.bitcoin.cln_chain import ClnChainSource, LightningSocket, bitcoind_from_configs
from frostfed.lightning_rpc import LightningRpc, LightningRpcError

CAP = Path(__file__).parent / "plugins" / "cap_plugin.py"


@pytest.fixture
async def node(regtest):
    net = SimNetwork(seed=41, bitcoind=regtest.rpc_client)
    n = await net.add_node(CAP)
    yield n
    await net.close()


def off_loop(fn, *args):
    """ClnChainSource blocks; the stand-in serving it runs on this test's loop."""
    return asyncio.wait_for(asyncio.to_thread(fn, *args), 20)


def spendable(regtest) -> dict:
    utxos = regtest.rpc("listunspent", 1, 9999999, wallet="miner")
    return next(u for u in utxos if u["confirmations"] > 100)


async def test_chain_calls_answer_as_recorded(node, regtest):
    info = await node.builtin("getchaininfo", {"last_height": 0})
    rec = recorded("rpc", "getchaininfo")[0]["response"]["result"]
    assert set(info) == set(rec) and info["chain"] == "regtest"
    assert info["blockcount"] == regtest.rpc("getblockcount")

    u = spendable(regtest)
    out = await node.builtin("getutxout", {"txid": u["txid"], "vout": u["vout"]})
    assert out["amount"] == f"{round(u['amount'] * 100_000_000)}sat"
    assert out["script"] == u["scriptPubKey"]
    missing = await node.builtin("getutxout", {"txid": u["txid"], "vout": 77})
    assert missing == recorded("rpc", "getutxout")[1]["response"]["result"] == {"amount": None, "script": None}

    tip = info["blockcount"]
    block = await node.builtin("getrawblockbyheight", {"height": tip})
    assert block["blockhash"] == regtest.rpc("getblockhash", tip)
    assert block["block"] == regtest.rpc("getblock", block["blockhash"], 0)
    assert await node.builtin("getrawblockbyheight", [tip + 10]) == {"blockhash": None, "block": None}

    bad = await node.builtin("sendrawtransaction", {"tx": "00", "allowhighfees": False})
    rec_bad = recorded("rpc", "sendrawtransaction")[0]["response"]["result"]
    assert bad["success"] is False and bad["errmsg"].startswith("error code: -22\nerror message:\n")
    assert json.dumps(sorted(bad)) == json.dumps(sorted(rec_bad))


async def test_blocking_calls_answer_as_async_ones_and_fail_as_chain_errors(node, tmp_path):
    rpc = LightningRpc(node.rpc_path)
    params = {"last_height": 0}
    assert await off_loop(rpc.call_blocking, "getchaininfo", params) == await rpc.call("getchaininfo", params)
    with pytest.raises(LightningRpcError) as in_loop:
        await rpc.call("no-such-method")
    with pytest.raises(LightningRpcError) as in_thread:
        await off_loop(rpc.call_blocking, "no-such-method")
    assert in_thread.value.code == in_loop.value.code is not None
    with pytest.raises(ChainRpcError) as chain_error:
        await off_loop(LightningSocket(node.rpc_path).call, "no-such-method")
    assert chain_error.value.code == in_loop.value.code
    absent = tmp_path / "no-such-socket"
    with pytest.raises(ChainUnavailable, match=str(absent)):
        await off_loop(LightningSocket(absent, timeout=2).call, "getinfo")


async def test_listconfigs_shows_the_bitcoind_settings(node, regtest):
    configs = (await node.builtin("listconfigs", {}))["configs"]
    rpc = bitcoind_from_configs(configs)
    assert rpc is not None and rpc.port == regtest.rpc_port
    assert await off_loop(rpc.call, "getblockcount") == regtest.rpc("getblockcount")


async def test_cln_chain_source_matches_bitcoind(node, regtest):
    source = await off_loop(ClnChainSource.from_node, node.rpc_path)
    direct = regtest.chain_source()
    assert await off_loop(source.tip_height) == direct.tip_height()
    u = spendable(regtest)
    assert await off_loop(source.get_utxo, u["txid"], u["vout"]) == direct.get_utxo(u["txid"], u["vout"])
    assert await off_loop(source.get_utxo, u["txid"], 77) is None
    height = direct.tip_height()
    assert [b2lx(t.GetTxid()) for t in await off_loop(source.block_transactions, height)] == [
        b2lx(t.GetTxid()) for t in direct.block_transactions(height)
    ]
    with pytest.raises(ChainRpcError):
        await off_loop(source.block_transactions, height + 5)

    # a real spend broadcast through lightningd reaches bitcoind's mempool, and the output is then spent
    dest = regtest.rpc("getnewaddress", wallet="miner")
    raw = regtest.rpc(
        "createrawtransaction",
        [{"txid": u["txid"], "vout": u["vout"]}],
        {dest: str(u["amount"] - Decimal("0.0001"))},
    )
    signed = regtest.rpc("signrawtransactionwithwallet", raw, wallet="miner")["hex"]
    tx = CTransaction.deserialize(x(signed))
    txid = await off_loop(source.broadcast, tx)
    assert txid in regtest.rpc("getrawmempool")
    assert await off_loop(source.get_utxo, u["txid"], u["vout"]) is None
    with pytest.raises(ChainRpcError) as e:
        await off_loop(source.broadcast, CTransaction(tx.vin, [], tx.nLockTime, tx.nVersion))  # no outputs: rejected
    assert e.value.code != 0
    regtest.mine(1)


async def test_cln_blocks_link_up_as_bitcoinds_and_an_index_follows_them(node, regtest):
    """The chain index reads lightningd's `getrawblockbyheight`: the same hashes and parent links as
    bitcoind's, with or without bitcoind for the hash-only call."""
    with_bitcoind = await off_loop(ClnChainSource.from_node, node.rpc_path)
    alone = ClnChainSource(LightningSocket(node.rpc_path), None)
    direct = regtest.chain_source()
    tip = direct.tip_height()
    for source in (with_bitcoind, alone):
        block = await off_loop(source.block, tip)
        assert block.hash == regtest.rpc("getblockhash", tip) == await off_loop(source.block_hash, tip)
        assert block.prev_hash == regtest.rpc("getblockhash", tip - 1)
        assert [b2lx(t.GetTxid()) for t in block.txs] == regtest.rpc("getblock", block.hash)["tx"]
    index = ChainIndex(":memory:")
    index.watch(0, lambda chain, i: b"\x6a" + bytes([chain, i % 256]) * 16, tip - 3)
    assert await off_loop(index.sync, alone) == tip
    assert index.block_hash(tip) == regtest.rpc("getblockhash", tip)


async def test_without_bitcoind_settings_confirmations_are_a_clear_error(node, regtest):
    source = ClnChainSource(LightningSocket(node.rpc_path), None)
    u = spendable(regtest)
    with pytest.raises(ChainError, match="bitcoin-rpc"):
        await off_loop(source.get_utxo, u["txid"], u["vout"])
    assert await off_loop(source.get_utxo, u["txid"], 77) is None  # lightningd alone can say "no such output"
    assert await off_loop(source.tip_height) == regtest.rpc("getblockcount")
    with pytest.raises(ValueError):
        await off_loop(source.get_utxo, "zz", 0)


async def test_block_added_reaches_subscribers_as_recorded(node, regtest):
    regtest.mine(1)
    params = await node.net.block_added()
    sent = [m for m in node.notifications_sent if m["method"] == "block_added"]
    rec = recorded("from_lightningd", "block_added")[0]
    assert sent[-1]["params"] == params and params["block_added"]["height"] == regtest.rpc("getblockcount")
    assert list(sent[-1]) == list(rec) and set(params["block_added"]) == set(rec["params"]["block_added"])
