"""The fee rate a coordinator proposes for a payout: the chain source's estimate, clamped to the policy's
bounds, or a fixed floor when there is none.

This is only the proposal. Every signer checks the fee of what it is asked to sign against its own
bounds and its own fee budget (`chain_checks.ChainChecks`, `fee_budget.FeeBudget`), so a coordinator with a
wrong estimate gets refusals, never a payout above what the members allow. The result says where the
rate came from, so an operator sees that a regtest payout (estimatesmartfee has no data there) used
the floor and not an estimate.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from frostfed.bitcoin.chain import ChainError, ChainSource, FeeEstimate

FALLBACK_SAT_PER_VB = 2.0
"""What a payout pays when the chain source gives no estimate (within the policy's bounds)."""
DEFAULT_TARGET_BLOCKS = 6
"""Confirmation target asked of the estimator: a pool's payouts are not urgent within the hour."""


@dataclass(frozen=True)
class FeeChoice:
    sat_per_vb: float
    source: str  # "requested", "estimate" or "floor"
    detail: str  # what answered, or why the floor was used
    estimate: float | None = None  # the chain source's figure before clamping
    clamped: bool = False

    def to_json(self) -> dict[str, Any]:
        return {
            "feerate": round(self.sat_per_vb, 3),
            "feerate_source": self.source,
            "feerate_detail": self.detail,
            "feerate_estimate": None if self.estimate is None else round(self.estimate, 3),
            "feerate_clamped": self.clamped,
        }


def floor_rate(min_rate: float, max_rate: float) -> float:
    return max(min_rate, min(FALLBACK_SAT_PER_VB, max_rate))


def choose_feerate(
    chain: ChainSource,
    min_rate: float,
    max_rate: float,
    requested: float | None = None,
    target_blocks: int = DEFAULT_TARGET_BLOCKS,
) -> FeeChoice:
    """`requested` when given (the caller checks it against the bounds: the signers will), else the
    chain source's estimate for `target_blocks` clamped to [min_rate, max_rate], else the floor.
    A chain source that cannot answer gives the floor, with its error in `detail`."""
    if requested is not None:
        return FeeChoice(requested, "requested", "given with the command")
    try:
        est = chain.estimate_fee(target_blocks)
    except ChainError as e:
        est = FeeEstimate(None, "the chain source", str(e))
    if est.sat_per_vb is None or est.sat_per_vb <= 0:
        floor = floor_rate(min_rate, max_rate)
        return FeeChoice(floor, "floor", f"{est.source} gave no estimate ({est.reason}); the floor of {floor} sat/vB")
    rate = min(max(est.sat_per_vb, min_rate), max_rate)
    clamped = rate != est.sat_per_vb
    detail = est.source + (f", clamped to the policy's bounds [{min_rate}, {max_rate}] sat/vB" if clamped else "")
    return FeeChoice(rate, "estimate", detail, est.sat_per_vb, clamped)
