"""A member that dropped a change on its proposer's abort (an abort a malicious proposer may send to
some members only) takes over the new epoch once its own chain index shows the epoch's anchor spent to
the key its own DKG of that change produced, with the confirmations required; on nothing else."""

from __future__ import annotations

import asyncio
import hashlib
from pathlib import Path
from typing import Any

from bitcoin.core import CTransaction, b2lx
from coincurve import PrivateKey
from dealer import trusted_dealer
from fake_chain import FakeChain, payment, spend
from membership_records import take_part

from frostfed.bitcoin.chain_index_schema import RECEIVE
from frostfed.federation.config import MembershipSettings, PolicySettings
from frostfed.federation.epoch_keys import EpochKeys
from frostfed.federation.membership.record import State
from frostfed.federation.messages import Message
from frostfed.federation.node import Member
from frostfed.federation.sealing import Sealer
from frostfed.federation.store import EpochRecord, Store
from frostfed.federation.transition import TRANSITION_PATH, Proposal
from frostfed.net.tcp import NoiseChannel

IDS = [PrivateKey(hashlib.sha256(f"set-aside member {i}".encode()).digest()).public_key.format() for i in range(4)]
SEALER = Sealer.from_seed(b"\x01" * 32)
OLD, NEW, OTHER = trusted_dealer(3, 4), trusted_dealer(2, 3), trusted_dealer(2, 3)


def _member(store: Store, chain: FakeChain) -> Member:
    member = Member(
        me=IDS[0],
        echo_secret=hashlib.sha256(b"echo").digest(),
        host_seckey=hashlib.sha256(b"host").digest(),
        sealer=SEALER,
        store=store,
        channel=NoiseChannel(hashlib.sha256(b"noise").digest(), {}),
        members=IDS,
        threshold=3,
        chain=chain,
        ledger=None,
        policy=PolicySettings(),
        membership=MembershipSettings(transition_confirmations=2),
    )
    rec = store.active_epoch()
    assert rec is not None
    member._activate(rec)
    return member


def _record(epoch: int, status: str, members: list[bytes], t: int, dealt: Any, code: bytes) -> EpochRecord:
    ctx = b"frostfed/share/" + epoch.to_bytes(4, "big") + IDS[0]
    return EpochRecord(
        epoch, status, members, t, dealt.thresh_pk, code, dealt.pubshares, b"", SEALER.seal(dealt.secshares[0], ctx)
    )


def _script(rec: EpochRecord, path: tuple[int, int]) -> bytes:
    return EpochKeys(rec.epoch, rec.members, rec.threshold, rec.group_key, rec.chain_code, [], "regtest").script(path)


def b2lx_of(tx: CTransaction) -> str:
    return b2lx(tx.GetTxid())


def _funded(tmp_path: Path) -> tuple[Store, FakeChain, Member, CTransaction]:
    """A member of epoch 0 (3 of 4) whose one coin, the anchor, is in the chain's first block."""
    store = Store(tmp_path / "m.sqlite")
    old = _record(0, "active", IDS, 3, OLD, b"\x02" * 32)
    store.save_epoch(old)
    chain = FakeChain()
    funding = payment([(_script(old, (RECEIVE, 0)), 100_000)])
    chain.add([funding])
    return store, chain, _member(store, chain), funding


def _proposal(nonce: str) -> Proposal:
    """The leave of member 3: epoch 1 of members 0..2, t = 2."""
    members = IDS[:3]
    return Proposal(1, "leave", members, 2, {m: "127.0.0.1:1" for m in members}, IDS[3], IDS[3], nonce=nonce)


def _check(member: Member) -> None:
    found = member.membership.dropped_change_on_chain()
    if found is not None:
        member.membership.take_over(*found)


def _abort(member: Member, p: Proposal, reason: str) -> None:
    """The proposer's abort (the leaver, member 3, proposed it)."""
    abort = Message("change_abort", {"epoch": 1, "nonce": p.nonce, "reason": reason})
    member.membership.handlers["change_abort"](IDS[3], abort)


def _asides(member: Member) -> list[Any]:
    return [r.aside for r in member.membership.machine.records.values() if r.aside]


