"""A member's own index of the federation's coins, kept from its own chain source, block by block.

Safety rests on it (DESIGN.md, "Agreement"): every honest member derives from the same blocks the
same coins, the same confirmed transactions spending them, and the same *anchor* of each epoch, so
the chain, not any member's word, says what was paid and which transaction comes next.

- **Coins**: every output to a watched script of an epoch. The watched scripts are the receive and
  change paths `0 .. highest index used on chain + look-ahead`, extended as coins are found; the
  window depends on the chain only, so all members watch alike (an announcement from a peer cannot
  make one member see a coin the others miss).
- **Federation transactions**: every confirmed transaction that spends a coin, with its inputs and
  outputs; the ledger counts their outputs to miners as paid (`events_since`).
- **Anchor**: one coin per epoch that every payout, PSBT and transition must spend, so no two of them
  can both confirm. The first anchor is the epoch's earliest coin (lowest height, then txid, vout;
  a coinbase output only once it is mature, so a miner cannot hold payouts up with a young one);
  a transaction spending the anchor makes its output at the canonical change path `m/1/k` the next
  anchor, where k is the number of anchor transactions of the epoch so far. If the anchor is spent
  without such an output (a transition, which ends the epoch), the earliest coin left takes over.
- **Reorganisations**: block hashes are kept; a block whose parent is not the indexed tip rolls the
  index back block by block (coins, spends, anchors and events alike) until the chains meet.

This module holds what the index answers (coins, anchors, fees, events); following the chain and
undoing reorganisations is `chain_follower`, the stored layout and watched paths `chain_index_schema`.
"""

from __future__ import annotations

from dataclasses import dataclass

from frostfed.bitcoin.chain import ChainBlock
from frostfed.bitcoin.chain_follower import ChainFollower
from frostfed.bitcoin.chain_index_schema import CHANGE, RECEIVE, ChainIndexError, Outpoint


@dataclass(frozen=True)
class IndexedCoin:
    txid: str
    vout: int
    epoch: int
    path: tuple[int, int]
    sats: int
    script: bytes
    height: int
    coinbase: bool

    @property
    def outpoint(self) -> Outpoint:
        return (self.txid, self.vout)

    def confirmations(self, tip: int) -> int:
        return tip - self.height + 1


@dataclass(frozen=True)
class Anchor:
    """The coin the epoch's next transaction must spend (None while the epoch holds none), and the
    canonical change index that transaction must pay its change to."""

    epoch: int
    outpoint: Outpoint | None
    change_index: int


@dataclass(frozen=True)
class ChainEvent:
    """A federation transaction entering (`add`) or leaving (`remove`, a reorganisation) the chain."""

    seq: int
    kind: str
    txid: str
    height: int
    inputs: tuple[Outpoint, ...]
    payouts: tuple[tuple[bytes, int], ...]  # outputs to scripts that are not the federation's: (script, sats)


