"""Reliable, ordered, exactly-once delivery of messages up to 4 MiB over any `Channel`.

The channels below lose messages whenever a link drops; FROST and ChillDKG need every message to
arrive once and in order. The protocol is `reliable_core.ReliableCore`, a state machine without I/O;
`ReliableChannel` here runs it on asyncio over a lower channel (timers, per-peer senders, bundling
what is sent in one turn of the loop) and is itself a `Channel`, so the echo broadcast and the
federation run on it unchanged.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

from .channel import Channel, ChannelError, PeerId
from .reliable_core import MAX_MESSAGE, Event, ReliableCore, Transmit

log = logging.getLogger("frostfed.net.reliable")


class ReliableChannel(Channel):
    """Runs `ReliableCore` over `channel`; `send` queues and returns, delivery is exactly once, in order.

    Owns the lower channel: `close()` closes it too.
    """

    max_payload = MAX_MESSAGE
    lossless_while_connected = True

    def __init__(
        self,
        channel: Channel,
        *,
        incarnation: int | None = None,
        window: int = 64,
        max_queue_bytes: int = 64 * 1024 * 1024,
        rto_initial: float | None = None,
        rto_max: float | None = None,
    ) -> None:
        """`rto_initial`/`rto_max` default to 0.2 s / 2 s; over a channel that is lossless while
        connected, to 10 s / 60 s, as there reconnection triggers the resend and the timer is only a
        safety net (a busy loop otherwise trips it and wastes time on duplicates)."""
        super().__init__()
        lossless = channel.lossless_while_connected
        if rto_initial is None:
            rto_initial = 10.0 if lossless else 0.2
        if rto_max is None:
            rto_max = 60.0 if lossless else 2.0
        self.inner = channel
        self.core = ReliableCore(
            incarnation=incarnation if incarnation is not None else time.time_ns(),
            max_frame=channel.max_payload,
            window=window,
            max_queue_bytes=max_queue_bytes,
            rto_initial=rto_initial,
            rto_max=rto_max,
        )
        self._outboxes: dict[PeerId, asyncio.Queue[bytes]] = {}
        self._senders: dict[PeerId, asyncio.Task[None]] = {}
        self._timer: asyncio.Task[None] | None = None
        self._ack_scheduled = False
        self._flush_scheduled = False
        self._tick = min(rto_initial / 4, 0.5)
        self._progress = asyncio.Event()
        self._closed = False
        channel.on_receive(self._on_frame)
        channel.on_peer_connected(self._on_connected)
        channel.on_peer_disconnected(self.peer_disconnected)

    @staticmethod
    def _now() -> float:
        return asyncio.get_running_loop().time()

    def _ensure_timer(self) -> None:
        if self._timer is None and not self._closed:
            self._timer = asyncio.get_running_loop().create_task(self._timer_loop())

    async def send(self, peer: PeerId, payload: bytes) -> None:
        if self._closed:
            raise ChannelError("channel closed")
        self._ensure_timer()
        self._dispatch(self.core.send(peer, payload, self._now(), defer=True))
        if not self._flush_scheduled:
            # Everything sent in this turn of the loop leaves together, bundled per peer.
            self._flush_scheduled = True
            asyncio.get_running_loop().call_soon(self._flush)

    async def flush(self, timeout: float | None = None) -> None:
        """Wait until every queued message has been acknowledged."""
        async with asyncio.timeout(timeout):
            while self.core.unacked():
                self._progress.clear()
                await self._progress.wait()

    def unacked(self, peer: PeerId | None = None) -> int:
        return self.core.unacked(peer)

    def reject(self, peer: PeerId, reason: str) -> None:
        self.inner.reject(peer, reason)

    async def close(self) -> None:
        self._closed = True
        tasks = [t for t in [self._timer, *self._senders.values()] if t is not None]
        for t in tasks:
            t.cancel()
        for t in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await t
        await self.inner.close()

    # -- plumbing --------------------------------------------------------------------------------

    def _on_frame(self, peer: PeerId, data: bytes) -> None:
        if self._closed:
            return
        self._ensure_timer()
        try:
            events = self.core.receive(peer, data, self._now(), defer_ack=True)
        except ValueError as exc:  # WireError and its subclasses
            self.inner.reject(peer, f"reliable layer: {exc}")
            return
        if not self._ack_scheduled:
            # One acknowledgement per peer for all frames that arrive in this turn of the loop.
            self._ack_scheduled = True
            asyncio.get_running_loop().call_soon(self._send_acks)
        self._dispatch(events)
        self._progress.set()

    def _flush(self) -> None:
        self._flush_scheduled = False
        if not self._closed:
            self._dispatch(self.core.flush(self._now()))

    def _send_acks(self) -> None:
        self._ack_scheduled = False
        if not self._closed:
            self._dispatch(self.core.take_acks())

    def _on_connected(self, peer: PeerId) -> None:
        if not self._closed:
            with contextlib.suppress(RuntimeError):  # no running loop: nothing in flight yet
                self._dispatch(self.core.peer_connected(peer, self._now()))
        self.peer_connected(peer)

    def _dispatch(self, events: list[Event]) -> None:
        for ev in events:
            if isinstance(ev, Transmit):
                box = self._outboxes.get(ev.peer)
                if box is None:
                    box = self._outboxes[ev.peer] = asyncio.Queue()
                    self._senders[ev.peer] = asyncio.get_running_loop().create_task(self._sender(ev.peer, box))
                box.put_nowait(ev.frame)
            else:
                try:
                    self.deliver(ev.peer, ev.message)
                except Exception:
                    log.exception("receiver failed on a message from %s", ev.peer.hex()[:16])

    async def _sender(self, peer: PeerId, box: asyncio.Queue[bytes]) -> None:
        while True:
            frame = await box.get()
            # A link that is down loses the frame; it stays in flight and is retransmitted.
            with contextlib.suppress(ChannelError):
                await self.inner.send(peer, frame)

    async def _timer_loop(self) -> None:
        while not self._closed:
            # Polled rather than woken per send: frames sent meanwhile are due no sooner than rto_initial.
            deadline = self.core.next_deadline()
            delay = self._tick if deadline is None else min(self._tick, max(0.005, deadline - self._now()))
            await asyncio.sleep(delay)
            self._dispatch(self.core.tick(self._now()))
