"""A channel wrapper that misbehaves on purpose: the network the upper layers must survive.

Between a member's reliable layer and its real channel it drops, duplicates, delays (and so
reorders) outgoing messages and now and then cuts the link, driven by a seeded random generator so
a failing run can be replayed.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from delaying_channel import DelayingChannel

from frostfed.net.channel import Channel, PeerId


@dataclass(frozen=True)
class FaultPlan:
    drop: float = 0.2
    duplicate: float = 0.05
    delay: float = 0.1
    """Share of messages held back by up to `max_delay` seconds; later ones overtake them."""
    max_delay: float = 0.05
    cut: float = 0.002
    """Chance per message that the link to that peer is cut (the channel must support `drop`)."""


class FaultyChannel(DelayingChannel):
    def __init__(self, inner: Channel, plan: FaultPlan, seed: int) -> None:
        super().__init__(inner)
        self.plan = plan
        self._rng = random.Random(seed)
        self.stats = {"sent": 0, "dropped": 0, "duplicated": 0, "delayed": 0, "cut": 0}

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
                self.send_later(peer, payload, rng.random() * plan.max_delay)
            else:
                await self.inner.send(peer, payload)
