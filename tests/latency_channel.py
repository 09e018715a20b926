"""A channel wrapper that adds a fixed one-way latency, to measure the protocols at a realistic
round-trip time on one machine (the benchmarks use the ROAST paper's 153 ms). Order is kept: every
message waits the same time, and asyncio fires equal timers in the order they were set."""

from __future__ import annotations

from delaying_channel import DelayingChannel

from frostfed.net.channel import Channel, PeerId


class LatencyChannel(DelayingChannel):
    def __init__(self, inner: Channel, one_way_seconds: float) -> None:
        super().__init__(inner)
        self.lossless_while_connected = inner.lossless_while_connected
        self.delay = one_way_seconds

    async def send(self, peer: PeerId, payload: bytes) -> None:
        self.send_later(peer, payload, self.delay)
