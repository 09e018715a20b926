"""Member keys paired with node ids: hellos proven by the link and by a signature of the member key."""

from __future__ import annotations

import hashlib
import itertools

import pytest
from clnsim import Faults, SimNetwork
from test_cln_plugin import connected_all, inbox, mesh, settle
from waiting import wait_for_async

from frostfed.lightning_rpc import LightningRpc
from frostfed.net.channel import ChannelError
from frostfed.net.cln_channel import FROSTFED_MSGTYPE, ClnChannel
from frostfed.net.cln_members import DATA, MemberKeyChannel

TYPE = FROSTFED_MSGTYPE.to_bytes(2, "big")


def node(i: int) -> bytes:
    return bytes([2]) + hashlib.sha256(f"node {i}".encode()).digest()


def secret(i: int) -> bytes:
    return hashlib.sha256(f"member {i}".encode()).digest()


async def member_channel(node_id: bytes, sec: bytes, members: list[bytes] = ()) -> MemberKeyChannel:
    inner = ClnChannel(LightningRpc("/nonexistent", timeout=1), node_id, dict.fromkeys(members))  # receive only
    await inner.start()
    return MemberKeyChannel(inner, sec, hello_interval=60)


def inject(ch: MemberKeyChannel, from_node: bytes, frame: bytes) -> None:
    ch.inner.handle_custommsg(from_node.hex(), (TYPE + frame).hex())


MARKERS = itertools.count(1000)


async def handled(ch: MemberKeyChannel) -> None:
    """Every frame fed to `ch` so far has been handled: lightningd's events reach the channel's loop in
    the order they were fed, so the connect of a fresh marker node, fed after them, shows once they are."""
    marker = node(next(MARKERS))
    ch.inner.handle_connect(marker.hex())
    await wait_for_async(lambda: ch.inner.connected(marker), 5, "the channel to handle what it was fed")


async def test_pairing_rules():
    me = await member_channel(node(0), secret(0), [node(1), node(2), node(3)])
    alice = await member_channel(node(1), secret(1))
    thief = await member_channel(node(2), secret(1))  # holds alice's member secret on another node
    got: list[tuple[bytes, bytes]] = []
    me.on_receive(lambda p, d: got.append((p, d)))

    inject(me, node(2), alice.hello(ask=False))  # alice's hello relayed by node 2: signed over node 1
    inject(me, node(3), bytes([DATA]) + b"who?")  # data from an unpaired node
    await handled(me)
    assert me.member_of(node(2)) is None and got == []

    inject(me, node(1), alice.hello(ask=False))
    inject(me, node(1), bytes([DATA]) + b"hi")
    await handled(me)
    assert me.member_of(node(1)) == alice.member_id and me.node_of(alice.member_id) == node(1)
    assert got == [(alice.member_id, b"hi")]

    inject(me, node(2), thief.hello(ask=False))  # a valid signature, but the key is node 1's
    await handled(me)
    assert me.member_of(node(2)) is None and me.node_of(alice.member_id) == node(1)

    inject(me, node(1), alice.hello(ask=False)[:-1])  # truncated
    await handled(me)
    assert me.member_of(node(1)) == alice.member_id
    with pytest.raises(ChannelError, match="not paired"):
        await me.send(thief.member_id[:1] + b"\x99" * 32, b"x")
    for ch in (me, alice, thief):
        await ch.close()


async def test_non_members_get_no_answer_and_leave_no_state(caplog):
    me = await member_channel(node(0), secret(0), [node(1)])
    stranger = await member_channel(node(5), secret(5))
    signed: list[bool] = []
    real_hello = me.hello
    me.hello = lambda ask: signed.append(ask) or real_hello(ask)  # type: ignore[method-assign]
    paired: list[tuple[bytes, bytes]] = []
    me.on_paired(lambda n, m: paired.append((n, m)))
    got: list[tuple[bytes, bytes]] = []
    me.on_receive(lambda p, d: got.append((p, d)))
    caplog.set_level("INFO", logger="frostfed.net.cln")
    for _ in range(50):
        inject(me, node(5), stranger.hello(ask=True))  # correctly signed, by a node that is no member
        inject(me, node(5), bytes([DATA]) + b"let me in")
        inject(me, node(5), b"\xff garbage")
    me.inner.handle_connect(node(5).hex())
    await handled(me)
    assert me.member_of(node(5)) is None and paired == [] and got == [] and signed == []
    drops = [r for r in caplog.records if "dropped traffic" in r.getMessage()]
    assert len(drops) == 1 and "non-members" in drops[0].getMessage()  # one line for 150 frames
    alice = await member_channel(node(1), secret(1))
    inject(me, node(1), alice.hello(ask=False))  # the member is still heard
    await handled(me)
    assert me.member_of(node(1)) == alice.member_id and paired == [(node(1), alice.member_id)]
    for ch in (me, stranger, alice):
        await ch.close()


async def test_members_talk_by_member_key_through_faults(monkeypatch):
    monkeypatch.setenv("MESH_MEMBER_KEYS", "1")
    net = SimNetwork(seed=9, faults=Faults(drop=0.2, delay=0.2, max_delay=0.1, disconnect=0.02, seed=4))
    try:
        nodes = await mesh(net, 4)
        await settle(lambda: connected_all(nodes), timeout=30)
        ids = {n.index: (await n.cli("mesh-identity"))["member_id"] for n in nodes}
        assert all(ids[n.index] != n.node_id for n in nodes) and len(set(ids.values())) == 4
        count = 5
        for i in range(count):
            for src in nodes:
                for dst in nodes:
                    if dst is not src:
                        # queued even before the pairing is known: the reliable layer retransmits
                        await src.cli("mesh-send", ids[dst.index], f"{src.index}:{i}")

        async def complete() -> bool:
            return [len(await inbox(n)) for n in nodes] == [3 * count] * 4

        await settle(complete, timeout=60, interval=0.2)
        for dst in nodes:
            msgs = await inbox(dst)
            for src in nodes:
                if src is not dst:
                    assert [m["text"] for m in msgs if m["peer"] == ids[src.index]] == [
                        f"{src.index}:{i}" for i in range(count)
                    ]
            assert dst.fatal == []
    finally:
        await net.close()
