"""Reliable delivery over Core Lightning custom messages, through the lightningd stand-in.

Two members of the test mesh plugin (ReliableChannel over ClnChannel, each a real plugin process
behind tests/clnsim) exchange `count` messages of `size` bytes, once over clean links and once with
20% of custom messages dropped, 20% delayed and 1% link cuts. The baseline, measured in the same run,
is the same reliable layer over Noise on loopback TCP (the standalone daemon's transport). The
stand-in is not lightningd: the figures bound the plugin's own overhead (JSON on stdin/stdout, hex
payloads, one RPC call per message), not a real node's. Timed from the first `mesh-send` (one
lightning-cli style call per message) to the last delivery.

Usage: python bench/cln_transport.py [count] [size]
"""

from __future__ import annotations

import asyncio
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from clnsim import Faults, SimNetwork  # noqa: E402
from netcluster import start_noise_members  # noqa: E402

from frostfed.net.reliable import ReliableChannel  # noqa: E402

MESH = ROOT / "tests" / "plugins" / "mesh_plugin.py"


async def over_cln(count: int, size: int, faults: Faults | None) -> float:
    net = SimNetwork(seed=1, faults=faults)
    try:
        a = await net.add_node(MESH, start=False)
        b = await net.add_node(MESH, start=False)
        a.given_options = {"frost-members": f"{b.node_id}@127.0.0.1:{b.port}", "frost-reconnect-interval": 1}
        b.given_options = {"frost-members": f"{a.node_id}@127.0.0.1:{a.port}", "frost-reconnect-interval": 1}
        await a.start()
        await b.start()
        async with asyncio.timeout(30):
            while b.node_id not in a.peers:
                await asyncio.sleep(0.02)
            while True:  # the service is up once mesh-send stops failing
                try:
                    await a.cli("mesh-identity")
                    await a.cli("frost-status")
                    break
                except Exception:
                    await asyncio.sleep(0.05)
        text = "x" * size
        start = time.perf_counter()
        for _ in range(count):
            await a.cli("mesh-send", b.node_id, text)
        async with asyncio.timeout(300):
            while (await b.cli("mesh-count"))["count"] < count:
                await asyncio.sleep(0.01)
        return time.perf_counter() - start
    finally:
        await net.close()


async def over_noise(count: int, size: int) -> float:
    chans = await start_noise_members(2)
    rel = [ReliableChannel(c) for c in chans]
    got: list[bytes] = []
    rel[1].on_receive(lambda p, d: got.append(d))
    payload = b"x" * size
    start = time.perf_counter()
    for _ in range(count):
        await rel[0].send(chans[1].node_id, payload)
    async with asyncio.timeout(300):
        while len(got) < count:
            await asyncio.sleep(0.001)
    elapsed = time.perf_counter() - start
    for r in rel:
        await r.close()
    return elapsed


async def main(count: int, size: int) -> None:
    rows = [
        ("Noise/TCP, reliable (baseline)", await over_noise(count, size)),
        ("CLN custom msgs, clean links", await over_cln(count, size, None)),
        (
            "CLN custom msgs, lossy links",
            await over_cln(count, size, Faults(drop=0.2, delay=0.2, max_delay=0.05, disconnect=0.01, seed=2)),
        ),
    ]
    base = rows[0][1]
    print(f"{count} messages of {size} bytes, one direction\n")
    print(f"{'transport':34} {'seconds':>9} {'msg/s':>9} {'x baseline':>11}")
    for name, secs in rows:
        print(f"{name:34} {secs:9.3f} {count / secs:9.0f} {secs / base:11.1f}")


if __name__ == "__main__":
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 300
    sz = int(sys.argv[2]) if len(sys.argv) > 2 else 1000
    asyncio.run(main(n, sz))
