"""The chain index on an in-memory chain: coins within the gap limit, the anchor chain every member
derives alike, reorganisations rolled back, an epoch watched late, and the ledger's paid from it."""

from __future__ import annotations

from bitcoin.core import b2lx
from fake_chain import FakeChain, coinbase, payment, script, spend

from frostfed.bitcoin.chain_index import ChainIndex
from frostfed.bitcoin.chain_index_schema import CHANGE, RECEIVE, RECEIVE_LOOKAHEAD
from frostfed.bitcoin.ledger import Ledger

MINER = script("miner")
OTHER = script("other")


def fed(epoch: int, chain: int, idx: int) -> bytes:
    return script(f"e{epoch}/{chain}/{idx}")


def watcher(epoch: int):
    return lambda chain, idx: fed(epoch, chain, idx)


def new_index(chain: FakeChain, since: int = 0) -> ChainIndex:
    index = ChainIndex(":memory:")
    index.watch(0, watcher(0), since)
    index.sync(chain)
    return index


def txid(tx) -> str:
    return b2lx(tx.GetTxid())


def test_coins_are_found_within_the_gap_and_the_window_grows_with_use() -> None:
    chain = FakeChain()
    far = RECEIVE_LOOKAHEAD + 5
    a = payment([(fed(0, RECEIVE, far), 1_000)])  # beyond the look-ahead: not watched yet
    b = payment([(fed(0, RECEIVE, 10), 2_000), (OTHER, 5)])
    c = payment([(fed(0, RECEIVE, 10 + RECEIVE_LOOKAHEAD), 3_000)])  # in reach once 10 is used
    for tx in (a, b, c):
        chain.add([tx])
    index = new_index(chain)
    coins = index.coins(0)
    assert [(x.path, x.sats) for x in coins] == [((RECEIVE, 10), 2_000), ((RECEIVE, 10 + RECEIVE_LOOKAHEAD), 3_000)]
    assert index.used_indexes(0) == {RECEIVE: 10 + RECEIVE_LOOKAHEAD, CHANGE: -1}
    assert index.path_of(fed(0, RECEIVE, far)) == (0, (RECEIVE, far))  # watched now, for later payments
    assert index.coin((txid(a), 0)) is None


def test_the_anchor_chain_follows_the_canonical_change() -> None:
    chain = FakeChain()
    first = payment([(fed(0, RECEIVE, 3), 50_000)])
    second = payment([(fed(0, RECEIVE, 1), 40_000)])
    chain.add([first])
    chain.add([second])
    index = new_index(chain)
    anchor = index.anchor(0)
    assert anchor.outpoint == (txid(first), 0) and anchor.change_index == 0  # the earliest coin
    pay = spend([(txid(first), 0)], [(MINER, 10_000), (fed(0, CHANGE, 0), 39_000)])
    chain.add([pay])
    index.sync(chain)
    assert index.anchor(0).outpoint == (txid(pay), 1) and index.anchor(0).change_index == 1
    # a payout whose change is not at the canonical index does not carry the anchor on
    stray = spend([(txid(pay), 1)], [(MINER, 1_000), (fed(0, CHANGE, 5), 37_000)])
    chain.add([stray])
    index.sync(chain)
    # the earliest coin left takes over, and the next change index is fresh
    assert index.anchor(0).outpoint == (txid(second), 0) and index.anchor(0).change_index == 2
    assert index.federation_txids() == sorted([(txid(pay), 2), (txid(stray), 3)], key=lambda r: r[1])


def test_a_young_coinbase_is_no_anchor_until_it_matures() -> None:
    chain = FakeChain()
    reward = coinbase(0, [(fed(0, RECEIVE, 0), 5_000_000)])  # a block reward to the federation, first
    chain.add([reward])
    for h in range(1, 98):
        chain.add([coinbase(h, [(OTHER, 1)])])
    index = new_index(chain)
    assert index.anchor(0).outpoint is None  # 98 confirmations
    chain.add([coinbase(98, [(OTHER, 1)])])
    index.sync(chain)
    assert index.anchor(0).outpoint is None  # 99
    chain.add([coinbase(99, [(OTHER, 1)])])
    index.sync(chain)
    assert index.anchor(0).outpoint == (txid(reward), 0)  # 100: spendable, the anchor

    other = FakeChain()  # a payment after a young reward: the payment is the anchor
    other.add([coinbase(0, [(fed(0, RECEIVE, 0), 5_000_000)])])
    paid = payment([(fed(0, RECEIVE, 1), 10_000)])
    other.add([paid])
    assert new_index(other).anchor(0).outpoint == (txid(paid), 0)


