"""The activation watcher: a change ends on this member's own chain, never on a peer's word. It looks
for the change's transition among the candidates named (in the blocks, with the confirmations the
settings require), broadcasts a signed transition again until it confirms, tells when no transition
of the change can confirm any more, and finds a dropped change that took place all the same. Every
function here reads the chain source and the chain index: they run in a worker thread."""

from __future__ import annotations

import contextlib
import logging
from typing import TYPE_CHECKING

from bitcoin.core import CTransaction, b2lx

from frostfed.bitcoin.chain import ChainError
from frostfed.federation.config import MembershipSettings
from frostfed.federation.epoch_keys import EpochKeys
from frostfed.federation.membership.record import ChangeRecord, Outpoint, epoch_of
from frostfed.federation.transition import TRANSITION_PATH

if TYPE_CHECKING:
    from frostfed.federation.context import MemberContext

log = logging.getLogger(__name__)

DEAD_AFTER_BLOCKS = 6
"""How deep another spend of the anchor must be before a change whose transition it rules out is dropped."""
SCAN_BLOCKS = 2000


def find_transition(
    ctx: MemberContext, settings: MembershipSettings, rec: ChangeRecord
) -> tuple[tuple[str, bool] | None, int]:
    """The confirmed transaction among the candidates that is the transition: it spends the old
    epoch's anchor coin (so the old epoch's members signed it, whoever named it), pays this member's
    own new key at output 0 (a member leaving: pays nothing back to the old epoch) and spends every
    coin this member approved spending. Returns ((txid, whether this member judged it) or None, the tip).
    Looks in the blocks since it first heard of a candidate, so it finds the transaction even once
    the new epoch has spent its output."""
    chain = ctx.chain
    assert chain is not None
    p = rec.proposal
    tip = chain.tip_height()
    share = ctx.store.epoch(p.epoch)
    if share is None and ctx.me in p.members:
        return None, tip  # without its share of the new key this member cannot take part in the epoch
    old = ctx.keys  # None: a joiner, which has no coins of the old epoch to lose
    anchors: set[Outpoint] = set()
    if old is not None:
        ctx.chain_view.refresh()
        anchors = ctx.chain_view.index.anchors(old.epoch)
    expected = None
    if share is not None:
        new_keys = EpochKeys(p.epoch, p.members, p.threshold, share.group_key, share.chain_code, [], ctx.network)
        expected = new_keys.script(TRANSITION_PATH)
    judged = set(rec.judged) if rec.judged is not None else None
    need = settings.transition_confirmations
    for txid, since in rec.candidates.items():
        start = max(since - 1, tip - SCAN_BLOCKS, 0) if since else max(tip - SCAN_BLOCKS, 0)
        for height in range(start, tip - need + 2):
            tx = next((t for t in chain.block_transactions(height) if b2lx(t.GetTxid()) == txid), None)
            if tx is None:
                continue
            if _is_transition(ctx, tx, txid, expected, judged, anchors):
                return (txid, judged is not None), tip
            break
    if rec.signed_tx:  # signed, perhaps never broadcast: try again
        with contextlib.suppress(ChainError, ValueError):
            chain.broadcast(CTransaction.deserialize(bytes.fromhex(rec.signed_tx)))
    return None, tip


def _is_transition(
    ctx: MemberContext,
    tx: CTransaction,
    txid: str,
    expected: bytes | None,
    judged: set[Outpoint] | None,
    anchors: set[Outpoint],
) -> bool:
    old = ctx.keys
    if expected is not None and (not tx.vout or bytes(tx.vout[0].scriptPubKey) != expected):
        log.warning("transaction %s does not pay the new epoch's key; ignored", txid)
        return False
    spent = {(b2lx(i.prevout.hash), i.prevout.n) for i in tx.vin}
    if judged is not None and not judged <= spent:
        log.warning("transaction %s is not the transition this member signed; ignored", txid)
        return False
    if old is None:
        return True
    if not anchors & spent:  # only the epoch's members can have signed a spend of its anchor
        log.warning("transaction %s does not spend epoch %d's anchor coin; ignored", txid, old.epoch)
        return False
    if expected is None and any(
        (found := ctx.chain_view.index.path_of(bytes(o.scriptPubKey))) and found[0] == old.epoch for o in tx.vout
    ):  # a payout of the old epoch (it pays change back), not a transition
        log.warning("transaction %s pays epoch %d back; not a transition", txid, old.epoch)
        return False
    return True


