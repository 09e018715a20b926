"""The assembled member stack: point-to-point ports and the round echo broadcast sharing one set of links."""

from __future__ import annotations

import asyncio
import hashlib

from netcluster import member_key, node_id, wait_for

from frostfed.net.links import open_noise_links


async def test_members_use_a_port_and_the_round_echo_broadcast_side_by_side():
    keys = [member_key(i) for i in range(4)]
    ids = [node_id(k) for k in keys]
    links = [await open_noise_links(k, dict.fromkeys(ids)) for k in keys]
    for ln in links:
        for other in links:
            if other is not ln:
                ln.channel.set_address(other.channel.node_id, other.channel.listen_address)
    ports = [ln.port(16) for ln in links]
    inbox: list[list[tuple[bytes, bytes]]] = [[] for _ in links]
    for box, port in zip(inbox, ports, strict=True):
        port.on_receive(lambda peer, msg, box=box: box.append((peer, msg)))
    sid = hashlib.sha256(b"links session").digest()
    try:
        for ln in links:
            ln.round_echo.start_session(sid, ids)
        big = bytes(200_000)  # above one frame: chunked by the reliable layer
        for i, port in enumerate(ports):
            await port.send(ids[(i + 1) % 4], big + ids[i])
            await links[i].round_echo.broadcast(sid, b"round 1 from " + ids[i])
        async with asyncio.timeout(30):
            results = [await ln.round_echo.receive_all(sid) for ln in links]
        assert all(r == {i: b"round 1 from " + i for i in ids} for r in results)
        await wait_for(lambda: all(len(b) == 1 for b in inbox))
        for j, box in enumerate(inbox):
            sender = ids[(j - 1) % 4]
            assert box == [(sender, big + sender)]
    finally:
        for ln in links:
            await ln.close()
