"""Several protocols over one reliable channel, each on its own numbered port.

The echo broadcast and the federation's point-to-point messages share one `ReliableChannel` per
member; each takes a port and sees a plain `Channel`.
"""

from __future__ import annotations

from .channel import Channel, ChannelError, PeerId
from .wire import WireError
from .wire_mux import decode_mux, encode_mux

ECHO_PORT = 1
"""The port `EchoBroadcast` uses by convention; the federation numbers its own from 16 up."""
ROUND_ECHO_PORT = 2
"""The port `RoundEchoBroadcast` uses by convention."""

MUX_OVERHEAD = 3


class Port(Channel):
    def __init__(self, mux: Mux, number: int) -> None:
        super().__init__()
        self.mux = mux
        self.number = number
        self.max_payload = mux.inner.max_payload - MUX_OVERHEAD

    async def send(self, peer: PeerId, payload: bytes) -> None:
        if len(payload) > self.max_payload:
            raise ChannelError(f"payload of {len(payload)} bytes exceeds {self.max_payload}")
        await self.mux.inner.send(peer, encode_mux(self.number, payload))

    def reject(self, peer: PeerId, reason: str) -> None:
        self.mux.inner.reject(peer, reason)

    async def close(self) -> None:
        self.mux.ports.pop(self.number, None)


class Mux:
    """Owns `inner`: `close()` closes it."""

    def __init__(self, inner: Channel) -> None:
        self.inner = inner
        self.ports: dict[int, Port] = {}
        inner.on_receive(self._on_message)
        inner.on_peer_connected(self._connected)
        inner.on_peer_disconnected(self._disconnected)

    def port(self, number: int) -> Port:
        if number in self.ports:
            raise ChannelError(f"port {number} is taken")
        if not 0 <= number <= 255:
            raise ChannelError(f"port {number} out of range")
        p = self.ports[number] = Port(self, number)
        return p

    def _on_message(self, peer: PeerId, data: bytes) -> None:
        try:
            number, body = decode_mux(data)
        except WireError as exc:
            self.inner.reject(peer, f"mux: {exc}")
            return
        port = self.ports.get(number)
        if port is not None:
            port.deliver(peer, body)

    def _connected(self, peer: PeerId) -> None:
        for p in list(self.ports.values()):
            p.peer_connected(peer)

    def _disconnected(self, peer: PeerId) -> None:
        for p in list(self.ports.values()):
            p.peer_disconnected(peer)

    async def close(self) -> None:
        await self.inner.close()
