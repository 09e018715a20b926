"""A member's view of the chain: its chain index over every epoch it holds, its ledger kept in step,
and the anchor rule that serializes the federation's transactions.

Everything here comes from the member's own chain source and store: a peer can neither add a coin
to the view nor move the anchor. `refresh()` is the one way the view advances (the heartbeat calls
it, and so does every policy check before it judges a request): new blocks into the index, the
index's confirmed federation transactions into the ledger, confirmed requests marked in the store.
"""

from __future__ import annotations

import hashlib
import logging
import threading

from frostfed.bitcoin.chain import ChainError, ChainSource
from frostfed.bitcoin.chain_checks import CheckedPayout
from frostfed.bitcoin.chain_index import Anchor, ChainIndex, IndexedCoin
from frostfed.bitcoin.chain_index_schema import ScriptOf
from frostfed.bitcoin.ledger import Ledger
from frostfed.bitcoin.rejection import PolicyRejection
from frostfed.federation.epoch_keys import CHANGE, EpochKeys
from frostfed.federation.signing_request import SigningRequest, check_change
from frostfed.federation.store import Store

log = logging.getLogger(__name__)

REORG_MARGIN = 6
"""An epoch is read from this many blocks below the tip where this member first heard of it."""
WATCHED = ("active", "retired", "pending")


def since_key(epoch: int) -> str:
    return f"index_from:{epoch}"


def watched_key(epoch: int) -> str:
    """Which key (group key and chain code) the index watches under an epoch number."""
    return f"index_key:{epoch}"



def _scripts_of(keys: EpochKeys) -> ScriptOf:
    """The index's way to an epoch's script at (chain, index): the keys' own derivation."""
    return lambda chain, idx: keys.script((chain, idx))


class ChainView:
    def __init__(
        self, index: ChainIndex, store: Store, chain: ChainSource | None, ledger: Ledger | None, network: str
    ) -> None:
        self.index = index
        self.store = store
        self.chain = chain
        self.ledger = ledger
        self.network = network
        self.last_tip: int | None = None
        self._lock = threading.Lock()

    # -- where each epoch is read from -------------------------------------------------------------

    def note_epoch_start(self, epoch: int, tip: int | None = None) -> None:
        """Remember where to read an epoch from: below the tip when its DKG started (no coin can pay a
        key before the key exists). Kept once set, so a restarted DKG does not move it up."""
        if self.store.get_meta(since_key(epoch)):
            return
        if tip is None:
            tip = self.last_tip if self.last_tip is not None else self.index.tip_height()
        if tip is None or tip < 0:
            earlier = [int(v) for e in range(epoch) if (v := self.store.get_meta(since_key(e)))]
            tip = min(earlier) + REORG_MARGIN if earlier else REORG_MARGIN
        self.store.set_meta(since_key(epoch), str(max(0, tip - REORG_MARGIN)))

    def _since(self, epoch: int) -> int:
        raw = self.store.get_meta(since_key(epoch))
        return int(raw) if raw else 0  # unknown (a store from before the index): read everything

    def watch_epochs(self) -> None:
        for rec in self.store.epochs():
            if rec.status not in WATCHED:
                continue
            key = hashlib.sha256(rec.group_key + rec.chain_code).hexdigest()
            watched = self.store.get_meta(watched_key(rec.epoch))
            if watched is not None and watched != key:
                # the epoch number now names another key (a change after an aborted one): the index
                # must forget the old key's scripts and read the chain again for the new one
                self.index.unwatch(rec.epoch)
            elif rec.epoch in self.index.watched_epochs():
                if watched is None:
                    self.store.set_meta(watched_key(rec.epoch), key)
                continue
            self.store.set_meta(watched_key(rec.epoch), key)
            keys = EpochKeys(rec.epoch, rec.members, rec.threshold, rec.group_key, rec.chain_code, [], self.network)
            self.index.watch(rec.epoch, _scripts_of(keys), self._since(rec.epoch))

    # -- advancing ---------------------------------------------------------------------------------

    def refresh(self) -> list[str]:
        """Read new blocks and bring the ledger along; returns the reserved txids that confirmed.
        Raises ChainError when the chain source cannot answer (then nothing may be concluded)."""
        if self.chain is None:
            raise ChainError("this member has no chain source")
        with self._lock:
            self.watch_epochs()
            self.last_tip = self.chain.tip_height()
            self.index.sync(self.chain)
            confirmed = self.ledger.reconcile(self.index) if self.ledger is not None else []
        for txid in confirmed:
            self.store.mark_confirmed(txid)
        return confirmed

    # -- reading -----------------------------------------------------------------------------------

    def anchor(self, epoch: int) -> Anchor:
        return self.index.anchor(epoch)

    def coins(self, epoch: int) -> list[IndexedCoin]:
        return self.index.coins(epoch)

    def require_anchor(self, keys: EpochKeys, outpoints: list[tuple[str, int]]) -> Anchor:
        """Refuse a transaction of the epoch that does not spend its current anchor."""
        anchor = self.anchor(keys.epoch)
        if anchor.outpoint is None:
            raise PolicyRejection("no_anchor", f"epoch {keys.epoch} holds no confirmed coin in this member's index")
        if anchor.outpoint not in outpoints:
            raise PolicyRejection(
                "not_anchor",
                f"the transaction does not spend the federation's current anchor coin "
                f"{anchor.outpoint[0]}:{anchor.outpoint[1]} (every payout must, so no two can both confirm)",
            )
        return anchor


class ChainRefresh:
    """The first policy: bring the index and the ledger up to the chain's tip, so the ledger that
    judges the payouts knows everything the chain has confirmed."""

    def __init__(self, view: ChainView) -> None:
        self.view = view

    def check(self, payout: CheckedPayout) -> None:
        self.view.refresh()

    def approved(self, payout: CheckedPayout) -> None:
        return None


class AnchorPolicy:
    """A payout or PSBT must spend the epoch's anchor and pay its change to the canonical change path
    `m/1/k` (k from the anchor chain), and nowhere else of the federation's. With `refresh`, it brings
    the view up to date itself (otherwise a `ChainRefresh` ran before it)."""

    def __init__(self, view: ChainView, keys: EpochKeys, req: SigningRequest, refresh: bool = True) -> None:
        self.view = view
        self.keys = keys
        self.req = req
        self.refresh = refresh

    def check(self, payout: CheckedPayout) -> None:
        if self.refresh:
            self.view.refresh()
        anchor = self.view.require_anchor(self.keys, payout.outpoints)
        canonical = (CHANGE, anchor.change_index)
        check_change(self.keys, self.req, canonical)
        script = self.keys.script(canonical)
        outputs = payout.tx.vout
        if not any(bytes(o.scriptPubKey) == script for o in outputs):
            raise PolicyRejection(
                "bad_change",
                f"the transaction has no change output at the canonical path m/{canonical[0]}/{canonical[1]}, "
                "which carries the anchor on to the next payout",
            )
        for j in payout.change_outputs:
            if bytes(outputs[j].scriptPubKey) != script:
                raise PolicyRejection(
                    "bad_change",
                    f"output {j} pays the federation elsewhere than the canonical change path "
                    f"m/{canonical[0]}/{canonical[1]}",
                )

    def approved(self, payout: CheckedPayout) -> None:
        return None

