"""Reliable delivery: the protocol core under a simulated hostile network, then over real Noise links."""

from __future__ import annotations

import asyncio
import hashlib
import random
import socket

import pytest
from fault_channel import FaultPlan, FaultyChannel
from hypothesis import given, settings
from hypothesis import strategies as st
from netcluster import member_key, node_id, start_noise_members, wait_for

from frostfed.net.reliable import ReliableChannel
from frostfed.net.reliable_core import MAX_MESSAGE, Delivered, MessageTooLarge, QueueFull, ReliableCore, Transmit
from frostfed.net.tcp import NoiseChannel
from frostfed.net.wire import WireError

PEERS = [bytes([2]) + hashlib.sha256(bytes([i])).digest() for i in range(6)]


class Network:
    """Deterministic lossy network between ReliableCores: a timeline of frames in transit."""

    def __init__(self, cores: dict[bytes, ReliableCore], rng: random.Random, drop=0.2, dup=0.1) -> None:
        self.cores = cores
        self.rng = rng
        self.drop = drop
        self.dup = dup
        self.now = 0.0
        self.in_transit: list[tuple[float, bytes, bytes, bytes]] = []
        self.delivered: dict[tuple[bytes, bytes], list[bytes]] = {}
        self.up = True

    def handle(self, src: bytes, events) -> None:
        for ev in events:
            if isinstance(ev, Delivered):
                self.delivered.setdefault((src, ev.peer), []).append(ev.message)
            elif isinstance(ev, Transmit):
                if not self.up or self.rng.random() < self.drop:
                    continue
                for _ in range(2 if self.rng.random() < self.dup else 1):
                    when = self.now + self.rng.random() * 0.3  # up to 0.3 s: heavy reordering
                    self.in_transit.append((when, src, ev.peer, ev.frame))

    def send(self, src: bytes, dst: bytes, message: bytes) -> None:
        self.handle(src, self.cores[src].send(dst, message, self.now))

    def run(self, until: float, step: float = 0.01) -> None:
        while self.now < until:
            self.now += step
            due = [m for m in self.in_transit if m[0] <= self.now]
            self.in_transit = [m for m in self.in_transit if m[0] > self.now]
            self.rng.shuffle(due)
            for _, src, dst, frame in due:
                if dst in self.cores:
                    self.handle(dst, self.cores[dst].receive(src, frame, self.now))
            for pid, core in self.cores.items():
                self.handle(pid, core.tick(self.now))


def make_cores(n: int, **kw) -> dict[bytes, ReliableCore]:
    return {p: ReliableCore(incarnation=1, **kw) for p in PEERS[:n]}


@pytest.mark.parametrize("seed", range(5))
def test_exactly_once_in_order_over_a_lossy_reordering_network(seed):
    rng = random.Random(seed)
    cores = make_cores(4, max_frame=200, window=8)
    net = Network(cores, rng)
    expected: dict[tuple[bytes, bytes], list[bytes]] = {}
    for i in range(40):
        src, dst = rng.sample(list(cores), 2)
        msg = f"{i}:".encode() + rng.randbytes(rng.randrange(0, 900))  # 0 to 5 chunks
        expected.setdefault((dst, src), []).append(msg)
        net.send(src, dst, msg)
        net.run(net.now + rng.random() * 0.05)
    net.run(net.now + 60)
    assert net.delivered == expected
    assert all(core.unacked() == 0 for core in cores.values())


@given(
    seed=st.integers(0, 2**32),
    drop=st.floats(0, 0.5),
    dup=st.floats(0, 0.5),
    window=st.integers(1, 8),
    sizes=st.lists(st.integers(0, 700), min_size=1, max_size=25),
)
@settings(max_examples=40, deadline=None)
def test_exactly_once_in_order_for_any_loss_rate_and_window(seed, drop, dup, window, sizes):
    rng = random.Random(seed)
    cores = {p: ReliableCore(incarnation=1, max_frame=120, window=window, recv_window=window) for p in PEERS[:3]}
    net = Network(cores, rng, drop=drop, dup=dup)
    expected: dict[tuple[bytes, bytes], list[bytes]] = {}
    for i, size in enumerate(sizes):
        src, dst = rng.sample(list(cores), 2)
        msg = i.to_bytes(2, "big") + rng.randbytes(size)
        expected.setdefault((dst, src), []).append(msg)
        net.send(src, dst, msg)
    net.run(120.0, step=0.05)
    assert net.delivered == expected


