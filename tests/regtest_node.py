"""A private regtest bitcoind with a `miner` wallet for the life of a fixture: the session's shared node,
and the nodes a test module needs to itself (one whose fee estimator no other test touches)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from frostfed.bitcoin.regtest import RegtestBitcoind


@contextmanager
def mining_regtest(datadir: Path) -> Iterator[RegtestBitcoind]:
    """A regtest bitcoind on free loopback ports with a wallet `miner` holding 101 mined blocks."""
    node = RegtestBitcoind(datadir)
    node.start()
    try:
        node.create_mining_wallet("miner")
        yield node
    finally:
        node.stop()
