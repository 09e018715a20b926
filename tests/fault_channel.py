"""A channel wrapper that misbehaves on purpose: the network the upper layers must survive.

Between a member's reliable layer and its real channel it drops, duplicates, delays (and so
reorders) outgoing messages and now and then cuts the link, driven by a seeded random generator so
a failing run can be replayed.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from dataclasses import dataclass

from frostfed.net.channel import Channel, ChannelError, PeerId


@dataclass(frozen=True)
class FaultPlan:
    drop: float = 0.2
    duplicate: float = 0.05
    delay: float = 0.1
    """Share of messages held back by up to `max_delay` seconds; later ones overtake them."""
    max_delay: float = 0.05
    cut: float = 0.002
    """Chance per message that the link to that peer is cut (the channel must support `drop`)."""


class FaultyChannel(Channel):
    def __init__(self, inner: Channel, plan: FaultPlan, seed: int) -> None:
        super().__init__()
        self.inner = inner
        self.max_payload = inner.max_payload
        self.plan = plan
        self._rng = random.Random(seed)
        self._tasks: set[asyncio.Task[None]] = set()
        self.stats = {"sent": 0, "dropped": 0, "duplicated": 0, "delayed": 0, "cut": 0}
        inner.on_receive(self.deliver)
        inner.on_peer_connected(self.peer_connected)
        inner.on_peer_disconnected(self.peer_disconnected)

    async def send(self, peer: PeerId, payload: bytes) -> None:
        plan, rng = self.plan, self._rng
        self.stats["sent"] += 1
        if rng.random() < plan.cut and hasattr(self.inner, "drop"):
            self.stats["cut"] += 1
            await self.inner.drop(peer)
        if rng.random() < plan.drop:
            self.stats["dropped"] += 1
            return
        copies = 2 if rng.random() < plan.duplicate else 1
        self.stats["duplicated"] += copies - 1
        for _ in range(copies):
            if rng.random() < plan.delay:
                self.stats["delayed"] += 1
                task = asyncio.get_running_loop().create_task(self._later(peer, payload, rng.random() * plan.max_delay))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)
            else:
                await self.inner.send(peer, payload)

    async def _later(self, peer: PeerId, payload: bytes, delay: float) -> None:
        await asyncio.sleep(delay)
        with contextlib.suppress(ChannelError):
            await self.inner.send(peer, payload)

    def reject(self, peer: PeerId, reason: str) -> None:
        self.inner.reject(peer, reason)

    async def close(self) -> None:
        for t in list(self._tasks):
            t.cancel()
        for t in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError):
                await t
        await self.inner.close()
