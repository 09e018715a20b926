"""Federation benchmark: DKG time and payout signing latency of real member processes over Noise on
127.0.0.1 with a regtest bitcoind, for n = 5, 15, 50 (t = floor(2n/3) + 1), with 0 and n - t members
crashed, at 0 ms and (optionally) an injected 153 ms round-trip time, the setting of the ROAST paper.

    python bench/federation.py            # n = 5, 15, 50 at 0 ms and 153 ms RTT
    python bench/federation.py --quick    # n = 5, 15 at 0 ms only

The same run measures a baseline: one bitcoind `walletprocesspsbt` signing a single-key payout, the
cost of a payout without any federation. Published ROAST prototype figures are printed beside ours
(11-of-15: 0.32 s with no fault, 0.62 s with 4 faulty; 67-of-100: 0.37 s / 0.71 s at 153 ms RTT).

    python bench/federation.py --cost     # bytes and CPU per payout at n = 15, 50, 100 (--sizes 15,50)

`--cost` measures what one payout costs, with heartbeats every 120 s so that the payout is alone on
the wire: the bytes the coordinator's TCP sockets send (Noise frames included, from the kernel's
`bytes_sent` counters, `ss -ti`) and all members' together, and the CPU time (user + system, from
/proc) of the coordinator and of each other member, from the request until every member has
recorded the outcome. The "issue" column holds the figures measured before the changes of issue 17
(67-of-100: the coordinator sent 1.25 MB per payout; a signer spent 179 ms in its policy check and
384 ms in sign + store). `--baseline DIR` runs the same cases first with the members importing the
code in DIR (an exported checkout of the previous version), for a before column in the same run.
`--grace 0,0.25` runs the cases once per ROAST grace period (`member.roast_grace_seconds`), for the
sessions a payout starts, its bytes, CPU and latency with and without the grace in the same run.
"""

from __future__ import annotations

import argparse
import os
import re
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import closing
from decimal import Decimal
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from faulty_member import start_faulty

from frostfed.bitcoin.ledger import Ledger
from frostfed.bitcoin.regtest import RegtestBitcoind
from frostfed.bitcoin.taproot import script_from_address
from frostfed.federation.config import default_threshold
from frostfed.plugin import rpcclient
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


# -- bytes and CPU per payout -------------------------------------------------------------------

ISSUE_BEFORE = {100: (1.25e6, 179 + 384)}  # coordinator bytes per payout; a signer's CPU ms (policy + sign/store)
_CLK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _CLK  # utime, stime (fields 14 and 15 of stat)


def bytes_sent(pids: set[int]) -> dict[int, int]:
    """Bytes each process's established TCP sockets have sent so far (retransmissions included)."""
    out = subprocess.run(["ss", "-tinpH", "state", "established"], capture_output=True, text=True, check=True).stdout
    sent: dict[int, int] = dict.fromkeys(pids, 0)
    owner: int | None = None
    for line in out.splitlines():
        m = re.search(r"pid=(\d+),", line)
        if m:
            owner = int(m.group(1))
        b = re.search(r"bytes_sent:(\d+)", line)
        if b and owner in sent:
            sent[owner] += int(b.group(1))
            owner = None
    return sent


def recorded(member: LocalMember, request_id: str) -> bool:
    """Whether the member has recorded the request's outcome in its own store (sdone arrived)."""
    try:
        with closing(
            sqlite3.connect(f"file:{member.data_dir / 'frostfed.sqlite'}?mode=ro", uri=True, timeout=10)
        ) as db:
            row = db.execute("SELECT status FROM requests WHERE id = ?", (request_id,)).fetchone()
    except sqlite3.Error:
        return False
    return row is not None and row[0] not in ("accepted", "signing")


def payout_cost(btc: RegtestBitcoind, members: list[LocalMember], runs: int) -> dict[str, float]:
    coordinator = members[0]
    pids = {m.proc.pid for m in members if m.proc is not None}
    keys = ("coord_bytes", "all_bytes", "coord_cpu", "signer_cpu", "max_cpu", "latency")
    rows: dict[str, list[float]] = {k: [] for k in keys}
    sessions = []
    for run in range(runs + 1):  # the first payout warms up (connections, caches): not counted
        miner = btc.rpc("getnewaddress", wallet="miner")
        credit(members, miner, 10_000)
        cpu0 = {m.index: cpu_seconds(m.proc.pid) for m in members if m.proc is not None}
        sent0 = bytes_sent(pids)
        t0 = time.perf_counter()
        r = coordinator.call("frost-payout", {"outputs": [{"address": miner, "sats": 10_000}]})
        latency = time.perf_counter() - t0
        assert r["status"] == "broadcast", r
        deadline = time.monotonic() + 120
        while not all(recorded(m, r["id"]) for m in members) and time.monotonic() < deadline:
            time.sleep(0.05)
        sent1 = bytes_sent(pids)
        cpu = {m.index: cpu_seconds(m.proc.pid) - cpu0[m.index] for m in members if m.proc is not None}
        btc.mine(1)  # the change confirms, so the next payout can spend it
        if run == 0:
            continue
        sessions.append(r.get("sessions", 0))
        rows["coord_bytes"].append(sent1[coordinator.proc.pid] - sent0[coordinator.proc.pid])  # type: ignore[union-attr]
        rows["all_bytes"].append(sum(sent1.values()) - sum(sent0.values()))
        rows["coord_cpu"].append(cpu[coordinator.index] * 1000)
        others = [v * 1000 for i, v in cpu.items() if i != coordinator.index]
        rows["signer_cpu"].append(statistics.mean(others))
        rows["max_cpu"].append(max(others))
        rows["latency"].append(latency * 1000)
    result = {k: statistics.median(v) for k, v in rows.items()}
    result["sessions"] = statistics.mean(sessions)
    return result


