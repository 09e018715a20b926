"""A `ChainSource` over the Lightning node's own Bitcoin backend.

lightningd answers `getchaininfo`, `getutxout`, `getrawblockbyheight` and `sendrawtransaction` from the
bitcoind it is configured with, so the plugin needs no chain settings of its own. Those calls say
nothing about confirmations, coinbase maturity or fee estimates; for these the
source talks to the same bitcoind directly, with the `bitcoin-rpc*` / `bitcoin-datadir` settings that
`listconfigs` shows.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from bitcoin.core import CTransaction, b2lx

from ..lightning_rpc import LightningRpc, LightningRpcError
from .chain import (
    BitcoindChainSource,
    BitcoindRpc,
    ChainBlock,
    ChainError,
    ChainRpcError,
    ChainSource,
    ChainUnavailable,
    FeeEstimate,
    Utxo,
    parse_block,
)

DEFAULT_RPC_PORTS = {"bitcoin": 8332, "testnet": 18332, "testnet4": 48332, "signet": 38332, "regtest": 18443}
COOKIE_SUBDIRS = {
    "bitcoin": "",
    "testnet": "testnet3",
    "testnet4": "testnet4",
    "signet": "signet",
    "regtest": "regtest",
}
_AMOUNT = re.compile(r"^(\d+)(sat|msat)$")
_BCLI_ERROR = re.compile(r"error code: (-?\d+)\s*error message:\s*(.*)", re.S)


class LightningSocket:
    """lightningd's RPC for the chain source and the node wallet: blocking calls (any thread), with
    failures as `ChainError`s."""

    def __init__(self, socket_path: str | Path, *, timeout: float = 60.0) -> None:
        self.rpc = LightningRpc(socket_path, caller="frostfed-chain", timeout=timeout)

    def call(self, method: str, params: dict[str, Any] | None = None) -> Any:
        try:
            return self.rpc.call_blocking(method, params)
        except LightningRpcError as e:
            if e.code is None:
                reason = e.__cause__ if e.__cause__ is not None else e.message
                raise ChainUnavailable(f"lightningd RPC at {self.rpc.socket_path}: {reason}") from None
            raise ChainRpcError(method, int(e.code), e.message) from None


def bitcoind_from_configs(configs: dict[str, Any]) -> BitcoindRpc | None:
    """The node's bitcoind RPC settings from a `listconfigs` answer (None if there are none)."""

    def value(name: str) -> Any:
        entry = configs.get(name) or {}
        for key in ("value_str", "value_int"):
            if key in entry:
                return entry[key]
        return None

    network = value("network") or "bitcoin"
    host = value("bitcoin-rpcconnect") or "127.0.0.1"
    port = int(value("bitcoin-rpcport") or DEFAULT_RPC_PORTS.get(network, 8332))
    user, password = value("bitcoin-rpcuser"), value("bitcoin-rpcpassword")
    if user is not None and password is not None:
        return BitcoindRpc(host, port, user=str(user), password=str(password))
    datadir = value("bitcoin-datadir")
    if datadir is None:
        datadir = str(Path.home() / ".bitcoin")
    cookie = Path(datadir) / COOKIE_SUBDIRS.get(network, network) / ".cookie"
    if not cookie.exists():
        return None
    return BitcoindRpc(host, port, cookie_file=cookie)


