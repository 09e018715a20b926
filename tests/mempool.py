"""What bitcoind's mempool says of a signed transaction (`testmempoolaccept`): the tests' check that a
transaction the federation signed is valid by the network's own rules, before it is broadcast."""

from __future__ import annotations

from dataclasses import dataclass

from bitcoin.core import CTransaction

from frostfed.bitcoin.chain import btc_to_sats
from frostfed.bitcoin.regtest import RegtestBitcoind


@dataclass(frozen=True)
class MempoolVerdict:
    allowed: bool
    reason: str | None  # bitcoind's reject reason when not allowed
    txid: str | None = None
    vsize: int | None = None
    fee_sats: int | None = None


def mempool_verdict(node: RegtestBitcoind, tx: CTransaction) -> MempoolVerdict:
    (result,) = node.rpc("testmempoolaccept", [tx.serialize().hex()])
    fees = result.get("fees") or {}
    return MempoolVerdict(
        allowed=bool(result.get("allowed")),
        reason=result.get("reject-reason"),
        txid=result.get("txid"),
        vsize=result.get("vsize"),
        fee_sats=btc_to_sats(fees["base"]) if "base" in fees else None,
    )