def test_a_reorganisation_rolls_everything_back() -> None:
    chain = FakeChain()
    fund = payment([(fed(0, RECEIVE, 0), 50_000)])
    chain.add([fund])
    chain.add([coinbase(1, [(OTHER, 1)])])
    pay = spend([(txid(fund), 0)], [(MINER, 10_000), (fed(0, CHANGE, 0), 39_000)])
    chain.add([pay])
    index = new_index(chain)
    ledger = Ledger(":memory:")
    ledger.credit(MINER, 10_000)
    assert ledger.reconcile(index) == []
    assert ledger.status(MINER).paid == 10_000  # paid though this member reserved nothing
    tip_before = index.tip_height()

    chain.fork(2)  # the payout's block is replaced by another without it
    chain.add([coinbase(2, [(OTHER, 2)], salt=1)])
    chain.add([coinbase(3, [(OTHER, 3)])])
    index.sync(chain)
    assert index.tip_height() == tip_before + 1
    assert index.block_hash(2) == chain.block_hash(2)
    assert index.anchor(0).outpoint == (txid(fund), 0) and index.anchor(0).change_index == 0
    assert [c.outpoint for c in index.coins(0)] == [(txid(fund), 0)]
    ledger.reconcile(index)
    assert ledger.status(MINER).paid == 0 and ledger.status(MINER).available == 10_000


def test_a_reservation_is_settled_by_the_chain_only_and_restored_by_a_reorganisation() -> None:
    chain = FakeChain()
    fund = payment([(fed(0, RECEIVE, 0), 50_000)])
    chain.add([fund])
    index = new_index(chain)
    ledger = Ledger(":memory:")
    ledger.credit(MINER, 10_000)
    mine = spend([(txid(fund), 0)], [(MINER, 10_000), (fed(0, CHANGE, 0), 39_000)])
    theirs = spend([(txid(fund), 0)], [(MINER, 10_000), (fed(0, CHANGE, 0), 38_000)])  # a replacement
    ledger.reserve(txid(mine), [(txid(fund), 0)], {MINER: 10_000}, 0)
    assert ledger.status(MINER).reserved == 10_000
    chain.add([theirs])
    index.sync(chain)
    assert ledger.reconcile(index) == []  # the conflict confirmed, not the reserved one
    assert ledger.reserved_txids() == []
    st = ledger.status(MINER)
    assert (st.paid, st.reserved, st.available) == (10_000, 0, 0)
    chain.fork(1)
    chain.add([coinbase(1, [(OTHER, 9)])])
    index.sync(chain)
    ledger.reconcile(index)
    assert ledger.reserved_txids() == [txid(mine)]  # it may confirm again: reserved again
    st = ledger.status(MINER)
    assert (st.paid, st.reserved, st.available) == (0, 10_000, 0)
    chain.add([mine])
    index.sync(chain)
    assert ledger.reconcile(index) == [txid(mine)]
    assert ledger.status(MINER).paid == 10_000 and ledger.payouts()[0][0] == txid(mine)


def test_an_epoch_watched_late_is_read_from_its_start() -> None:
    chain = FakeChain()
    fund = payment([(fed(0, RECEIVE, 0), 50_000)])
    chain.add([fund])
    chain.add([coinbase(1, [(OTHER, 1)])])
    move = spend([(txid(fund), 0)], [(fed(1, RECEIVE, 0), 49_000)])  # the transition to epoch 1
    chain.add([move])
    chain.add([coinbase(3, [(OTHER, 3)])])
    index = new_index(chain)
    ledger = Ledger(":memory:")
    ledger.reconcile(index)
    assert index.anchor(0).outpoint is None and index.anchor(0).change_index == 1
    index.watch(1, watcher(1), since=1)
    assert index.tip_height() == 0  # rolled back to read blocks 1.. again
    index.sync(chain)
    assert index.anchor(1).outpoint == (txid(move), 0) and index.anchor(1).change_index == 0
    ledger.reconcile(index)
    assert ledger.paid(fed(1, RECEIVE, 0)) == 0  # the new epoch's coin is not a payout

    fresh = ChainIndex(":memory:")  # a member that watched both epochs from the start agrees
    fresh.watch(0, watcher(0), 0)
    fresh.watch(1, watcher(1), 1)
    fresh.sync(chain)
    assert fresh.anchor(1) == index.anchor(1) and fresh.anchor(0) == index.anchor(0)


