"""Open membership on a real regtest bitcoind with member processes: a join with a fidelity bond, a
refused join, an expulsion of an offline member, a leave, and a change that cannot finish because a
member of the new list is down. After each change the new federation pays a payout."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest
from federation_cluster import Cluster, scan_descriptors

from frostfed.bitcoin.regtest import RegtestBitcoind
from frostfed.plugin.localcluster import LocalMember, wait_for_epoch, write_cluster
from frostfed.plugin.rpcclient import RpcCallError

pytestmark = pytest.mark.slow

MEMBERSHIP = {
    "min_bond_sats": 50_000,
    "min_bond_blocks": 20,
    "transition_confirmations": 1,
    "change_timeout_seconds": 8.0,
    "min_change_interval_blocks": 0,
}


@pytest.fixture(scope="module")
def fed(tmp_path_factory: pytest.TempPathFactory, regtest: RegtestBitcoind) -> Iterator[Cluster]:
    cluster = Cluster(tmp_path_factory.mktemp("fed4"), regtest, 4, 3, membership=MEMBERSHIP)
    cluster.start()
    cluster.fund(300_000)
    cluster.fund(200_000)
    yield cluster
    cluster.stop()


def federation_coins(btc: RegtestBitcoind, member: LocalMember) -> int:
    return scan_descriptors(btc, member.call("frost-descriptor"))


def pay_one(fed: Cluster, members: list[LocalMember], via: LocalMember, sats: int = 7_000) -> dict[str, Any]:
    miner = fed.miner_address()
    fed.credit(miner, sats, members)
    r = via.call("frost-payout", {"outputs": [{"address": miner, "sats": sats}]})
    fed.btc.mine(1)
    assert fed.confirmations(r["txid"]) == 1 and fed.received(miner) == sats
    return r


def start_joiner(fed: Cluster, base: Any, index: int) -> LocalMember:
    btc = fed.btc
    wallet = f"joiner{index}"
    btc.rpc("createwallet", wallet)
    btc.rpc("sendtoaddress", btc.rpc("getnewaddress", wallet=wallet), Decimal("0.01"), wallet="miner")
    btc.mine(1)
    [joiner] = write_cluster(
        base,
        1,
        None,
        btc.rpc_port,
        btc.datadir / "regtest" / ".cookie",
        membership=MEMBERSHIP,
        first_index=index,
        joining_contacts=fed.running(),
        wallet=wallet,
    )
    joiner.start()
    joiner.wait_ready()
    return joiner


def test_a_join_below_the_members_minimum_bond_is_refused(fed: Cluster, tmp_path) -> None:
    coins_before = federation_coins(fed.btc, fed.members[0])
    joiner = start_joiner(fed, tmp_path, 9)
    params = {"id": joiner.id.hex(), "address": f"127.0.0.1:{joiner.port}", "bond_sats": 10_000}
    lax = fed.members[0]
    try:
        with pytest.raises(RpcCallError) as err:  # a member refuses to propose it
            fed.members[1].call("frost-join", params)
        assert err.value.code == 1406 and "below the minimum" in err.value.message
        # a member whose own minimum is lower proposes it; the others refuse: no key, no transaction
        lax.stop()
        lax.config.write_text(lax.config.read_text().replace("min_bond_sats = 50000", "min_bond_sats = 1000"))
        lax.start()
        lax.wait_ready()
        wait_for_epoch(fed.members, 30, epoch=0)
        with pytest.raises(RpcCallError) as err:
            lax.call("frost-join", params)
        assert err.value.code == 1406 and "below the minimum" in err.value.message
        for m in fed.members:
            assert [e["epoch"] for e in m.call("frost-epochs")["epochs"]] == [0]
        assert federation_coins(fed.btc, fed.members[0]) == coins_before
    finally:
        joiner.stop()
        lax.stop()
        lax.config.write_text(lax.config.read_text().replace("min_bond_sats = 1000", "min_bond_sats = 50000"))
        lax.start()
        lax.wait_ready()


def admit(members: list[LocalMember], joiner: LocalMember) -> None:
    """What each member's operator does before a join: admit the joiner."""
    for m in members:
        m.call("frost-admit", [joiner.id.hex()])


