"""The signer's check of a transition refuses, with its reason recorded, every transition that does not
pay the key of this member's own pending share from this very change's DKG, before looking at the
transaction at all: a member that sent a real certificate of another DKG, or a transition of a change
this member dropped or never took part in, gets no signature."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from bitcoin.core import CTransaction
from dealer import trusted_dealer
from fake_chain import FakeChain
from membership_records import take_part
from membership_script import IDS, expel, leave, results

from frostfed.bitcoin.rejection import PolicyRejection
from frostfed.federation.config import MembershipSettings, PolicySettings
from frostfed.federation.epoch_keys import EpochKeys
from frostfed.federation.membership.record import State
from frostfed.federation.node import Member
from frostfed.federation.sealing import Sealer
from frostfed.federation.signing_request import SigningRequest
from frostfed.federation.store import EpochRecord, Store
from frostfed.federation.transition import Proposal
from frostfed.net.tcp import NoiseChannel

SEALER = Sealer.from_seed(b"\x01" * 32)
OLD = trusted_dealer(3, 4, seed=11)


def _member(tmp_path: Path, me: bytes = IDS[0]) -> Member:
    store = Store(tmp_path / "m.sqlite")
    ctx = b"frostfed/share/" + (0).to_bytes(4, "big") + me
    rec = EpochRecord(
        0, "active", IDS[:4], 3, OLD.thresh_pk, b"\x02" * 32, OLD.pubshares, b"", SEALER.seal(b"\x01" * 32, ctx)
    )
    store.save_epoch(rec)
    chain = FakeChain()
    chain.add([])
    member = Member(
        me=me,
        echo_secret=hashlib.sha256(b"echo").digest(),
        host_seckey=hashlib.sha256(b"host").digest(),
        sealer=SEALER,
        store=store,
        channel=NoiseChannel(hashlib.sha256(b"noise").digest(), {}),
        members=IDS[:4],
        threshold=3,
        chain=chain,
        ledger=None,
        policy=PolicySettings(),
        membership=MembershipSettings(min_bond_blocks=1),
    )
    member.keys = EpochKeys(0, IDS[:4], 3, OLD.thresh_pk, b"\x02" * 32, OLD.pubshares, "regtest")
    member.membership.known_hostkeys = dict  # type: ignore[method-assign]  (the test epoch has no DKG transcript)
    return member


def _request(p: Proposal, recovery: bytes) -> SigningRequest:
    return SigningRequest(
        "t1", 0, "transition", CTransaction(), (), {}, {"proposal": p.to_body(), "recovery": recovery.hex()}
    )


def _pending(member: Member, p: Proposal, group_key: bytes, recovery: bytes) -> None:
    ctx = b"frostfed/share/" + (1).to_bytes(4, "big") + member.me
    member.store.save_epoch(
        EpochRecord(
            1, "pending", p.members, p.threshold, group_key, b"\x03" * 32, [], recovery, SEALER.seal(b"\x02" * 32, ctx)
        )
    )


def _refused(member: Member, req: SigningRequest) -> str:
    with pytest.raises(PolicyRejection) as e:
        member.membership.transition_tasks(req)
    assert member.store.refusals()[-1]["code"] == e.value.code and member.store.refusals()[-1]["stage"] == "transition"
    return e.value.code


def test_a_transition_for_a_key_that_is_not_this_members_pending_share_is_refused(tmp_path: Path) -> None:
    member = _member(tmp_path)
    p = expel()
    mine, theirs = results(p)[IDS[0]], results(leave())[IDS[0]]
    take_part(member, p, State.KEY_READY, share_made=True)
    _pending(member, p, b"\x02" + b"\x42" * 32, mine.recovery)  # this member's share is of another key
    assert _refused(member, _request(p, mine.recovery)) == "bad_epoch_key"
    assert _refused(member, _request(p, theirs.recovery)) == "bad_epoch_key"  # a real certificate, another list
    assert member.membership.machine.current.judged is None  # nothing approved
    member.store.close()


def test_a_share_another_change_made_does_not_count_for_this_one(tmp_path: Path) -> None:
    member = _member(tmp_path)
    p = expel()
    mine = results(p)[IDS[0]]
    take_part(member, p, State.ADOPTED, share_made=False)  # its DKG of this change did not finish
    _pending(member, p, mine.group_key, mine.recovery)  # the same key, pending from an earlier change
    assert _refused(member, _request(p, mine.recovery)) == "bad_epoch_key"
    member.store.close()


def test_a_transition_of_a_change_this_member_dropped_or_never_adopted_is_refused(tmp_path: Path) -> None:
    member = _member(tmp_path)
    p = expel()
    mine = results(p)[IDS[0]]
    assert _refused(member, _request(p, mine.recovery)) == "not_this_change"
    take_part(member, p, State.KEY_READY, share_made=True)
    member.membership.abort_change("it never confirms")
    assert _refused(member, _request(p, mine.recovery)) == "change_dropped"
    member.store.close()


def test_a_member_outside_the_new_list_signs_only_its_own_leave(tmp_path: Path) -> None:
    member = _member(tmp_path, IDS[3])  # the expelled member, asked to sign its own expulsion
    p = expel(who=IDS[3])
    take_part(member, p, State.ADOPTED)
    assert _refused(member, _request(p, results(p)[IDS[0]].recovery)) == "not_in_new_epoch"
    member.store.close()
