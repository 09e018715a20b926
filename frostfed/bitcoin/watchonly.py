"""A bitcoind watch-only wallet of the federation's addresses, so operators see its coins with the
tools they already have (and bitcoind can build unsigned PSBTs with the Taproot derivation fields)."""

from __future__ import annotations

from typing import Any

from frostfed.bitcoin.chain import BitcoindRpc, ChainError
from frostfed.bitcoin.descriptor import with_checksum


class WatchOnlyError(ChainError):
    """bitcoind refused to create the wallet or import the descriptor."""


def create_watch_only_wallet(
    rpc: BitcoindRpc, name: str, descriptor: str, range_end: int = 1000, timestamp: int | str = 0
) -> BitcoindRpc:
    """Create descriptor wallet `name` without private keys, import `descriptor` over indexes
    0..`range_end`, rescanning from `timestamp` (0: the whole chain, "now": none). Returns an RPC
    client addressed to the wallet. Loads the wallet instead when it already exists."""
    desc = with_checksum(descriptor)
    loaded = rpc.call("listwallets")
    if name not in loaded:
        existing = {w["name"] for w in rpc.call("listwalletdir")["wallets"]}
        if name in existing:
            rpc.call("loadwallet", name)
        else:
            # createwallet name disable_private_keys blank passphrase avoid_reuse descriptors
            rpc.call("createwallet", name, True, True, "", False, True)
    wallet = rpc.for_wallet(name)
    request: dict[str, Any] = {
        "desc": desc,
        "timestamp": timestamp,
        "range": [0, range_end],
        "active": True,
        "internal": False,
    }
    (result,) = wallet.call("importdescriptors", [request])
    if not result.get("success"):
        error = result.get("error", {}).get("message", result)
        raise WatchOnlyError(f"bitcoind did not import {desc}: {error}")
    return wallet
