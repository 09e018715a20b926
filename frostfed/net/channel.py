"""The point-to-point channel contract that the reliable-delivery and echo-broadcast layers run on.

Two implementations plug in under the same layers: Noise over TCP (standalone daemon) and Core
Lightning custom messages over the node's own BOLT 8 links (plugin). A channel authenticates peers
and keeps messages secret, but promises no delivery: messages may be lost when links drop, and
the layers above retransmit.
"""

from __future__ import annotations

import abc
from collections.abc import Callable

PeerId = bytes
"""A member identity: a 33-byte compressed secp256k1 public key (in Core Lightning, the node id)."""

Receiver = Callable[[PeerId, bytes], None]


class ChannelError(Exception):
    """A send could not be handed to the link (no connection, peer unknown, payload too large)."""


class Channel(abc.ABC):
    """Authenticated, encrypted, best-effort datagrams between members."""

    max_payload: int = 65535
    """Largest payload one `send` carries; the reliable layer chunks anything larger."""

    def __init__(self) -> None:
        self._receiver: Receiver | None = None

    def on_receive(self, receiver: Receiver) -> None:
        """Register the callback that gets `(peer_id, payload)` for every authenticated message."""
        self._receiver = receiver

    def deliver(self, peer: PeerId, payload: bytes) -> None:
        """Called by the implementation for each message received from an authenticated peer."""
        if self._receiver is not None:
            self._receiver(peer, payload)

    @abc.abstractmethod
    async def send(self, peer: PeerId, payload: bytes) -> None:
        """Hand `payload` to the link towards `peer`; raise ChannelError if that is impossible now."""

    @abc.abstractmethod
    async def close(self) -> None:
        """Stop all links and background tasks."""
