"""Shared fixtures: one regtest bitcoind for the whole session.

The fixture is named `regtest` (not `bitcoind`) so it does not collide with pyln-testing's fixtures in the
test modules that import them.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from regtest_node import mining_regtest

from frostfed.bitcoin.chain import BitcoindChainSource
from frostfed.bitcoin.regtest import RegtestBitcoind


@pytest.fixture(scope="session")
def regtest(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RegtestBitcoind]:
    """A regtest bitcoind on free loopback ports with a wallet `miner` holding 101 mined blocks."""
    with mining_regtest(tmp_path_factory.mktemp("bitcoind")) as node:
        yield node


@pytest.fixture(scope="session")
def chain(regtest: RegtestBitcoind) -> BitcoindChainSource:
    return regtest.chain_source()
