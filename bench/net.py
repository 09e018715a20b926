"""Transport cost on this machine: Noise links against raw TCP, and echo-broadcast completion time.

1. One-way latency (half the round trip of a ping-pong, median) and one-way throughput (a stream of
   messages, timed until the last arrives) for 1 KiB and 64 KiB messages (64 KiB = 65535 bytes, the
   largest Noise frame), over a NoiseChannel and over a raw TCP socket with a 4-byte length prefix,
   both on 127.0.0.1 in the same asyncio loop, in the same run. The ratio column is Noise / raw.
2. Echo broadcast among n = 5, 15, 50 members (Noise + reliable delivery + mux, all in one process):
   every member broadcasts 1 KiB in one session (as in ChillDKG's first round); time until every
   member has delivered every message. The baseline, measured in the same run over the same links,
   is plain all-to-all sending of the same messages through the reliable layer. The same round is then
   run, over the same links, with the round echo broadcast (one echo per member for the whole round).

All members share one process and one core, so the times for n members include n members' CPU work;
the CPU columns divide the process CPU time of a round by n (what one member would spend).

Usage: python bench/net.py [n ...]
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import statistics
import struct
import sys
import time

from coincurve import PrivateKey

from frostfed.net.echo import EchoBroadcast
from frostfed.net.mux import ECHO_PORT, ROUND_ECHO_PORT, Mux
from frostfed.net.reliable import ReliableChannel
from frostfed.net.round_echo import RoundEchoBroadcast
from frostfed.net.tcp import NoiseChannel

RELIABLE_OPTS: dict = {}
SIZES = [("1 KiB", 1024), ("64 KiB", 65535)]


def key(i: int) -> bytes:
    return hashlib.sha256(f"bench member {i}".encode()).digest()


async def noise_members(n: int, **kw) -> list[NoiseChannel]:
    keys = [key(i) for i in range(n)]
    ids = [PrivateKey(k).public_key.format() for k in keys]
    chans = [NoiseChannel(k, dict.fromkeys(ids), **kw) for k in keys]
    for c in chans:
        await c.start()
    for c in chans:
        for o in chans:
            if o is not c:
                c.set_address(o.node_id, o.listen_address)
    async with asyncio.timeout(120):
        while not all(c.connected(o.node_id) for c in chans for o in chans if o is not c):
            await asyncio.sleep(0.01)
    return chans


# -- point to point ----------------------------------------------------------------------------


class RawPair:
    """Baseline: the same exchange over a plain TCP socket, 4-byte length prefix, no encryption."""

    async def open(self) -> None:
        self.inbox: asyncio.Queue[bytes] = asyncio.Queue()
        self.back: asyncio.Queue[bytes] = asyncio.Queue()
        accepted: asyncio.Future = asyncio.get_running_loop().create_future()

        async def on_conn(r, w):
            accepted.set_result((r, w))

        self.server = await asyncio.start_server(on_conn, "127.0.0.1", 0)
        port = self.server.sockets[0].getsockname()[1]
        self.ar, self.aw = await asyncio.open_connection("127.0.0.1", port)
        self.br, self.bw = await accepted
        self.tasks = [
            asyncio.create_task(self._pump(self.br, self.inbox)),
            asyncio.create_task(self._pump(self.ar, self.back)),
        ]

    @staticmethod
    async def _pump(reader, queue) -> None:
        while True:
            n = struct.unpack(">I", await reader.readexactly(4))[0]
            queue.put_nowait(await reader.readexactly(n))

    async def a_to_b(self, payload: bytes) -> None:
        self.aw.write(struct.pack(">I", len(payload)) + payload)
        await self.aw.drain()

    async def b_to_a(self, payload: bytes) -> None:
        self.bw.write(struct.pack(">I", len(payload)) + payload)
        await self.bw.drain()

    async def close(self) -> None:
        for t in self.tasks:
            t.cancel()
        self.aw.close()
        self.bw.close()
        self.server.close()


class NoisePair:
    async def open(self) -> None:
        self.a, self.b = await noise_members(2)
        self.inbox: asyncio.Queue[bytes] = asyncio.Queue()
        self.back: asyncio.Queue[bytes] = asyncio.Queue()
        self.b.on_receive(lambda peer, m: self.inbox.put_nowait(m))
        self.a.on_receive(lambda peer, m: self.back.put_nowait(m))

    async def a_to_b(self, payload: bytes) -> None:
        await self.a.send(self.b.node_id, payload)

    async def b_to_a(self, payload: bytes) -> None:
        await self.b.send(self.a.node_id, payload)

    async def close(self) -> None:
        await self.a.close()
        await self.b.close()


async def latency_us(pair, size: int, rounds: int) -> float:
    payload = os.urandom(size)
    samples = []
    for _ in range(rounds):
        start = time.perf_counter()
        await pair.a_to_b(payload)
        await pair.inbox.get()
        await pair.b_to_a(payload)
        await pair.back.get()
        samples.append((time.perf_counter() - start) / 2)
    return statistics.median(samples) * 1e6


async def throughput_mib_s(pair, size: int, total_bytes: int) -> float:
    payload = os.urandom(size)
    count = max(50, total_bytes // size)
    start = time.perf_counter()

    async def drain():
        for _ in range(count):
            await pair.inbox.get()

    receiver = asyncio.create_task(drain())
    for _ in range(count):
        await pair.a_to_b(payload)
    await receiver
    return count * size / (time.perf_counter() - start) / 2**20


async def point_to_point() -> list[tuple[str, str, float, float]]:
    rows = []
    for label, size in SIZES:
        results = {}
        for name, cls in (("raw", RawPair), ("noise", NoisePair)):
            pair = cls()
            await pair.open()
            try:
                await latency_us(pair, size, 20)  # warm-up
                lat = await latency_us(pair, size, 300 if size < 10_000 else 100)
                thr = await throughput_mib_s(pair, size, 64 * 2**20 if size > 10_000 else 8 * 2**20)
            finally:
                await pair.close()
            results[name] = (lat, thr)
        rows.append((label, "latency µs", results["raw"][0], results["noise"][0]))
        rows.append((label, "throughput MiB/s", results["raw"][1], results["noise"][1]))
    return rows


# -- echo broadcast ----------------------------------------------------------------------------


async def echo_round(n: int) -> tuple[float, float, float, float, float, float]:
    start = time.perf_counter()
    noise = await noise_members(n, handshake_timeout=60)
    setup = time.perf_counter() - start
    ids = [c.node_id for c in noise]
    muxes = [Mux(ReliableChannel(c, **RELIABLE_OPTS)) for c in noise]
    echoes = [EchoBroadcast(m.port(ECHO_PORT), key(i)) for i, m in enumerate(muxes)]
    rounds = [RoundEchoBroadcast(m.port(ROUND_ECHO_PORT), key(i)) for i, m in enumerate(muxes)]
    plain_ports = [m.port(16) for m in muxes]
    try:
        payloads = {i: os.urandom(1024) for i in ids}

        # Baseline: every member sends its message to every other member, point to point.
        got = [0] * n
        done = asyncio.Event()

        def counter(k):
            def on(peer, msg):
                got[k] += 1
                if all(g == n - 1 for g in got):
                    done.set()

            return on

        for k, p in enumerate(plain_ports):
            p.on_receive(counter(k))
        start = time.perf_counter()
        for k, p in enumerate(plain_ports):
            for j in ids:
                if j != ids[k]:
                    await p.send(j, payloads[ids[k]])
        async with asyncio.timeout(300):
            await done.wait()
        plain = time.perf_counter() - start

        sid = hashlib.sha256(f"bench session {n}".encode()).digest()
        for e in echoes:
            e.start_session(sid, ids)
        start = time.perf_counter()
        cpu = time.process_time()
        for e in echoes:
            await e.broadcast(sid, payloads[e.node_id])
        async with asyncio.timeout(300):
            results = await asyncio.gather(*(e.receive_all(sid, ids) for e in echoes))
        echo = time.perf_counter() - start
        cpu = time.process_time() - cpu
        if not all(r == payloads for r in results):
            raise SystemExit("echo broadcast delivered wrong messages")

        sid = hashlib.sha256(f"bench round session {n}".encode()).digest()
        for r in rounds:
            r.start_session(sid, ids)
        start = time.perf_counter()
        round_cpu = time.process_time()
        for r in rounds:
            await r.broadcast(sid, payloads[r.node_id])
        async with asyncio.timeout(300):
            results = await asyncio.gather(*(r.receive_all(sid) for r in rounds))
        round_echo = time.perf_counter() - start
        round_cpu = time.process_time() - round_cpu
        if not all(r == payloads for r in results):
            raise SystemExit("round echo broadcast delivered wrong messages")
    finally:
        for m in muxes:
            await m.close()
    return setup, plain, echo, cpu / n, round_echo, round_cpu / n


async def main(ns: list[int]) -> None:
    print("Point to point over 127.0.0.1 (same run, same loop)")
    print(f"{'message':>8} {'measure':>18} {'raw TCP':>10} {'Noise':>10} {'Noise/raw':>10}")
    for label, what, raw, noise in await point_to_point():
        print(f"{label:>8} {what:>18} {raw:>10.1f} {noise:>10.1f} {noise / raw:>10.2f}")
    print()
    print("Echo broadcast, every member broadcasts 1 KiB (all members in one process)")
    print(
        f"{'n':>4} {'links up s':>11} {'all-to-all ms':>14} {'echo ms':>9} {'echo/plain':>11}"
        f" {'echo CPU ms/member':>19} | {'round echo ms':>14} {'round/plain':>12} {'round CPU ms/member':>20}"
    )
    for n in ns:
        setup, plain, echo, cpu, rnd, rnd_cpu = await echo_round(n)
        print(
            f"{n:>4} {setup:>11.2f} {plain * 1000:>14.1f} {echo * 1000:>9.1f} {echo / plain:>11.2f} {cpu * 1000:>19.1f}"
            f" | {rnd * 1000:>14.1f} {rnd / plain:>12.2f} {rnd_cpu * 1000:>20.1f}",
            flush=True,
        )


if __name__ == "__main__":
    asyncio.run(main([int(a) for a in sys.argv[1:]] or [5, 15, 50]))
