"""Finding the federation's coins and choosing which to spend.

The coordinator of a payout looks its coins up in the UTXO set (`scantxoutset` over the scripts of
every address handed out so far plus a look-ahead), then keeps only what the policy will accept
anyway: confirmed, and for coinbase outputs mature. Each member re-checks all of it on its own
chain data before signing; this is only the proposal."""

from __future__ import annotations

import random
import time
from dataclasses import dataclass
from typing import Any

from frostfed.bitcoin.chain import BitcoindRpc, ChainRpcError, ChainSource, Utxo, btc_to_sats
from frostfed.bitcoin.policy import COINBASE_MATURITY
from frostfed.federation.epoch_keys import CHANGE, RECEIVE, EpochKeys
from frostfed.federation.store import Store

LOOKAHEAD = 20


@dataclass(frozen=True)
class Coin:
    utxo: Utxo
    path: tuple[int, int]


class CoinError(Exception):
    pass


def epoch_scripts(keys: EpochKeys, store: Store) -> dict[bytes, tuple[int, int]]:
    """Script -> path of every address of the epoch handed out so far (receive and change), plus a
    look-ahead: everything a scan for the epoch's coins must cover."""
    receive = store.next_address_index(keys.epoch)
    change = store.change_count(keys.epoch)
    paths = [(RECEIVE, i) for i in range(receive + LOOKAHEAD)] + [(CHANGE, i) for i in range(change + LOOKAHEAD)]
    return {keys.script(p): p for p in paths}


def find_coins(
    rpc: BitcoindRpc, chain: ChainSource, keys: EpochKeys, store: Store, min_confirmations: int
) -> list[Coin]:
    by_script = epoch_scripts(keys, store)
    scan = scan_scripts(rpc, list(by_script))
    if not scan or not scan.get("success", False):
        raise CoinError("the UTXO scan did not complete")
    coins = []
    for u in scan.get("unspents", []):
        script = bytes.fromhex(u["scriptPubKey"])
        path = by_script.get(script)
        if path is None:
            continue
        utxo = chain.get_utxo(u["txid"], u["vout"])
        if utxo is None or utxo.amount_sats != btc_to_sats(u["amount"]):
            continue
        need = COINBASE_MATURITY if utxo.coinbase else min_confirmations
        if utxo.confirmations >= need:
            coins.append(Coin(utxo, path))
    return coins


def scan_scripts(rpc: BitcoindRpc, scripts: list[bytes], patience: float = 30.0) -> dict[str, Any]:
    """`scantxoutset` over raw scripts. bitcoind runs one scan at a time and refuses a second
    ("Scan already in progress"), which happens when several members share a node: wait and retry."""
    deadline = time.monotonic() + patience
    while True:
        try:
            return rpc.call("scantxoutset", "start", [f"raw({x.hex()})" for x in scripts])
        except ChainRpcError as e:
            if "in progress" not in e.message or time.monotonic() > deadline:
                raise
        time.sleep(random.uniform(0.05, 0.3))


def select_coins(coins: list[Coin], target_sats: int, fee_per_input: int) -> list[Coin]:
    """Largest first until the payouts and the fee of the inputs taken so far are covered."""
    chosen: list[Coin] = []
    total = 0
    for coin in sorted(coins, key=lambda c: (-c.utxo.amount_sats, c.utxo.txid, c.utxo.vout)):
        chosen.append(coin)
        total += coin.utxo.amount_sats
        if total >= target_sats + fee_per_input * len(chosen):
            return chosen
    have = sum(c.utxo.amount_sats for c in coins)
    raise CoinError(f"the federation holds {have} spendable sats, not enough for {target_sats} sats and fees")