def test_messages_queued_during_an_outage_arrive_after_it():
    rng = random.Random(7)
    cores = make_cores(2, max_frame=100, window=4)
    a, b = list(cores)
    net = Network(cores, rng, drop=0.0, dup=0.0)
    net.up = False
    msgs = [bytes([i]) * 300 for i in range(10)]
    for m in msgs:
        net.send(a, b, m)
    net.run(5.0)
    assert net.delivered == {}
    assert cores[a].unacked(b) > 0
    net.up = True
    net.handle(a, cores[a].peer_connected(b, net.now))
    net.run(net.now + 10)
    assert net.delivered == {(b, a): msgs}


def test_receiver_restart_resumes_at_the_oldest_unacknowledged_message():
    rng = random.Random(3)
    cores = make_cores(2, max_frame=100, window=4)
    a, b = list(cores)
    net = Network(cores, rng, drop=0.0, dup=0.0)
    net.send(a, b, b"first" * 50)
    net.run(2.0)
    assert net.delivered == {(b, a): [b"first" * 50]}
    cores[b] = ReliableCore(incarnation=2, max_frame=100, window=4)  # b lost its state
    net.delivered.clear()
    net.send(a, b, b"second" * 50)
    net.run(net.now + 10)
    assert net.delivered == {(b, a): [b"second" * 50]}


def test_sender_restart_starts_a_fresh_sequence():
    rng = random.Random(4)
    cores = make_cores(2, max_frame=100)
    a, b = list(cores)
    net = Network(cores, rng, drop=0.0, dup=0.0)
    net.send(a, b, b"old")
    net.run(1.0)
    cores[a] = ReliableCore(incarnation=5, max_frame=100)
    net.send(a, b, b"new")
    net.run(net.now + 5)
    assert net.delivered == {(b, a): [b"old", b"new"]}


def test_queue_bound_gives_a_clear_error():
    core = ReliableCore(incarnation=1, max_queue_bytes=10_000)
    core.send(PEERS[1], b"x" * 9_000, 0.0)
    with pytest.raises(QueueFull, match="bound 10000"):
        core.send(PEERS[1], b"x" * 2_000, 0.0)
    core.send(PEERS[2], b"x" * 2_000, 0.0)  # the bound is per peer


def test_messages_above_four_mebibytes_are_refused():
    core = ReliableCore(incarnation=1)
    with pytest.raises(MessageTooLarge):
        core.send(PEERS[1], bytes(MAX_MESSAGE + 1), 0.0)


def test_a_four_mebibyte_message_is_chunked_into_frames_that_fit():
    cores = make_cores(2)
    a, b = list(cores)
    net = Network(cores, random.Random(1), drop=0.1, dup=0.0)
    big = random.Random(2).randbytes(MAX_MESSAGE)
    frames = cores[a].send(b, big, 0.0)
    assert all(len(ev.frame) <= 65535 for ev in frames)
    net.handle(a, frames)
    net.run(30.0)
    assert net.delivered == {(b, a): [big]}


def test_garbage_frames_raise_wire_errors():
    core = ReliableCore(incarnation=1)
    for junk in (b"", b"\x01", b"\x02\x01", b"\x01\x07" + bytes(30), b"\x01\x01" + bytes(10)):
        with pytest.raises(WireError):
            core.receive(PEERS[1], junk, 0.0)


# -- over real Noise links -----------------------------------------------------------------------


