"""A member activates the next epoch (and deletes the old epoch's key share) only on the transition
it checked, never on any transaction that happens to pay the new key."""

from __future__ import annotations

import hashlib
import time
from decimal import Decimal

import pytest
from coincurve import PrivateKey
from dealer import trusted_dealer
from membership_records import restart, take_part

from frostfed.bitcoin.chain_index_schema import RECEIVE, RECEIVE_LOOKAHEAD
from frostfed.bitcoin.taproot import p2tr_address
from frostfed.federation.config import MembershipSettings, PolicySettings
from frostfed.federation.epoch_keys import EpochKeys
from frostfed.federation.messages import Message, encode
from frostfed.federation.node import MAX_ADDRESS_GAP, Member
from frostfed.federation.sealing import Sealer
from frostfed.federation.store import EpochRecord, Store
from frostfed.federation.transition import TRANSITION_PATH, Proposal
from frostfed.net.tcp import NoiseChannel


def _key(i: int) -> bytes:
    return hashlib.sha256(f"review member {i}".encode()).digest()



def pay_from_the_miners_wallet(regtest, new_keys: EpochKeys) -> str:
    """A confirmed payment to the new key's transition address that spends none of the federation's
    coins (what a proposer could make on its own); returns its txid."""
    address = p2tr_address(new_keys.output_key(TRANSITION_PATH), "regtest")
    raw = regtest.rpc("createrawtransaction", [], [{address: Decimal("0.0001")}])
    funded = regtest.rpc("fundrawtransaction", raw, {"changePosition": 1}, wallet="miner")
    signed = regtest.rpc("signrawtransactionwithwallet", funded["hex"], wallet="miner")
    txid = regtest.rpc("sendrawtransaction", signed["hex"])
    regtest.mine(1)
    return txid

@pytest.mark.asyncio
async def test_a_payment_to_the_new_key_does_not_retire_the_old_epoch(tmp_path, regtest, chain) -> None:
    ids = [PrivateKey(_key(i)).public_key.format() for i in range(4)]
    me = ids[0]
    sealer = Sealer.from_seed(b"\x01" * 32)
    store = Store(tmp_path / "m.sqlite")
    member = Member(
        me=me,
        echo_secret=_key(0),
        host_seckey=_key(100),
        sealer=sealer,
        store=store,
        channel=NoiseChannel(_key(0), {}),
        members=ids,
        threshold=3,
        chain=chain,
        ledger=None,
        policy=PolicySettings(),
        membership=MembershipSettings(transition_confirmations=1),
    )
    old, new = trusted_dealer(3, 4), trusted_dealer(3, 3)
    ctx0 = b"frostfed/share/" + (0).to_bytes(4, "big") + me
    ctx1 = b"frostfed/share/" + (1).to_bytes(4, "big") + me
    rec0 = EpochRecord(
        0, "active", ids, 3, old.thresh_pk, b"\x02" * 32, old.pubshares, b"", sealer.seal(old.secshares[0], ctx0)
    )
    rec1 = EpochRecord(
        1, "pending", ids[:3], 3, new.thresh_pk, b"\x03" * 32, new.pubshares, b"", sealer.seal(new.secshares[0], ctx1)
    )
    store.save_epoch(rec0)
    store.save_epoch(rec1)
    member._activate(rec0)
    addresses = {m: f"127.0.0.1:{9000 + i}" for i, m in enumerate(ids[:3])}
    take_part(member, Proposal(1, "expel", ids[:3], 3, addresses, ids[1], ids[3]), share_made=True)

    # Any member of the proposed epoch (or the proposer, by `change_done`) names a transaction of its own
    # that merely pays the new key at output 0; the federation's coins never moved.
    new_keys = EpochKeys(1, ids[:3], 3, new.thresh_pk, b"\x03" * 32, [], "regtest")
    txid = pay_from_the_miners_wallet(regtest, new_keys)
    member.membership.hint(ids[2], 1, txid)
    await member.membership.tick()

    epochs = {e.epoch: e for e in store.epochs()}
    assert epochs[0].status == "active" and epochs[0].sealed_share is not None, "old share deleted"
    assert member.keys is not None and member.keys.epoch == 0
    store.close()


