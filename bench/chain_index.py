"""A payout's cost against the size of the UTXO set: the chain index against `scantxoutset`.

On a private regtest bitcoind, a federation epoch (a random group key; no signing is timed) holds a few
coins. A payout's chain work is timed twice in the same run: with no unrelated UTXOs in the chain
(the baseline), then after 20,000 unrelated outputs were created and mined:

- coordinator: finding the coins (`coins.payout_coins`: the member's chain index, refreshed, plus a
  `gettxout` per federation coin), median of 50;
- signer: one member's whole check of the payout (`ChainChecks` + `AnchorPolicy` + `LedgerPolicy`,
  with the index refresh the anchor rule does first), median of 50;
- for reference, the coin lookup the index replaces: `scantxoutset` over the epoch's scripts
  (receive and change, 0 .. 20 each, as the coordinator used to scan), median of 5;
- as a control, one `getblockcount` round trip: the node's own latency in each state (the index's
  steps are a handful of such calls, and SQLite).

Usage: python bench/chain_index.py [unrelated_utxos]
"""

from __future__ import annotations

import os
import statistics
import sys
import tempfile
import time
from decimal import Decimal
from pathlib import Path

from coincurve import PrivateKey

from frostfed.bitcoin.chain_checks import ChainChecks, FeeBounds
from frostfed.bitcoin.chain_index import ChainIndex
from frostfed.bitcoin.ledger import Ledger
from frostfed.bitcoin.payout import build_payout_tx
from frostfed.bitcoin.policy import LedgerPolicy, PayoutPolicy
from frostfed.bitcoin.regtest import RegtestBitcoind
from frostfed.bitcoin.taproot import p2tr_address, script_from_address
from frostfed.federation.chain_view import AnchorPolicy, ChainView
from frostfed.federation.coins import payout_coins, select_coins
from frostfed.federation.epoch_keys import CHANGE, RECEIVE, EpochKeys
from frostfed.federation.signing_request import SigningRequest, federation_scripts
from frostfed.federation.store import EpochRecord, Store

BATCH = 2_000


def median_ms(fn, runs: int) -> float:
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1000)
    return statistics.median(times)


def scan(btc: RegtestBitcoind, keys: EpochKeys) -> None:
    scripts = [keys.script((c, i)) for c in (RECEIVE, CHANGE) for i in range(21)]
    btc.rpc("scantxoutset", "start", [f"raw({s.hex()})" for s in scripts])


def measure(btc: RegtestBitcoind, view: ChainView, keys: EpochKeys, ledger: Ledger, miner: bytes) -> dict[str, float]:
    chain = btc.chain_source()
    plan = payout_coins(view, chain, keys, 1)
    chosen = select_coins(plan.others, 10_000 + 1_000, 141, plan.anchor)
    tx = build_payout_tx([c.utxo for c in chosen], [(miner, 10_000)], keys.script(plan.change_path), 2)
    change = {
        j: plan.change_path for j, o in enumerate(tx.vout) if bytes(o.scriptPubKey) == keys.script(plan.change_path)
    }
    req = SigningRequest("bench", keys.epoch, "payout", tx, tuple(c.path for c in chosen), change)
    checks = ChainChecks(chain, federation_scripts(keys, req), FeeBounds(1, 50))
    policy = PayoutPolicy(checks, [AnchorPolicy(view, keys, req), LedgerPolicy(ledger)])
    return {
        "coordinator": median_ms(lambda: payout_coins(view, chain, keys, 1), 50),
        "signer": median_ms(lambda: policy.check(tx), 50),
        "scantxoutset": median_ms(lambda: scan(btc, keys), 5),
        "rpc": median_ms(lambda: btc.rpc("getblockcount"), 50),
    }


def unrelated_utxos(btc: RegtestBitcoind, count: int) -> None:
    btc.mine(count // BATCH + 110)  # enough mature coinbases to pay every batch
    made = 0
    while made < count:
        n = min(BATCH, count - made)
        outputs = {btc.rpc("getnewaddress", wallet="miner"): Decimal("0.00001") for _ in range(n)}
        btc.rpc("sendmany", "", outputs, wallet="miner")
        btc.mine(1)
        made += n


def main() -> None:
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 20_000
    with tempfile.TemporaryDirectory() as tmp:
        btc = RegtestBitcoind(Path(tmp) / "bitcoind")
        btc.start()
        try:
            btc.create_mining_wallet("miner")
            group_key = PrivateKey().public_key.format()
            chain_code = os.urandom(32)
            keys = EpochKeys(0, [group_key], 1, group_key, chain_code, [group_key], "regtest")
            store = Store(Path(tmp) / "member.sqlite")
            store.save_epoch(EpochRecord(0, "active", [group_key], 1, group_key, chain_code, [group_key], b"", b"x"))
            ledger = Ledger(Path(tmp) / "ledger.sqlite")
            chain = btc.chain_source()
            view = ChainView(ChainIndex(Path(tmp) / "chain.sqlite"), store, chain, ledger, "regtest")
            view.note_epoch_start(0, chain.tip_height())
            for i in range(3):
                btc.send_to(p2tr_address(keys.output_key((RECEIVE, i)), "regtest"), 1_000_000)
            miner = script_from_address(btc.rpc("getnewaddress", wallet="miner"), "regtest")
            ledger.credit(miner, 10_000)
            base = measure(btc, view, keys, ledger, miner)
            t0 = time.perf_counter()
            unrelated_utxos(btc, count)
            setup = time.perf_counter() - t0
            utxos = btc.rpc("gettxoutsetinfo")["txouts"]
            t0 = time.perf_counter()
            view.refresh()  # the index reads the new blocks once, as the heartbeat would
            catch_up = (time.perf_counter() - t0) * 1000
            loaded = measure(btc, view, keys, ledger, miner)
        finally:
            btc.stop()
    print(f"payout cost, {count} unrelated UTXOs created in {setup:.1f} s; the UTXO set holds {utxos} outputs")
    print(f"(the index read the {count // BATCH + 110 + count // BATCH} new blocks once, in {catch_up:.0f} ms)")
    print()
    print(f"| {'step':42} | {'no unrelated UTXOs':>20} | {f'{count} unrelated UTXOs':>24} | {'ratio':>6} |")
    print(f"|{'-' * 44}|{'-' * 22}|{'-' * 26}|{'-' * 8}|")
    rows = [
        ("coordinator coin lookup (chain index), ms", "coordinator"),
        ("one signer's check (index + policy), ms", "signer"),
        ("reference: scantxoutset (replaced), ms", "scantxoutset"),
        ("control: one getblockcount RPC, ms", "rpc"),
    ]
    for label, key in rows:
        print(f"| {label:42} | {base[key]:20.2f} | {loaded[key]:24.2f} | {loaded[key] / base[key]:6.2f} |")


if __name__ == "__main__":
    main()