def test_the_index_survives_a_restart(tmp_path) -> None:
    chain = FakeChain()
    fund = payment([(fed(0, RECEIVE, 7), 50_000)])
    chain.add([fund])
    index = ChainIndex(tmp_path / "chain.sqlite")
    index.watch(0, watcher(0), 0)
    index.sync(chain)
    index.close()
    chain.add([payment([(fed(0, RECEIVE, 8), 1_000)])])
    again = ChainIndex(tmp_path / "chain.sqlite")
    again.watch(0, watcher(0), 0)
    assert again.tip_height() == 0  # nothing read twice
    again.sync(chain)
    assert [c.path for c in again.coins(0)] == [(RECEIVE, 7), (RECEIVE, 8)]
    assert again.anchor(0).outpoint == (txid(fund), 0)


def test_an_epoch_number_that_names_a_new_key_is_read_again_for_it() -> None:
    """A change to epoch 1 was aborted and a later one made epoch 1 with another key: the index forgets
    the first key's scripts and finds the coins (and the anchor) of the second in blocks it read before."""
    chain = FakeChain()
    chain.add([payment([(fed(0, RECEIVE, 0), 90_000)])])
    index = new_index(chain)

    def second_key(chain_: int, idx: int) -> bytes:
        return script(f"second/{chain_}/{idx}")

    index.watch(1, watcher(1), 0)  # the aborted change's key
    transition = payment([(second_key(RECEIVE, 0), 80_000)], salt=1)
    chain.add([transition])
    index.sync(chain)
    assert index.coins(1) == [] and index.anchor(1).outpoint is None
    index.unwatch(1)
    index.watch(1, second_key, 0)
    index.sync(chain)
    assert [(c.txid, c.path, c.sats) for c in index.coins(1)] == [(txid(transition), (RECEIVE, 0), 80_000)]
    assert index.anchor(1).outpoint == (txid(transition), 0)
    assert [c.sats for c in index.coins(0)] == [90_000]  # the other epochs are read again alike


def test_an_anchor_spend_to_a_key_is_found_and_nothing_else_counts() -> None:
    """What a member that dropped a change reads to learn the coins moved to that change's key: only a
    confirmed transaction spending a coin while it was the anchor, paying the key at output 0."""
    chain = FakeChain()
    first = payment([(fed(0, RECEIVE, 0), 50_000)])
    second = payment([(fed(0, RECEIVE, 1), 40_000)])
    chain.add([first])
    chain.add([second])
    index = new_index(chain)
    new_key = script("epoch 1 transition")
    # a spend of a coin that is not the anchor, and one paying the key elsewhere than output 0
    side = spend([(txid(second), 0)], [(new_key, 39_000)])
    late = spend([(txid(first), 0)], [(MINER, 1_000), (new_key, 48_000)])
    chain.add([side, late])
    index.sync(chain)
    assert index.anchor_spend_to(0, new_key) is None
    # a new coin becomes the anchor (late pays no canonical change, and `second` is spent)
    coin = payment([(fed(0, RECEIVE, 2), 30_000)])
    chain.add([coin])
    index.sync(chain)
    assert index.anchor(0).outpoint == (txid(coin), 0)
    transition = spend([(txid(coin), 0)], [(new_key, 29_000)])
    chain.add([transition])
    index.sync(chain)
    assert index.anchor_spend_to(0, new_key) == (txid(transition), chain.tip_height())
    assert index.anchor_spend_to(1, new_key) is None and index.anchor_spend_to(0, OTHER) is None
    index.rollback_block()  # reorganised away: no longer shown
    assert index.anchor_spend_to(0, new_key) is None
