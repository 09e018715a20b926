"""A forged abort sent to some members only, by one malicious member of a 5-member federation (t = 3)
on member processes and a regtest bitcoind: the attacker proposes its own leave (a change every honest
member takes part in), lets the new list's DKG finish, aborts the change at two honest members, and has
the other two sign the transition with it. The aborted members set their new share aside; once their
own chain shows the epoch's anchor spent to the key their own DKG produced, they take over the new
epoch all the same (one of them restarted meanwhile), so it keeps every holder and pays with them among
its signers."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import closing

import pytest

from adversary.harness import MEMBERSHIP, AdversaryCluster, honest_partial_signatures, wait_for
from frostfed.bitcoin.regtest import RegtestBitcoind
from frostfed.plugin.localcluster import LocalMember, wait_for_epoch

pytestmark = pytest.mark.slow



@pytest.fixture(scope="module")
def fed(tmp_path_factory: pytest.TempPathFactory, regtest: RegtestBitcoind) -> Iterator[AdversaryCluster]:
    cluster = AdversaryCluster(tmp_path_factory.mktemp("advpa5"), regtest, 5, 3, attackers=(0,), membership=MEMBERSHIP)
    cluster.start()
    cluster.fund_coin(300_000)
    yield cluster
    cluster.stop()


def epoch_statuses(member: LocalMember) -> dict[int, str]:
    """The epochs whose key share this member's own store holds, with their status."""
    with closing(sqlite3.connect(f"file:{member.data_dir / 'frostfed.sqlite'}?mode=ro", uri=True, timeout=10)) as db:
        return dict(db.execute("SELECT epoch, status FROM epochs ORDER BY epoch").fetchall())


def test_members_aborted_alone_take_over_the_new_epoch_from_their_chain(fed: AdversaryCluster) -> None:
    epoch = fed.attacker.evil("keys")["epoch"]
    aborted, signers = fed.honest[:2], fed.honest[2:]
    run = fed.attacker.evil(
        "dkg_abort",
        {"kind": "leave", "subject": fed.attacker.id.hex(), "abort_to": [m.id.hex() for m in aborted], "timeout": 60},
    )
    wait_for(lambda: all(m.call("frost-epochs")["change"]["in_progress"] is None for m in aborted), "the abort")
    for m in aborted:  # the share of the new key is set aside, out of the epochs
        assert epoch_statuses(m) == {epoch: "active"}, m.index
    for m in signers:
        assert (m.call("frost-epochs")["change"]["in_progress"] or {}).get("epoch") == epoch + 1
        assert epoch_statuses(m) == {epoch: "active", epoch + 1: "pending"}, m.index
    out = fed.attacker.evil(
        "transition", {"proposal": run["proposal"], "recovery": run["recovery"], "to": [m.id.hex() for m in signers]}
    )
    assert out["signed"] is True and out["broadcast"], out
    for m in aborted:
        assert honest_partial_signatures(m, out["id"]) == 0
    aborted[1].stop()  # one of them is down while the transition confirms: its own store must suffice
    fed.btc.mine(1)
    aborted[1].start()
    aborted[1].wait_ready()
    key = wait_for_epoch(fed.honest, 60, epoch=epoch + 1)
    assert key == run["group_key"]
    for m in fed.honest:
        status = m.call("frost-status")
        assert status["epoch"] == epoch + 1 and status["group_key"] == run["group_key"], m.index
        assert epoch_statuses(m) == {epoch: "retired", epoch + 1: "active"}, m.index
    # the new epoch has 4 members at t = 3: with one of the others stopped, both aborted members must sign
    signers[1].stop()
    running = [*aborted, signers[0]]
    miner = fed.miner_address()
    fed.credit(miner, 15_000, running)
    payout = aborted[0].call("frost-payout", {"outputs": [{"address": miner, "sats": 15_000}]})
    assert payout["status"] == "broadcast", payout
    assert {m.id.hex() for m in aborted} <= set(payout["signers"])
    fed.btc.mine(1)
    assert fed.received(miner) == 15_000
    for m in aborted:
        assert honest_partial_signatures(m, payout["id"]) == 1, m.index
