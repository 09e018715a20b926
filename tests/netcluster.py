"""Start real Noise members on 127.0.0.1 for the transport tests and benchmarks."""

from __future__ import annotations

import asyncio
import hashlib

from coincurve import PrivateKey

from frostfed.net.tcp import NoiseChannel


def member_key(i: int, tag: str = "member") -> bytes:
    return hashlib.sha256(f"frostfed test {tag} {i}".encode()).digest()


def node_id(key: bytes) -> bytes:
    return PrivateKey(key).public_key.format()


async def start_noise_members(n: int, **kwargs) -> list[NoiseChannel]:
    """n members that know each other; returns once every pair has its link up."""
    keys = [member_key(i) for i in range(n)]
    ids = [node_id(k) for k in keys]
    channels = [NoiseChannel(k, dict.fromkeys(ids), **kwargs) for k in keys]
    for ch in channels:
        await ch.start()
    for ch in channels:
        for other in channels:
            if other is not ch:
                ch.set_address(other.node_id, other.listen_address)
    await wait_all_connected(channels)
    return channels


async def wait_all_connected(channels: list[NoiseChannel], timeout: float = 20.0) -> None:
    async with asyncio.timeout(timeout):
        while not all(ch.connected(o.node_id) for ch in channels for o in channels if o is not ch):
            await asyncio.sleep(0.01)


async def wait_for(predicate, timeout: float = 30.0, interval: float = 0.01) -> None:
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(interval)
