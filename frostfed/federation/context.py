"""What the protocol parts of a member (signing, the DKG driver, membership) may see and do.

They depend on this narrow context, not on `node.Member`: the member's identity and keys, its
durable store, its chain source and view, its settings, a way to send a typed message, to start a
background task, and to ask who is online. `Member` builds the context and wires the parts
together; a unit test builds one with a fake chain and a scripted network, and runs a part alone.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

from frostfed.bitcoin.chain import ChainSource
from frostfed.bitcoin.ledger import Ledger
from frostfed.federation.chain_view import ChainView
from frostfed.federation.config import PolicySettings
from frostfed.federation.epoch_keys import EpochKeys
from frostfed.federation.messages import Typed
from frostfed.federation.sealing import Sealer
from frostfed.federation.store import Store
from frostfed.net.channel import PeerId

SendRaw = Callable[[PeerId, str, dict[str, Any]], Awaitable[None]]
Spawn = Callable[[Coroutine[Any, Any, Any]], "asyncio.Task[Any]"]


@dataclass(frozen=True)
class Timing:
    """How long a member waits for others: heartbeats, liveness, a signing request, a DKG attempt."""

    heartbeat_seconds: float = 2.0
    offline_after_seconds: float = 10.0
    request_timeout: float = 60.0
    dkg_timeout: float = 120.0
    roast_grace: float = 0.25  # ROAST waits this long before a second session while the first may still finish


@dataclass
class MemberContext:
    """One member's view of itself, shared by its protocol parts.

    The epoch fields (`members`, `threshold`, `keys`, `secshare`) change when an epoch becomes active;
    only the member (the composition root) sets them."""

    me: PeerId
    host_seckey: bytes  # ChillDKG host key: DKG and recovery only
    sealer: Sealer
    store: Store
    chain: ChainSource | None
    chain_view: ChainView
    ledger: Ledger | None
    network: str
    policy: PolicySettings
    timing: Timing
    send_raw: SendRaw  # never raises: a peer that cannot be reached simply misses the message
    spawn: Spawn  # a task the member cancels when it stops; its failure is logged
    online: Callable[[PeerId], bool]
    members: list[PeerId] = field(default_factory=list)
    threshold: int = 0
    keys: EpochKeys | None = None
    secshare: bytes | None = None

    async def send(self, peer: PeerId, msg: Typed) -> None:
        await self.send_raw(peer, msg.KIND, msg.body())

    async def send_all(self, msg: Typed) -> None:
        """To every member of the epoch, this one included (it handles its own copy like any other)."""
        await asyncio.gather(*(self.send(m, msg) for m in self.members))

    async def send_all_others(self, msg: Typed) -> None:
        await asyncio.gather(*(self.send(m, msg) for m in self.members if m != self.me))

    def send_later(self, peer: PeerId, msg: Typed) -> None:
        """Send from synchronous code (a handler): the message leaves once the loop runs."""
        self.spawn(self.send(peer, msg))
