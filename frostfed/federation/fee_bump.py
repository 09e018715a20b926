"""`frost-bumpfee`: a payout stuck below the fee the network wants, replaced by one that pays more.

A bump is a signing request of kind `bump` naming the request it replaces (`replaces`). Every member
judges it as a replacement against its OWN records, never against the coordinator's word:
- the replaced request must be a payout (or an earlier bump) this member itself recorded and
  approved: its transaction is taken from this member's store, and the approval from its fee-budget
  journal, which holds every transaction this member ever approved. A payout it refused only because
  the request reached it after the payout was broadcast (its coins already spent) counts as recorded
  too: the member never judged what it pays, and judges that now, on the bump;
- the bump must be that transaction with only the federation's change lowered (`replacement.py`:
  same coins, same payees and amounts, BIP 125 fee rules);
- and it goes through the whole payout policy as any payout does: chain checks (the coins read
  from this member's chain index, because the mempool shows them spent by the payout being
  replaced), ledger, anchor and canonical change, check command, fee bounds, and the fee budget,
  which counts the bump's extra fee over the payout it replaces.

Once approved, the bump carries the replaced payout's reservation and fee-budget entry (nothing is
released: it pays the same debts, and the chain settles both once either confirms).
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from bitcoin.core import CTransaction, b2lx

from frostfed.bitcoin.chain import ChainBlock, ChainSource, FeeEstimate, Utxo
from frostfed.bitcoin.chain_checks import ChainChecks, CheckedPayout
from frostfed.bitcoin.chain_index import ChainIndex
from frostfed.bitcoin.fee_budget import FeeBudget
from frostfed.bitcoin.fee_estimate import FeeChoice, choose_feerate
from frostfed.bitcoin.ledger import Ledger
from frostfed.bitcoin.policy import PayoutPolicy, Policy
from frostfed.bitcoin.rejection import PolicyRejection
from frostfed.bitcoin.replacement import Bump, bump_tx, check_replacement, min_bump_fee
from frostfed.bitcoin.standardness import keypath_vsize
from frostfed.federation import commands
from frostfed.federation.chain_view import ChainRefresh, ChainView
from frostfed.federation.signing_request import SigningRequest
from frostfed.federation.store import Store

if TYPE_CHECKING:
    from frostfed.federation.context import MemberContext

Outpoint = tuple[str, int]
BUMPABLE = ("payout", "bump")


@dataclass(frozen=True)
class Original:
    """The request a bump replaces, as this member recorded it."""

    id: str
    body: dict[str, Any]
    tx: CTransaction
    txid: str
    status: str

    @property
    def outpoints(self) -> list[Outpoint]:
        return [(b2lx(i.prevout.hash), i.prevout.n) for i in self.tx.vin]


def recorded_request(store: Store, rid: str) -> Original | None:
    rows = store.requests(rid)
    if not rows:
        return None
    row = rows[0]
    try:
        tx = CTransaction.deserialize(bytes.fromhex(row["request"]["tx"]))
    except Exception:  # a record this member cannot read replaces nothing
        return None
    return Original(rid, row["request"], tx, b2lx(tx.GetTxid()), str(row["status"]))


def recorded_original(store: Store, budget: FeeBudget, req: SigningRequest) -> Original:
    """The payout `req` replaces, from this member's own store; refused unless this member approved it."""
    rid = req.replaces
    if rid is None or rid == req.id:
        raise PolicyRejection("malformed", "a bump names the request it replaces, another than itself")
    original = recorded_request(store, rid)
    if original is None:
        raise PolicyRejection(
            "unknown_original",
            f"this member has no record of request {rid}: it bumps only a payout it approved itself",
        )
    if store.requests(rid)[0]["kind"] not in BUMPABLE:
        raise PolicyRejection("original_not_payout", f"request {rid} is not a payout; only payouts are bumped")
    if budget.approval(original.txid) is None and not _came_late(store, rid):
        raise PolicyRejection(
            "original_not_approved",
            f"this member never approved request {rid} (its record says {original.status}): "
            "it bumps only a payout it approved itself",
        )
    if original.body.get("epoch") != req.epoch:
        raise PolicyRejection("original_other_epoch", f"request {rid} is of epoch {original.body.get('epoch')}")
    return original


