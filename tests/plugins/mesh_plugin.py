#!/usr/bin/env python3
"""frostfed's plugin with a small test service: members exchange text over the reliable layer.

`mesh-send peer text` queues a message on the ReliableChannel running over ClnChannel;
`mesh-inbox` lists what arrived. `frost-status` and `frost-requests` reach the test service through
the real command table.
"""

import os
import threading

from frostfed.federation.commands import NOT_FOUND, RpcError
from frostfed.net.cln_members import MemberKeyChannel
from frostfed.net.reliable import ReliableChannel
from frostfed.plugin.cln import FrostfedPlugin
from frostfed.plugin.hostkey import MEMBERKEY_LABEL, derive_secret

inbox: list[dict] = []
lock = threading.Lock()
state: dict = {}


class MeshService:
    def __init__(self, ctx, channel):
        self.ctx = ctx
        self.channel = channel

    async def status(self):
        return {
            "node_id": self.ctx.node_id.hex(),
            "connected": sorted(p.hex() for p in self.ctx.members if self.ctx.channel.connected(p)),
            "received": len(inbox),
            "data_dir": str(self.ctx.data_dir),
            "threshold": self.ctx.options["frost-threshold"],
        }

    async def requests(self, request_id):
        if request_id != "known":
            raise RpcError(NOT_FOUND, f"no request {request_id}")
        return {"id": request_id}

    async def epochs(self):
        return {"raw": b"not json"}  # a service bug the plugin must still answer

    async def close(self):
        await self.channel.close()


async def factory(ctx):
    """With MESH_MEMBER_KEYS set, members are addressed by member keys (MemberKeyChannel)."""
    inner = ctx.channel
    state["member_id"] = ctx.node_id.hex()
    if os.environ.get("MESH_MEMBER_KEYS"):
        inner = MemberKeyChannel(ctx.channel, await derive_secret(ctx.rpc, MEMBERKEY_LABEL), hello_interval=0.5)
        state["member_id"] = inner.member_id.hex()
    channel = ReliableChannel(inner, rto_initial=0.1, rto_max=0.5)

    def receive(peer, data):
        with lock:
            inbox.append({"peer": peer.hex(), "text": data.decode()})

    channel.on_receive(receive)
    state["channel"] = channel
    return MeshService(ctx, channel)


frost = FrostfedPlugin(factory)
plugin = frost.plugin


@plugin.async_method("mesh-send")
def mesh_send(peer, text, request, **kwargs):
    """Queue text for a member over the reliable layer."""

    async def go():
        try:
            await state["channel"].send(bytes.fromhex(peer), text.encode())
            request.set_result({"queued": True})
        except Exception as e:
            request.set_exception(e)

    frost.loop.submit(go())


@plugin.method("mesh-identity")
def mesh_identity(**kwargs):
    """The id other members address us by."""
    return {"member_id": state.get("member_id")}


@plugin.method("mesh-count")
def mesh_count(**kwargs):
    """How many messages arrived (cheap to poll)."""
    with lock:
        return {"count": len(inbox)}


@plugin.method("mesh-inbox")
def mesh_inbox(**kwargs):
    """Messages received so far."""
    with lock:
        return {"messages": list(inbox)}


frost.run()
