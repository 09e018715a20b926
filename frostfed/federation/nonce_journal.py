"""The nonce journal: what makes nonce reuse impossible.

A nonce's state moves only forward, issued -> used or issued -> discarded, by a conditional UPDATE
committed before a partial signature made with it leaves the process. Secret nonces themselves are
never written; after a restart every nonce still `issued` is discarded, since it can no longer be
known whether a signature used it. In a module of its own so this one safety rule is read in one place.
"""

from __future__ import annotations

import sqlite3
import time

from frostfed.federation.store_db import Database


class NonceReuseError(Exception):
    """A nonce was asked for a second time: the signature is refused."""

class NonceJournal(Database):
    """The `nonces` table: issue, use (once), discard."""

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
