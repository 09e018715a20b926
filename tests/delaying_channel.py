"""The part the tests' channel wrappers share: a channel in front of a real one that passes its events
up and can hand a message on later, with the delayed sends cancelled on close."""

from __future__ import annotations

import asyncio
import contextlib

from frostfed.net.channel import Channel, ChannelError, PeerId


class DelayingChannel(Channel):
    def __init__(self, inner: Channel) -> None:
        super().__init__()
        self.inner = inner
        self.max_payload = inner.max_payload
        self._tasks: set[asyncio.Task[None]] = set()
        inner.on_receive(self.deliver)
        inner.on_peer_connected(self.peer_connected)
        inner.on_peer_disconnected(self.peer_disconnected)

    def send_later(self, peer: PeerId, payload: bytes, delay: float) -> None:
        task = asyncio.get_running_loop().create_task(self._later(peer, payload, delay))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

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
