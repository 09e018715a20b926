"""The contract between the end-to-end member channel and whatever carries its frames.

A forwarder moves opaque bytes towards a member over some path: a direct link, other members that
relay them (standalone daemon), or Lightning nodes carrying BOLT 4 onion messages (plugin). It is
trusted for nothing: frames may be lost, duplicated, reordered, altered or injected on the way, and
the sender it reports is only a hint. Authentication, secrecy, replay and ordering are the end-to-end
layer's job (Noise KK between the two members' pinned identity keys), so every forwarder can be as
simple and as untrusted as the path it uses.
"""

from __future__ import annotations

import abc
from collections.abc import Callable

from frostfed.net.channel import PeerId

FrameReceiver = Callable[[PeerId | None, bytes], None]
"""Gets `(claimed_origin, frame)`; the claimed origin is unauthenticated, or None when unknown."""


class Forwarder(abc.ABC):
    """Best-effort, unauthenticated delivery of frames to members that are not direct peers."""

    max_frame: int = 1024
    """Largest frame one `forward` carries (the end-to-end layer's header and tag included)."""

    def __init__(self) -> None:
        self._frame_receiver: FrameReceiver | None = None

    def on_frame(self, receiver: FrameReceiver) -> None:
        """Register the callback for every frame that arrives addressed to this member."""
        self._frame_receiver = receiver

    def frame_arrived(self, claimed_origin: PeerId | None, frame: bytes) -> None:
        """Called by the implementation for each frame addressed to this member."""
        if self._frame_receiver is not None:
            self._frame_receiver(claimed_origin, frame)

    @abc.abstractmethod
    def hops(self, dest: PeerId) -> int | None:
        """How many intermediate nodes a frame to `dest` crosses now (0: direct), None: no path."""

    @abc.abstractmethod
    async def forward(self, dest: PeerId, frame: bytes) -> None:
        """Send `frame` towards `dest`; raise ChannelError when no path is known or it is too large."""

    @abc.abstractmethod
    async def close(self) -> None:
        """Stop background work (route upkeep, pacing queues)."""
