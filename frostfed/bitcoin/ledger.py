"""A member's own record of what the pool owes each miner, so a payout is checked against it, never
against the requester's word.

SQLite (stdlib, WAL), keyed by the miner's output script:
- the pool software `credit()`s each script with what it earned;
- a payout the member approves is `reserve()`d at once: until it confirms or is replaced, its amounts
  count as spent, so a second request cannot pay the same debt meanwhile;
- `reconcile()` scans new blocks: a reserved payout that confirmed becomes paid for good, one whose
  inputs were spent by another transaction is dropped. A payout that spends an input of a reserved one
  is a replacement (fee bump) and does not count that one against the debt.

The member must reserve every payout it approves, whether or not its signature share ends up used:
with t-of-n signing a member outside the signing subset would otherwise never learn of the payout.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from bitcoin.core import CTransaction, b2lx

from frostfed.bitcoin.chain import ChainSource

Outpoint = tuple[str, int]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS debt (
    script BLOB PRIMARY KEY,
    credited INTEGER NOT NULL CHECK (credited >= 0),
    paid INTEGER NOT NULL DEFAULT 0 CHECK (paid >= 0)
);
CREATE TABLE IF NOT EXISTS reserved (
    txid TEXT PRIMARY KEY,
    height INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS reserved_input (
    txid TEXT NOT NULL REFERENCES reserved(txid) ON DELETE CASCADE,
    prev_txid TEXT NOT NULL,
    prev_vout INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS reserved_input_outpoint ON reserved_input(prev_txid, prev_vout);
CREATE TABLE IF NOT EXISTS reserved_output (
    txid TEXT NOT NULL REFERENCES reserved(txid) ON DELETE CASCADE,
    script BLOB NOT NULL,
    sats INTEGER NOT NULL CHECK (sats > 0)
);
CREATE TABLE IF NOT EXISTS payout (
    txid TEXT NOT NULL,
    height INTEGER NOT NULL,
    script BLOB NOT NULL,
    sats INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS scan (
    id INTEGER PRIMARY KEY CHECK (id = 0),
    height INTEGER NOT NULL
);
"""


class LedgerError(ValueError):
    """A ledger update that makes no sense (negative amount, unknown script)."""


@dataclass(frozen=True)
class DebtStatus:
    credited: int  # everything the pool ever credited this script
    paid: int  # paid by confirmed payouts
    reserved: int  # in approved payouts not yet confirmed (and not replaced by the request at hand)

    @property
    def available(self) -> int:
        """What a new payout may still pay this script."""
        return self.credited - self.paid - self.reserved