class ChainIndex(ChainFollower):
    """Thread-safe; `path` may be ":memory:" for tests."""

    # -- state out ---------------------------------------------------------------------------------

    def anchor(self, epoch: int) -> Anchor:
        with self._lock:
            row = self._anchor_row(epoch)
        if row is None:
            return Anchor(epoch, None, 0)
        txid, vout, count = row
        return Anchor(epoch, None if txid is None or vout is None else (txid, vout), count)

    def anchors(self, epoch: int) -> set[Outpoint]:
        """Every coin that was the epoch's anchor in the indexed chain (spent or not): a confirmed
        transaction spending one of them was signed by the epoch's members."""
        with self._lock:
            rows = self._db.execute(
                "SELECT txid, vout FROM anchor WHERE epoch = ? AND txid IS NOT NULL", (epoch,)
            ).fetchall()
        return {(t, v) for t, v in rows}

    def fees_since(self, height: int) -> dict[str, int]:
        """The fee the federation paid in each of its transactions confirmed above `height`: what its
        coins held less what the transaction pays out (an input that is not the federation's, a
        joiner's, is not counted, so this never exceeds what the federation paid)."""
        with self._lock:
            rows = self._db.execute(
                "SELECT f.txid, "
                "(SELECT COALESCE(SUM(c.sats), 0) FROM coin c WHERE c.spent_txid = f.txid) - "
                "(SELECT COALESCE(SUM(o.sats), 0) FROM fed_output o WHERE o.txid = f.txid) "
                "FROM fed_tx f WHERE f.height > ?",
                (height,),
            ).fetchall()
        return {t: max(0, fee) for t, fee in rows}

    def coins(self, epoch: int, unspent_only: bool = True) -> list[IndexedCoin]:
        """The epoch's coins in the indexed chain (unspent there; a mempool spend is not known here)."""
        sql = "SELECT txid, vout, epoch, chain, idx, sats, script, height, coinbase FROM coin WHERE epoch = ?"
        if unspent_only:
            sql += " AND spent_txid IS NULL"
        with self._lock:
            rows = self._db.execute(sql + " ORDER BY height, txid, vout", (epoch,)).fetchall()
        return [IndexedCoin(t, v, e, (c, i), n, bytes(s), h, bool(cb)) for t, v, e, c, i, n, s, h, cb in rows]

    def coin(self, outpoint: Outpoint) -> IndexedCoin | None:
        with self._lock:
            row = self._db.execute(
                "SELECT txid, vout, epoch, chain, idx, sats, script, height, coinbase FROM coin "
                "WHERE txid = ? AND vout = ? AND spent_txid IS NULL",
                outpoint,
            ).fetchone()
        if row is None:
            return None
        t, v, e, c, i, n, s, h, cb = row
        return IndexedCoin(t, v, e, (c, i), n, bytes(s), h, bool(cb))

    def used_indexes(self, epoch: int) -> dict[int, int]:
        """Highest index ever paid on each chain of the epoch (-1: none), spent or not."""
        with self._lock:
            out = {}
            for chain in (RECEIVE, CHANGE):
                row = self._db.execute(
                    "SELECT MAX(idx) FROM coin WHERE epoch = ? AND chain = ?", (epoch, chain)
                ).fetchone()
                out[chain] = -1 if row[0] is None else row[0]
        return out

    def spender(self, outpoint: Outpoint) -> str | None:
        """The confirmed transaction that spent a coin, if any."""
        with self._lock:
            row = self._db.execute("SELECT spent_txid FROM coin WHERE txid = ? AND vout = ?", outpoint).fetchone()
        return None if row is None else row[0]

    def anchor_spend_to(self, epoch: int, script: bytes) -> tuple[str, int] | None:
        """The first confirmed transaction that spent a coin while it was `epoch`'s anchor and pays
        `script` at output 0, as (txid, height): how a member tells from its own chain that the epoch's
        coins moved on to a new key (the anchor is only ever replaced once it is spent)."""
        with self._lock:
            row = self._db.execute(
                "SELECT t.txid, t.height FROM fed_tx t JOIN fed_output o ON o.txid = t.txid "
                "WHERE o.vout = 0 AND o.script = ? AND EXISTS (SELECT 1 FROM fed_input i JOIN anchor a "
                "ON a.txid = i.prev_txid AND a.vout = i.prev_vout WHERE i.txid = t.txid AND a.epoch = ?) "
                "ORDER BY t.height, t.txid LIMIT 1",
                (script, epoch),
            ).fetchone()
        return None if row is None else (row[0], row[1])

    def federation_txids(self) -> list[tuple[str, int]]:
        with self._lock:
            return [(t, h) for t, h in self._db.execute("SELECT txid, height FROM fed_tx ORDER BY height, txid")]

    def events_since(self, seq: int, limit: int = 1000) -> list[ChainEvent]:
        """Federation transactions that entered or left the chain after event `seq`, in order."""
        with self._lock:
            rows = self._db.execute(
                "SELECT seq, kind, txid, height FROM event WHERE seq > ? ORDER BY seq LIMIT ?", (seq, limit)
            ).fetchall()
            events = []
            for s, kind, txid, height in rows:
                if kind == "add":
                    inputs = tuple(
                        (t, v)
                        for t, v in self._db.execute(
                            "SELECT prev_txid, prev_vout FROM fed_input WHERE txid = ? ORDER BY rowid", (txid,)
                        )
                    )
                    payouts = tuple(
                        (bytes(sc), n)
                        for sc, n in self._db.execute(
                            "SELECT script, sats FROM fed_output WHERE txid = ? AND federation = 0 ORDER BY vout",
                            (txid,),
                        )
                    )
                    if not self._db.execute(
                        "SELECT 1 FROM fed_tx WHERE txid = ? AND height = ?", (txid, height)
                    ).fetchone():
                        inputs, payouts = (), ()  # already rolled back: the matching remove follows
                else:
                    inputs, payouts = (), ()
                events.append(ChainEvent(s, kind, txid, height, inputs, payouts))
        return events


__all__ = [
    "CHANGE",
    "RECEIVE",
    "Anchor",
    "ChainBlock",
    "ChainEvent",
    "ChainIndex",
    "ChainIndexError",
    "IndexedCoin",
]