def test_a_dropped_change_is_taken_over_only_from_this_members_own_chain(tmp_path: Path) -> None:
    store, chain, member, funding = _funded(tmp_path)
    members = IDS[:3]
    p = _proposal("aa" * 8)
    mine = _record(1, "pending", members, 2, NEW, b"\x03" * 32)
    store.save_epoch(mine)
    take_part(member, p, State.KEY_READY, share_made=True)  # this member's own DKG of this change made the share
    _abort(member, p, "forged")
    assert store.epoch(1) is None and member.membership.proposal is None

    # a key this member holds no share of from that change, paid from the anchor: nothing happens
    foreign = _record(1, "pending", members, 2, OTHER, b"\x03" * 32)
    decoy = spend([("ff" * 32, 0)], [(_script(mine, TRANSITION_PATH), 90_000)])  # the key, but no coin of ours
    chain.add([decoy, spend([(b2lx_of(funding), 0)], [(_script(foreign, TRANSITION_PATH), 99_000)], salt=1)])
    chain.add([])
    _check(member)
    assert store.active_epoch().epoch == 0 and store.epoch(1) is None

    # restarted: everything needed is in its store. The real transition spends the next anchor.
    chain.fork(1)
    chain.add([])
    store.close()
    store = Store(tmp_path / "m.sqlite")
    member = _member(store, chain)
    transition = spend([(b2lx_of(funding), 0)], [(_script(mine, TRANSITION_PATH), 99_000)])
    chain.add([transition])
    _check(member)
    assert store.active_epoch().epoch == 0, "one confirmation of the two required"
    chain.add([])
    _check(member)
    active = store.active_epoch()
    assert active is not None and active.epoch == 1 and active.group_key == NEW.thresh_pk
    assert active.activation_txid == b2lx_of(transition)
    assert store.epoch(0).status == "retired" and store.epoch(0).sealed_share is not None
    assert member.keys is not None and member.keys.epoch == 1 and member.keys.group_key == NEW.thresh_pk
    assert _asides(member) == []
    store.close()


def test_a_share_of_another_change_is_never_taken_over(tmp_path: Path) -> None:
    """The pending share is not from the dropped change's own DKG: kept aside, never activated."""
    store, chain, member, funding = _funded(tmp_path)
    members = IDS[:3]
    p = _proposal("bb" * 8)
    other = _record(1, "pending", members, 2, NEW, b"\x03" * 32)
    store.save_epoch(other)
    take_part(member, p)  # its DKG did not finish: the share is another change's
    _abort(member, p, "aborted")
    [rec] = member.membership.machine.records.values()
    assert rec.aside is None and rec.foreign_aside["group_key"] == NEW.thresh_pk.hex()
    chain.add([spend([(b2lx_of(funding), 0)], [(_script(other, TRANSITION_PATH), 99_000)])])
    chain.add([])
    _check(member)
    assert store.active_epoch().epoch == 0 and store.epoch(1) is None
    store.close()


def test_a_change_dropped_on_a_silent_proposer_is_taken_over_too(tmp_path: Path) -> None:
    """After a timeout the share stays where it was; the chain still brings the member into the epoch."""
    store, chain, member, funding = _funded(tmp_path)
    members = IDS[:3]
    p = _proposal("dd" * 8)
    mine = _record(1, "pending", members, 2, NEW, b"\x03" * 32)
    store.save_epoch(mine)
    take_part(member, p, State.KEY_READY, share_made=True)
    member.membership.machine.adopted_at = 0.0  # long ago: the proposer went silent
    asyncio.run(member.membership.tick())
    assert member.membership.proposal is None and "went silent" in (member.membership.last_error or "")
    assert store.epoch(1) is not None and store.epoch(1).status == "pending"
    transition = spend([(b2lx_of(funding), 0)], [(_script(mine, TRANSITION_PATH), 99_000)])
    chain.add([transition])
    chain.add([])
    _check(member)
    assert store.active_epoch().epoch == 1 and store.active_epoch().activation_txid == b2lx_of(transition)
    store.close()
