"""The bitcoind chain source against a real regtest bitcoind: what it reports, and how it fails."""

from __future__ import annotations

import hashlib
import hmac
import os
import threading

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