class Ledger:
    """Thread-safe (one connection behind a lock); `path` may be ":memory:" for tests."""

    def __init__(self, path: Path | str):
        self._lock = threading.Lock()
        self._db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA foreign_keys = ON")
        if str(path) != ":memory:":
            self._db.execute("PRAGMA journal_mode = WAL")
        self._db.executescript(_SCHEMA)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def credit(self, script: bytes, sats: int) -> None:
        """Record that the pool owes `script` `sats` more (called by the pool's share accounting)."""
        if not isinstance(sats, int) or sats <= 0:
            raise LedgerError(f"a credit is a positive number of satoshis, not {sats!r}")
        with self._lock:
            self._db.execute(
                "INSERT INTO debt (script, credited) VALUES (?, ?) "
                "ON CONFLICT(script) DO UPDATE SET credited = credited + excluded.credited",
                (bytes(script), sats),
            )

    def knows(self, script: bytes) -> bool:
        with self._lock:
            return self._db.execute("SELECT 1 FROM debt WHERE script = ?", (bytes(script),)).fetchone() is not None

    def status(self, script: bytes, replacing: Iterable[Outpoint] = ()) -> DebtStatus:
        """Debt of `script`; reserved payouts spending any of `replacing` are left out (replaced)."""
        spent = set(replacing)
        with self._lock:
            row = self._db.execute("SELECT credited, paid FROM debt WHERE script = ?", (bytes(script),)).fetchone()
            if row is None:
                return DebtStatus(0, 0, 0)
            rows = self._db.execute(
                "SELECT txid, sats FROM reserved_output WHERE script = ?", (bytes(script),)
            ).fetchall()
            reserved = 0
            for txid, sats in rows:
                inputs = self._db.execute(
                    "SELECT prev_txid, prev_vout FROM reserved_input WHERE txid = ?", (txid,)
                ).fetchall()
                if not spent.intersection((t, v) for t, v in inputs):
                    reserved += sats
        return DebtStatus(row[0], row[1], reserved)

    def reserve(self, txid: str, inputs: Iterable[Outpoint], outputs: Mapping[bytes, int], height: int) -> None:
        """Count an approved payout against the debts until it confirms or is replaced.

        `height` is the chain tip when it was approved; the payout cannot confirm at or below it.
        Reserving the same txid again is a no-op.
        """
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                if self._db.execute("SELECT 1 FROM reserved WHERE txid = ?", (txid,)).fetchone():
                    self._db.execute("COMMIT")
                    return
                self._db.execute("INSERT INTO reserved (txid, height) VALUES (?, ?)", (txid, height))
                self._db.executemany(
                    "INSERT INTO reserved_input (txid, prev_txid, prev_vout) VALUES (?, ?, ?)",
                    [(txid, t, v) for t, v in inputs],
                )
                self._db.executemany(
                    "INSERT INTO reserved_output (txid, script, sats) VALUES (?, ?, ?)",
                    [(txid, bytes(s), n) for s, n in outputs.items()],
                )
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise

    def release(self, txid: str) -> None:
        """Forget an approval that was never signed (its request failed), so the debt can be paid."""
        with self._lock:
            self._db.execute("DELETE FROM reserved WHERE txid = ?", (txid,))

    def reserved_txids(self) -> list[str]:
        with self._lock:
            return [r[0] for r in self._db.execute("SELECT txid FROM reserved ORDER BY txid")]

    def payouts(self) -> list[tuple[str, int, bytes, int]]:
        """Confirmed payouts: (txid, block height, script, sats)."""
        with self._lock:
            return [
                (t, h, bytes(s), n)
                for t, h, s, n in self._db.execute("SELECT txid, height, script, sats FROM payout ORDER BY rowid")
            ]

    def reconcile(self, chain: ChainSource, min_confirmations: int = 1) -> list[str]:
        """Scan blocks with at least `min_confirmations` for reserved payouts; returns those confirmed.

        Block reorganisations deeper than `min_confirmations` are not undone.
        """
        if min_confirmations < 1:
            raise LedgerError("a payout counts as paid only once it is in a block")
        last = chain.tip_height() - min_confirmations + 1
        with self._lock:
            row = self._db.execute("SELECT height FROM scan WHERE id = 0").fetchone()
            lowest = self._db.execute("SELECT MIN(height) FROM reserved").fetchone()[0]
        if lowest is None:
            start = last + 1  # nothing to look for
        elif row is None:
            start = lowest + 1
        else:
            start = min(row[0], lowest) + 1
        blocks = [(h, chain.block_transactions(h)) for h in range(start, last + 1)]
        confirmed: list[str] = []
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                for height, txs in blocks:
                    for tx in txs:
                        confirmed += self._apply_block_tx(height, tx)
                self._db.execute(
                    "INSERT INTO scan (id, height) VALUES (0, ?) "
                    "ON CONFLICT(id) DO UPDATE SET height = MAX(height, excluded.height)",
                    (max(last, row[0] if row else last),),
                )
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
        return confirmed

    def _apply_block_tx(self, height: int, tx: CTransaction) -> list[str]:
        txid = b2lx(tx.GetTxid())
        if self._db.execute("SELECT 1 FROM reserved WHERE txid = ?", (txid,)).fetchone():
            outputs = self._db.execute("SELECT script, sats FROM reserved_output WHERE txid = ?", (txid,)).fetchall()
            for script, sats in outputs:
                self._db.execute("UPDATE debt SET paid = paid + ? WHERE script = ?", (sats, script))
                self._db.execute(
                    "INSERT INTO payout (txid, height, script, sats) VALUES (?, ?, ?, ?)",
                    (txid, height, script, sats),
                )
            self._db.execute("DELETE FROM reserved WHERE txid = ?", (txid,))
            confirmed = [txid]
        else:
            confirmed = []
        for txin in tx.vin:
            prev = (b2lx(txin.prevout.hash), txin.prevout.n)
            for (other,) in self._db.execute(
                "SELECT txid FROM reserved_input WHERE prev_txid = ? AND prev_vout = ?", prev
            ).fetchall():
                self._db.execute("DELETE FROM reserved WHERE txid = ?", (other,))  # conflicted: dropped
        return confirmed

    # -- keyed credits (what the front ends' frost-ledger-credit calls) --------------------------

    def credit_once(self, key: str, script: bytes, sats: int, at: int) -> bool:
        """`credit` under an idempotency key: True if credited now, False if this key already credited
        exactly this; a key reused for another script or amount is an error (nothing is credited)."""
        if not isinstance(sats, int) or isinstance(sats, bool) or sats <= 0:
            raise LedgerError(f"a credit is a positive number of satoshis, not {sats!r}")
        with self._lock:
            self._db.execute(_KEYED_SCHEMA)
            self._db.execute("BEGIN IMMEDIATE")
            try:
                row = self._db.execute("SELECT script, sats FROM keyed_credit WHERE key = ?", (key,)).fetchone()
                if row is not None:
                    self._db.execute("ROLLBACK")
                    if bytes(row[0]) != bytes(script) or row[1] != sats:
                        raise LedgerError(f"key {key!r} was already used for a different credit ({row[1]} sats)")
                    return False
                self._db.execute(
                    "INSERT INTO keyed_credit (key, script, sats, at) VALUES (?, ?, ?, ?)",
                    (key, bytes(script), sats, at),
                )
                self._db.execute(
                    "INSERT INTO debt (script, credited) VALUES (?, ?) "
                    "ON CONFLICT(script) DO UPDATE SET credited = credited + excluded.credited",
                    (bytes(script), sats),
                )
                self._db.execute("COMMIT")
            except LedgerError:
                raise
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
        return True

    def keyed_credits(self) -> list[tuple[str, bytes, int, int]]:
        """Keyed credits, oldest first: (key, script, sats, unix time)."""
        with self._lock:
            self._db.execute(_KEYED_SCHEMA)
            return [
                (k, bytes(s), n, t)
                for k, s, n, t in self._db.execute("SELECT key, script, sats, at FROM keyed_credit ORDER BY rowid")
            ]

    def scripts(self) -> list[bytes]:
        """Every script the ledger holds a debt for."""
        with self._lock:
            return [bytes(r[0]) for r in self._db.execute("SELECT script FROM debt ORDER BY rowid")]


_KEYED_SCHEMA = """
CREATE TABLE IF NOT EXISTS keyed_credit (
    key TEXT PRIMARY KEY,
    script BLOB NOT NULL,
    sats INTEGER NOT NULL CHECK (sats > 0),
    at INTEGER NOT NULL
)
"""
