"""Following the chain block by block: blocks in (`apply_block`), reorganisations undone
(`rollback_block`), and the driver (`sync`) that asks a `ChainSource`.

This is the part of the index that changes state; the queries over that state are `chain_index`.
The core takes blocks and returns nothing but state; SQLite (stdlib, WAL), one connection behind a lock.
"""

from __future__ import annotations

import secrets
import sqlite3
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

from bitcoin.core import CTransaction, b2lx

from frostfed.bitcoin.chain import ChainSource
from frostfed.bitcoin.chain_index_schema import (
    CHANGE,
    COINBASE_MATURITY,
    RECEIVE,
    SCHEMA,
    ChainIndexError,
    ScriptOf,
    WatchWindow,
)


class ChainFollower:
    """The index's writing half; thread-safe; `path` may be ":memory:" for tests."""

    def __init__(self, path: Path | str) -> None:
        self._lock = threading.RLock()
        self._db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
        if str(path) != ":memory:":
            self._db.execute("PRAGMA journal_mode = WAL")
        self._db.executescript(SCHEMA)
        self._db.execute("INSERT OR IGNORE INTO meta (key, value) VALUES ('instance', ?)", (secrets.token_hex(16),))
        self.instance: str = self._db.execute("SELECT value FROM meta WHERE key = 'instance'").fetchone()[0]
        """Names this index's event sequence: a reader that followed another (a deleted and rebuilt
        index) starts over."""
        self._windows: dict[int, WatchWindow] = {}
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
            window = WatchWindow(epoch, script_of)
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
