"""What a chain index stores and watches: its SQLite schema, the derivation paths it watches per
epoch, and the look-ahead that widens them.

Kept apart from the code that follows the chain (`chain_follower`) and the queries (`chain_index`) so
the layout every member's index shares, which decides what they all see alike, is read in one place.
"""

from __future__ import annotations

from collections.abc import Callable

RECEIVE = 0
CHANGE = 1
RECEIVE_LOOKAHEAD = 1000
"""Receive addresses past the highest one paid: as far as a member accepts another's announcement."""
CHANGE_LOOKAHEAD = 20
"""Change indexes are canonical (one per anchor transaction), so a short look-ahead covers them."""

COINBASE_MATURITY = 100
"""The consensus maturity of a block reward, the same value as `chain_checks.COINBASE_MATURITY`, kept
here so the index depends on no policy module."""

Outpoint = tuple[str, int]
ScriptOf = Callable[[int, int], bytes]
"""(chain, index) -> output script of that path of an epoch."""

SCHEMA = """
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


class WatchWindow:
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
