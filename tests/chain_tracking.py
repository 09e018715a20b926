"""The ledger's `reconcile` reads a chain index; tests whose federation is a plain list of scripts
(single keys, or a few derived ones) follow the regtest chain with one index per ledger."""

from __future__ import annotations

import hashlib

from frostfed.bitcoin.chain import ChainSource
from frostfed.bitcoin.chain_index import ChainIndex
from frostfed.bitcoin.chain_index_schema import RECEIVE
from frostfed.bitcoin.ledger import Ledger

_INDEXES: dict[int, tuple[Ledger, ChainIndex]] = {}  # the ledger kept alive, so its id is not reused


def index_over(chain: ChainSource, scripts: list[bytes], since: int) -> ChainIndex:
    """An index watching `scripts` as receive paths 0, 1, ... of one epoch, read from block `since`."""

    def script_of(path_chain: int, idx: int) -> bytes:
        if path_chain == RECEIVE and idx < len(scripts):
            return bytes(scripts[idx])
        return b"\x6a" + hashlib.sha256(f"unused {path_chain}/{idx}".encode()).digest()  # pays nobody

    index = ChainIndex(":memory:")
    index.watch(0, script_of, since)
    return index


def reconcile(ledger: Ledger, chain: ChainSource, scripts: list[bytes], depth: int = 20) -> list[str]:
    """Read the chain into the ledger's index (made on first use, from `depth` blocks below the tip)."""
    found = _INDEXES.get(id(ledger))
    if found is None:
        found = _INDEXES[id(ledger)] = (ledger, index_over(chain, scripts, chain.tip_height() - depth))
    index = found[1]
    index.sync(chain)
    return ledger.reconcile(index)
