"""A chain of blocks held in memory, with forks at will: the chain index's unit and property tests feed
it to the index through the same `ChainSource` calls bitcoind answers."""

from __future__ import annotations

import hashlib

from bitcoin.core import COutPoint, CTransaction, CTxIn, CTxOut, b2lx, lx
from bitcoin.core.script import CScript

from frostfed.bitcoin.chain import ChainBlock, ChainSource, Utxo

ZERO = "00" * 32


def script(tag: str) -> bytes:
    """A distinct P2TR-looking script per tag."""
    return b"\x51\x20" + hashlib.sha256(tag.encode()).digest()


def coinbase(height: int, outputs: list[tuple[bytes, int]], salt: int = 0) -> CTransaction:
    tag = height.to_bytes(4, "little") + salt.to_bytes(4, "little")
    vin = [CTxIn(COutPoint(), CScript(tag), 0xFFFFFFFF)]
    return CTransaction(vin, [CTxOut(n, CScript(s)) for s, n in outputs], 0, 2)


def payment(outputs: list[tuple[bytes, int]], salt: int = 0) -> CTransaction:
    """A payment from outside the federation (its input is not on this chain: nothing checks it)."""
    return spend([("ee" * 28 + salt.to_bytes(4, "big").hex(), 0)], outputs)


def spend(inputs: list[tuple[str, int]], outputs: list[tuple[bytes, int]], salt: int = 0) -> CTransaction:
    vin = [CTxIn(COutPoint(lx(t), v), nSequence=0xFFFFFFFD) for t, v in inputs]
    return CTransaction(vin, [CTxOut(n, CScript(s)) for s, n in outputs], salt, 2)


class FakeChain(ChainSource):
    """Blocks as lists of transactions; `fork(height)` drops the blocks from `height` on."""

    def __init__(self) -> None:
        self.blocks: list[ChainBlock] = []
        self.forks = 0

    def add(self, txs: list[CTransaction]) -> ChainBlock:
        height = len(self.blocks)
        prev = self.blocks[-1].hash if self.blocks else ZERO
        body = prev + str(self.forks) + "".join(b2lx(t.GetTxid()) for t in txs)
        block = ChainBlock(height, hashlib.sha256(body.encode()).hexdigest(), prev, list(txs))
        self.blocks.append(block)
        return block

    def fork(self, height: int) -> None:
        self.forks += 1
        del self.blocks[height:]

    def tip_height(self) -> int:
        return len(self.blocks) - 1

    def block(self, height: int) -> ChainBlock:
        return self.blocks[height]

    def block_hash(self, height: int) -> str:
        return self.blocks[height].hash

    def block_transactions(self, height: int) -> list[CTransaction]:
        return self.blocks[height].txs

    def get_utxo(self, txid: str, vout: int) -> Utxo | None:
        spent = {(b2lx(i.prevout.hash), i.prevout.n) for b in self.blocks for t in b.txs for i in t.vin}
        if (txid, vout) in spent:
            return None
        for b in self.blocks:
            for t in b.txs:
                if b2lx(t.GetTxid()) == txid and vout < len(t.vout):
                    out = t.vout[vout]
                    return Utxo(
                        txid,
                        vout,
                        out.nValue,
                        bytes(out.scriptPubKey),
                        self.tip_height() - b.height + 1,
                        t.is_coinbase(),
                    )
        return None

    def broadcast(self, tx: CTransaction) -> str:
        raise NotImplementedError

    def fee_rate(self, target_blocks: int = 6) -> float | None:
        return None
