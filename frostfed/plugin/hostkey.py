"""The member's secrets, derived from the Lightning node: its ChillDKG host key and its member key.

Each is `makesecret` of a fixed label: lightningd derives it from the node's own secret, so it is the
same after every restart, differs per node, and is never written to disk by frostfed. Other members
learn a node's member key over the node's own links (`net.cln_members`), so a key is tied to its node
id by the Lightning connection, without a signed statement.
"""

from __future__ import annotations

from typing import Any, Protocol

HOSTSEED_LABEL = "frostfed/chilldkg-hostkey/v1"
MEMBERKEY_LABEL = "frostfed/member-key/v1"


class NodeRpc(Protocol):
    async def call(self, method: str, params: dict[str, Any] | list[Any] | None = None) -> Any: ...


class HostKeyError(Exception):
    """The node did not give a usable secret."""


async def derive_secret(rpc: NodeRpc, label: str) -> bytes:
    """32 secret bytes lightningd derives from its node secret and `label` (stable, per node)."""
    answer = await rpc.call("makesecret", {"string": label})
    try:
        seed = bytes.fromhex(answer["secret"])
    except (KeyError, TypeError, ValueError):
        raise HostKeyError("makesecret gave no hex secret") from None
    if len(seed) != 32:
        raise HostKeyError(f"makesecret gave {len(seed)} bytes, expected 32")
    return seed


async def derive_host_seed(rpc: NodeRpc) -> bytes:
    """The 32-byte ChillDKG host secret of this node (recomputed on demand, kept only in memory)."""
    return await derive_secret(rpc, HOSTSEED_LABEL)
