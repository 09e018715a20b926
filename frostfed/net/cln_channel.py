"""Member messages as Core Lightning custom messages over the node's own BOLT 8 links.

Sending is `sendcustommsg` with one message type, receiving is the `custommsg` hook. The type is odd
(a peer that does not know it ignores it instead of hanging up) and above 32768 (the range BOLT 1
leaves for custom use). lightningd hands the hook other types too (0x0007 on every connect): they
are ignored. The plugin's stdin loop is a different thread from the asyncio loop the channel runs
on, so everything coming from lightningd enters through `call_soon_threadsafe`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Mapping
from typing import Any, Protocol

from .addresses import ValidationError, format_host_port, peer_address
from .channel import Channel, ChannelError, PeerId

FROSTFED_MSGTYPE = 0xF055
"""The custom message type of every frostfed message (61525: odd, in the custom range >= 32768)."""

MAX_MESSAGE = 65535
"""BOLT 8 limit for one message, including its 2-byte type."""

log = logging.getLogger("frostfed.net.cln")


class DropLog:
    """Logs dropped traffic without letting a flood of it flood the log: the first drop at once, then at
    most one summary per `interval` seconds (counts per reason)."""

    def __init__(self, logger: logging.Logger, interval: float = 60.0) -> None:
        self.logger = logger
        self.interval = interval
        self._counts: dict[str, int] = {}
        self._last = -float("inf")

    def drop(self, reason: str, peer: bytes | str | None = None) -> None:
        self._counts[reason] = self._counts.get(reason, 0) + 1
        now = time.monotonic()
        if now - self._last < self.interval:
            return
        who = peer.hex()[:16] if isinstance(peer, bytes) else str(peer)[:16] if peer else "?"
        summary = ", ".join(f"{n} {r}" for r, n in sorted(self._counts.items()))
        self.logger.info("dropped traffic (latest from %s): %s", who, summary)
        self._counts.clear()
        self._last = now


class NodeRpc(Protocol):
    async def call(self, method: str, params: dict[str, Any] | list[Any] | None = None) -> Any: ...


def parse_member(text: str) -> tuple[PeerId, str | None]:
    """`<node id>` or `<node id>@host:port` into the id and its address."""
    try:
        addr = peer_address(text, f"member {text!r}", need_host=False)
    except ValidationError as e:
        raise ValueError(str(e)) from None
    if addr.peer is None:
        raise ValueError(f"member {text!r}: a member is named by its node id, as <node id>@<host>:<port>")
    return addr.peer, format_host_port(addr.host, addr.port) if addr.port else None


class ClnChannel(Channel):
    """A `Channel` over lightningd: `send` is `sendcustommsg`, `handle_custommsg` is fed by the hook."""

    max_payload = MAX_MESSAGE - 2

    def __init__(
        self,
        rpc: NodeRpc,
        node_id: PeerId,
        members: Mapping[PeerId, str | None] | None = None,
        *,
        reconnect_interval: float = 10.0,
    ) -> None:
        super().__init__()
        self.rpc = rpc
        self.node_id = node_id
        self.members: dict[PeerId, str | None] = {p: a for p, a in (members or {}).items() if p != node_id}
        self.reconnect_interval = reconnect_interval
        self._links: set[PeerId] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._reconnector: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self._closed = False
        self.drops = DropLog(log)
        self._failing: set[PeerId] = set()

    # ---- lifecycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        """Bind to the running loop, learn who is connected, and keep the member links up."""
        self._loop = asyncio.get_running_loop()
        self._wake = asyncio.Event()
        with contextlib.suppress(Exception):
            peers = await self.rpc.call("listpeers")
            for p in peers.get("peers", []):
                if p.get("connected"):
                    self._mark_connected(bytes.fromhex(p["id"]))
        self._reconnector = self._loop.create_task(self._reconnect_loop())

    async def close(self) -> None:
        self._closed = True
        if self._reconnector is not None:
            self._reconnector.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reconnector
            self._reconnector = None

    def set_members(self, members: Mapping[PeerId, str | None]) -> None:
        """Replace the members to keep connected (called on the channel's loop)."""
        self.members = {p: a for p, a in members.items() if p != self.node_id}
        self._wake.set()

    def connected(self, peer: PeerId) -> bool:
        return peer in self._links

    # ---- out -----------------------------------------------------------------------------------

    async def send(self, peer: PeerId, payload: bytes) -> None:
        if len(payload) > self.max_payload:
            raise ChannelError(f"payload of {len(payload)} bytes exceeds {self.max_payload}")
        msg = FROSTFED_MSGTYPE.to_bytes(2, "big") + payload
        try:
            await self.rpc.call("sendcustommsg", {"node_id": peer.hex(), "msg": msg.hex()})
        except Exception as e:  # lightningd's refusal or an unreachable RPC socket alike
            if peer in self._links and ("No such peer" in str(e) or "not connected" in str(e)):
                self._mark_disconnected(peer)
            self._wake.set()
            raise ChannelError(f"sendcustommsg to {peer.hex()[:16]}: {e}") from e

    # ---- in (any thread) -------------------------------------------------------------------------

    def handle_custommsg(self, peer_id: Any, payload: Any) -> None:
        """Feed one `custommsg` hook call; other message types and malformed input are ignored."""
        try:
            raw = bytes.fromhex(payload)
            peer = bytes.fromhex(peer_id)
        except (TypeError, ValueError):
            self.drops.drop("undecodable custommsg", peer_id if isinstance(peer_id, str) else None)
            return
        if len(raw) < 2 or int.from_bytes(raw[:2], "big") != FROSTFED_MSGTYPE:
            return  # another message type: someone else's business (0x0007 on every connect)
        if len(peer) != 33:
            self.drops.drop("custommsg with a malformed peer id")
            return
        self._threadsafe(self._on_message, peer, raw[2:])

    def handle_connect(self, peer_id: Any) -> None:
        """Feed a `connect` notification."""
        with contextlib.suppress(TypeError, ValueError):
            self._threadsafe(self._mark_connected, bytes.fromhex(peer_id))

    def handle_disconnect(self, peer_id: Any) -> None:
        """Feed a `disconnect` notification: the link is gone, reconnect if it is a member's."""
        with contextlib.suppress(TypeError, ValueError):
            self._threadsafe(self._mark_disconnected, bytes.fromhex(peer_id))

    def _threadsafe(self, fn: Any, *args: Any) -> None:
        loop = self._loop
        if loop is None or loop.is_closed() or self._closed:
            return  # not started: the message is lost, which a channel may do
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(fn, *args)

    def _on_message(self, peer: PeerId, data: bytes) -> None:
        if peer not in self._links:
            self._mark_connected(peer)  # a message proves the link, even if the notification is late
        try:
            self.deliver(peer, data)
        except Exception:
            log.exception("receiver failed on a message from %s", peer.hex()[:16])

    def _mark_connected(self, peer: PeerId) -> None:
        if peer not in self._links:
            self._links.add(peer)
            self.peer_connected(peer)

    def _mark_disconnected(self, peer: PeerId) -> None:
        if peer in self._links:
            self._links.discard(peer)
            self.peer_disconnected(peer)
        if peer in self.members:
            self._wake.set()

    # ---- keeping member links up -------------------------------------------------------------

    async def _reconnect_loop(self) -> None:
        while not self._closed:
            for peer, addr in list(self.members.items()):
                if peer in self._links or addr is None:
                    continue
                try:
                    await self.rpc.call("connect", {"id": f"{peer.hex()}@{addr}"})
                except Exception as e:  # said once at info, then at debug: a member may be down for days
                    level = logging.DEBUG if peer in self._failing else logging.INFO
                    self._failing.add(peer)
                    log.log(level, "connect to member %s at %s failed: %s", peer.hex()[:16], addr, e)
                    continue
                if peer in self._failing:
                    self._failing.discard(peer)
                    log.info("connected to member %s at %s again", peer.hex()[:16], addr)
                self._mark_connected(peer)
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.reconnect_interval):
                    await self._wake.wait()
