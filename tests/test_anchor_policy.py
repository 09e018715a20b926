"""The anchor rule and the canonical change on a member's own index (an in-memory chain): a payout
that does not spend the anchor, or sends change anywhere but the canonical path (`m/1/2147483647`
included), is refused; a retired epoch's share is kept while a coin is left at any used index."""

from __future__ import annotations

import hashlib

import pytest
from bitcoin.core import b2lx
from coincurve import PrivateKey
from dealer import trusted_dealer
from fake_chain import FakeChain, script, spend
from membership_records import activated

from frostfed.bitcoin.chain_checks import ChainChecks, FeeBounds
from frostfed.bitcoin.chain_index import ChainIndex
from frostfed.bitcoin.ledger import Ledger
from frostfed.bitcoin.policy import LedgerPolicy, PayoutPolicy
from frostfed.bitcoin.rejection import PolicyRejection
from frostfed.federation.chain_view import AnchorPolicy, ChainView
from frostfed.federation.config import MembershipSettings, PolicySettings
from frostfed.federation.epoch_keys import CHANGE, MAX_INDEX, RECEIVE, EpochKeys
from frostfed.federation.node import Member
from frostfed.federation.sealing import Sealer
from frostfed.federation.signing_request import SigningRequest, federation_scripts
from frostfed.federation.store import EpochRecord, Store
from frostfed.federation.transition import Proposal
from frostfed.net.tcp import NoiseChannel

MINER = script("miner")
NOWHERE = "ee" * 32  # outpoints the fake chain does not check: funding from outside


def txid(tx) -> str:
    return b2lx(tx.GetTxid())


class Federation:
    def __init__(self, tmp_path) -> None:
        dealt = trusted_dealer(2, 3, seed=7)
        self.keys = EpochKeys(0, [b"a", b"b", b"c"], 2, dealt.thresh_pk, b"\x05" * 32, dealt.pubshares, "regtest")
        self.store = Store(tmp_path / "m.sqlite")
        self.store.save_epoch(
            EpochRecord(0, "active", self.keys.members, 2, dealt.thresh_pk, b"\x05" * 32, dealt.pubshares, b"", b"x")
        )
        self.chain = FakeChain()
        self.ledger = Ledger(":memory:")
        self.ledger.credit(MINER, 50_000)
        self.view = ChainView(ChainIndex(":memory:"), self.store, self.chain, self.ledger, "regtest")
        self.view.note_epoch_start(0, 6)  # read from block 0
        self.funds = []
        for i, sats in enumerate((300_000, 200_000)):
            tx = spend([(NOWHERE, i)], [(self.keys.script((RECEIVE, i)), sats)])
            self.chain.add([tx])
            self.funds.append((txid(tx), 0, sats, (RECEIVE, i)))
        for _ in range(2):
            self.chain.add([])

    def request(self, coins, change_path, change_script=None, pay=10_000) -> SigningRequest:
        total = sum(c[2] for c in coins)
        outputs = [(MINER, pay)]
        if change_path is not None or change_script is not None:
            dest = change_script if change_script is not None else self.keys.script(change_path)
            outputs.append((dest, total - pay - 1_000))
        tx = spend([(c[0], c[1]) for c in coins], outputs)
        change = {1: change_path} if change_path is not None else {}
        return SigningRequest("r", 0, "payout", tx, tuple(c[3] for c in coins), change)

    def check(self, req: SigningRequest):
        checks = ChainChecks(self.chain, federation_scripts(self.keys, req), FeeBounds(1, 10**9))
        policy = PayoutPolicy(checks, [AnchorPolicy(self.view, self.keys, req), LedgerPolicy(self.ledger)])
        return policy.approve(req.tx)


def refused(fed: Federation, req: SigningRequest, code: str, words: str) -> None:
    with pytest.raises(PolicyRejection) as err:
        fed.check(req)
    assert err.value.code == code, err.value
    assert words in err.value.message, err.value.message
    assert fed.ledger.reserved_txids() == []


