"""Federation benchmark: DKG time and payout signing latency of real member processes over Noise on
127.0.0.1 with a regtest bitcoind, for n = 5, 15, 50 (t = floor(2n/3) + 1), with 0 and n - t members
crashed, at 0 ms and (optionally) an injected 153 ms round-trip time, the setting of the ROAST paper.

    python bench/federation.py            # n = 5, 15, 50 at 0 ms and 153 ms RTT
    python bench/federation.py --quick    # n = 5, 15 at 0 ms only

The same run measures a baseline: one bitcoind `walletprocesspsbt` signing a single-key payout, the
cost of a payout without any federation. Published ROAST prototype figures are printed beside ours
(11-of-15: 0.32 s with no fault, 0.62 s with 4 faulty; 67-of-100: 0.37 s / 0.71 s at 153 ms RTT).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from decimal import Decimal
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from faulty_member import start_faulty

from frostfed.bitcoin.ledger import Ledger
from frostfed.bitcoin.regtest import RegtestBitcoind
from frostfed.bitcoin.taproot import script_from_address
from frostfed.federation.config import default_threshold
from frostfed.plugin.localcluster import LocalMember, wait_for_epoch, write_cluster

PUBLISHED = {15: ("0.32", "0.62"), 100: ("0.37", "0.71")}


def credit(members: list[LocalMember], address: str, sats: int) -> None:
    script = script_from_address(address, "regtest")
    for m in members:
        ledger = Ledger(m.data_dir / "ledger.sqlite")
        ledger.credit(script, sats)
        ledger.close()


def payout_latency(btc: RegtestBitcoind, members: list[LocalMember], coordinator: LocalMember, runs: int) -> float:
    times = []
    for _ in range(runs):
        miner = btc.rpc("getnewaddress", wallet="miner")
        credit(members, miner, 10_000)
        t0 = time.perf_counter()
        r = coordinator.call("frost-payout", {"outputs": [{"address": miner, "sats": 10_000}]})
        times.append(time.perf_counter() - t0)
        assert r["status"] == "broadcast", r
        btc.mine(1)  # the change confirms, so the next payout can spend it
    return statistics.median(times)


def run_case(base: Path, btc: RegtestBitcoind, n: int, rtt_ms: float, runs: int) -> tuple[float, float, float]:
    t = default_threshold(n)
    members = write_cluster(
        base, n, t, btc.rpc_port, btc.datadir / "regtest" / ".cookie", heartbeat=0.5, offline_after=3.0
    )
    try:
        for m in members:
            if rtt_ms:
                start_faulty(m, latency_ms=rtt_ms / 2)  # every message waits half the round trip
            else:
                m.start()
        for m in members:
            m.wait_ready(120)
        wait_for_epoch(members, 600)
        # from the moment the last member was up (all n are needed) to the last member holding the key
        statuses = [m.call("frost-status") for m in members]
        dkg = max(s["epoch_at"] for s in statuses) - max(s["started_at"] for s in statuses)
        coordinator = members[0]
        for _ in range(2):
            addr = coordinator.call("frost-newaddr")["address"]
            btc.rpc("sendtoaddress", addr, Decimal("1.0"), wallet="miner")
        btc.mine(1)
        f0 = payout_latency(btc, members, coordinator, runs)
        for m in members[t:]:
            m.kill()
        time.sleep(3.5)
        btc.mine(1)
        f_crashed = payout_latency(btc, members[:t], coordinator, runs)
        return dkg, f0, f_crashed
    finally:
        for m in members:
            m.stop()


def baseline(btc: RegtestBitcoind, runs: int) -> float:
    btc.rpc("createwallet", "single")
    addr = btc.rpc("getnewaddress", "", "bech32m", wallet="single")
    btc.rpc("sendtoaddress", addr, Decimal("1.0"), wallet="miner")
    btc.mine(1)
    times = []
    for _ in range(runs):
        to = btc.rpc("getnewaddress", wallet="miner")
        t0 = time.perf_counter()
        psbt = btc.rpc("walletcreatefundedpsbt", [], [{to: Decimal("0.0001")}], 0, {}, wallet="single")["psbt"]
        signed = btc.rpc("walletprocesspsbt", psbt, wallet="single")
        btc.rpc("sendrawtransaction", signed["hex"])
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()
    sizes = [5, 15] if args.quick else [5, 15, 50]
    rtts = [0.0] if args.quick else [0.0, 153.0]
    with tempfile.TemporaryDirectory(prefix="frostfed-bench-") as tmp:
        btc = RegtestBitcoind(Path(tmp) / "bitcoind")
        btc.start()
        try:
            btc.create_mining_wallet("miner")
            base_s = baseline(btc, args.runs)
            print(f"baseline: single-key bitcoind wallet payout (create, sign, send) {base_s * 1000:.1f} ms\n")
            print(
                f"{'n':>4} {'t':>4} {'RTT ms':>7} | {'DKG s':>7} | {'payout f=0 s':>13} {'f=n-t s':>9} "
                f"{'x baseline':>11} | {'ROAST paper f=0 / f=n-t':>24}"
            )
            print("-" * 96)
            for rtt in rtts:
                for n in sizes:
                    dkg, f0, fc = run_case(Path(tmp) / f"n{n}-rtt{int(rtt)}", btc, n, rtt, args.runs)
                    pub = PUBLISHED.get(n)
                    ref = f"{pub[0]} / {pub[1]} (n={n})" if pub and (rtt or n == 15) else ""
                    print(
                        f"{n:>4} {default_threshold(n):>4} {rtt:>7.0f} | {dkg:>7.2f} | {f0:>13.3f} {fc:>9.3f} "
                        f"{f0 / base_s:>10.1f}x | {ref:>24}",
                        flush=True,
                    )
        finally:
            btc.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
