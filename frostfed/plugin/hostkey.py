"""The member's ChillDKG host key, derived from the Lightning node and bound to its node id.

The host secret key is `makesecret` of a fixed label: lightningd derives it from the node's own
secret, so it is the same after every restart, differs per node, and is never written to disk by
frostfed. Other members learn the host public key together with a statement signed by the node key
(`signmessage`), and accept it only if `checkmessage` with the claimed node id verifies.
"""

from __future__ import annotations

from typing import Any, Protocol

HOSTSEED_LABEL = "frostfed/chilldkg-hostkey/v1"
MEMBERKEY_LABEL = "frostfed/member-key/v1"
ROLES = {"host": "ChillDKG host key", "member": "member key"}


class NodeRpc(Protocol):
    async def call(self, method: str, params: dict[str, Any] | list[Any] | None = None) -> Any: ...


class HostKeyError(Exception):
    """The node did not give a usable secret, or a binding could not be checked."""


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


def binding_statement(node_id: bytes, pubkey: bytes, role: str = "host") -> str:
    """The text a node signs to say "this is my <role> key": both keys in full, nothing else."""
    if len(node_id) != 33 or len(pubkey) != 33:
        raise ValueError("node id and public key must be 33-byte compressed keys")
    if role not in ROLES:
        raise ValueError(f"unknown key role {role!r}")
    return f"frostfed: the {ROLES[role]} of node {node_id.hex()} is {pubkey.hex()}"


async def sign_binding(rpc: NodeRpc, node_id: bytes, pubkey: bytes, role: str = "host") -> str:
    """The zbase32 signature of our binding statement, made by lightningd with the node key."""
    answer = await rpc.call("signmessage", {"message": binding_statement(node_id, pubkey, role)})
    zbase = answer.get("zbase") if isinstance(answer, dict) else None
    if not isinstance(zbase, str):
        raise HostKeyError("signmessage gave no zbase signature")
    return zbase


async def check_binding(rpc: NodeRpc, node_id: bytes, pubkey: bytes, zbase: str, role: str = "host") -> bool:
    """Whether `zbase` is `node_id`'s signature binding `pubkey` in `role` (checked by our lightningd).

    `pubkey` is always passed: without it lightningd only knows keys of nodes with public channels
    and fails with "pubkey not found in the graph" for every other member.
    """
    if not isinstance(zbase, str) or not zbase:
        return False
    params = {"message": binding_statement(node_id, pubkey, role), "zbase": zbase, "pubkey": node_id.hex()}
    try:
        answer = await rpc.call("checkmessage", params)
    except Exception as e:
        if getattr(e, "code", None) == -32602:  # not a zbase32 signature at all
            return False
        raise HostKeyError(f"checkmessage failed: {e}") from e
    return bool(answer.get("verified")) and answer.get("pubkey") == node_id.hex()
