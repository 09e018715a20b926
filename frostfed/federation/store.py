"""A member's durable state in SQLite (WAL): epochs with their sealed key shares, the nonce journal,
signing requests and the address index.

The nonce journal is what makes nonce reuse impossible: a nonce's state moves only forward,
issued -> used or issued -> discarded, by a conditional UPDATE committed before a partial signature
made with it leaves the process. Secret nonces themselves are never written; after a restart every
nonce still `issued` is discarded, since it can no longer be known whether a signature used it.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
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


class NonceReuseError(Exception):
    """A nonce was asked for a second time: the signature is refused."""


@dataclass(frozen=True)
class EpochRecord:
    epoch: int
    status: str
    members: list[bytes]
    threshold: int
    group_key: bytes
    chain_code: bytes
    pubshares: list[bytes]
    recovery: bytes
    sealed_share: bytes | None
    activation_txid: str | None = None


class Store:
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

    # membership changes: one record per change this member took part in (membership/record.py)
    def save_change(self, proposer: str, nonce: str, epoch: int, state: str, record: str) -> None:
        self._exec(
            "INSERT INTO changes VALUES(?,?,?,?,?,?) ON CONFLICT(proposer, nonce) DO UPDATE SET "
            "epoch=excluded.epoch, state=excluded.state, record=excluded.record, updated=excluded.updated",
            (proposer, nonce, epoch, state, record, time.time()),
        )

    def changes(self) -> list[str]:
        """Every change record, in the order they were first saved."""
        return [r[0] for r in self._exec("SELECT record FROM changes ORDER BY rowid").fetchall()]

    # membership: this member's own liveness records, its operator's decisions, its refusals
    def offline_seconds(self) -> dict[bytes, float]:
        rows = self._exec("SELECT peer, offline_seconds FROM liveness").fetchall()
        return {bytes.fromhex(p): s for p, s in rows}

    def save_offline_seconds(self, offline: dict[bytes, float]) -> None:
        with self.transaction():
            self._exec("DELETE FROM liveness")
            for peer, seconds in offline.items():
                self._exec("INSERT INTO liveness VALUES(?, ?)", (peer.hex(), seconds))

    def approve(self, kind: str, subject: bytes, min_bond_sats: int = 0) -> None:
        self._exec(
            "INSERT INTO approvals VALUES(?,?,?,?) ON CONFLICT(kind, subject) DO UPDATE SET "
            "min_bond_sats=excluded.min_bond_sats, created=excluded.created",
            (kind, subject.hex(), min_bond_sats, time.time()),
        )

    def withdraw_approval(self, kind: str, subject: bytes) -> bool:
        cur = self._exec("DELETE FROM approvals WHERE kind=? AND subject=?", (kind, subject.hex()))
        return cur.rowcount > 0

    def approvals(self, kind: str) -> dict[bytes, int]:
        rows = self._exec("SELECT subject, min_bond_sats FROM approvals WHERE kind=?", (kind,)).fetchall()
        return {bytes.fromhex(s): b for s, b in rows}

    def record_refusal(self, stage: str, body: dict[str, Any], code: str, reason: str, keep: int = 1000) -> None:
        """A refused proposal or transition, with its reason; a repeat of the same refusal is kept once,
        and only the latest `keep` are kept (a peer cannot fill the disk with proposals)."""
        nonce = str(body.get("nonce", ""))[:32]
        with self.transaction():
            seen = self._exec(
                "SELECT 1 FROM refusals WHERE stage=? AND nonce=? AND code=? AND proposer=?",
                (stage, nonce, code, str(body.get("proposer", ""))[:66]),
            ).fetchone()
            if seen:
                return
            self._exec(
                "INSERT INTO refusals(created, stage, epoch, kind, subject, proposer, nonce, code, reason) "
                "VALUES(?,?,?,?,?,?,?,?,?)",
                (
                    time.time(),
                    stage,
                    int(body.get("epoch", 0)),
                    str(body.get("kind", ""))[:8],
                    str(body.get("subject", ""))[:66],
                    str(body.get("proposer", ""))[:66],
                    nonce,
                    code,
                    reason[:1000],
                ),
            )
            self._exec("DELETE FROM refusals WHERE id <= (SELECT max(id) FROM refusals) - ?", (keep,))

    def refusals(self, limit: int = 100) -> list[dict[str, Any]]:
        rows = self._exec(
            "SELECT created, stage, epoch, kind, subject, proposer, nonce, code, reason FROM refusals "
            "ORDER BY id DESC LIMIT ?",
            (limit,),
        ).fetchall()
        names = ("time", "stage", "epoch", "kind", "subject", "proposer", "nonce", "code", "reason")
        return [dict(zip(names, r, strict=True)) for r in reversed(rows)]

    # epochs
    def save_epoch(self, rec: EpochRecord) -> None:
        self._exec(
            "INSERT OR REPLACE INTO epochs VALUES(?,?,?,?,?,?,?,?,?,?,?)",
            (
                rec.epoch,
                rec.status,
                json.dumps([m.hex() for m in rec.members]),
                rec.threshold,
                rec.group_key,
                rec.chain_code,
                json.dumps([p.hex() for p in rec.pubshares]),
                rec.recovery,
                rec.sealed_share,
                time.time(),
                rec.activation_txid,
            ),
        )

    def epochs(self) -> list[EpochRecord]:
        rows = self._exec(
            "SELECT epoch, status, members, threshold, group_key, chain_code, pubshares, "
            "recovery, sealed_share, activation_txid FROM epochs ORDER BY epoch"
        ).fetchall()
        return [
            EpochRecord(
                r[0],
                r[1],
                [bytes.fromhex(m) for m in json.loads(r[2])],
                r[3],
                r[4],
                r[5],
                [bytes.fromhex(p) for p in json.loads(r[6])],
                r[7],
                r[8],
                r[9],
            )
            for r in rows
        ]

    def epoch(self, number: int) -> EpochRecord | None:
        found = [e for e in self.epochs() if e.epoch == number]
        return found[0] if found else None

    def scrub(self) -> None:
        """Push deleted secrets out of the write-ahead log as well."""
        self._exec("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()  # a statement left open would block COMMIT

    def delete_epoch(self, number: int) -> None:
        self._exec("DELETE FROM epochs WHERE epoch=?", (number,))

    def directory(self) -> dict[bytes, str]:
        """Every member's last known "host:port", kept across restarts and membership changes."""
        raw = self.get_meta("directory")
        return {bytes.fromhex(k): v for k, v in json.loads(raw).items()} if raw else {}

    def save_directory(self, directory: dict[bytes, str]) -> None:
        self.set_meta("directory", json.dumps({k.hex(): v for k, v in directory.items()}, sort_keys=True))

    def active_epoch(self) -> EpochRecord | None:
        act = [e for e in self.epochs() if e.status == "active"]
        return act[-1] if act else None

    # nonce journal
    def issue_nonce(self, pubnonce: bytes, request_id: str) -> None:
        now = time.time()
        try:
            self._exec("INSERT INTO nonces VALUES(?,?,'issued',?,?)", (pubnonce, request_id, now, now))
        except sqlite3.IntegrityError:
            raise NonceReuseError("nonce already in the journal") from None

    def use_nonce(self, pubnonce: bytes) -> None:
        """Commit the nonce as used; raises unless it was issued and never used or discarded."""
        cur = self._exec(
            "UPDATE nonces SET status='used', updated=? WHERE pubnonce=? AND status='issued'",
            (time.time(), pubnonce),
        )
        if cur.rowcount != 1:
            raise NonceReuseError("nonce is not available for signing (used, discarded or unknown)")

    def use_nonce_and_issue(self, pubnonce: bytes, next_pubnonce: bytes, request_id: str) -> None:
        """One durable write per signing session: `pubnonce` becomes used and the presignature that goes
        out with the partial signature, `next_pubnonce`, is issued, together or not at all. Call it after
        the partial signature was computed and before it leaves: a crash after the commit leaves the
        used nonce used and the next one issued (discarded at restart), a crash before it sends nothing.
        Raises NonceReuseError, writing nothing, unless `pubnonce` was issued and never used or
        discarded, or if `next_pubnonce` is already in the journal."""
        now = time.time()
        with self.transaction():
            cur = self._exec(
                "UPDATE nonces SET status='used', updated=? WHERE pubnonce=? AND status='issued'", (now, pubnonce)
            )
            if cur.rowcount != 1:
                raise NonceReuseError("nonce is not available for signing (used, discarded or unknown)")
            try:
                self._exec("INSERT INTO nonces VALUES(?,?,'issued',?,?)", (next_pubnonce, request_id, now, now))
            except sqlite3.IntegrityError:
                raise NonceReuseError("the next nonce is already in the journal") from None

    def issue_nonce_for(
        self, pubnonce: bytes, request_id: str, kind: str, coordinator: bytes, payload: dict[str, Any] | None
    ) -> None:
        """A request accepted for signing, in one durable write: its first nonce issued and, for a
        request another member coordinates (`payload` given), the request saved as accepted."""
        with self.transaction():
            self.issue_nonce(pubnonce, request_id)
            if payload is not None:
                self.save_request(request_id, kind, coordinator, "accepted", payload)

    def discard_issued_nonces(self) -> int:
        cur = self._exec("UPDATE nonces SET status='discarded', updated=? WHERE status='issued'", (time.time(),))
        return cur.rowcount

    def discard_nonce(self, pubnonce: bytes) -> None:
        self._exec(
            "UPDATE nonces SET status='discarded', updated=? WHERE pubnonce=? AND status='issued'",
            (time.time(), pubnonce),
        )

    def nonce_counts(self) -> dict[str, int]:
        rows = self._exec("SELECT status, count(*) FROM nonces GROUP BY status").fetchall()
        return {s: c for s, c in rows}

    # requests
    def save_request(
        self,
        rid: str,
        kind: str,
        coordinator: bytes,
        status: str,
        payload: dict[str, Any],
        outcome: dict[str, Any] | None = None,
    ) -> None:
        now = time.time()
        self._exec(
            "INSERT INTO requests VALUES(?,?,?,?,?,?,?,?) ON CONFLICT(id) DO UPDATE SET"
            " status=excluded.status, outcome=excluded.outcome, updated=excluded.updated",
            (
                rid,
                kind,
                coordinator.hex(),
                status,
                json.dumps(payload),
                json.dumps(outcome) if outcome is not None else None,
                now,
                now,
            ),
        )

    def update_request(self, rid: str, status: str, outcome: dict[str, Any] | None) -> None:
        self._exec(
            "UPDATE requests SET status=?, outcome=?, updated=? WHERE id=?",
            (status, json.dumps(outcome) if outcome is not None else None, time.time(), rid),
        )

    def mark_confirmed(self, txid: str) -> None:
        """A payout this member signed or coordinated is in a block deep enough for the ledger."""
        self._exec(
            "UPDATE requests SET status='confirmed', updated=? WHERE status='broadcast' AND "
            "json_extract(outcome, '$.txid') = ?",
            (time.time(), txid),
        )

    def open_request_rows(self, statuses: tuple[str, ...], limit: int) -> list[tuple[str, str, str, str, float]]:
        """(id, kind, coordinator, status, created) of the most recent requests in these statuses."""
        marks = ",".join("?" * len(statuses))
        return self._exec(
            f"SELECT id, kind, coordinator, status, created FROM requests WHERE status IN ({marks}) "
            "ORDER BY created DESC LIMIT ?",
            (*statuses, limit),
        ).fetchall()

    def requests(self, rid: str | None = None) -> list[dict[str, Any]]:
        sql = "SELECT id, kind, coordinator, status, payload, outcome, created, updated FROM requests"
        rows = (
            self._exec(sql + " WHERE id=?", (rid,)) if rid is not None else self._exec(sql + " ORDER BY created")
        ).fetchall()
        return [
            {
                "id": r[0],
                "kind": r[1],
                "coordinator": r[2],
                "status": r[3],
                "request": json.loads(r[4]),
                "outcome": json.loads(r[5]) if r[5] is not None else None,
                "created": r[6],
                "updated": r[7],
            }
            for r in rows
        ]

    # addresses
    def next_address_index(self, epoch: int) -> int:
        row = self._exec("SELECT max(idx) FROM addresses WHERE epoch=?", (epoch,)).fetchone()
        return 0 if row[0] is None else row[0] + 1

    def record_address(self, epoch: int, idx: int, address: str) -> None:
        self._exec("INSERT OR IGNORE INTO addresses VALUES(?,?,?,?)", (epoch, idx, address, time.time()))

    def address_count(self, epoch: int) -> int:
        return self._exec("SELECT count(*) FROM addresses WHERE epoch=?", (epoch,)).fetchone()[0]
