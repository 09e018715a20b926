"""A member's own record of what the pool owes each miner, so a payout is checked against it, never
against the requester's word.

SQLite (stdlib, WAL), keyed by the miner's output script:
- the pool software `credit()`s each script with what it earned;
- **paid is what the chain shows**: `reconcile()` reads the member's own chain index, and every
  confirmed output of a transaction spending a federation coin counts as paid to its script, whoever
  coordinated that transaction and whether or not this member ever saw the request. A reorganisation
  takes the outputs of a transaction that left the chain out again;
- a payout the member approves is `reserve()`d at once: until a confirmed transaction spends one of
  its inputs (itself or a conflict), its amounts count as spent, so a second request cannot pay the
  same debt meanwhile. A payout that spends an input of a reserved one is a replacement (fee bump)
  and does not count that one against the debt; a fee bump the member approved (`replace()`: the same
  coins, the same payees and amounts) takes over the reservation of the payout it replaces. **Only the
  chain releases a reservation**: no peer's message does (a partial signature of this member might
  exist, or other members might still complete the request).

The member must reserve every payout it approves, whether or not its signature share ends up used.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from frostfed.bitcoin.chain_index import ChainIndex

Outpoint = tuple[str, int]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS debt (
    script BLOB PRIMARY KEY,
    credited INTEGER NOT NULL CHECK (credited >= 0),
    paid INTEGER NOT NULL DEFAULT 0 CHECK (paid >= 0)
);
CREATE TABLE IF NOT EXISTS reserved (
    txid TEXT PRIMARY KEY,
    height INTEGER NOT NULL,
    settled_by TEXT
);
CREATE TABLE IF NOT EXISTS reserved_input (
    txid TEXT NOT NULL REFERENCES reserved(txid) ON DELETE CASCADE,
    prev_txid TEXT NOT NULL,
    prev_vout INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS reserved_input_outpoint ON reserved_input(prev_txid, prev_vout);
CREATE INDEX IF NOT EXISTS reserved_input_txid ON reserved_input(txid);
CREATE TABLE IF NOT EXISTS reserved_output (
    txid TEXT NOT NULL REFERENCES reserved(txid) ON DELETE CASCADE,
    script BLOB NOT NULL,
    sats INTEGER NOT NULL CHECK (sats > 0)
);
CREATE INDEX IF NOT EXISTS reserved_output_script ON reserved_output(script);
CREATE INDEX IF NOT EXISTS reserved_output_txid ON reserved_output(txid);
CREATE TABLE IF NOT EXISTS reserved_replaced (
    txid TEXT PRIMARY KEY REFERENCES reserved(txid) ON DELETE CASCADE,
    by_txid TEXT NOT NULL REFERENCES reserved(txid) ON DELETE CASCADE
);
CREATE TABLE IF NOT EXISTS payout (
    txid TEXT NOT NULL,
    height INTEGER NOT NULL,
    script BLOB NOT NULL,
    sats INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS payout_script ON payout(script);
CREATE INDEX IF NOT EXISTS payout_txid ON payout(txid);
CREATE TABLE IF NOT EXISTS chain_seq (
    id INTEGER PRIMARY KEY CHECK (id = 0),
    seq INTEGER NOT NULL,
    instance TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS scan (
    id INTEGER PRIMARY KEY CHECK (id = 0),
    height INTEGER NOT NULL
);
"""


_CHUNK = 500
"""Values per `IN (...)` list: well inside SQLite's limit on bound parameters."""
_FEW = 16
"""Up to this many scripts, reserved outputs are found through the script index."""


class LedgerError(ValueError):
    """A ledger update that makes no sense (negative amount, unknown script)."""


