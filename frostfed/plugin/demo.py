"""`frostfed demo`: the federation's life on a private regtest, from nothing to two confirmed payouts.

Five members (t = 3) run as separate processes talking Noise over 127.0.0.1. They make their key
with ChillDKG, hand out Taproot addresses, receive block rewards as a pool's hubs would, pay three
miners what their ledgers say is owed, lose two members to SIGKILL, and pay again; then a sixth hub
joins with a fidelity bond and a founder leaves, each change followed by a payout of the new
federation. Everything it starts it stops; the exit status is 0 only if every payout confirmed."""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from frostfed.bitcoin.chain import btc_to_sats
from frostfed.bitcoin.ledger import Ledger
from frostfed.bitcoin.regtest import RegtestBitcoind
from frostfed.bitcoin.taproot import script_from_address
from frostfed.bitcoin.watchonly import create_watch_only_wallet
from frostfed.plugin.localcluster import LocalMember, wait_for_epoch, write_cluster

MEMBERSHIP = {
    "min_bond_sats": 50_000,
    "min_bond_blocks": 50,
    "transition_confirmations": 1,
    "min_change_interval_blocks": 0,  # the demo's changes follow each other within a few blocks
}


class Demo:
    def __init__(self, base: Path, n: int, t: int) -> None:
        self.base = base
        self.n = n
        self.t = t
        self.btc: RegtestBitcoind | None = None
        self.members: list[LocalMember] = []
        self.started = time.monotonic()
        self.summary: list[tuple[str, str]] = []

    def step(self, text: str) -> None:
        print(f"[{time.monotonic() - self.started:6.1f}s] {text}", flush=True)

    def credit_all(self, miners: dict[str, int]) -> None:
        """What the pool's share accounting does: every member's ledger learns the same debts."""
        for m in self.members:
            ledger = Ledger(m.data_dir / "ledger.sqlite")
            try:
                for address, sats in miners.items():
                    ledger.credit(script_from_address(address, "regtest"), sats)
            finally:
                ledger.close()

    def pay(self, via: LocalMember, miners: dict[str, int], label: str) -> bool:
        assert self.btc is not None
        self.step(f"{label}: member {via.index} coordinates a payout to {len(miners)} miners")
        t0 = time.monotonic()
        result: dict[str, Any] = via.call(
            "frost-payout", {"outputs": [{"address": a, "sats": s} for a, s in miners.items()]}
        )
        took = time.monotonic() - t0
        signers = [m.index for m in self.members if m.id.hex() in result["signers"]]
        self.step(
            f"  signed by members {signers} in {took:.2f}s ({result['sessions']} ROAST session(s)), "
            f"fee {result['fee_sats']} sats, txid {result['txid']}"
        )
        self.btc.mine(1)
        conf = self.btc.rpc("getrawtransaction", result["txid"], True).get("confirmations", 0)
        paid = all(
            btc_to_sats(self.btc.rpc("getreceivedbyaddress", a, 1, wallet="miner")) >= s for a, s in miners.items()
        )
        self.step(f"  mined: {conf} confirmation(s); every miner received its amount: {paid}")
        self.summary.append((label, f"{result['txid']} ({conf} conf, signers {signers})"))
        return conf >= 1 and paid

    def run(self) -> bool:
        self.step(f"starting a regtest bitcoind in {self.base / 'bitcoind'}")
        self.btc = btc = RegtestBitcoind(self.base / "bitcoind", extra_conf=["txindex=1"])
        btc.start()
        btc.create_mining_wallet("miner", blocks=1)
        cookie = btc.datadir / "regtest" / ".cookie"
        self.members = write_cluster(
            self.base / "federation", self.n, self.t, btc.rpc_port, cookie, membership=MEMBERSHIP
        )
        self.step(f"starting {self.n} members (t = {self.t}) as separate processes on 127.0.0.1")
        for m in self.members:
            m.start()
        for m in self.members:
            m.wait_ready()
            self.step(f"  member {m.index}: id {m.id.hex()[:16]}…, Noise on 127.0.0.1:{m.port}")
        self.step("running ChillDKG among all members (echo broadcast, no coordinator)")
        t0 = time.monotonic()
        key = wait_for_epoch(self.members)
        self.step(f"  epoch 0 key {key} after {time.monotonic() - t0:.2f}s, the same at every member")
        desc = self.members[0].call("frost-descriptor")
        self.step(f"  descriptor {desc['descriptor']}")
        self.summary.append(("group key", key))

        addresses = [self.members[i].call("frost-newaddr")["address"] for i in range(3)]
        for a in addresses:
            self.step(f"  address {a}")
        self.step("mining 3 blocks whose coinbase pays the federation, then 100 more so they mature")
        for a in addresses:
            btc.rpc("generatetoaddress", 1, a)
        btc.mine(100)
        watch = create_watch_only_wallet(btc.rpc_client, "federation-watch", desc["descriptor"], range_end=50)
        watch.call(
            "importdescriptors",
            [{"desc": desc["change_descriptor"], "range": [0, 50], "timestamp": "now", "internal": True}],
        )
        bal = watch.call("getbalances")["mine"]
        self.step(f"  a watch-only bitcoind wallet of the descriptor sees {bal['trusted']} BTC spendable")

        miners = {btc.rpc("getnewaddress", wallet="miner"): sats for sats in (1_500_000, 2_500_000, 4_000_000)}
        self.credit_all(miners)
        self.step(f"the pool credits 3 miners in every member's ledger: {sorted(miners.values())} sats")
        ok1 = self.pay(self.members[0], miners, "payout 1")

        victims = self.members[3:5]
        for v in victims:
            v.kill()
        self.step(f"SIGKILL members {[v.index for v in victims]}: {self.n - 2} of {self.n} left, t = {self.t}")
        miners2 = {a: s // 2 for a, s in miners.items()}
        self.credit_all(miners2)
        time.sleep(3.5)  # long enough for the heartbeats to count them offline
        ok2 = self.pay(self.members[1], miners2, "payout 2")
        status = self.members[1].call("frost-status")
        self.step(f"  status: {status['online']} of {status['n']} members online")
        for v in victims:
            v.start()
        for v in victims:
            v.wait_ready()
        self.step(f"restarted members {[v.index for v in victims]}: they carry on from their stores")
        ok3 = self.join_and_leave()
        return ok1 and ok2 and ok3

    def join_and_leave(self) -> bool:
        """A sixth hub joins with a fidelity bond, then one of the founders leaves."""
        assert self.btc is not None
        btc = self.btc
        btc.rpc("createwallet", "joiner")
        btc.rpc("sendtoaddress", btc.rpc("getnewaddress", wallet="joiner"), 0.01, wallet="miner")
        btc.mine(1)
        [joiner] = write_cluster(
            self.base / "federation",
            1,
            None,
            btc.rpc_port,
            btc.datadir / "regtest" / ".cookie",
            membership=MEMBERSHIP,
            first_index=self.n,
            joining_contacts=self.members,
            wallet="joiner",
        )
        joiner.start()
        joiner.wait_ready()
        self.step(f"member {joiner.index} ({joiner.id.hex()[:16]}…) starts and asks to join")
        for m in self.members[1:]:
            m.call("frost-admit", [joiner.id.hex()])
        self.step(f"  the operators of members 1..{self.n - 1} admit it (frost-admit); member 0 proposes it")
        r = self.members[0].call(
            "frost-join", {"id": joiner.id.hex(), "address": f"127.0.0.1:{joiner.port}", "bond_sats": 100_000}
        )
        self.step(
            f"  new epoch {r['epoch']}: {len(r['members'])} members, t = {r['threshold']}, DKG key "
            f"{r['group_key'][:16]}…; bond transaction {r['txid']} signed by {len(r['signers'])} members"
        )
        self.members.append(joiner)
        btc.mine(1)
        wait_for_epoch(self.members, 60, epoch=r["epoch"])
        self.step(f"  mined: epoch {r['epoch']} is active everywhere (old share kept until its addresses are empty)")
        self.summary.append(("join (bond tx)", f"{r['txid']} (epoch {r['epoch']}, {len(r['members'])} members)"))
        miners = {btc.rpc("getnewaddress", wallet="miner"): 300_000 for _ in range(3)}
        self.credit_all(miners)
        ok_join = self.pay(joiner, miners, "payout 3 (new epoch)")

        leaver = self.members[2]
        self.step(f"member {leaver.index} leaves")
        r = leaver.call("frost-leave")
        self.step(f"  new epoch {r['epoch']}: {len(r['members'])} members, t = {r['threshold']}, tx {r['txid']}")
        btc.mine(1)
        self.members.remove(leaver)
        wait_for_epoch(self.members, 60, epoch=r["epoch"])
        leaver.stop()
        self.summary.append(("leave", f"{r['txid']} (epoch {r['epoch']}, {len(r['members'])} members)"))
        miners = {btc.rpc("getnewaddress", wallet="miner"): 200_000 for _ in range(3)}
        self.credit_all(miners)
        ok_leave = self.pay(self.members[0], miners, "payout 4 (after the leave)")
        desc = self.members[0].call("frost-descriptor")
        scan = btc.rpc(
            "scantxoutset",
            "start",
            [{"desc": desc["descriptor"], "range": 50}, {"desc": desc["change_descriptor"], "range": 50}],
        )
        self.summary.append(("federation balance", f"{scan['total_amount']} BTC in epoch {desc['epoch']}"))
        return ok_join and ok_leave

    def close(self) -> None:
        for m in self.members:
            m.stop()
        if self.btc is not None:
            self.btc.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="frostfed demo", description=__doc__)
    parser.add_argument("--dir", type=Path, help="keep everything in this directory (default: a temporary one)")
    parser.add_argument("-n", type=int, default=5)
    parser.add_argument("-t", type=int, default=3)
    args = parser.parse_args(argv)
    if not 2 <= args.t <= args.n - 2:
        parser.error("need 2 <= t <= n - 2, so the demo can kill two members")
    base = args.dir or Path(tempfile.mkdtemp(prefix="frostfed-demo-"))
    demo = Demo(base, args.n, args.t)
    ok = False
    try:
        ok = demo.run()
    except Exception as e:  # the demo reports, it does not dump a trace
        print(f"demo failed: {type(e).__name__}: {e}", file=sys.stderr)
        for m in demo.members:
            tail = m.stderr_tail().strip()
            if tail:
                print(f"--- member {m.index} stderr ---\n{tail}", file=sys.stderr)
    finally:
        demo.close()
    print("\nsummary")
    for label, value in demo.summary:
        print(f"  {label:28} {value}")
    print(f"  {'result':28} {'every payout and membership change confirmed' if ok else 'FAILED'}")
    if args.dir is None and ok:
        shutil.rmtree(base, ignore_errors=True)
    return 0 if ok else 1
