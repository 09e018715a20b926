"""A member's durable state in SQLite (WAL): epochs with their sealed key shares, the membership
records, the address index, and (through their own modules) the nonce journal and the request log.

`Store` is the one object a member holds: it joins the record families over one database
(`store_db`), so a write that spans two of them (a request accepted with its first nonce) is one
transaction.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

from frostfed.federation.nonce_journal import NonceJournal
from frostfed.federation.request_log import RequestLog


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


class Store(NonceJournal, RequestLog):
    """A member's database: every record family over one connection."""

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

    # a request accepted with its first nonce: the nonce journal and the request log in one write
    def issue_nonce_for(
        self, pubnonce: bytes, request_id: str, kind: str, coordinator: bytes, payload: dict[str, Any] | None
    ) -> None:
        """A request accepted for signing, in one durable write: its first nonce issued and, for a
        request another member coordinates (`payload` given), the request saved as accepted."""
        with self.transaction():
            self.issue_nonce(pubnonce, request_id)
            if payload is not None:
                self.save_request(request_id, kind, coordinator, "accepted", payload)

    # addresses
    def next_address_index(self, epoch: int) -> int:
        row = self._exec("SELECT max(idx) FROM addresses WHERE epoch=?", (epoch,)).fetchone()
        return 0 if row[0] is None else row[0] + 1

    def record_address(self, epoch: int, idx: int, address: str) -> None:
        self._exec("INSERT OR IGNORE INTO addresses VALUES(?,?,?,?)", (epoch, idx, address, time.time()))

    def address_count(self, epoch: int) -> int:
        return self._exec("SELECT count(*) FROM addresses WHERE epoch=?", (epoch,)).fetchone()[0]