def _came_late(store: Store, rid: str) -> bool:
    """This member refused the payout only because its coins were already spent when the request
    reached it (by the payout itself, broadcast once the others had signed): it never judged what
    the payout pays, and the bump is judged in full (ledger, anchor, budget) like any payout."""
    row = store.requests(rid)[0]
    reason = (row.get("outcome") or {}).get("reason", "")
    return row["status"] == "refused" and isinstance(reason, str) and reason.startswith("input_spent:")


class ConfirmedSpends(ChainSource):
    """The member's chain source, except for the coins the replaced payout spends: those are read from
    the member's own chain index (confirmed, unspent in a block), since the mempool shows them spent
    by that very payout. Everything else goes to the chain source."""

    def __init__(self, chain: ChainSource, view: ChainView, outpoints: list[Outpoint]) -> None:
        self.chain = chain
        self.view = view
        self.outpoints = set(outpoints)
        self._fresh = False

    def get_utxo(self, txid: str, vout: int) -> Utxo | None:
        if (txid, vout) not in self.outpoints:
            return self.chain.get_utxo(txid, vout)
        if not self._fresh:  # the chain checks run before the ChainRefresh policy
            self.view.refresh()
            self._fresh = True
        coin = self.view.index.coin((txid, vout))
        if coin is None:  # spent in a block (by the payout itself or by another): nothing to replace
            return None
        tip = self.view.index.tip_height()
        return Utxo(txid, vout, coin.sats, coin.script, coin.confirmations(tip), coin.coinbase)

    def tip_height(self) -> int:
        return self.chain.tip_height()

    def block_transactions(self, height: int) -> list[CTransaction]:
        return self.chain.block_transactions(height)

    def block(self, height: int) -> ChainBlock:
        return self.chain.block(height)

    def block_hash(self, height: int) -> str:
        return self.chain.block_hash(height)

    def broadcast(self, tx: CTransaction) -> str:
        return self.chain.broadcast(tx)

    def fee_rate(self, target_blocks: int = 6) -> float | None:
        return self.chain.fee_rate(target_blocks)

    def estimate_fee(self, target_blocks: int = 6) -> FeeEstimate:
        return self.chain.estimate_fee(target_blocks)


class ReplacementCheck:
    """The bump is the recorded payout with only the federation's change lowered (BIP 125 fees)."""

    def __init__(self, original: Original) -> None:
        self.original = original

    def check(self, payout: CheckedPayout) -> None:
        change = {bytes(payout.tx.vout[j].scriptPubKey) for j in payout.change_outputs}
        check_replacement(self.original.tx, payout.tx, sum(u.amount_sats for u in payout.inputs), lambda s: s in change)

    def approved(self, payout: CheckedPayout) -> None:
        return None


class ReplacementBudget:
    """The fee budget for a bump: the bump's fee supersedes the replaced payout's (only one of them can
    confirm), so the budget counts the extra fee. Last, as the fee budget always is; on approval the
    bump takes over the replaced payout's budget entry and ledger reservation."""

    def __init__(self, budget: FeeBudget, original: Original, ledger: Ledger | None) -> None:
        self.budget = budget
        self.original = original
        self.ledger = ledger

    def check(self, payout: CheckedPayout) -> None:
        self.budget.check(payout, replacing=self.original.txid)

    def approved(self, payout: CheckedPayout) -> None:
        self.budget.approved(payout)
        self.budget.replaced(self.original.txid, payout.txid)
        if self.ledger is not None:  # the ledger policy reserved the bump just before
            self.ledger.replace(self.original.txid, payout.txid)


def replacement_policy(
    ctx: MemberContext, req: SigningRequest, policy: PayoutPolicy, budget: FeeBudget
) -> PayoutPolicy:
    """`policy` (the member's payout policy for `req`) judging `req` as a bump of a recorded payout."""
    if ctx.chain is None:
        raise PolicyRejection("chain_unavailable", "this member has no chain source")
    original = recorded_original(ctx.store, budget, req)
    base = policy.chain_checks
    checks = ChainChecks(
        ConfirmedSpends(ctx.chain, ctx.chain_view, original.outpoints),
        base.owned,
        base.fee_bounds,
        base.min_confirmations,
        base.coinbase_maturity,
        base.standardness,
    )
    rest: list[Policy] = [p for p in policy.policies if p is not budget]
    first = 1 if rest and isinstance(rest[0], ChainRefresh) else 0
    rest.insert(first, ReplacementCheck(original))
    rest.append(ReplacementBudget(budget, original, ctx.ledger))
    return PayoutPolicy(checks, rest)


