"""The proposer's transition transaction: every spendable coin of the old epoch, its anchor first among
them, to the new key (with the joiner's input on a join), then signed by the old epoch with ROAST."""

from __future__ import annotations

import secrets
from typing import TYPE_CHECKING, Any

from frostfed.federation.coins import find_coins
from frostfed.federation.dkg_run import chain_code_of
from frostfed.federation.epoch_keys import EpochKeys
from frostfed.federation.messages import Prevout
from frostfed.federation.roast_signing import SigningError
from frostfed.federation.signing_request import SigningRequest
from frostfed.federation.transition import (
    TRANSITION_PATH,
    BondOffer,
    Proposal,
    ProposalRefused,
    TransitionPlan,
    build_transition_tx,
)

if TYPE_CHECKING:
    from frostfed.federation.context import MemberContext
    from frostfed.federation.membership.host import RequestSignatures


class TransitionFailed(Exception):
    """The transition could not be built or signed; the message says why."""


def build(
    ctx: MemberContext, p: Proposal, group_key: bytes, recovery: bytes, offer: BondOffer | None
) -> tuple[TransitionPlan, list[Prevout]]:
    """The plan, and the federation's inputs as the joiner checks them. Runs in a worker thread."""
    keys = ctx.keys
    if keys is None or ctx.chain is None:
        raise TransitionFailed("this member has no active epoch or no chain source")
    new_keys = EpochKeys(p.epoch, p.members, p.threshold, group_key, chain_code_of(recovery), [], keys.network)
    coins = find_coins(ctx.chain_view, ctx.chain, keys, ctx.policy.min_confirmations)
    anchor = ctx.chain_view.anchor(keys.epoch)  # every member refuses a transition without it
    if coins and anchor.outpoint not in [(c.utxo.txid, c.utxo.vout) for c in coins]:
        where = f"{anchor.outpoint[0]}:{anchor.outpoint[1]}" if anchor.outpoint else "none yet"
        raise TransitionFailed(f"the anchor coin ({where}) is not spendable yet; a transition spends it")
    rate = max(ctx.policy.min_feerate, min(2.0, ctx.policy.max_feerate))
    try:
        plan = build_transition_tx([(c.utxo, c.path) for c in coins], new_keys.script(TRANSITION_PATH), rate, p, offer)
    except ProposalRefused as e:
        raise TransitionFailed(str(e)) from None
    prevouts = [Prevout(c.utxo.txid, c.utxo.vout, c.utxo.script_pubkey, c.utxo.amount_sats) for c in coins]
    return plan, prevouts


async def sign(
    ctx: MemberContext,
    request_signatures: RequestSignatures,
    p: Proposal,
    plan: TransitionPlan,
    recovery: bytes,
    offer: BondOffer | None,
    extra: dict[int, tuple[bytes, list[bytes]]],
) -> dict[str, Any]:
    """ROAST among the old epoch's members. A transition signed whose broadcast failed comes back with
    `broadcast_failed`: aborting then could strand the coins if it did get through, so it is kept and
    broadcast again until it confirms."""
    keys = ctx.keys
    if keys is None:
        raise TransitionFailed("this member has no active epoch")
    paths: list[tuple[int, int] | None] = [None] * len(plan.tx.vin)
    for i, path in plan.fed_inputs:
        paths[i] = path
    req = SigningRequest(
        secrets.token_hex(8),
        keys.epoch,
        "transition",
        plan.tx,
        tuple(paths),
        {},
        {"proposal": p.to_body(), "recovery": recovery.hex(), "bond_key": offer.bond_key.hex() if offer else ""},
    )
    try:
        return await request_signatures(req, extra)
    except SigningError as e:
        if e.outcome.get("tx") and e.outcome.get("txid"):
            return {**e.outcome, "broadcast_failed": str(e)}
        reasons = e.outcome.get("rejections") or {}
        detail = "; ".join(f"{k[:16]}: {v}" for k, v in reasons.items())
        raise TransitionFailed(f"the current members did not sign the transition: {e}. {detail}".strip()) from None
