"""The bitcoind chain source against a real regtest bitcoind: what it reports, and how it fails."""

from __future__ import annotations

import hashlib
import hmac
import os
import select
import socket
import threading
import time

import pytest
from bitcoin.core import CTransaction
from mempool import mempool_verdict

from frostfed.bitcoin.chain import BitcoindChainSource, BitcoindRpc, ChainRpcError, ChainUnavailable
from frostfed.bitcoin.regtest import RegtestBitcoind, free_port
from frostfed.bitcoin.taproot import script_from_address


def test_utxo_lookup_reports_amount_script_confirmations_and_coinbase(regtest, chain):
    address = regtest.rpc("getnewaddress", "", "bech32m", wallet="miner")
    txid, vout = regtest.send_to(address, 123_456_789, confirm=False)
    utxo = chain.get_utxo(txid, vout)
    assert utxo is not None
    assert (utxo.txid, utxo.vout, utxo.amount_sats) == (txid, vout, 123_456_789)
    assert utxo.script_pubkey == script_from_address(address, "regtest")
    assert utxo.confirmations == 0 and not utxo.coinbase
    regtest.mine(2)
    assert chain.get_utxo(txid, vout).confirmations == 2

    tip = chain.tip_height()
    coinbase_tx = chain.block_transactions(tip)[0]
    assert coinbase_tx.is_coinbase()
    coinbase = chain.get_utxo(coinbase_tx.GetTxid()[::-1].hex(), 0)
    assert coinbase.coinbase and coinbase.confirmations == 1
    assert coinbase.amount_sats == coinbase_tx.vout[0].nValue

    assert chain.get_utxo(txid, vout + 7) is None
    with pytest.raises(ValueError, match="outpoint"):
        chain.get_utxo("zz", 0)


def test_tip_height_follows_mining(regtest, chain):
    before = chain.tip_height()
    regtest.mine(3)
    assert chain.tip_height() == before + 3


def test_spent_in_mempool_counts_as_spent_and_broadcast(regtest, chain):
    address = regtest.rpc("getnewaddress", wallet="miner")
    txid, vout = regtest.send_to(address, 50_000_000)
    assert chain.get_utxo(txid, vout) is not None
    dest = regtest.rpc("getnewaddress", wallet="miner")
    raw = regtest.rpc(
        "createrawtransaction", [{"txid": txid, "vout": vout}], [{dest: "0.4999"}], 0, True, wallet="miner"
    )
    signed = regtest.rpc("signrawtransactionwithwallet", raw, wallet="miner")
    tx = CTransaction.deserialize(bytes.fromhex(signed["hex"]))
    verdict = mempool_verdict(regtest, tx)
    assert verdict.allowed and verdict.reason is None
    assert verdict.fee_sats == 10_000 and verdict.vsize > 0
    assert chain.broadcast(tx) == verdict.txid
    assert chain.get_utxo(txid, vout) is None  # spent by a mempool transaction
    again = mempool_verdict(regtest, tx)
    assert not again.allowed and again.reason  # already in the mempool
    with pytest.raises(ChainRpcError, match="sendrawtransaction") as err:
        chain.broadcast(CTransaction(tx.vin, tx.vout[:1] * 2, tx.nLockTime, tx.nVersion))  # unsigned, conflicting
    assert err.value.code != 0


def test_fee_rate_estimate_is_none_without_history_or_positive(chain):
    rate = chain.fee_rate(6)
    assert rate is None or rate > 0


def test_rpc_is_safe_from_many_threads(regtest):
    rpc = regtest.rpc_client
    expected = rpc.call("getblockcount")
    results: list[int] = []
    errors: list[Exception] = []

    def worker():
        try:
            for _ in range(25):
                results.append(rpc.call("getblockcount"))
        except Exception as e:
            errors.append(e)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert results == [expected] * 200


def test_unreachable_bitcoind_is_a_clear_error():
    rpc = BitcoindRpc("127.0.0.1", free_port(), user="u", password="p", timeout=5)
    with pytest.raises(ChainUnavailable, match="unreachable"):
        BitcoindChainSource(rpc).tip_height()


def test_missing_cookie_and_wrong_password_are_clear_errors(regtest, tmp_path):
    no_cookie = BitcoindRpc("127.0.0.1", regtest.rpc_port, cookie_file=tmp_path / "nope")
    with pytest.raises(ChainUnavailable, match="cookie"):
        no_cookie.call("getblockcount")
    wrong = BitcoindRpc("127.0.0.1", regtest.rpc_port, user="__cookie__", password="wrong")
    with pytest.raises(ChainUnavailable, match="credentials"):
        wrong.call("getblockcount")