async def run_all_to_all(n: int, per_pair: int, plan: FaultPlan, seed: int) -> None:
    noise = await start_noise_members(n)
    faulty = [FaultyChannel(ch, plan, seed * 100 + i) for i, ch in enumerate(noise)]
    nodes = [ReliableChannel(f, rto_initial=0.05, rto_max=0.4) for f in faulty]
    ids = [ch.node_id for ch in noise]
    got: list[dict[bytes, list[bytes]]] = [{} for _ in nodes]
    for i, node in enumerate(nodes):
        node.on_receive(lambda peer, msg, box=got[i]: box.setdefault(peer, []).append(msg))
    try:
        rng = random.Random(seed)
        sent: dict[tuple[int, int], list[bytes]] = {}
        for k in range(per_pair):
            for i, node in enumerate(nodes):
                for j in range(n):
                    if i != j:
                        size = rng.choice([10, 1000, 70_000]) if k % 3 == 0 else 40
                        msg = f"{i}->{j} #{k} ".encode() + rng.randbytes(size)
                        sent.setdefault((i, j), []).append(msg)
                        await node.send(ids[j], msg)
            await asyncio.sleep(0.01)

        def complete() -> bool:
            return all(len(got[j].get(ids[i], [])) >= len(msgs) for (i, j), msgs in sent.items())

        await wait_for(complete, timeout=40)
        for (i, j), msgs in sent.items():
            assert got[j][ids[i]] == msgs, (i, j)
        stats = [f.stats for f in faulty]
        assert sum(s["dropped"] for s in stats) > 0
        assert sum(s["duplicated"] for s in stats) > 0
        assert sum(s["delayed"] for s in stats) > 0
        assert sum(s["cut"] for s in stats) > 0
    finally:
        for node in nodes:
            await node.close()


async def test_five_members_all_to_all_under_faults():
    await run_all_to_all(5, per_pair=12, plan=FaultPlan(cut=0.005), seed=1)


async def test_ten_members_all_to_all_under_faults():
    await run_all_to_all(10, per_pair=6, plan=FaultPlan(cut=0.003), seed=2)


async def test_undecodable_frame_closes_that_link_only():
    noise = await start_noise_members(3)
    nodes = [ReliableChannel(ch, rto_initial=0.05) for ch in noise]
    a, b, c = nodes
    got = []
    a.on_receive(lambda peer, msg: got.append((peer, msg)))
    try:
        await noise[1].send(noise[0].node_id, b"\x09\x01garbage")
        await wait_for(lambda: any("wire version 9" in r for r in noise[0].refusals))
        await b.send(noise[0].node_id, b"after reconnect")
        await c.send(noise[0].node_id, b"from c")
        await wait_for(lambda: len(got) == 2)
        assert sorted(got) == sorted([(noise[1].node_id, b"after reconnect"), (noise[2].node_id, b"from c")])
    finally:
        for node in nodes:
            await node.close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def test_messages_wait_for_a_member_that_is_not_up_yet_and_survive_its_restart():
    ka, kb = member_key(0), member_key(1)
    ids = [node_id(ka), node_id(kb)]
    port_b = free_port()
    a_noise = NoiseChannel(ka, dict.fromkeys(ids), reconnect_max=0.2)
    await a_noise.start()
    a_noise.set_address(ids[1], ("127.0.0.1", port_b))
    a = ReliableChannel(a_noise)
    first = [f"queued {i}".encode() * 100 for i in range(20)]
    for m in first:
        await a.send(ids[1], m)  # b is not running: queued

    async def start_b(incarnation: int):
        ch = NoiseChannel(kb, dict.fromkeys(ids), listen=("127.0.0.1", port_b), reconnect_max=0.2)
        await ch.start()
        ch.set_address(ids[0], a_noise.listen_address)
        b = ReliableChannel(ch, incarnation=incarnation)
        got: list[bytes] = []
        b.on_receive(lambda peer, msg: got.append(msg))
        return b, got

    b, got = await start_b(1)
    try:
        await wait_for(lambda: len(got) == len(first), timeout=15)
        assert got == first
        await a.flush(timeout=10)
        await b.close()  # b goes away; a keeps sending
        second = [f"while down {i}".encode() for i in range(5)]
        for m in second:
            await a.send(ids[1], m)
        b, got = await start_b(2)  # b restarts with no memory of the first run
        await wait_for(lambda: len(got) == len(second), timeout=15)
        assert got == second
    finally:
        await b.close()
        await a.close()