@pytest.mark.asyncio
async def test_the_proposers_word_alone_does_not_retire_the_old_epoch(tmp_path, regtest, chain) -> None:
    """The proposer (the attacker: the new members' `change_key` told it the new key) never asks for the
    transition; it pays the new key itself and names that payment in `change_done`. This member judged no
    transition, and the old epoch's coins (its anchor) never moved: activating the new epoch would
    strand every one of them, since no member signs for a retired epoch."""
    member, ids = _member(tmp_path, chain, 0)
    new = trusted_dealer(3, 3)
    ctx1 = b"frostfed/share/" + (1).to_bytes(4, "big") + ids[0]
    share = member.sealer.seal(new.secshares[0], ctx1)
    member.store.save_epoch(
        EpochRecord(1, "pending", ids[:3], 3, new.thresh_pk, b"\x03" * 32, new.pubshares, b"", share)
    )
    addresses = {m: f"127.0.0.1:{9000 + i}" for i, m in enumerate(ids[:3])}
    rec = take_part(member, Proposal(1, "expel", ids[:3], 3, addresses, ids[1], ids[3]), share_made=True)
    new_keys = EpochKeys(1, ids[:3], 3, new.thresh_pk, b"\x03" * 32, [], "regtest")
    txid = pay_from_the_miners_wallet(regtest, new_keys)
    await member.membership.receive(ids[1], Message("change_done", {"epoch": 1, "txid": txid}))
    assert txid in rec.candidates
    await member.membership.tick()
    epochs = {e.epoch: e for e in member.store.epochs()}
    assert epochs[0].status == "active", "the old epoch retired on the proposer's word"
    assert member.keys is not None and member.keys.epoch == 0
    member.store.close()


def _member(tmp_path, chain, index: int = 0) -> tuple[Member, list[bytes]]:
    ids = [PrivateKey(_key(i)).public_key.format() for i in range(4)]
    sealer = Sealer.from_seed(b"\x01" * 32)
    store = Store(tmp_path / f"m{index}.sqlite")
    member = Member(
        me=ids[index],
        echo_secret=_key(index),
        host_seckey=_key(100 + index),
        sealer=sealer,
        store=store,
        channel=NoiseChannel(_key(index), {}),
        members=ids,
        threshold=3,
        chain=chain,
        ledger=None,
        policy=PolicySettings(),
        membership=MembershipSettings(transition_confirmations=1, change_timeout_seconds=300),
    )
    old = trusted_dealer(3, 4)
    ctx0 = b"frostfed/share/" + (0).to_bytes(4, "big") + ids[index]
    rec0 = EpochRecord(
        0, "active", ids, 3, old.thresh_pk, b"\x02" * 32, old.pubshares, b"", sealer.seal(old.secshares[index], ctx0)
    )
    store.save_epoch(rec0)
    member._activate(rec0)
    return member, ids


@pytest.mark.asyncio
async def test_a_restarted_member_keeps_the_change_in_progress(tmp_path, chain) -> None:
    """Restarted while the transition is being signed (the DKG done, `change_done` not yet heard): the change
    must survive the first tick, or the later `change_done`/heartbeat hint is ignored and the member never
    reaches the new epoch."""
    member, ids = _member(tmp_path, chain, 0)
    addresses = {m: f"127.0.0.1:{9000 + i}" for i, m in enumerate(ids[:3])}
    p = Proposal(1, "expel", ids[:3], 3, addresses, ids[1], ids[3])
    take_part(member, p)  # what adoption left before the restart
    restart(member)
    assert member.membership.proposal is not None
    await member.membership.tick()  # the first heartbeat after the restart
    assert member.membership.proposal is not None, "in-progress change dropped right after a restart"
    member.store.close()


