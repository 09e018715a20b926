"""The signer's check of a transition: everything a member of the current epoch verifies, on its own
chain and its own records, before it signs one (ROAST signing calls `transition_tasks`)."""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Protocol

from bitcoin.core import b2lx

from frostfed.bitcoin.chain_checks import COINBASE_MATURITY
from frostfed.bitcoin.rejection import PolicyRejection
from frostfed.bitcoin.standardness import Standardness
from frostfed.federation.dkg_run import chain_code_of
from frostfed.federation.epoch_keys import EpochKeys
from frostfed.federation.messages import Message, MessageError
from frostfed.federation.signing_request import SigningRequest, tasks_for_inputs
from frostfed.federation.transition import (
    TRANSITION_PATH,
    Proposal,
    ProposalRefused,
    check_proposal,
    check_transition_tx,
    verify_new_epoch_key,
)
from frostfed.frost.roast import SigningTask

if TYPE_CHECKING:
    from frostfed.federation.config import MembershipSettings
    from frostfed.federation.context import MemberContext
    from frostfed.federation.membership.machine import Machine
    from frostfed.federation.membership.record import ChangeRecord


class Membership(Protocol):
    """What the signer's check reads of the membership driver (named here, so this module, which the
    driver imports, never imports the driver)."""

    ctx: MemberContext
    machine: Machine
    settings: MembershipSettings

    def known_hostkeys(self) -> dict[bytes, bytes]: ...

    def approved(self, rec: ChangeRecord, judged: list[tuple[str, int]], txid: str | None) -> bool: ...


def transition_tasks(membership: Membership, req: SigningRequest) -> list[SigningTask]:
    """The signing tasks of a transition this member approves; a refusal is recorded with its reason.
    Runs in a worker thread (the chain source, the store)."""
    try:
        return _transition_tasks(membership, req)
    except PolicyRejection as e:
        body = (req.transition or {}).get("proposal")
        if isinstance(body, dict):
            with contextlib.suppress(TypeError, ValueError):
                membership.ctx.store.record_refusal("transition", body, e.code, e.message)
        raise


def _transition_tasks(membership: Membership, req: SigningRequest) -> list[SigningTask]:
    ctx = membership.ctx
    machine = membership.machine
    keys = ctx.keys
    if keys is None or ctx.chain is None or req.transition is None:
        raise PolicyRejection("no_epoch", "this member has no active epoch or chain source")
    t = req.transition
    rules = ctx.policy
    try:
        p = Proposal.from_message(Message("change_proposal", t.get("proposal", {})))
        recovery = bytes.fromhex(str(t.get("recovery", "")))
        bond_key = bytes.fromhex(str(t.get("bond_key", ""))) or None
    except (MessageError, ValueError) as e:
        raise PolicyRejection("malformed", f"the transition request is malformed: {e}") from None
    try:
        check_proposal(p, keys, membership.settings, ctx.chain.tip_height())
    except ProposalRefused as e:
        raise PolicyRejection("bad_proposal", str(e)) from None
    if dropped := machine.dropped(p):
        raise PolicyRejection("change_dropped", f"this member dropped this change: {dropped}")
    rec = machine.current
    if rec is None or rec.proposal.to_body() != p.to_body():
        raise PolicyRejection(
            "not_this_change",
            "this member takes part in no such change (it refused it, it was aborted, or it never heard of it)",
        )
    group_key = verify_new_epoch_key(recovery, p, membership.known_hostkeys())
    if ctx.me in p.members:
        mine = ctx.store.epoch(p.epoch)
        if (
            mine is None
            or mine.status != "pending"
            or not rec.share_made  # this change's own DKG made it
            or mine.group_key != group_key
            or mine.chain_code != chain_code_of(recovery)  # the addresses this member will watch
        ):
            raise PolicyRejection(
                "bad_epoch_key", "the new key is not one this member holds a share of from this change's DKG"
            )
    elif p.proposer != ctx.me or machine.accepted_key(p) != group_key:
        raise PolicyRejection(
            "not_in_new_epoch", "this member is not in the new epoch and signs only the leave it proposed itself"
        )
    new_keys = EpochKeys(p.epoch, p.members, p.threshold, group_key, chain_code_of(recovery), [], keys.network)
    spent = check_transition_tx(
        req.tx,
        dict(req.fed_inputs),
        keys,
        new_keys.script(TRANSITION_PATH),
        p,
        ctx.chain,
        membership.settings,
        ctx.policy.min_confirmations,
        bond_key,
        Standardness(rules.allow_version_3, rules.allow_op_return, rules.allow_consolidation),
        rules.min_feerate,
    )
    ctx.chain_view.refresh()  # a transition spends the anchor like every other transaction
    outpoints = [(b2lx(i.prevout.hash), i.prevout.n) for i in req.tx.vin]
    ctx.chain_view.require_anchor(keys, outpoints)
    _check_every_coin_moved(membership, keys, outpoints)
    tasks = tasks_for_inputs(keys, req, spent)
    judged = [(b2lx(req.tx.vin[i].prevout.hash), req.tx.vin[i].prevout.n) for i, _ in req.fed_inputs]
    txid = b2lx(req.tx.GetTxid()) if len(req.fed_inputs) == len(req.tx.vin) else None  # key-path only: final
    if not membership.approved(rec, judged, txid):
        raise PolicyRejection("not_this_change", "the change ended while this member checked its transition")
    return tasks


def _check_every_coin_moved(membership: Membership, keys: EpochKeys, outpoints: list[tuple[str, int]]) -> None:
    """A transition moves every spendable coin of the epoch: once the next epoch is active no member
    signs for the old key, so a coin left behind would be stranded. A coin that confirmed in the last
    block may be missing (the proposer built the transaction a moment earlier)."""
    ctx = membership.ctx
    view = ctx.chain_view
    tip = view.index.tip_height()
    need = ctx.policy.min_confirmations
    spent = set(outpoints)
    left = [
        c
        for c in view.coins(keys.epoch)
        if c.outpoint not in spent and c.confirmations(tip) > (COINBASE_MATURITY if c.coinbase else need)
    ]
    if left:
        names = ", ".join(f"{c.txid}:{c.vout}" for c in left[:5])
        raise PolicyRejection(
            "coins_left_behind",
            f"the transition leaves {len(left)} coin(s) of {sum(c.sats for c in left)} sats at epoch "
            f"{keys.epoch}'s key ({names}); every spendable coin moves to the new epoch",
        )
