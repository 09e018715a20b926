"""The point-to-point channel contract that the reliable-delivery and echo-broadcast layers run on.

Two implementations plug in under the same layers: Noise over TCP (standalone daemon) and Core
Lightning custom messages over the node's own BOLT 8 links (plugin). A channel authenticates peers
and keeps messages secret, but promises no delivery: messages may be lost when links drop, and
the layers above retransmit.
"""

from __future__ import annotations

import abc
import logging
from collections.abc import Callable

PeerId = bytes
"""A member identity: a 33-byte compressed secp256k1 public key (in Core Lightning, the node id)."""

Receiver = Callable[[PeerId, bytes], None]
PeerEvent = Callable[[PeerId], None]


class ChannelError(Exception):
    """A send could not be handed to the link (no connection, peer unknown, payload too large)."""


class Channel(abc.ABC):
    """Authenticated, encrypted, best-effort datagrams between members."""

    max_payload: int = 65535
    """Largest payload one `send` carries; the reliable layer chunks anything larger."""

    lossless_while_connected: bool = False
    """True when a message handed to `send` arrives unless its link drops (a TCP stream). The reliable
    layer then resends on reconnection and keeps only a slow safety-net timer, instead of
    retransmitting on round-trip timeouts that a busy event loop would trip needlessly."""

    def __init__(self) -> None:
        self._receiver: Receiver | None = None
        self._connected: list[PeerEvent] = []
        self._disconnected: list[PeerEvent] = []

    def on_receive(self, receiver: Receiver) -> None:
        """Register the callback that gets `(peer_id, payload)` for every authenticated message."""
        self._receiver = receiver

    def deliver(self, peer: PeerId, payload: bytes) -> None:
        """Called by the implementation for each message received from an authenticated peer."""
        if self._receiver is not None:
            self._receiver(peer, payload)

    def on_peer_connected(self, callback: PeerEvent) -> None:
        """Register a callback run when a link to `peer` comes up (a good moment to retransmit)."""
        self._callbacks("_connected").append(callback)

    def on_peer_disconnected(self, callback: PeerEvent) -> None:
        self._callbacks("_disconnected").append(callback)

    def peer_connected(self, peer: PeerId) -> None:
        """Called by the implementation when a link to `peer` is established."""
        for cb in list(self._callbacks("_connected")):
            cb(peer)

    def peer_disconnected(self, peer: PeerId) -> None:
        """Called by the implementation when the link to `peer` is lost."""
        for cb in list(self._callbacks("_disconnected")):
            cb(peer)

    def _callbacks(self, name: str) -> list[PeerEvent]:
        # Created on first use too, for implementations whose __init__ predates these events.
        return self.__dict__.setdefault(name, [])

    def reject(self, peer: PeerId, reason: str) -> None:
        """The layer above got undecodable input from `peer`: drop the link if the channel can.

        Implementations that own their links (Noise over TCP) close the connection and log `reason`;
        the default only logs, as a channel that cannot drop a link just keeps running.
        """
        logging.getLogger("frostfed.net").warning("rejected input from %s: %s", peer.hex()[:16], reason)

    @abc.abstractmethod
    async def send(self, peer: PeerId, payload: bytes) -> None:
        """Hand `payload` to the link towards `peer`; raise ChannelError if that is impossible now."""

    @abc.abstractmethod
    async def close(self) -> None:
        """Stop all links and background tasks."""
