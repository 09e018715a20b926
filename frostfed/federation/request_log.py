"""The signing requests this member coordinated or accepted, with their outcome.

A restarted member answers for what it signed from this log (status, txid, confirmation), so it is
its own record family beside the nonce journal that guards the signatures themselves.
"""

from __future__ import annotations

import json
import time
from typing import Any

from frostfed.federation.store_db import Database


class RequestLog(Database):
    """The `requests` table."""

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