class ClnChainSource(ChainSource):
    """Chain data through lightningd; confirmations and fees through the node's bitcoind."""

    def __init__(self, lightning: LightningSocket, bitcoind: BitcoindRpc | None = None) -> None:
        self.lightning = lightning
        self.bitcoind = BitcoindChainSource(bitcoind) if bitcoind is not None else None

    @classmethod
    def from_node(cls, socket_path: str | Path) -> ClnChainSource:
        """Use the node at `socket_path`, and its bitcoind if `listconfigs` says how to reach it."""
        lightning = LightningSocket(socket_path)
        configs = lightning.call("listconfigs")["configs"]
        return cls(lightning, bitcoind_from_configs(configs))

    def _need_bitcoind(self, what: str) -> BitcoindChainSource:
        if self.bitcoind is None:
            raise ChainError(
                f"{what} needs bitcoind's RPC: lightningd's listconfigs shows no usable bitcoin-rpc* settings"
            )
        return self.bitcoind

    def get_utxo(self, txid: str, vout: int) -> Utxo | None:
        if len(txid) != 64 or not all(c in "0123456789abcdefABCDEF" for c in txid) or vout < 0:
            raise ValueError(f"not an outpoint: {txid}:{vout}")
        seen = self.lightning.call("getutxout", {"txid": txid, "vout": vout})
        if not isinstance(seen, dict) or seen.get("amount") is None:
            return None
        amount = _AMOUNT.match(str(seen["amount"]))
        if amount is None or not isinstance(seen.get("script"), str):
            raise ChainRpcError("getutxout", 0, f"unexpected answer {seen!r}")
        utxo = self._need_bitcoind("the confirmations of an output").get_utxo(txid, vout)
        if utxo is None:  # spent between the two calls
            return None
        sats = int(amount.group(1)) // (1000 if amount.group(2) == "msat" else 1)
        if sats != utxo.amount_sats or bytes.fromhex(seen["script"]) != utxo.script_pubkey:
            raise ChainError(f"lightningd and bitcoind disagree about {txid}:{vout}")
        return utxo

    def tip_height(self) -> int:
        info = self.lightning.call("getchaininfo", {"last_height": 0})
        return int(info["blockcount"])

    def block_transactions(self, height: int) -> list[CTransaction]:
        return self.block(height).txs

    def block(self, height: int) -> ChainBlock:
        got = self.lightning.call("getrawblockbyheight", {"height": height})
        if not isinstance(got, dict) or got.get("block") is None:
            raise ChainRpcError("getrawblockbyheight", -8, f"no block at height {height}")
        try:
            block = parse_block(height, bytes.fromhex(got["block"]))
        except Exception as e:  # a malformed block from the backend is an error, never a crash
            raise ChainRpcError("getrawblockbyheight", 0, f"block {height} does not parse: {e}") from None
        if got.get("blockhash") not in (None, block.hash):
            raise ChainError(f"lightningd's block {height} does not hash to the hash it gives")
        return block

    def block_hash(self, height: int) -> str:
        if self.bitcoind is not None:  # a hash, not a whole block
            return self.bitcoind.block_hash(height)
        return self.block(height).hash

    def broadcast(self, tx: CTransaction) -> str:
        got = self.lightning.call("sendrawtransaction", {"tx": tx.serialize().hex(), "allowhighfees": False})
        if not got.get("success"):
            errmsg = str(got.get("errmsg", ""))
            m = _BCLI_ERROR.search(errmsg)
            code, message = (int(m.group(1)), m.group(2).strip()) if m else (0, errmsg.strip())
            raise ChainRpcError("sendrawtransaction", code, message)
        return b2lx(tx.GetTxid())

    def fee_rate(self, target_blocks: int = 6) -> float | None:
        return self._need_bitcoind("a fee estimate").fee_rate(target_blocks)

    def estimate_fee(self, target_blocks: int = 6) -> FeeEstimate:
        """lightningd's own `feerates` (what the node itself would pay), so the plugin needs no bitcoind
        settings for it: the estimate for the largest block count within the target (else the nearest)."""
        got = self.lightning.call("feerates", {"style": "perkb"})
        return feerates_estimate(got, target_blocks)


def feerates_estimate(got: Any, target_blocks: int) -> FeeEstimate:
    """A `feerates perkb` answer as a FeeEstimate in sat/vB (perkb / 1000)."""
    source = f"lightningd feerates ({target_blocks} blocks)"
    perkb = got.get("perkb") if isinstance(got, dict) else None
    estimates = perkb.get("estimates") if isinstance(perkb, dict) else None
    usable = [
        (int(e["blockcount"]), int(e["feerate"]))
        for e in estimates or []
        if isinstance(e, dict) and isinstance(e.get("blockcount"), int) and isinstance(e.get("feerate"), int)
    ]
    if not usable:
        warning = got.get("warning_missing_feerates") if isinstance(got, dict) else None
        return FeeEstimate(None, source, str(warning or "lightningd has no fee estimates"))
    within = [u for u in usable if u[0] <= target_blocks]
    blocks, rate = max(within) if within else min(usable)
    return FeeEstimate(rate / 1000, f"lightningd feerates ({blocks} blocks)")
