"""Noise links over real loopback sockets: membership, refusals, and links that survive them."""

from __future__ import annotations

import asyncio
import os

import pytest
from netcluster import member_key, node_id, start_noise_members, wait_for

from frostfed.net.channel import ChannelError
from frostfed.net.noise import ACT_ONE_SIZE, Handshake
from frostfed.net.tcp import DEFAULT_PROLOGUE, NoiseChannel


def collect(channel):
    got = []
    channel.on_receive(lambda peer, payload: got.append((peer, payload)))
    return got


async def exchange_ok(a: NoiseChannel, b: NoiseChannel, tag: bytes) -> None:
    """`a` can reach `b` right now (retrying while a link comes back up)."""
    got = collect(b)

    async def attempt():
        while (a.node_id, tag) not in got:
            if a.connected(b.node_id):
                await a.send(b.node_id, tag)
            await asyncio.sleep(0.02)

    async with asyncio.timeout(30):
        await attempt()


async def test_members_exchange_messages_both_ways():
    chans = await start_noise_members(3)
    try:
        got = [collect(c) for c in chans]
        for c in chans:
            for o in chans:
                if o is not c:
                    await c.send(o.node_id, b"from " + c.node_id + b" big" * 10000)
        await wait_for(lambda: all(len(g) == 2 for g in got))
        for c, g in zip(chans, got, strict=True):
            assert sorted(p for p, _ in g) == sorted(o.node_id for o in chans if o is not c)
            assert all(m == b"from " + p + b" big" * 10000 for p, m in g)
    finally:
        for c in chans:
            await c.close()


async def test_unknown_static_key_is_refused_and_members_keep_talking():
    a, b = await start_noise_members(2)
    stranger_key = member_key(0, "stranger")
    # The stranger lists a as a member and dials it; a does not list the stranger.
    stranger = NoiseChannel(stranger_key, {a.node_id: a.listen_address}, listen=None)
    try:
        await stranger.start()
        await wait_for(lambda: any("is not a member" in r for r in a.refusals))
        assert node_id(stranger_key).hex() in " ".join(a.refusals)
        await exchange_ok(a, b, b"still here")
        await exchange_ok(b, a, b"and back")
    finally:
        for c in (stranger, a, b):
            await c.close()


async def test_initiator_refuses_a_responder_with_the_wrong_key():
    a, b = await start_noise_members(2)
    impostor = NoiseChannel(member_key(1, "impostor"), {})
    await impostor.start()
    # `watcher` believes the member with b's key listens where the impostor is.
    watcher = NoiseChannel(member_key(0, "watcher"), {b.node_id: impostor.listen_address}, listen=None)
    try:
        await watcher.start()
        await wait_for(lambda: any("authentication failed" in r for r in impostor.refusals))
        assert not watcher.connected(b.node_id)
        await exchange_ok(a, b, b"unaffected")
    finally:
        for c in (watcher, impostor, a, b):
            await c.close()


async def test_stalled_handshake_times_out_without_blocking_others():
    a, b = await start_noise_members(2, handshake_timeout=1.0)
    host, port = a.listen_address
    reader, writer = await asyncio.open_connection(host, port)
    try:
        writer.write(os.urandom(10))  # the start of an act, then silence
        await writer.drain()
        await exchange_ok(b, a, b"while one stalls")
        await wait_for(lambda: any("timed out" in r for r in a.refusals))
        assert await asyncio.wait_for(reader.read(), 5) == b""  # a hung up
    finally:
        writer.close()
        for c in (a, b):
            await c.close()


async def test_random_bytes_are_refused():
    a, b = await start_noise_members(2)
    host, port = a.listen_address
    try:
        for first in (b"\x00", b"\x01", b"\x00\x02"):
            reader, writer = await asyncio.open_connection(host, port)
            writer.write(first + os.urandom(ACT_ONE_SIZE - len(first)))
            await writer.drain()
            assert await asyncio.wait_for(reader.read(), 5) == b""
            writer.close()
        assert len(a.refusals) >= 3
        await exchange_ok(b, a, b"after the noise")
    finally:
        for c in (a, b):
            await c.close()