def test_rpc_errors_carry_method_code_and_message(regtest, chain):
    with pytest.raises(ChainRpcError) as err:
        chain.block_transactions(chain.tip_height() + 10)
    assert err.value.method == "getblockhash" and err.value.code == -8
    with pytest.raises(ChainRpcError, match="Method not found"):
        regtest.rpc("nosuchmethod")


def _rpcauth(user: str, password: str) -> str:
    salt = os.urandom(16).hex()
    digest = hmac.new(salt.encode(), password.encode(), hashlib.sha256).hexdigest()
    return f"rpcauth={user}:{salt}${digest}"


def test_user_password_auth_and_a_node_that_stops(tmp_path):
    node = RegtestBitcoind(tmp_path / "node", extra_conf=[_rpcauth("alice", "s3cret")])
    node.start()
    pid = node.proc.pid
    try:
        rpc = BitcoindRpc("127.0.0.1", node.rpc_port, user="alice", password="s3cret")
        source = BitcoindChainSource(rpc)
        assert source.tip_height() == 0
    finally:
        node.stop()
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    with pytest.raises(ChainUnavailable):
        source.tip_height()


def _local_port(rpc: BitcoindRpc) -> int:
    """The local port of this thread's connection to bitcoind (the client's side of the TCP link)."""
    conn = rpc._local.conn
    assert conn is not None and conn.sock is not None
    return conn.sock.getsockname()[1]


def test_calls_share_one_kept_alive_connection_per_thread(regtest):
    rpc = BitcoindRpc("127.0.0.1", regtest.rpc_port, cookie_file=regtest.datadir / "regtest" / ".cookie")
    rpc.call("getblockcount")
    port = _local_port(rpc)
    for _ in range(5):
        rpc.call("getblockcount")
        assert _local_port(rpc) == port
    with pytest.raises(ChainRpcError):
        rpc.call("getblockhash", 10**6)  # an error answer keeps the connection too
    rpc.call("getblockcount")
    assert _local_port(rpc) == port
    other: list[int] = []
    thread = threading.Thread(target=lambda: (rpc.call("getblockcount"), other.append(_local_port(rpc))))
    thread.start()
    thread.join()
    assert other and other[0] != port  # another thread, another connection
    rpc.close()


def test_batch_of_gettxout_answers_like_one_call_each(regtest, chain):
    address = regtest.rpc("getnewaddress", "", "bech32m", wallet="miner")
    paid = [regtest.send_to(address, 10_000 + i, confirm=False) for i in range(3)]
    regtest.mine(1)
    outpoints = [*paid, (paid[0][0], 99), ("00" * 32, 0), paid[1]]
    batched = chain.get_utxos(outpoints)
    assert batched == [chain.get_utxo(*o) for o in outpoints]
    assert [u.amount_sats if u else None for u in batched] == [10_000, 10_001, 10_002, None, None, 10_001]
    assert chain.get_utxos([]) == []
    with pytest.raises(ValueError, match="outpoint"):
        chain.get_utxos([paid[0], ("zz", 0)])


def test_a_failing_call_in_a_batch_raises_with_its_method(regtest):
    rpc = regtest.rpc_client
    tip = rpc.call("getblockcount")
    assert rpc.batch([("getblockcount", ()), ("getblockhash", (0,))])[0] == tip
    with pytest.raises(ChainRpcError) as err:
        rpc.batch([("getblockcount", ()), ("getblockhash", (tip + 10,))])
    assert err.value.method == "getblockhash" and err.value.code == -8


def test_a_connection_the_node_closed_or_a_restarted_node_is_opened_anew(tmp_path):
    node = RegtestBitcoind(tmp_path / "node", extra_conf=["rpcservertimeout=1"])
    node.start()
    try:
        rpc = BitcoindRpc("127.0.0.1", node.rpc_port, cookie_file=node.datadir / "regtest" / ".cookie")
        assert rpc.call("getblockcount") == 0
        first = _local_port(rpc)
        sock = rpc._local.conn.sock
        deadline = time.monotonic() + 30
        closed = False
        while not closed and time.monotonic() < deadline:  # the node drops the idle connection
            readable, _, _ = select.select([sock], [], [], 0.2)
            closed = bool(readable) and sock.recv(1, socket.MSG_PEEK) == b""
        assert closed
        assert rpc.call("getblockcount") == 0  # sent again on a new connection
        assert _local_port(rpc) != first
        node.stop()
        with pytest.raises(ChainUnavailable):
            rpc.call("getblockcount")
        node.start()
        assert rpc.call("getblockcount") == 0
    finally:
        node.stop()
