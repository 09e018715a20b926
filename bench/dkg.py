"""Compute time of a ChillDKG session, per participant and for the aggregation (no network).

For n = 5, 15, 50, 100 members with t = floor(2n/3) + 1, runs one full in-process session and prints,
in milliseconds: a participant's step1, step2 and finalize (mean over all n), the aggregation's two
steps (coordinator_step1 / coordinator_finalize, which a coordinator-free member also computes), the
total for the whole DKG with a coordinator (n participants + aggregation, run sequentially on one core)
and per member without a coordinator (its own steps + both aggregations). The baseline column, measured
in the same run, is one libsecp256k1 point multiplication, so the table can be read on other machines.

Usage: python bench/dkg.py [n ...]
"""

from __future__ import annotations

import os
import sys
import time
from statistics import mean

from frostfed.frost import chilldkg
from frostfed.frost.secp import G, N, point_mul


def baseline_mul_ms(rounds: int = 2000) -> float:
    """One multiplication of a point by a full-size scalar, as the DKG does them."""
    scalars = [int.from_bytes(os.urandom(32), "big") % N for _ in range(rounds)]
    start = time.perf_counter()
    p = G
    for k in scalars:
        p = point_mul(p, k) or G
    return (time.perf_counter() - start) * 1000 / rounds


def run(n: int) -> dict[str, float]:
    t = 2 * n // 3 + 1
    seckeys = [os.urandom(32) for _ in range(n)]
    params = chilldkg.SessionParams([chilldkg.hostpubkey_gen(sk) for sk in seckeys], t)
    step1, step2, final = [], [], []
    states1, pmsgs1 = [], []
    for sk in seckeys:
        start = time.perf_counter()
        st, pm = chilldkg.participant_step1(sk, params, os.urandom(32))
        step1.append(time.perf_counter() - start)
        states1.append(st)
        pmsgs1.append(pm)
    start = time.perf_counter()
    cstate, cmsg1 = chilldkg.coordinator_step1(pmsgs1, params)
    agg1 = time.perf_counter() - start
    states2, pmsgs2 = [], []
    for sk, st in zip(seckeys, states1, strict=True):
        start = time.perf_counter()
        st2, pm2 = chilldkg.participant_step2(sk, st, cmsg1, os.urandom(32))
        step2.append(time.perf_counter() - start)
        states2.append(st2)
        pmsgs2.append(pm2)
    start = time.perf_counter()
    cmsg2, cout, _ = chilldkg.coordinator_finalize(cstate, pmsgs2)
    agg2 = time.perf_counter() - start
    for st2 in states2:
        start = time.perf_counter()
        out, _ = chilldkg.participant_finalize(st2, cmsg2)
        final.append(time.perf_counter() - start)
        assert out.thresh_pk == cout.thresh_pk
    ms = 1000.0
    per_participant = mean(step1) + mean(step2) + mean(final)
    return {
        "n": n,
        "t": t,
        "step1": mean(step1) * ms,
        "step2": mean(step2) * ms,
        "final": mean(final) * ms,
        "agg1": agg1 * ms,
        "agg2": agg2 * ms,
        "total": (sum(step1) + sum(step2) + sum(final) + agg1 + agg2) * ms,
        "member": (per_participant + agg1 + agg2) * ms,
    }


def main() -> None:
    sizes = [int(a) for a in sys.argv[1:]] or [5, 15, 50, 100]
    base = baseline_mul_ms()
    print(f"baseline: one point multiplication = {base * 1000:.1f} us (measured in this run)")
    header = (
        f"{'n':>4} {'t':>4} | {'step1':>8} {'step2':>8} {'final':>8} | {'agg1':>8} {'agg2':>8} | "
        f"{'whole DKG':>10} {'= mults':>8} | {'member, no coord.':>17}"
    )
    print("times in ms; step/final = per participant (mean); agg = coordinator aggregation")
    print(header)
    print("-" * len(header))
    for n in sizes:
        r = run(n)
        print(
            f"{r['n']:>4} {r['t']:>4} | {r['step1']:>8.1f} {r['step2']:>8.1f} {r['final']:>8.1f} | "
            f"{r['agg1']:>8.1f} {r['agg2']:>8.1f} | {r['total']:>10.0f} {r['total'] / base:>8.0f} | "
            f"{r['member']:>17.1f}"
        )
    print("target: whole 50-member DKG computation < 10000 ms")


if __name__ == "__main__":
    main()
