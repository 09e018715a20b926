"""A bound on what all approved transactions together may spend on fees, per rolling window of
blocks.

Each fee bound of a single transaction can be met by a member that asks again and again: without a
total, a malicious coordinator burns the federation's money in fees one acceptable transaction at a
time. The journal records the fee of every transaction this member approves, with the tip height at
approval, and refuses one whose fee would bring the window's total above the budget.

Conservative on purpose: every approval counts, whether or not the transaction is ever signed by
enough members, broadcast or confirmed, and a new payout of the same debts counts again; the same
transaction approved twice (same txid) counts once. A fee bump, judged as a replacement, counts only
its extra fee: it spends the same coins as the transaction it replaces, so at most one of them
confirms, and it pays more (`replaced`). So do the fees of every federation transaction the chain
index shows confirmed in the window, whoever signed it: with t below n, a coordinator that asks a
different set of members each time would otherwise show each member only part of what the federation
burns. The window moves with the chain, so an honest federation that hits the budget waits for
blocks, it never loses funds.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path

from frostfed.bitcoin.chain_checks import CheckedPayout
from frostfed.bitcoin.rejection import PolicyRejection

_SCHEMA = """
CREATE TABLE IF NOT EXISTS fee_budget (
    txid TEXT PRIMARY KEY,
    height INTEGER NOT NULL,
    fee INTEGER NOT NULL CHECK (fee >= 0),
    approved REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS fee_budget_height ON fee_budget(height);
"""


class FeeBudget:
    """A `Policy`: at most `budget_sats` of fees in approvals made at tips within the last
    `window_blocks` blocks. `path` is an SQLite database (its own table; ":memory:" for tests)."""

    def __init__(
        self,
        path: Path | str,
        budget_sats: int,
        window_blocks: int,
        chain_fees: Callable[[int], Mapping[str, int]] | None = None,
    ) -> None:
        """`chain_fees(height)`: txid -> fee of the federation's transactions confirmed above `height`
        (`ChainIndex.fees_since`)."""
        if budget_sats < 0 or window_blocks < 1:
            raise ValueError("a fee budget is >= 0 sats over >= 1 block")
        self.budget_sats = budget_sats
        self.window_blocks = window_blocks
        self.chain_fees = chain_fees
        self._lock = threading.Lock()
        self._db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None, timeout=30)
        if str(path) != ":memory:":
            self._db.execute("PRAGMA journal_mode = WAL")
        self._db.executescript(_SCHEMA)
        columns = {r[1] for r in self._db.execute("PRAGMA table_info(fee_budget)")}
        if "replaced_by" not in columns:
            self._db.execute("ALTER TABLE fee_budget ADD COLUMN replaced_by TEXT")

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def spent(self, tip_height: int, excluding: str | None = None, replacing: str | None = None) -> int:
        """Fees approved at tips within the window that ends at `tip_height` (of a transaction and its
        replacements, the last one's only), and those of the federation's transactions confirmed
        within it that this member did not approve there. `replacing`: the transaction the one at hand
        replaces, whose fee it supersedes."""
        since = tip_height - self.window_blocks
        with self._lock:
            rows = self._db.execute(
                "SELECT txid, fee, replaced_by FROM fee_budget WHERE height > ?", (since,)
            ).fetchall()
        own = {t: f for t, f, _ in rows}
        live = {t: f for t, f, by in rows if by is None}
        confirmed = self.chain_fees(since) if self.chain_fees is not None else {}
        others = {t: f for t, f in confirmed.items() if t not in own}
        return sum(f for t, f in {**live, **others}.items() if t not in (excluding, replacing))

    def approval(self, txid: str) -> tuple[int, int] | None:
        """(tip height, fee) at which this member approved `txid`, if it did."""
        with self._lock:
            row = self._db.execute("SELECT height, fee FROM fee_budget WHERE txid = ?", (txid,)).fetchone()
        return None if row is None else (int(row[0]), int(row[1]))

    def replaced(self, txid: str, by: str) -> None:
        """`by`, approved, replaces `txid` (same coins, a higher fee): from now on only `by`'s fee counts."""
        with self._lock:
            self._db.execute("UPDATE fee_budget SET replaced_by = ? WHERE txid = ? AND txid != ?", (by, txid, by))

    def check(self, payout: CheckedPayout, replacing: str | None = None) -> None:
        used = self.spent(payout.tip_height, excluding=payout.txid, replacing=replacing)
        if used + payout.fee_sats > self.budget_sats:
            raise PolicyRejection(
                "fee_budget_exceeded",
                f"fee {payout.fee_sats} sats would bring the fees approved in the last {self.window_blocks} blocks "
                f"to {used + payout.fee_sats} sats, above the budget of {self.budget_sats} sats "
                f"(policy.fee_budget_sats); wait for blocks or raise the budget",
            )

    def approved(self, payout: CheckedPayout) -> None:
        with self._lock:
            self._db.execute(
                "INSERT OR IGNORE INTO fee_budget (txid, height, fee, approved) VALUES (?, ?, ?, ?)",
                (payout.txid, payout.tip_height, payout.fee_sats, time.time()),
            )
