"""One member's whole transport, assembled: channel -> reliable delivery -> ports -> round echo broadcast.

The federation needs the same stack over Noise (standalone daemon) and over Core Lightning custom
messages (plugin); `links_over` builds it on any channel, `open_noise_links` on a new NoiseChannel.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from .channel import Channel, PeerId
from .mux import ROUND_ECHO_PORT, Mux, Port
from .reliable import ReliableChannel
from .round_echo import RoundEchoBroadcast
from .tcp import Address, NoiseChannel


@dataclass
class MemberLinks:
    channel: Channel
    reliable: ReliableChannel
    mux: Mux
    round_echo: RoundEchoBroadcast

    def port(self, number: int) -> Port:
        """A reliable, ordered channel of its own for one protocol (numbers 16 and up are free; the
        per-sender `echo.EchoBroadcast` runs on `mux.ECHO_PORT` where one is wanted)."""
        return self.mux.port(number)

    async def close(self) -> None:
        await self.mux.close()


def links_over(channel: Channel, private_key: bytes, **reliable_options) -> MemberLinks:
    """The stack on an existing channel (e.g. Core Lightning custom messages); takes ownership of it."""
    reliable = ReliableChannel(channel, **reliable_options)
    mux = Mux(reliable)
    return MemberLinks(
        channel,
        reliable,
        mux,
        RoundEchoBroadcast(mux.port(ROUND_ECHO_PORT), private_key),
    )


async def open_noise_links(
    private_key: bytes,
    members: Mapping[PeerId, Address | None],
    *,
    listen: Address | None = ("127.0.0.1", 0),
    **noise_options,
) -> MemberLinks:
    """Start a NoiseChannel (listening, dialing the members it should) and the stack above it."""
    noise = NoiseChannel(private_key, members, listen=listen, **noise_options)
    await noise.start()
    return links_over(noise, private_key)