def transition_impossible(
    ctx: MemberContext, settings: MembershipSettings, rec: ChangeRecord
) -> tuple[str | None, Outpoint | None]:
    """Why no transition of the change can confirm any more, if this member's own chain shows it, and
    no candidate transaction is in a block since it was named or in the mempool: a coin the transition
    this member approved spends is gone, or the anchor the change started from was spent (deep enough)
    by a payout of the old epoch, which every transition built before it also spends. A transaction
    id named by a proposer who never had it signed thus times out too. Also returns the anchor the
    change starts from, if the record did not know it yet."""
    chain = ctx.chain
    assert chain is not None
    try:
        why = None
        if rec.judged and any(chain.get_utxo(t, v) is None for t, v in rec.judged):
            why = "a coin it spends was spent by another transaction"
        anchor, spent_elsewhere = _anchor_spent_elsewhere(ctx, settings, rec)
        why = why or spent_elsewhere
        if why is None:
            return None, anchor
        if any(chain.get_utxo(txid, 0) is not None for txid in rec.candidates):
            return None, anchor  # in the mempool, or confirmed and not yet spent
        tip = chain.tip_height()
        for txid, since in rec.candidates.items():
            for height in range(max(since - 1, tip - SCAN_BLOCKS, 0), tip + 1):
                if any(b2lx(t.GetTxid()) == txid for t in chain.block_transactions(height)):
                    return None, anchor
    except ChainError:
        return None, None
    return why, anchor


def _anchor_spent_elsewhere(
    ctx: MemberContext, settings: MembershipSettings, rec: ChangeRecord
) -> tuple[Outpoint | None, str | None]:
    """The old epoch's anchor when this member took part, spent at least DEAD_AFTER_BLOCKS deep by a
    transaction that paid its change back to the old epoch (it made the next anchor): a payout, never
    a transition, which pays nothing back."""
    old = ctx.keys
    if old is None:
        return None, None
    ctx.chain_view.refresh()
    index = ctx.chain_view.index
    if rec.anchor is None:  # this member's index did not know the anchor yet when it took part: from now on
        return index.anchor(old.epoch).outpoint, None
    txid, vout = rec.anchor
    spender = index.spender((txid, vout))
    if spender is None or not any(a[0] == spender for a in index.anchors(old.epoch)):
        return None, None
    height = dict(index.federation_txids()).get(spender)
    need = max(DEAD_AFTER_BLOCKS, settings.transition_confirmations)
    if height is None or index.tip_height() - height + 1 < need:
        return None, None
    return None, f"epoch {old.epoch}'s anchor {txid}:{vout} was spent by the payout {spender}, {need}+ blocks deep"


def dropped_change_on_chain(
    ctx: MemberContext, settings: MembershipSettings, dropped: list[ChangeRecord]
) -> tuple[ChangeRecord, str, int] | None:
    """A change this member dropped (a proposer's abort, perhaps sent to some members only, or a
    proposer gone silent) that took place all the same: this member's own chain index shows the
    current epoch's anchor spent to the transition path of the key its own DKG of that change produced,
    with the confirmations the settings require. The coins sit at that key, so this member takes over
    the new epoch like the others; nobody's word counts here."""
    active = ctx.store.active_epoch()
    if active is None or ctx.chain is None:
        return None
    try:
        ctx.chain_view.refresh()
    except ChainError:
        return None
    index = ctx.chain_view.index
    tip = index.tip_height()
    for rec in dropped:
        p = rec.proposal
        try:
            share = epoch_of(rec.aside or {})
        except (KeyError, TypeError, ValueError):
            continue
        if p.epoch != active.epoch + 1 or share.epoch != p.epoch or share.members != p.members:
            continue
        if share.threshold != p.threshold:
            continue
        new_keys = EpochKeys(p.epoch, p.members, p.threshold, share.group_key, share.chain_code, [], ctx.network)
        found = index.anchor_spend_to(active.epoch, new_keys.script(TRANSITION_PATH))
        if found is not None and tip - found[1] + 1 >= settings.transition_confirmations:
            log.warning(
                "the change to epoch %d was dropped here, but this member's chain shows its coins moved to its "
                "key %s in %s: it takes over the new epoch",
                p.epoch,
                share.group_key.hex(),
                found[0],
            )
            return rec, found[0], tip
    return None