@pytest.mark.asyncio
async def test_a_restarted_proposer_does_not_block_changes_forever(tmp_path, chain) -> None:
    member, ids = _member(tmp_path, chain, 1)
    addresses = {m: f"127.0.0.1:{9000 + i}" for i, m in enumerate(ids[:3])}
    p = Proposal(1, "expel", ids[:3], 3, addresses, ids[1], ids[3])
    from frostfed.federation.membership.record import State

    take_part(member, p, State.COLLECTING)  # it proposed, then crashed
    restart(member)
    member.membership.machine.adopted_at = time.time() - 10 * 300  # long after it could still finish
    await member.membership.tick()
    assert member.membership.proposal is None, "a dead proposal of its own blocks every later change"
    [rec] = member.membership.machine.records.values()
    assert rec.state is State.ABORTED
    member.store.close()


@pytest.mark.asyncio
async def test_one_members_address_announcement_cannot_blow_up_the_coin_scan(tmp_path, chain) -> None:
    """`addr` from a peer moves this member's address index; the coin scan of every later payout and
    transition derives every script up to it (find_coins: range(receive_count + LOOKAHEAD))."""
    member, ids = _member(tmp_path, chain, 0)
    member._on_address(ids[2], Message("address", {"epoch": 0, "index": 2**31 - 1}))
    assert member.store.next_address_index(0) <= 10_000, "the next payout scans 2^31 scripts"
    member.store.close()


@pytest.mark.asyncio
async def test_hints_from_one_member_cannot_crowd_out_the_proposers_transaction(tmp_path, chain) -> None:
    """A member of the new epoch (the attacker) sends heartbeats naming made-up transaction ids, one after
    the other, while this member signs the transition: the candidates are capped, yet the proposer's
    `change_done` (and the honest members' hints) must still be taken, or this member never finds the
    transition and stays behind in the old epoch for good."""
    member, ids = _member(tmp_path, chain, 0)
    addresses = {m: f"127.0.0.1:{9000 + i}" for i, m in enumerate(ids[:3])}
    p = Proposal(1, "expel", ids[:3], 3, addresses, ids[1], ids[3])
    rec = take_part(member, p, share_made=True, judged=[("aa" * 32, 0)])  # it signed the transition
    new = trusted_dealer(3, 3)
    ctx1 = b"frostfed/share/" + (1).to_bytes(4, "big") + ids[0]
    share = member.sealer.seal(new.secshares[0], ctx1)
    member.store.save_epoch(
        EpochRecord(1, "pending", ids[:3], 3, new.thresh_pk, b"\x03" * 32, new.pubshares, b"", share)
    )
    for i in range(40):
        txid = hashlib.sha256(f"made up {i}".encode()).hexdigest()
        member._on_message(ids[2], encode("heartbeat", {"t": 0, "epoch": 1, "txid": txid}))
    real = hashlib.sha256(b"the transition").hexdigest()
    await member.membership.receive(ids[1], Message("change_done", {"epoch": 1, "txid": real}))
    assert real in rec.candidates, "the proposer's transaction was dropped"
    member.store.close()


@pytest.mark.asyncio
async def test_address_announcements_cannot_push_new_addresses_past_what_the_chain_index_watches(
    tmp_path, chain
) -> None:
    """Each `addr` may reach only so far past this member's own index, but one member (the attacker)
    can send one after the other, each from where the last left it: the next `frost-newaddr` would then
    hand out an address past the chain index's look-ahead, where a deposit is seen by no member (and a
    retired epoch's share would be deleted with the coin still there)."""
    member, ids = _member(tmp_path, chain, 0)
    for _ in range(5):
        ahead = member.store.next_address_index(0) + MAX_ADDRESS_GAP
        member._on_address(ids[2], Message("address", {"epoch": 0, "index": ahead}))
    used = member.chain_view.index.used_indexes(0)[RECEIVE]
    assert member.store.next_address_index(0) <= used + RECEIVE_LOOKAHEAD, "the next address is watched by nobody"
    member.store.close()
