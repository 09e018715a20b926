"""Property tests: whatever sequence of funding, payouts, replacements, blocks and reorganisations the
chain goes through, the ledger's `paid` is what the chain shows, a reservation stands exactly while
no confirmed transaction spends one of its inputs, and a member that indexed the chain incrementally
derives the same anchor as one that reads it fresh."""

from __future__ import annotations

from bitcoin.core import CTransaction, b2lx
from fake_chain import FakeChain, coinbase, payment, script, spend
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from frostfed.bitcoin.chain_index import ChainIndex
from frostfed.bitcoin.chain_index_schema import CHANGE, RECEIVE
from frostfed.bitcoin.ledger import Ledger

MINERS = [script(f"miner{i}") for i in range(3)]


def fed(chain: int, idx: int) -> bytes:
    return script(f"e0/{chain}/{idx}")


FED_SCRIPTS = {fed(c, i) for c in (RECEIVE, CHANGE) for i in range(200)}


def txid(tx: CTransaction) -> str:
    return b2lx(tx.GetTxid())


def inputs_of(tx: CTransaction) -> list[tuple[str, int]]:
    return [(b2lx(i.prevout.hash), i.prevout.n) for i in tx.vin]


def paid_on_chain(chain: FakeChain) -> dict[bytes, int]:
    """The definition, computed from scratch: outputs to a miner of any transaction spending an output
    to a federation script."""
    fed_outpoints: set[tuple[str, int]] = set()
    paid = dict.fromkeys(MINERS, 0)
    for block in chain.blocks:
        for tx in block.txs:
            if not tx.is_coinbase() and any(op in fed_outpoints for op in inputs_of(tx)):
                for out in tx.vout:
                    if bytes(out.scriptPubKey) in paid:
                        paid[bytes(out.scriptPubKey)] += out.nValue
            for j, out in enumerate(tx.vout):
                if bytes(out.scriptPubKey) in FED_SCRIPTS:
                    fed_outpoints.add((txid(tx), j))
    return paid


def spent_on_chain(chain: FakeChain) -> set[tuple[str, int]]:
    return {op for b in chain.blocks for tx in b.txs if not tx.is_coinbase() for op in inputs_of(tx)}


class World:
    def __init__(self) -> None:
        self.chain = FakeChain()
        self.index = ChainIndex(":memory:")
        self.index.watch(0, lambda c, i: fed(c, i), 0)
        self.ledger = Ledger(":memory:")
        for m in MINERS:
            self.ledger.credit(m, 10**9)
        self.mempool: list[CTransaction] = []
        self.reserved: dict[str, list[tuple[str, int]]] = {}
        self.salt = 0
        self.chain.add([payment([(fed(RECEIVE, 0), 1_000_000)])])

    def _salt(self) -> int:
        self.salt += 1
        return self.salt

    def fund(self, idx: int, sats: int, coinbase_output: bool) -> None:
        """A payment to the federation, or a block reward to it (young: no anchor until it matures)."""
        if coinbase_output:
            self.mine([coinbase(len(self.chain.blocks), [(fed(RECEIVE, idx), sats)], self._salt())])
        else:
            self.mine([payment([(fed(RECEIVE, idx), sats)], self._salt())])

    def payout(self, miner: int, sats: int, replace: bool, seen: bool = True) -> None:
        """A payout that spends the anchor and pays change to the canonical path; `seen`: this member
        approved (reserved) it, else other members signed it without it. A replacement spends the same
        anchor as a payout still in the mempool."""
        anchor = self.index.anchor(0)
        if anchor.outpoint is None:
            return
        if replace and self.mempool:
            base = self.mempool[-1]
            ins = inputs_of(base)
        else:
            ins = [anchor.outpoint]
        coin = self.index.coin(ins[0])
        if coin is None or coin.sats < sats + 1_000:
            return
        tx = spend(
            ins, [(MINERS[miner], sats), (fed(CHANGE, anchor.change_index), coin.sats - sats - 500)], self._salt()
        )
        if seen:
            self.ledger.reserve(txid(tx), ins, {MINERS[miner]: sats}, self.chain.tip_height())
            self.reserved[txid(tx)] = ins
        self.mempool.append(tx)

    def mine(self, extra: list[CTransaction] | None = None, take: int = 99) -> None:
        spent = spent_on_chain(self.chain)
        unspent_outs = {(b2lx(t.GetTxid()), j) for b in self.chain.blocks for t in b.txs for j in range(len(t.vout))}
        block = list(extra or [])
        for tx in list(self.mempool)[:take]:
            ins = inputs_of(tx)
            if any(op in spent or op not in unspent_outs for op in ins):
                continue
            block.append(tx)
            spent.update(ins)
            unspent_outs.update((txid(tx), j) for j in range(len(tx.vout)))
        mined = {txid(t) for t in block}
        self.mempool = [t for t in self.mempool if txid(t) not in mined]
        self.chain.add(block)

    def reorg(self, depth: int, replay: bool) -> None:
        depth = min(depth, len(self.chain.blocks) - 1)
        if depth <= 0:
            return
        dropped = [
            t
            for b in self.chain.blocks[-depth:]
            for t in b.txs
            if not t.is_coinbase() and not inputs_of(t)[0][0].startswith("ee" * 28)  # outside payments vanish
        ]
        self.chain.fork(len(self.chain.blocks) - depth)
        self.mempool = dropped + self.mempool if replay else self.mempool
        for _ in range(depth + 1):
            self.mine([coinbase(len(self.chain.blocks), [(script("nobody"), 1)], self._salt())], take=1)

    def check(self) -> None:
        self.index.sync(self.chain)
        self.ledger.reconcile(self.index)
        truth = paid_on_chain(self.chain)
        assert {m: self.ledger.paid(m) for m in MINERS} == truth
        assert {m: self.ledger.status(m).paid for m in MINERS} == truth
        spent = spent_on_chain(self.chain)
        standing = {t for t, ins in self.reserved.items() if not any(op in spent for op in ins)}
        assert set(self.ledger.reserved_txids()) == standing
        fresh = ChainIndex(":memory:")
        fresh.watch(0, lambda c, i: fed(c, i), 0)
        fresh.sync(self.chain)
        assert fresh.anchor(0) == self.index.anchor(0)
        assert [c.outpoint for c in fresh.coins(0)] == [c.outpoint for c in self.index.coins(0)]
        # at most one transaction ever spends an anchor: no two payouts of the anchor chain confirm together
        fed_txs = [t for t, _ in self.index.federation_txids()]
        assert len(fed_txs) == len(set(fed_txs))


op = st.one_of(
    st.tuples(st.just("fund"), st.integers(0, 30), st.integers(20_000, 500_000), st.booleans()),
    st.tuples(st.just("payout"), st.integers(0, 2), st.integers(1_000, 50_000), st.booleans(), st.booleans()),
    st.tuples(st.just("mine"), st.integers(0, 3)),
    st.tuples(st.just("reorg"), st.integers(1, 4), st.booleans()),
)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(op, min_size=1, max_size=25))
def test_paid_is_what_the_chain_shows_through_payouts_replacements_and_reorganisations(ops) -> None:
    world = World()
    world.check()
    for o in ops:
        if o[0] == "fund":
            world.fund(o[1], o[2], o[3])
        elif o[0] == "payout":
            world.payout(o[1], o[2], o[3], o[4])
        elif o[0] == "mine":
            world.mine(take=o[1])
        else:
            world.reorg(o[1], o[2])
        world.check()
