"""Members addressed by a key the plugin holds, over links addressed by Lightning node ids.

Inside lightningd the plugin never sees the node's private key, yet the federation signs as its
member identity (round echo statements are BIP340 signatures by the key behind the member id).
So a member's identity in the plugin is a *member key* derived from `makesecret`, and this channel
maps it to the node id that lightningd authenticates on the link.

On every link-up each side sends a hello: its member key and a BIP340 signature by that key over
(node id, member key). The link proves the node id, the signature proves possession of the member
key, so the receiver binds the two. A hello may be lost like any message: a hello asks for an answer
until the pairing is known, and data from an unpaired node prompts one. Once a member key is bound
to a node, a different node claiming it is refused.

Only nodes this member expects hear from it: the configured members (and those added by a membership
change) and nodes paired in an earlier run. Anything from another node is dropped before any work is
done for it: no signature checked or made, no answer, no record; the drop is logged, rate-limited.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Callable

from coincurve import PrivateKey, PublicKeyXOnly

from ..frost.secp import tagged_hash
from .channel import Channel, ChannelError, PeerId
from .cln_channel import ClnChannel

HELLO_TAG = "frostfed/cln/member-key"
HELLO, HELLO_ASK, DATA = 0x00, 0x01, 0x02
HELLO_LEN = 1 + 33 + 64

log = logging.getLogger("frostfed.net.cln")


def hello_digest(node_id: PeerId, member_id: PeerId) -> bytes:
    return tagged_hash(HELLO_TAG, node_id + member_id)


class MemberKeyChannel(Channel):
    """A `Channel` whose peer ids are member keys; below it a `ClnChannel` addressed by node ids."""

    def __init__(self, inner: ClnChannel, member_secret: bytes, *, hello_interval: float = 2.0) -> None:
        super().__init__()
        self.inner = inner
        self.max_payload = inner.max_payload - 1
        self._secret = member_secret
        self.member_id: PeerId = PrivateKey(member_secret).public_key.format()
        self.hello_interval = hello_interval
        self._by_member: dict[PeerId, PeerId] = {}
        self._by_node: dict[PeerId, PeerId] = {}
        self._paired = asyncio.Event()
        self._tasks: set[asyncio.Task[None]] = set()
        self._timer: asyncio.Task[None] | None = None
        self._on_paired: list[Callable[[PeerId, PeerId], None]] = []
        inner.on_receive(self._on_frame)
        inner.on_peer_connected(self._on_link_up)
        inner.on_peer_disconnected(self._on_link_down)

    # ---- the Channel contract ----------------------------------------------------------------

    async def send(self, peer: PeerId, payload: bytes) -> None:
        node = self._by_member.get(peer)
        if node is None:
            raise ChannelError(f"member key {peer.hex()[:16]} is not paired with a node yet")
        if len(payload) > self.max_payload:
            raise ChannelError(f"payload of {len(payload)} bytes exceeds {self.max_payload}")
        await self.inner.send(node, bytes([DATA]) + payload)

    async def close(self) -> None:
        tasks = [*self._tasks, *([self._timer] if self._timer else [])]
        for t in tasks:
            t.cancel()
        for t in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await t
        await self.inner.close()

    def connected(self, member: PeerId) -> bool:
        node = self._by_member.get(member)
        return node is not None and self.inner.connected(node)

    def node_of(self, member: PeerId) -> PeerId | None:
        return self._by_member.get(member)

    def member_of(self, node: PeerId) -> PeerId | None:
        return self._by_node.get(node)

    def on_paired(self, callback: Callable[[PeerId, PeerId], None]) -> None:
        """Run `callback(node, member)` for each pairing learnt from a hello (to keep a record)."""
        self._on_paired.append(callback)

    def remember(self, node: PeerId, member: PeerId) -> None:
        """Pair `node` with `member` from a trusted record (a pairing seen in an earlier run)."""
        self._by_node[node] = member
        self._by_member[member] = node
        self._paired.set()

    async def wait_for_members(self, nodes: list[PeerId], timeout: float | None) -> dict[PeerId, PeerId]:
        """Wait until every node in `nodes` has told us its member key; returns node id -> member key."""
        self._ensure_timer()
        async with asyncio.timeout(timeout):
            while not all(n in self._by_node for n in nodes if n != self.inner.node_id):
                self._paired.clear()
                await self._paired.wait()
        found = {n: self._by_node[n] for n in nodes if n in self._by_node}
        found[self.inner.node_id] = self.member_id
        return found

    # ---- hellos --------------------------------------------------------------------------------

    def hello(self, ask: bool) -> bytes:
        """Our hello, signed over *our* node id (which the link proves to the receiver)."""
        sig = PrivateKey(self._secret).sign_schnorr(hello_digest(self.inner.node_id, self.member_id), os.urandom(32))
        return bytes([HELLO_ASK if ask else HELLO]) + self.member_id + sig

    def _send_hello(self, node: PeerId, ask: bool) -> None:
        async def go() -> None:
            with contextlib.suppress(ChannelError):
                await self.inner.send(node, self.hello(ask))

        task = asyncio.get_running_loop().create_task(go())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _ensure_timer(self) -> None:
        if self._timer is None:
            self._timer = asyncio.get_running_loop().create_task(self._hello_loop())

    async def _hello_loop(self) -> None:
        """Ask again, now and then, every linked node we have no pairing for (hellos get lost)."""
        while True:
            await asyncio.sleep(self.hello_interval)
            for node in list(self.inner.members) + list(self._by_node):
                if self.inner.connected(node) and node not in self._by_node:
                    self._send_hello(node, ask=True)

    def expects(self, node: PeerId) -> bool:
        """A node whose frames this member reads: a member (configured or added) or one paired before."""
        return node in self.inner.members or node in self._by_node

    def _on_link_up(self, node: PeerId) -> None:
        if not self.expects(node):
            return  # any node may connect to ours: a hello is only for members
        self._ensure_timer()
        self._send_hello(node, ask=True)
        member = self._by_node.get(node)
        if member is not None:
            self.peer_connected(member)

    def _on_link_down(self, node: PeerId) -> None:
        member = self._by_node.get(node)
        if member is not None:
            self.peer_disconnected(member)

    def _on_hello(self, node: PeerId, frame: bytes) -> None:
        if len(frame) != HELLO_LEN:
            self.inner.reject(node, "malformed member-key hello")
            return
        member, sig = frame[1:34], frame[34:]
        try:
            ok = PublicKeyXOnly(member[1:]).verify(sig, hello_digest(node, member)) and member[0] in (2, 3)
        except ValueError:
            ok = False
        if not ok:
            self.inner.reject(node, "member-key hello with a bad signature")
            return
        holder = self._by_member.get(member)
        if holder is not None and holder != node:
            log.warning("node %s claims the member key of node %s: refused", node.hex()[:16], holder.hex()[:16])
            return
        if frame[0] == HELLO_ASK:
            self._send_hello(node, ask=False)
        if self._by_node.get(node) == member:
            return
        old = self._by_node.get(node)
        if old is not None:  # the node restarted with another member key
            self._by_member.pop(old, None)
        self._by_node[node] = member
        self._by_member[member] = node
        self._paired.set()
        for cb in list(self._on_paired):
            try:
                cb(node, member)
            except Exception:
                log.exception("pairing callback failed")
        if self.inner.connected(node):
            self.peer_connected(member)

    def _on_frame(self, node: PeerId, frame: bytes) -> None:
        if not self.expects(node):
            self.inner.drops.drop("frames from non-members", node)
            return
        if not frame:
            self.inner.drops.drop("empty frames", node)
            return
        if frame[0] in (HELLO, HELLO_ASK):
            self._on_hello(node, frame)
            return
        if frame[0] != DATA:
            self.inner.drops.drop("frames of an unknown kind", node)
            return
        member = self._by_node.get(node)
        if member is None:
            self._send_hello(node, ask=True)  # they know us, we lost their hello: ask again
            return
        self.deliver(member, frame[1:])
