"""The member database itself: its schema, how it is opened (WAL, full sync, secure delete) and the
one-transaction-at-a-time access every record family shares.

Kept apart from the record families (`nonce_journal`, `request_log`, `store`) so each of them reads
as its own queries over one connection, and so the durability settings are stated once.
"""

from __future__ import annotations

import contextlib
import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS liveness (peer TEXT PRIMARY KEY, offline_seconds REAL NOT NULL);
CREATE TABLE IF NOT EXISTS approvals (
    kind TEXT NOT NULL CHECK (kind IN ('join', 'expel')),
    subject TEXT NOT NULL,
    min_bond_sats INTEGER NOT NULL,
    created REAL NOT NULL,
    PRIMARY KEY (kind, subject)
);
CREATE TABLE IF NOT EXISTS refusals (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    created REAL NOT NULL,
    stage TEXT NOT NULL,
    epoch INTEGER NOT NULL,
    kind TEXT NOT NULL,
    subject TEXT NOT NULL,
    proposer TEXT NOT NULL,
    nonce TEXT NOT NULL,
    code TEXT NOT NULL,
    reason TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS changes (
    proposer TEXT NOT NULL,
    nonce TEXT NOT NULL,
    epoch INTEGER NOT NULL,
    state TEXT NOT NULL,
    record TEXT NOT NULL,
    updated REAL NOT NULL,
    PRIMARY KEY (proposer, nonce)
);
CREATE TABLE IF NOT EXISTS epochs (
    epoch INTEGER PRIMARY KEY,
    status TEXT NOT NULL CHECK (status IN ('active', 'pending', 'retired')),
    members TEXT NOT NULL,
    threshold INTEGER NOT NULL,
    group_key BLOB NOT NULL,
    chain_code BLOB NOT NULL,
    pubshares TEXT NOT NULL,
    recovery BLOB NOT NULL,
    sealed_share BLOB,
    created REAL NOT NULL,
    activation_txid TEXT
);
CREATE TABLE IF NOT EXISTS nonces (
    pubnonce BLOB PRIMARY KEY,
    request_id TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('issued', 'used', 'discarded')),
    created REAL NOT NULL,
    updated REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS requests (
    id TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    coordinator TEXT NOT NULL,
    status TEXT NOT NULL,
    payload TEXT NOT NULL,
    outcome TEXT,
    created REAL NOT NULL,
    updated REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS addresses (
    epoch INTEGER NOT NULL,
    idx INTEGER NOT NULL,
    address TEXT NOT NULL,
    created REAL NOT NULL,
    PRIMARY KEY (epoch, idx)
);
"""


class StoreError(Exception):
    """The database cannot be opened: not a SQLite file, unreadable, or locked by another process."""


class Database:
    """One SQLite connection, guarded by a lock, that the record families write through."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.RLock()
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        except (OSError, sqlite3.Error) as e:
            raise StoreError(f"cannot open the member database {path}: {e}") from None
        try:
            mode = self._db.execute("PRAGMA journal_mode=WAL").fetchone()[0]
            if mode != "wal":
                raise StoreError(f"the member database {path} cannot use a write-ahead log (mode {mode})")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.execute("PRAGMA secure_delete=ON")  # deleted key shares are overwritten, not left behind
            self._db.executescript(SCHEMA)
            self._migrate()
        except sqlite3.Error as e:
            self._db.close()
            raise StoreError(f"cannot open the member database {path}: {e}") from None

    def _migrate(self) -> None:
        """Columns added since the first release, for databases made before them."""
        columns = {r[1] for r in self._db.execute("PRAGMA table_info(epochs)")}
        if "activation_txid" not in columns:
            self._db.execute("ALTER TABLE epochs ADD COLUMN activation_txid TEXT")

    @contextlib.contextmanager
    def transaction(self) -> Iterator[None]:
        """Several writes as one: all of them or none survive a crash. Inside another transaction of the
        same thread it is part of that one."""
        with self._lock:
            if self._db.in_transaction:
                yield
                return
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            try:
                self._db.execute("COMMIT")
            except sqlite3.Error:  # never leave the database locked for the other connections
                self._db.execute("ROLLBACK")
                raise

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def _exec(self, sql: str, args: tuple[Any, ...] = ()) -> sqlite3.Cursor:
        with self._lock:
            return self._db.execute(sql, args)

    # meta
    def get_meta(self, key: str) -> str | None:
        row = self._exec("SELECT value FROM meta WHERE key=?", (key,)).fetchone()
        return row[0] if row else None

    def set_meta(self, key: str, value: str) -> None:
        self._exec(
            "INSERT INTO meta(key, value) VALUES(?, ?) ON CONFLICT(key) DO UPDATE SET value=excluded.value",
            (key, value),
        )

    def scrub(self) -> None:
        """Push deleted secrets out of the write-ahead log as well."""
        self._exec("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()  # a statement left open would block COMMIT
