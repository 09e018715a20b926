"""A channel wrapper that adds a fixed one-way latency, to measure the protocols at a realistic
round-trip time on one machine (the benchmarks use the ROAST paper's 153 ms). Order is kept: every
message waits the same time, and asyncio fires equal timers in the order they were set."""

from __future__ import annotations

import asyncio
import contextlib

from frostfed.net.channel import Channel, ChannelError, PeerId


class LatencyChannel(Channel):
    def __init__(self, inner: Channel, one_way_seconds: float) -> None:
        super().__init__()
        self.inner = inner
        self.max_payload = inner.max_payload
        self.lossless_while_connected = inner.lossless_while_connected
        self.delay = one_way_seconds
        self._tasks: set[asyncio.Task[None]] = set()
        inner.on_receive(self.deliver)
        inner.on_peer_connected(self.peer_connected)
        inner.on_peer_disconnected(self.peer_disconnected)

    async def send(self, peer: PeerId, payload: bytes) -> None:
        task = asyncio.get_running_loop().create_task(self._later(peer, payload))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _later(self, peer: PeerId, payload: bytes) -> None:
        await asyncio.sleep(self.delay)
        with contextlib.suppress(ChannelError):
            await self.inner.send(peer, payload)

    def reject(self, peer: PeerId, reason: str) -> None:
        self.inner.reject(peer, reason)

    async def close(self) -> None:
        for t in list(self._tasks):
            t.cancel()
        await self.inner.close()