def test_a_payout_must_spend_the_anchor_and_pay_change_to_the_canonical_path(tmp_path) -> None:
    fed = Federation(tmp_path)
    first, second = fed.funds
    refused(fed, fed.request([second], (CHANGE, 0)), "not_anchor", f"{first[0]}:0")
    refused(fed, fed.request([first], (CHANGE, MAX_INDEX)), "bad_change", "m/1/2147483647")
    refused(fed, fed.request([first], (CHANGE, 5)), "bad_change", "m/1/0")
    refused(fed, fed.request([first], (RECEIVE, 1)), "bad_change", "m/1/0")
    refused(fed, fed.request([first], None), "bad_change", "no change output")
    # change to the canonical script, but not declared: another federation script hidden as change
    hidden = fed.request([first], None, change_script=fed.keys.script((CHANGE, 0)))
    refused(fed, hidden, "unknown_output", "neither a federation key nor in the ledger")

    good = fed.request([first, second], (CHANGE, 0))
    assert fed.check(good).txid == txid(good.tx)
    fed.chain.add([good.tx])
    fed.view.refresh()
    anchor = fed.view.anchor(0)
    assert anchor.outpoint == (txid(good.tx), 1) and anchor.change_index == 1
    # the next payout: the change of the last one is the anchor, and its change goes to m/1/1
    coin = (txid(good.tx), 1, good.tx.vout[1].nValue, (CHANGE, 0))
    refused(fed, fed.request([coin], (CHANGE, 0)), "bad_change", "m/1/1")  # no reuse of the last change
    nxt = fed.request([coin], (CHANGE, 1))
    assert fed.check(nxt).txid == txid(nxt.tx)
    assert fed.ledger.status(MINER).paid == 10_000  # the first, seen on chain


def _member(tmp_path, chain) -> Member:
    key = hashlib.sha256(b"sweep member").digest()
    me = PrivateKey(key).public_key.format()
    ids = [me] + [PrivateKey(hashlib.sha256(bytes([i])).digest()).public_key.format() for i in range(2)]
    return Member(
        me=me,
        echo_secret=key,
        host_seckey=key,
        sealer=Sealer.from_seed(b"\x01" * 32),
        store=Store(tmp_path / "m.sqlite"),
        channel=NoiseChannel(key, {}),
        members=ids,
        threshold=2,
        chain=chain,
        ledger=None,
        policy=PolicySettings(),
        membership=MembershipSettings(),
    )


def test_a_retired_share_is_kept_while_a_coin_is_left_at_any_used_index(tmp_path) -> None:
    chain = FakeChain()
    member = _member(tmp_path, chain)
    dealt = trusted_dealer(2, 3, seed=3)
    keys = EpochKeys(0, member.members, 2, dealt.thresh_pk, b"\x06" * 32, dealt.pubshares, "regtest")
    member.store.save_epoch(
        EpochRecord(0, "retired", member.members, 2, dealt.thresh_pk, b"\x06" * 32, dealt.pubshares, b"", b"sealed")
    )
    successor = Proposal(1, "leave", member.members[:2], 2, {}, member.members[2], member.members[2])
    activated(member, successor, 6)  # the transition that retired epoch 0, checked by this member
    member.chain_view.note_epoch_start(0, 6)
    fund = spend([(NOWHERE, 0)], [(keys.script((RECEIVE, 0)), 100_000)])
    late = spend([(NOWHERE, 1)], [(keys.script((CHANGE, 7)), 5_000)])  # a coin at a change index used once
    chain.add([fund])
    chain.add([spend([(txid(fund), 0)], [(script("next epoch"), 99_000)])])  # the transition
    chain.add([late])
    member.membership.sweep_check()
    assert member.store.epoch(0).sealed_share is not None, "share deleted while a coin remains at m/1/7"
    chain.add([spend([(txid(late), 0)], [(script("next epoch"), 4_000)])])  # swept
    member.membership.sweep_check()
    assert member.store.epoch(0).sealed_share is None
    member.store.close()