async def test_garbage_after_a_valid_handshake_closes_only_that_link():
    chans = await start_noise_members(3)
    a, b, c = chans
    host, port = a.listen_address
    # A real member (b's key) completes the handshake by hand, then sends bytes that fail authentication.
    hs = Handshake(member_key(1), a.node_id, prologue=DEFAULT_PROLOGUE)
    reader, writer = await asyncio.open_connection(host, port)
    try:
        writer.write(hs.act_one())
        act_three, _ = hs.read_act_two(await reader.readexactly(50))
        writer.write(act_three + os.urandom(40))
        await writer.drain()
        assert await asyncio.wait_for(reader.read(), 5) == b""
        await wait_for(lambda: any("failed authentication" in r for r in a.refusals))
        await exchange_ok(c, a, b"c unaffected")
        await exchange_ok(b, a, b"b reconnects")
    finally:
        writer.close()
        for ch in chans:
            await ch.close()


async def test_rejected_link_is_closed_and_redialed():
    a, b = await start_noise_members(2)
    try:
        lost = []
        a.on_peer_disconnected(lost.append)
        a.reject(b.node_id, "undecodable frame")
        assert lost == [b.node_id]
        assert "undecodable frame" in a.refusals[-1]
        await exchange_ok(b, a, b"back again")
        await exchange_ok(a, b, b"and the other way")
    finally:
        for c in (a, b):
            await c.close()


async def test_a_responder_that_never_answers_times_out_and_is_retried():
    silent_conns = []

    async def silent(reader, writer):
        silent_conns.append(writer)  # accepts, reads nothing, says nothing

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    a, b = await start_noise_members(2)
    ghost = node_id(member_key(0, "ghost"))
    dialer = NoiseChannel(
        member_key(0, "dialer"),
        {ghost: server.sockets[0].getsockname()[:2]},
        listen=None,
        handshake_timeout=0.3,
        reconnect_max=0.2,
    )
    try:
        await dialer.start()
        await wait_for(lambda: sum("timed out" in r for r in dialer.refusals) >= 2)
        assert len(silent_conns) >= 2  # it keeps redialing
        assert not dialer.connected(ghost)
        await exchange_ok(a, b, b"unaffected by the silent peer")
    finally:
        for c in (dialer, a, b):
            await c.close()
        server.close()
        for w in silent_conns:
            w.close()


async def test_unauthenticated_connections_are_capped():
    a, b = await start_noise_members(2, handshake_timeout=2.0, max_pending_handshakes=3)
    host, port = a.listen_address
    idle = [await asyncio.open_connection(host, port) for _ in range(5)]
    try:
        await wait_for(lambda: any("too many handshakes" in r for r in a.refusals))
        await exchange_ok(b, a, b"the established link is unaffected")
    finally:
        for _, w in idle:
            w.close()
        for c in (a, b):
            await c.close()


def test_member_ids_must_be_compressed_public_keys():
    with pytest.raises(ChannelError, match="not a compressed"):
        NoiseChannel(member_key(0), {b"\x02" + bytes(32): None})
    with pytest.raises(ChannelError, match="not a compressed"):
        NoiseChannel(member_key(0), {node_id(member_key(1))[:20]: None})


async def test_a_joiner_is_admitted_and_a_leaver_is_cut_off():
    a, b = await start_noise_members(2)
    joiner_key = member_key(0, "joiner")
    joiner = NoiseChannel(joiner_key, {a.node_id: a.listen_address, b.node_id: b.listen_address})
    await joiner.start()
    try:
        await wait_for(lambda: any("is not a member" in r for r in a.refusals + b.refusals))
        for ch in (a, b):
            ch.add_member(joiner.node_id, joiner.listen_address)
        await exchange_ok(joiner, a, b"joined")
        await exchange_ok(b, joiner, b"welcome")
        a.remove_member(joiner.node_id)
        assert not a.connected(joiner.node_id)
        assert joiner.node_id not in a.members
        n_refused = sum("is not a member" in r for r in a.refusals)
        await wait_for(lambda: sum("is not a member" in r for r in a.refusals) > n_refused)  # it redials
        await exchange_ok(joiner, b, b"b still has it")
    finally:
        for c in (joiner, a, b):
            await c.close()


async def test_keys_rotate_across_thousands_of_messages_on_a_live_link():
    a, b = await start_noise_members(2)
    try:
        got_b, got_a = collect(b), collect(a)
        for i in range(2500):  # two rotations of each direction's key
            await a.send(b.node_id, i.to_bytes(2, "big"))
            await b.send(a.node_id, i.to_bytes(2, "big"))
        await wait_for(lambda: len(got_b) == 2500 and len(got_a) == 2500)
        assert [m for _, m in got_b] == [i.to_bytes(2, "big") for i in range(2500)]
        assert [m for _, m in got_a] == [i.to_bytes(2, "big") for i in range(2500)]
    finally:
        for c in (a, b):
            await c.close()