@dataclass(frozen=True)
class DebtStatus:
    credited: int  # everything the pool ever credited this script
    paid: int  # paid by confirmed transactions of the federation (what the chain shows)
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
        columns = {r[1] for r in self._db.execute("PRAGMA table_info(reserved)")}
        if "settled_by" not in columns:  # a ledger from before the chain index
            self._db.execute("ALTER TABLE reserved ADD COLUMN settled_by TEXT")

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
        return self.statuses([script], replacing).get(bytes(script), DebtStatus(0, 0, 0))

    def statuses(self, scripts: Iterable[bytes], replacing: Iterable[Outpoint] = ()) -> dict[bytes, DebtStatus]:
        """`status` of every script the ledger knows among `scripts` (unknown ones are left out), read in
        one transaction with a few indexed queries however many outputs a payout has."""
        wanted = list(dict.fromkeys(bytes(s) for s in scripts))
        spent = list(dict.fromkeys(replacing))
        credited: dict[bytes, int] = {}
        paid: dict[bytes, int] = {}
        reserved: dict[bytes, int] = {}
        with self._lock:
            self._db.execute("BEGIN")  # one snapshot: a reconcile cannot land between the queries
            try:
                replaced = {
                    txid
                    for outpoint in spent
                    for (txid,) in self._db.execute(
                        "SELECT txid FROM reserved_input WHERE prev_txid = ? AND prev_vout = ?", outpoint
                    )
                }
                for i in range(0, len(wanted), _CHUNK):
                    chunk = wanted[i : i + _CHUNK]
                    marks = ",".join("?" * len(chunk))
                    for script, amount in self._db.execute(
                        f"SELECT script, credited FROM debt WHERE script IN ({marks})", chunk
                    ):
                        credited[bytes(script)] = amount
                    for script, amount in self._db.execute(
                        f"SELECT script, SUM(sats) FROM payout WHERE script IN ({marks}) GROUP BY script", chunk
                    ):
                        paid[bytes(script)] = int(amount)
                for script, txid, sats in self._reserved_outputs(wanted):
                    if txid not in replaced:
                        reserved[script] = reserved.get(script, 0) + sats
            finally:
                self._db.execute("COMMIT")
        return {s: DebtStatus(c, paid.get(s, 0), reserved.get(s, 0)) for s, c in credited.items()}

    def _reserved_outputs(self, scripts: list[bytes]) -> list[tuple[bytes, str, int]]:
        """(script, txid, sats) of the outputs to `scripts` in reservations no confirmed transaction
        settled. A few scripts are looked up through the script index; a whole payout's through the
        open reservations, which are few (the chain settles them), while the settled ones stay on
        record and grow with every payout."""
        if len(scripts) <= _FEW:
            marks = ",".join("?" * len(scripts))
            rows = self._db.execute(
                "SELECT o.script, o.txid, o.sats FROM reserved_output o JOIN reserved r ON r.txid = o.txid "
                f"WHERE o.script IN ({marks}) AND r.settled_by IS NULL "
                "AND o.txid NOT IN (SELECT txid FROM reserved_replaced)",
                scripts,
            ).fetchall()
            return [(bytes(s), t, n) for s, t, n in rows]
        wanted = set(scripts)
        open_txids = [
            t
            for (t,) in self._db.execute(
                "SELECT txid FROM reserved WHERE settled_by IS NULL "
                "AND txid NOT IN (SELECT txid FROM reserved_replaced)"
            )
        ]
        out = []
        for i in range(0, len(open_txids), _CHUNK):
            chunk = open_txids[i : i + _CHUNK]
            marks = ",".join("?" * len(chunk))
            for s, t, n in self._db.execute(
                f"SELECT script, txid, sats FROM reserved_output WHERE txid IN ({marks})", chunk
            ):
                if bytes(s) in wanted:
                    out.append((bytes(s), t, n))
        return out

    def _paid(self, script: bytes) -> int:
        row = self._db.execute("SELECT COALESCE(SUM(sats), 0) FROM payout WHERE script = ?", (script,)).fetchone()
        return int(row[0])

    def paid(self, script: bytes) -> int:
        """Everything the chain shows paid to `script` by the federation's transactions."""
        with self._lock:
            return self._paid(bytes(script))

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

    def replace(self, txid: str, by: str) -> None:
        """`by` (reserved, approved as a fee bump of `txid`: the same coins, payees and amounts) carries
        `txid`'s reservation from now on, so the debts are not counted reserved twice. Nothing is
        released: `by` reserves the same amounts, and the chain settles both once either confirms."""
        with self._lock:
            if txid == by or not self._db.execute("SELECT 1 FROM reserved WHERE txid = ?", (by,)).fetchone():
                return
            self._db.execute(
                "INSERT OR IGNORE INTO reserved_replaced (txid, by_txid) "
                "SELECT txid, ? FROM reserved WHERE txid = ?",
                (by, txid),
            )

    def reserved_txids(self) -> list[str]:
        """Approved payouts no confirmed transaction has settled yet."""
        with self._lock:
            return [r[0] for r in self._db.execute("SELECT txid FROM reserved WHERE settled_by IS NULL ORDER BY txid")]

    def payouts(self) -> list[tuple[str, int, bytes, int]]:
        """Confirmed payouts: (txid, block height, script, sats), as the chain shows them."""
        with self._lock:
            return [
                (t, h, bytes(s), n)
                for t, h, s, n in self._db.execute(
                    "SELECT txid, height, script, sats FROM payout WHERE sats > 0 ORDER BY height, rowid"
                )
            ]

    def reconcile(self, index: ChainIndex) -> list[str]:
        """Take in what the chain index learnt since the last call: the outputs of every federation
        transaction that confirmed count as paid, those of one a reorganisation removed no longer do;
        a confirmed transaction settles every reservation sharing an input with it. Returns the
        reserved txids that confirmed."""
        confirmed: list[str] = []
        while True:
            with self._lock:
                row = self._db.execute("SELECT seq, instance FROM chain_seq WHERE id = 0").fetchone()
            seq = row[0] if row is not None and row[1] == index.instance else 0
            events = index.events_since(seq)
            if not events:
                return confirmed
            with self._lock:
                self._db.execute("BEGIN IMMEDIATE")
                try:
                    if seq == 0:  # a new index (or none before): what the chain paid is read anew
                        self._db.execute("DELETE FROM payout")
                        self._db.execute("UPDATE reserved SET settled_by = NULL")
                    for ev in events:
                        if ev.kind == "add":
                            confirmed += self._confirm(ev.txid, ev.height, ev.inputs, ev.payouts)
                        else:
                            self._unconfirm(ev.txid)
                    self._db.execute(
                        "INSERT INTO chain_seq (id, seq, instance) VALUES (0, ?, ?) "
                        "ON CONFLICT(id) DO UPDATE SET seq = excluded.seq, instance = excluded.instance",
                        (events[-1].seq, index.instance),
                    )
                    self._db.execute("COMMIT")
                except BaseException:
                    self._db.execute("ROLLBACK")
                    raise

    def _confirm(
        self, txid: str, height: int, inputs: Iterable[Outpoint], payouts: Iterable[tuple[bytes, int]]
    ) -> list[str]:
        inputs = list(inputs)
        if not inputs or self._db.execute("SELECT 1 FROM payout WHERE txid = ? LIMIT 1", (txid,)).fetchone():
            return []
        self._db.executemany(
            "INSERT INTO payout (txid, height, script, sats) VALUES (?, ?, ?, ?)",
            [(txid, height, bytes(s), n) for s, n in payouts],
        )
        if not payouts:  # a transaction paying only the federation: remember it was counted
            self._db.execute("INSERT INTO payout (txid, height, script, sats) VALUES (?, ?, X'', 0)", (txid, height))
        settled = {txid} if self._db.execute("SELECT 1 FROM reserved WHERE txid = ?", (txid,)).fetchone() else set()
        for prev in inputs:
            for (other,) in self._db.execute(
                "SELECT txid FROM reserved_input WHERE prev_txid = ? AND prev_vout = ?", prev
            ).fetchall():
                settled.add(other)
        for other in settled:
            self._db.execute(
                "UPDATE reserved SET settled_by = ? WHERE txid = ? AND settled_by IS NULL", (txid, other)
            )
        return [txid] if txid in settled else []

    def _unconfirm(self, txid: str) -> None:
        self._db.execute("DELETE FROM payout WHERE txid = ?", (txid,))
        self._db.execute("UPDATE reserved SET settled_by = NULL WHERE settled_by = ?", (txid,))

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

    def debt_rows(self) -> list[tuple[bytes, int, int]]:
        """(script, credited, paid) of every debt, in one read: what members compare of their ledgers."""
        with self._lock:
            return [
                (bytes(s), c, p)
                for s, c, p in self._db.execute(
                    "SELECT d.script, d.credited, (SELECT COALESCE(SUM(p.sats), 0) FROM payout p "
                    "WHERE p.script = d.script) FROM debt d ORDER BY d.script"
                )
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