def wait_for_key(members: list[LocalMember], timeout: float) -> None:
    """Every member holds the same epoch key; a member too busy (DKG on a loaded machine) to answer its
    status within a minute is asked again."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        keys = set()
        for m in members:
            try:
                keys.add(m.call("frost-status", timeout=60)["group_key"])
            except (OSError, rpcclient.RpcCallError):
                keys.add(None)
        if len(keys) == 1 and None not in keys:
            return
        time.sleep(1)
    raise TimeoutError(f"{len(members)} members did not agree on a key within {timeout} s")


def run_cost_case(
    base: Path, btc: RegtestBitcoind, n: int, runs: int, code: Path | None, grace: float | None = None
) -> dict[str, float]:
    t = default_threshold(n)
    cookie = btc.datadir / "regtest" / ".cookie"
    members = write_cluster(base, n, t, btc.rpc_port, cookie, heartbeat=120.0, offline_after=600.0, roast_grace=grace)
    env = {"PYTHONPATH": str(code)} if code is not None else {}
    try:
        for m in members:
            m.start(env)
        for m in members:
            m.wait_ready(300)
        wait_for_key(members, 1800)
        coordinator = members[0]
        for _ in range(2):
            addr = coordinator.call("frost-newaddr")["address"]
            btc.rpc("sendtoaddress", addr, Decimal("1.0"), wallet="miner")
        btc.mine(1)
        return payout_cost(btc, members, runs)
    finally:
        for m in members:
            m.stop()


def cost_main(sizes: list[int], runs: int, baseline_code: Path | None, graces: list[float] | None = None) -> None:
    print(f"load before: {' '.join(f'{x:.2f}' for x in os.getloadavg())} (1/5/15 min), {os.cpu_count()} cores")
    with tempfile.TemporaryDirectory(prefix="frostfed-bench-") as tmp:
        btc = RegtestBitcoind(Path(tmp) / "bitcoind")
        btc.start()
        try:
            btc.create_mining_wallet("miner")
            measured: dict[tuple[str, int], dict[str, float]] = {}
            cases: list[tuple[str, float | None]] = [(f"g={g:g}s", g) for g in graces] if graces else [("after", None)]
            labels = (["before"] if baseline_code is not None else []) + [label for label, _ in cases]
            for n in sizes:
                if baseline_code is not None:
                    measured[("before", n)] = run_cost_case(Path(tmp) / f"before{n}", btc, n, runs, baseline_code)
                for k, (label, grace) in enumerate(cases):
                    measured[(label, n)] = run_cost_case(Path(tmp) / f"after{n}-{k}", btc, n, runs, None, grace)
                print(f"  n={n} done, load {' '.join(f'{x:.2f}' for x in os.getloadavg())}", flush=True)
        finally:
            btc.stop()
    print(f"\nper payout (1 input, 1 payee; median of {runs}; heartbeats every 120 s)\n")
    head = (
        f"| {'n':>4} | {'t':>3} | {'':8} | {'coordinator sends':>17} | {'all members send':>16} | "
        f"{'coordinator CPU':>15} | {'signer CPU mean':>15} | {'signer CPU max':>14} | {'sessions':>8} | "
        f"{'latency':>8} |"
    )
    print(head)
    print("|" + "|".join("-" * (len(c) + 0) for c in head.split("|")[1:-1]) + "|")
    for n in sizes:
        t = default_threshold(n)
        issue = ISSUE_BEFORE.get(n)
        if issue is not None:
            print(
                f"| {n:>4} | {t:>3} | {'issue':8} | {issue[0] / 1000:>14.0f} kB | {'':>16} | {'':>15} | "
                f"{issue[1]:>12.0f} ms | {'':>14} | {'2':>8} | {'':>8} |"
            )
        for label in labels:
            m = measured.get((label, n))
            if m is None:
                continue
            print(
                f"| {n:>4} | {t:>3} | {label:8} | {m['coord_bytes'] / 1000:>14.1f} kB"
                f" | {m['all_bytes'] / 1000:>13.1f} kB"
                f" | {m['coord_cpu']:>12.0f} ms | {m['signer_cpu']:>12.0f} ms | {m['max_cpu']:>11.0f} ms"
                f" | {m['sessions']:>8.1f} | {m['latency']:>5.0f} ms |"
            )
    print(f"\nload after: {' '.join(f'{x:.2f}' for x in os.getloadavg())} (1/5/15 min)")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--cost", action="store_true", help="bytes and CPU per payout instead of latency")
    ap.add_argument("--sizes", default="15,50,100", help="member counts for --cost")
    ap.add_argument("--baseline", type=Path, help="with --cost: also run members from this code directory")
    ap.add_argument("--grace", help="with --cost: ROAST grace periods in seconds to compare, e.g. 0,0.25")
    args = ap.parse_args()
    if args.cost:
        graces = [float(x) for x in args.grace.split(",")] if args.grace else None
        cost_main([int(x) for x in args.sizes.split(",")], args.runs, args.baseline, graces)
        return 0
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