def approve_expel(members: list[LocalMember], gone: LocalMember) -> None:
    for m in members:
        m.call("frost-approve-expel", [gone.id.hex()])


def test_join_with_a_bond_then_the_new_epoch_pays(fed: Cluster, tmp_path) -> None:
    joiner = start_joiner(fed, tmp_path, 4)
    admit(fed.members[1:], joiner)  # member 0's operator admits it by proposing it (frost-join)
    old_key = fed.members[0].call("frost-status")["group_key"]
    coins_before = federation_coins(fed.btc, fed.members[0])
    r = fed.members[0].call(
        "frost-join", {"id": joiner.id.hex(), "address": f"127.0.0.1:{joiner.port}", "bond_sats": 60_000}
    )
    assert r["epoch"] == 1 and len(r["members"]) == 5 and r["threshold"] == 4
    assert r["group_key"] != old_key and len(r["signers"]) == 3
    tx = fed.btc.rpc("getrawtransaction", r["txid"], True)
    assert any(abs(int(o["value"] * 100_000_000) - 60_000) == 0 for o in tx["vout"])  # the bond
    fed.btc.mine(1)
    fed.members.append(joiner)
    key = wait_for_epoch(fed.members, 30, epoch=1)
    assert key == r["group_key"]
    statuses = [m.call("frost-status") for m in fed.members]
    assert all(s["n"] == 5 and s["threshold"] == 4 for s in statuses)
    # every coin moved in the one transaction, less a bounded fee
    assert coins_before - federation_coins(fed.btc, fed.members[0]) < 5_000
    # once no coin is left at the old epoch's addresses, its share is deleted (at a member that checked
    # the transition itself: one that only heard of it keeps the old share)
    signer = next(m for m in fed.members[1:] if m.id.hex() in r["signers"])
    deadline = time.monotonic() + 20
    while True:
        old = next(e for e in signer.call("frost-epochs")["epochs"] if e["epoch"] == 0)
        if not old["share_held"] or time.monotonic() > deadline:
            break
        time.sleep(0.3)
    assert old["status"] == "retired" and not old["share_held"]

    # only the joiner and three founders owe this miner (the fifth refuses): the joiner's share is needed
    payout = pay_one(fed, [joiner, *fed.members[:3]], joiner)
    assert joiner.id.hex() in payout["signers"] and len(payout["signers"]) == 4

    # the bond: the joiner alone, and only after its lock time
    with pytest.raises(RpcCallError) as err:
        joiner.call("frost-bond-claim", [fed.miner_address()])
    assert "locked until block" in err.value.message
    fed.btc.mine(25)
    claim = joiner.call("frost-bond-claim", [fed.miner_address()])
    fed.btc.mine(1)
    assert fed.confirmations(claim["txid"]) >= 1


def test_expel_of_an_offline_member_proceeds_without_it(fed: Cluster) -> None:
    assert len(fed.members) == 5
    gone = fed.members[2]
    gone.kill()
    approve_expel([m for m in fed.members[1:] if m is not gone], gone)
    r = fed.members[0].call("frost-expel", [gone.id.hex()])
    assert r["epoch"] == 2 and gone.id.hex() not in r["members"] and r["threshold"] == 3
    fed.btc.mine(1)
    fed.members.remove(gone)
    wait_for_epoch(fed.members, 30, epoch=2)
    pay_one(fed, fed.members, fed.members[1])


def test_a_change_whose_dkg_cannot_finish_leaves_the_epoch_untouched(fed: Cluster) -> None:
    assert len(fed.members) == 4
    leaver, down = fed.members[3], fed.members[1]
    down.kill()  # in the new list, so the new epoch's DKG cannot complete
    with pytest.raises(RpcCallError) as err:
        leaver.call("frost-leave")
    assert err.value.code == 1406
    down.start()
    down.wait_ready()
    time.sleep(1.5)
    statuses = [m.call("frost-status") for m in fed.members]
    assert {s["epoch"] for s in statuses} == {2}
    assert all(s["membership_change"] is None for s in statuses)
    pay_one(fed, fed.members, fed.members[0])


