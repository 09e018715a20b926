"""Membership changes on regtest: no coin of the old epoch is left behind a deleted key share, and a
member that was down while the next epoch started reaches it on restart."""

from __future__ import annotations

import time
from typing import Any

import pytest
from federation_cluster import Cluster, scan_descriptors
from test_membership_e2e import MEMBERSHIP, approve_expel, pay_one

from frostfed.bitcoin.regtest import RegtestBitcoind
from frostfed.plugin.localcluster import wait_for_epoch

pytestmark = pytest.mark.slow


def scan(btc: RegtestBitcoind, descs: dict[str, Any]) -> int:
    return scan_descriptors(btc, descs)


def test_a_transition_leaves_no_coin_behind_a_deleted_share(tmp_path, regtest: RegtestBitcoind) -> None:
    cluster = Cluster(tmp_path, regtest, 4, 3, membership=MEMBERSHIP)
    cluster.start()
    try:
        m0 = cluster.members[0]
        cluster.fund(100_000)
        # the pool mines a block whose coinbase pays the federation (what a mining pool's hubs hold)
        regtest.rpc("generatetoaddress", 1, m0.call("frost-newaddr")["address"])
        old_descs = m0.call("frost-descriptor")
        held_before = scan(regtest, old_descs)
        approve_expel(cluster.members[1:3], cluster.members[3])
        r = m0.call("frost-expel", [cluster.members[3].id.hex()])
        regtest.mine(1)
        wait_for_epoch(cluster.members[:3], 30, epoch=1)
        left_behind = scan(regtest, old_descs)
        shares = [
            next(e for e in m.call("frost-epochs")["epochs"] if e["epoch"] == 0)["share_held"]
            for m in cluster.members[:3]
        ]
        assert r["epoch"] == 1 and held_before > 100_000
        assert left_behind == 0 or any(shares), (
            f"{left_behind} sats remain at epoch 0's key, and every member deleted its epoch 0 share"
        )
    finally:
        cluster.stop()


def test_a_member_down_while_the_next_epoch_started_catches_up(tmp_path, regtest: RegtestBitcoind) -> None:
    cluster = Cluster(tmp_path, regtest, 5, 4, membership=MEMBERSHIP)
    cluster.start()
    try:
        cluster.fund(200_000)
        m0, m1, m2, late, gone = cluster.members
        approve_expel([m1, m2, late], gone)
        r = m0.call("frost-expel", [gone.id.hex()])
        deadline = time.monotonic() + 20
        while not any(e["transition_txid"] for e in late.call("frost-epochs")["epochs"] if e["epoch"] == 1):
            assert time.monotonic() < deadline
            time.sleep(0.1)
        late.kill()  # it knows the transition; it is down while the transition confirms
        gone.stop()
        regtest.mine(1)
        wait_for_epoch([m0, m1, m2], 30, epoch=1)
        pay_one(cluster, [m0, m1, m2], m0)  # the new epoch spends the transition's output
        late.start()
        late.wait_ready()
        assert wait_for_epoch([m0, m1, m2, late], 30, epoch=1) == r["group_key"]
    finally:
        cluster.stop()


def test_no_presignature_outlives_its_request(tmp_path, regtest: RegtestBitcoind) -> None:
    """Once a request is over, no member keeps a presignature (secret nonces in memory, `issued` in the
    journal) for it: the coordinator's own signer included."""
    cluster = Cluster(tmp_path, regtest, 4, 3, membership=MEMBERSHIP)
    cluster.start()
    try:
        cluster.fund(100_000)
        pay_one(cluster, cluster.members, cluster.members[0])
        time.sleep(1.0)  # let the last `sign_done` arrive
        issued = {m.index: m.call("frost-status")["nonces"].get("issued", 0) for m in cluster.members}
        assert issued == dict.fromkeys(issued, 0), issued
    finally:
        cluster.stop()