def replaced_by(index: ChainIndex, row: dict[str, Any]) -> str | None:
    """The confirmed transaction that took the place of a broadcast payout or bump (it spent the same
    coins: the payout's fee bump, whichever member coordinated it), or None."""
    if row.get("status") != "broadcast" or row.get("kind") not in BUMPABLE:
        return None
    try:
        tx = CTransaction.deserialize(bytes.fromhex(row["request"]["tx"]))
    except Exception:
        return None
    txid = b2lx(tx.GetTxid())
    spender = index.spender((b2lx(tx.vin[0].prevout.hash), tx.vin[0].prevout.n)) if tx.vin else None
    return spender if spender is not None and spender != txid else None


# -- the coordinator's side -------------------------------------------------------------------------


@dataclass(frozen=True)
class BumpPlan:
    request: SigningRequest
    original: Original
    bump: Bump
    choice: FeeChoice


def _fail(message: str, code: int = commands.SIGNING_FAILED) -> commands.RpcError:
    return commands.RpcError(code, message)


def plan_bump(ctx: MemberContext, rid: str, feerate: float | None) -> BumpPlan:
    """The bump of request `rid` this member would coordinate: its own record of the payout, the
    coins from its own chain index, a fee rate from the chain source's estimate (or `feerate`) and at
    least the BIP 125 minimum. Raises RpcError with a reason a person can act on."""
    keys = ctx.keys
    assert keys is not None and ctx.chain is not None
    original = recorded_request(ctx.store, rid)
    if original is None:
        raise _fail(f"no request with id {rid}", commands.NOT_FOUND)
    kind = ctx.store.requests(rid)[0]["kind"]
    if kind not in BUMPABLE:
        raise _fail(f"request {rid} is a {kind} request; only payouts are bumped")
    if original.status == "rejected" or (original.status == "refused" and not _came_late(ctx.store, rid)):
        raise _fail(f"request {rid} was {original.status}; only a payout the federation signed is bumped")
    if original.body.get("epoch") != keys.epoch:
        raise _fail(f"request {rid} is of epoch {original.body.get('epoch')}, the federation is in {keys.epoch}")
    view = ctx.chain_view
    view.refresh()
    input_sats = 0
    for txid, vout in original.outpoints:
        coin = view.index.coin((txid, vout))
        if coin is None:
            spender = view.index.spender((txid, vout))
            if spender == original.txid:
                raise _fail(f"payout {rid} ({original.txid}) is confirmed already: nothing to bump")
            raise _fail(
                f"payout {rid} can never confirm: its coin {txid}:{vout} is spent by "
                f"{spender or 'a transaction this member does not index'}"
            )
        input_sats += coin.sats
    change = [int(k) for k in original.body.get("change_paths", {})]
    if len(change) != 1:
        raise _fail(f"payout {rid} has no single change output to take the extra fee from")
    vsize = keypath_vsize(original.tx)
    old_fee = input_sats - sum(o.nValue for o in original.tx.vout)
    least = min_bump_fee(old_fee, vsize)
    s = ctx.policy
    if feerate is not None and feerate * vsize < least:
        raise _fail(
            f"feerate {feerate} sat/vB is below what a replacement of payout {rid} must pay: "
            f"at least {least} sats, {least / vsize:.2f} sat/vB (it pays {old_fee / vsize:.2f})",
            commands.INVALID_PARAMS,
        )
    choice = choose_feerate(ctx.chain, s.min_feerate, s.max_feerate, feerate)
    rate = max(choice.sat_per_vb, least / vsize)
    if rate > s.max_feerate:
        raise _fail(
            f"a replacement of payout {rid} at {rate:.2f} sat/vB (it must pay at least {least / vsize:.2f}) "
            f"is above this member's policy.max_feerate of {s.max_feerate}"
        )
    try:
        bump = bump_tx(original.tx, input_sats, change[0], rate)
    except PolicyRejection as e:
        raise _fail(e.message) from None
    paths: tuple[tuple[int, int] | None, ...] = tuple(
        (int(p[0]), int(p[1])) if p is not None else None for p in original.body["input_paths"]
    )
    changes = {int(k): (int(v[0]), int(v[1])) for k, v in original.body["change_paths"].items()}
    req = SigningRequest(secrets.token_hex(8), keys.epoch, "bump", bump.tx, paths, changes, replaces=rid)
    return BumpPlan(req, original, bump, choice)
