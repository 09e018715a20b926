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

The core (`apply_block`, `rollback_block`) takes blocks and returns nothing but state; `sync` is the
driver that asks a `ChainSource`. SQLite (stdlib, WAL), one connection behind a lock.
"""

from __future__ import annotations

import secrets
import sqlite3
import threading
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from bitcoin.core import CTransaction, b2lx

from frostfed.bitcoin.chain import ChainBlock, ChainSource

RECEIVE = 0
CHANGE = 1
RECEIVE_LOOKAHEAD = 1000
"""Receive addresses past the highest one paid: as far as a member accepts another's announcement."""
CHANGE_LOOKAHEAD = 20
"""Change indexes are canonical (one per anchor transaction), so a short look-ahead covers them."""

COINBASE_MATURITY = 100
"""The consensus maturity of a block reward, as `policy.COINBASE_MATURITY` (which imports the ledger,
which imports this module)."""

Outpoint = tuple[str, int]
ScriptOf = Callable[[int, int], bytes]
"""(chain, index) -> output script of that path of an epoch."""

_SCHEMA = """
CREATE TABLE IF NOT EXISTS block (
    height INTEGER PRIMARY KEY,
    hash TEXT NOT NULL,
    prev TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS epoch (
    epoch INTEGER PRIMARY KEY,
    since INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS coin (
    txid TEXT NOT NULL,
    vout INTEGER NOT NULL,
    epoch INTEGER NOT NULL,
    chain INTEGER NOT NULL,
    idx INTEGER NOT NULL,
    sats INTEGER NOT NULL,
    script BLOB NOT NULL,
    height INTEGER NOT NULL,
    coinbase INTEGER NOT NULL,
    spent_txid TEXT,
    spent_height INTEGER,
    PRIMARY KEY (txid, vout)
);
CREATE INDEX IF NOT EXISTS coin_epoch ON coin(epoch, spent_txid);
CREATE INDEX IF NOT EXISTS coin_height ON coin(height);
CREATE INDEX IF NOT EXISTS coin_spent_height ON coin(spent_height);
CREATE INDEX IF NOT EXISTS coin_spent_txid ON coin(spent_txid);
CREATE TABLE IF NOT EXISTS fed_tx (
    txid TEXT PRIMARY KEY,
    height INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS fed_tx_height ON fed_tx(height);
CREATE TABLE IF NOT EXISTS fed_input (
    txid TEXT NOT NULL,
    prev_txid TEXT NOT NULL,
    prev_vout INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS fed_input_txid ON fed_input(txid);
CREATE TABLE IF NOT EXISTS fed_output (
    txid TEXT NOT NULL,
    vout INTEGER NOT NULL,
    script BLOB NOT NULL,
    sats INTEGER NOT NULL,
    federation INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS fed_output_txid ON fed_output(txid);
CREATE TABLE IF NOT EXISTS event (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    kind TEXT NOT NULL CHECK (kind IN ('add', 'remove')),
    txid TEXT NOT NULL,
    height INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS anchor (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    epoch INTEGER NOT NULL,
    height INTEGER NOT NULL,
    txid TEXT,
    vout INTEGER,
    count INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS anchor_epoch ON anchor(epoch, seq);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""


class ChainIndexError(Exception):
    """The index cannot follow the chain (a block that does not connect, a fork below what it holds)."""


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


class _Window:
    """The watched scripts of one epoch: paths 0 .. highest used + look-ahead on each chain. Derived
    scripts are cached, so a rollback that narrows the window costs no derivation."""

    def __init__(self, epoch: int, script_of: ScriptOf) -> None:
        self.epoch = epoch
        self.script_of = script_of
        self.limit = {RECEIVE: 0, CHANGE: 0}  # paths below the limit are watched
        self._cache: dict[int, list[bytes]] = {RECEIVE: [], CHANGE: []}

    def script(self, chain: int, index: int) -> bytes:
        cache = self._cache[chain]
        while len(cache) <= index:
            cache.append(self.script_of(chain, len(cache)))
        return cache[index]

    def extend(self, chain: int, used: int, by_script: dict[bytes, tuple[int, int, int]]) -> None:
        want = used + 1 + (RECEIVE_LOOKAHEAD if chain == RECEIVE else CHANGE_LOOKAHEAD)
        for i in range(self.limit[chain], want):
            by_script[self.script(chain, i)] = (self.epoch, chain, i)
        self.limit[chain] = max(self.limit[chain], want)


class ChainIndex:
    """Thread-safe; `path` may be ":memory:" for tests."""

    def __init__(self, path: Path | str) -> None:
        self._lock = threading.RLock()
        self._db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
        if str(path) != ":memory:":
            self._db.execute("PRAGMA journal_mode = WAL")
        self._db.executescript(_SCHEMA)
        self._db.execute("INSERT OR IGNORE INTO meta (key, value) VALUES ('instance', ?)", (secrets.token_hex(16),))
        self.instance: str = self._db.execute("SELECT value FROM meta WHERE key = 'instance'").fetchone()[0]
        """Names this index's event sequence: a reader that followed another (a deleted and rebuilt
        index) starts over."""
        self._windows: dict[int, _Window] = {}
        self._by_script: dict[bytes, tuple[int, int, int]] = {}

    def close(self) -> None:
        with self._lock:
            self._db.close()

    @contextmanager
    def _tx(self) -> Iterator[None]:
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield
            self._db.execute("COMMIT")
        except BaseException:
            self._db.execute("ROLLBACK")
            raise

    # -- what is watched ---------------------------------------------------------------------------

    def watch(self, epoch: int, script_of: ScriptOf, since: int) -> None:
        """Watch an epoch's scripts from block `since` on. An epoch new to the index whose `since` lies
        below the indexed tip rolls the index back to it; the next `sync` reads those blocks again with
        the epoch watched (every member then derives the same state as one that watched it all along)."""
        with self._lock:
            if epoch in self._windows:
                return
            known = self._db.execute("SELECT since FROM epoch WHERE epoch = ?", (epoch,)).fetchone()
            window = _Window(epoch, script_of)
            self._windows[epoch] = window
            self._rebuild_windows()
            if known is None:
                since = max(0, since)
                self._db.execute("INSERT INTO epoch (epoch, since) VALUES (?, ?)", (epoch, since))
                while self.tip_height() >= since:
                    self._rollback_one()

    def unwatch(self, epoch: int) -> None:
        """Forget an epoch whose key changed (a change to the same epoch number after an aborted one):
        the index rolls back to where it read the epoch from, so the next `sync` reads those blocks
        again without the old key's scripts (and with the new key's, once it is watched)."""
        with self._lock:
            row = self._db.execute("SELECT since FROM epoch WHERE epoch = ?", (epoch,)).fetchone()
            if row is not None:
                while self.tip_height() >= row[0]:
                    self._rollback_one()
                self._db.execute("DELETE FROM epoch WHERE epoch = ?", (epoch,))
            self._windows.pop(epoch, None)
            self._rebuild_windows()

    def watched_epochs(self) -> list[int]:
        with self._lock:
            return sorted(self._windows)

    def start_height(self) -> int:
        """Where the index reads from: the lowest `since` of its epochs (none: nothing to read)."""
        with self._lock:
            row = self._db.execute("SELECT MIN(since) FROM epoch").fetchone()
        return row[0] if row and row[0] is not None else -1

    def _rebuild_windows(self) -> None:
        self._by_script = {}
        for epoch, window in self._windows.items():
            window.limit = {RECEIVE: 0, CHANGE: 0}
            for chain in (RECEIVE, CHANGE):
                row = self._db.execute(
                    "SELECT MAX(idx) FROM coin WHERE epoch = ? AND chain = ?", (epoch, chain)
                ).fetchone()
                window.extend(chain, -1 if row[0] is None else row[0], self._by_script)

    def path_of(self, script: bytes) -> tuple[int, tuple[int, int]] | None:
        """(epoch, path) of a watched script."""
        with self._lock:
            found = self._by_script.get(bytes(script))
        return None if found is None else (found[0], (found[1], found[2]))

    # -- the core: blocks in -----------------------------------------------------------------------

    def tip_height(self) -> int:
        with self._lock:
            row = self._db.execute("SELECT MAX(height) FROM block").fetchone()
        return -1 if row[0] is None else row[0]

    def block_hash(self, height: int) -> str | None:
        with self._lock:
            row = self._db.execute("SELECT hash FROM block WHERE height = ?", (height,)).fetchone()
        return None if row is None else row[0]

    def apply_block(self, height: int, block_hash: str, prev_hash: str, txs: Iterable[CTransaction]) -> None:
        """Add the block that follows the indexed tip (its parent must be the tip)."""
        with self._lock, self._tx():
            tip = self.tip_height()
            if tip >= 0:
                if height != tip + 1:
                    raise ChainIndexError(f"block {height} does not follow the indexed tip {tip}")
                if prev_hash != self.block_hash(tip):
                    raise ChainIndexError(f"block {height} does not build on the indexed block {tip}")
            self._db.execute("INSERT INTO block (height, hash, prev) VALUES (?, ?, ?)", (height, block_hash, prev_hash))
            for tx in txs:
                self._apply_tx(height, tx)
            self._settle_anchors(height)

    def _apply_tx(self, height: int, tx: CTransaction) -> None:
        txid = b2lx(tx.GetTxid())
        spent: list[tuple[str, int, int]] = []  # (prev txid, prev vout, epoch)
        inputs = [(b2lx(i.prevout.hash), i.prevout.n) for i in tx.vin]
        if not tx.is_coinbase():
            for prev in inputs:
                row = self._db.execute(
                    "SELECT epoch FROM coin WHERE txid = ? AND vout = ? AND spent_txid IS NULL", prev
                ).fetchone()
                if row is not None:
                    spent.append((prev[0], prev[1], row[0]))
        outputs: list[tuple[int, bytes, int, bool]] = []
        for j, out in enumerate(tx.vout):
            script = bytes(out.scriptPubKey)
            found = self._by_script.get(script)
            if found is not None:
                epoch, chain, idx = found
                self._db.execute(
                    "INSERT OR IGNORE INTO coin (txid, vout, epoch, chain, idx, sats, script, height, coinbase) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (txid, j, epoch, chain, idx, out.nValue, script, height, int(tx.is_coinbase())),
                )
                self._windows[epoch].extend(chain, idx, self._by_script)
            outputs.append((j, script, out.nValue, found is not None))
        if not spent:
            return
        for prev_txid, prev_vout, _ in spent:
            self._db.execute(
                "UPDATE coin SET spent_txid = ?, spent_height = ? WHERE txid = ? AND vout = ?",
                (txid, height, prev_txid, prev_vout),
            )
        self._db.execute("INSERT OR REPLACE INTO fed_tx (txid, height) VALUES (?, ?)", (txid, height))
        self._db.executemany(
            "INSERT INTO fed_input (txid, prev_txid, prev_vout) VALUES (?, ?, ?)", [(txid, t, v) for t, v in inputs]
        )
        self._db.executemany(
            "INSERT INTO fed_output (txid, vout, script, sats, federation) VALUES (?, ?, ?, ?, ?)",
            [(txid, j, s, n, int(f)) for j, s, n, f in outputs],
        )
        self._db.execute("INSERT INTO event (kind, txid, height) VALUES ('add', ?, ?)", (txid, height))
        for epoch in sorted({e for _, _, e in spent}):
            current = self._anchor_row(epoch)
            if current is None or current[0] is None:
                continue
            if not any((t, v) == (current[0], current[1]) for t, v, e in spent if e == epoch):
                continue
            count = current[2]
            window = self._windows.get(epoch)
            change = window.script(CHANGE, count) if window is not None else None
            nxt = next((j for j, s, _, f in outputs if f and s == change), None)
            self._db.execute(
                "INSERT INTO anchor (epoch, height, txid, vout, count) VALUES (?, ?, ?, ?, ?)",
                (epoch, height, txid if nxt is not None else None, nxt, count + 1),
            )

    def _settle_anchors(self, height: int) -> None:
        """At the end of a block: an epoch without an anchor takes its earliest unspent coin (a coinbase
        output counts from the block where it has its 100 confirmations)."""
        for epoch in sorted(self._windows):
            current = self._anchor_row(epoch)
            if current is not None and current[0] is not None:
                continue
            first = self._db.execute(
                "SELECT txid, vout FROM coin WHERE epoch = ? AND spent_txid IS NULL AND (coinbase = 0 OR height <= ?) "
                "ORDER BY height, txid, vout LIMIT 1",
                (epoch, height - COINBASE_MATURITY + 1),
            ).fetchone()
            if first is None:
                continue
            count = current[2] if current is not None else 0
            self._db.execute(
                "INSERT INTO anchor (epoch, height, txid, vout, count) VALUES (?, ?, ?, ?, ?)",
                (epoch, height, first[0], first[1], count),
            )

    def _anchor_row(self, epoch: int) -> tuple[str | None, int | None, int] | None:
        return self._db.execute(
            "SELECT txid, vout, count FROM anchor WHERE epoch = ? ORDER BY seq DESC LIMIT 1", (epoch,)
        ).fetchone()

    def rollback_block(self) -> None:
        """Undo the indexed tip (a reorganisation): its coins, spends, anchors and transactions."""
        with self._lock:
            self._rollback_one()

    def _rollback_one(self) -> None:
        with self._tx():
            height = self.tip_height()
            if height < 0:
                return
            self._db.execute("DELETE FROM coin WHERE height = ?", (height,))
            self._db.execute("UPDATE coin SET spent_txid = NULL, spent_height = NULL WHERE spent_height = ?", (height,))
            for (txid,) in self._db.execute("SELECT txid FROM fed_tx WHERE height = ?", (height,)).fetchall():
                self._db.execute("DELETE FROM fed_input WHERE txid = ?", (txid,))
                self._db.execute("DELETE FROM fed_output WHERE txid = ?", (txid,))
                self._db.execute("INSERT INTO event (kind, txid, height) VALUES ('remove', ?, ?)", (txid, height))
            self._db.execute("DELETE FROM fed_tx WHERE height = ?", (height,))
            self._db.execute("DELETE FROM anchor WHERE height = ?", (height,))
            self._db.execute("DELETE FROM block WHERE height = ?", (height,))
            self._rebuild_windows()

    # -- the driver --------------------------------------------------------------------------------

    def sync(self, source: ChainSource, max_blocks: int | None = None) -> int:
        """Follow `source` to its tip: roll back what it no longer holds, then read the new blocks.
        Returns the indexed tip. Raises ChainError if the source cannot answer."""
        with self._lock:
            start = self.start_height()
            if start < 0:
                return self.tip_height()
            tip = source.tip_height()
            while self.tip_height() >= start:
                mine = self.tip_height()
                if mine <= tip and source.block_hash(mine) == self.block_hash(mine):
                    break
                self._rollback_one()
            read = 0
            height = max(self.tip_height() + 1, start)
            while height <= tip and (max_blocks is None or read < max_blocks):
                block = source.block(height)
                if self.tip_height() >= 0 and block.prev_hash != self.block_hash(height - 1):
                    self._rollback_one()  # the source reorganised while we read
                    height = self.tip_height() + 1
                    if height < start:
                        height = start
                    continue
                self.apply_block(height, block.hash, block.prev_hash, block.txs)
                read += 1
                height += 1
            return self.tip_height()

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