def test_leave_then_the_smaller_federation_pays(fed: Cluster) -> None:
    leaver = fed.members[3]
    r = leaver.call("frost-leave")
    assert r["epoch"] == 3 and leaver.id.hex() not in r["members"] and len(r["members"]) == 3
    fed.btc.mine(1)
    fed.members.remove(leaver)
    wait_for_epoch(fed.members, 30, epoch=3)
    deadline = time.monotonic() + 20
    while leaver.call("frost-epochs")["left_at_epoch"] != 3 and time.monotonic() < deadline:
        time.sleep(0.3)
    assert leaver.call("frost-epochs")["left_at_epoch"] == 3
    leaver.stop()
    pay_one(fed, fed.members, fed.members[2])


def test_a_long_offline_member_is_expelled_automatically(tmp_path, regtest: RegtestBitcoind) -> None:
    cluster = Cluster(tmp_path, regtest, 4, 3, membership={**MEMBERSHIP, "expel_after_seconds": 4.0})
    cluster.start()
    try:
        cluster.fund(100_000)
        gone = cluster.members[3]
        gone.kill()
        rest = cluster.members[:3]
        deadline = time.monotonic() + 40
        epochs: list[dict[str, Any]] = []
        while time.monotonic() < deadline:
            epochs = rest[0].call("frost-epochs")["epochs"]
            if any(e["epoch"] == 1 and e["transition_txid"] for e in epochs):
                break
            time.sleep(0.5)
        new = next(e for e in epochs if e["epoch"] == 1)
        assert gone.id.hex() not in new["members"] and len(new["members"]) == 3
        # the proposer records the transaction, then broadcasts it: mine once it is in the mempool
        deadline = time.monotonic() + 30
        while new["transition_txid"] not in regtest.rpc("getrawmempool"):
            assert time.monotonic() < deadline, "the transition never reached the mempool"
            time.sleep(0.2)
        regtest.mine(1)
        cluster.members.remove(gone)
        wait_for_epoch(cluster.members, 30, epoch=1)
        pay_one(cluster, cluster.members, rest[1])
    finally:
        cluster.stop()


def test_a_member_killed_while_the_transition_is_signed_catches_up(tmp_path, regtest: RegtestBitcoind) -> None:
    cluster = Cluster(tmp_path, regtest, 5, 3, membership=MEMBERSHIP)
    cluster.start({4: ["delay-psig"]})
    try:
        cluster.fund(100_000)
        m0, m1, m2, expelled, slow = cluster.members  # the expelled member, online, signs no expulsion of itself
        approve_expel([m1, m2, slow], expelled)
        box: dict[str, Any] = {}
        worker = threading.Thread(target=lambda: box.update(r=m0.call("frost-expel", [expelled.id.hex()])))
        worker.start()
        deadline = time.monotonic() + 20
        while not any(e["status"] == "pending" for e in slow.call("frost-epochs")["epochs"]):
            assert time.monotonic() < deadline
            time.sleep(0.05)
        time.sleep(0.5)
        slow.kill()  # it holds the new epoch's share, and may be signing the transition
        worker.join(60)
        r = box["r"]
        assert r["epoch"] == 1 and slow.id.hex() not in r["signers"]
        assert expelled.id.hex() not in r["signers"]
        regtest.mine(1)
        wait_for_epoch([m0, m1, m2], 30, epoch=1)
        slow.start()
        slow.wait_ready()
        key = wait_for_epoch([m0, m1, m2, slow], 30, epoch=1)
        assert key == r["group_key"]
        m2.stop()
        time.sleep(1.5)
        payout = pay_one(cluster, [m0, m1, slow], slow)
        assert slow.id.hex() in payout["signers"]  # t = 3 of the 3 left: it signs with its surviving share
    finally:
        cluster.stop()
