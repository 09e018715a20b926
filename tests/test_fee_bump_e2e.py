"""Fees on a real regtest bitcoind with member processes (3 members, t = 2): a payout pays the floor
while bitcoind has no estimate and says so, a stuck payout is bumped twice and its last replacement
confirms, with every member's ledger counting the debt paid once, and once bitcoind has seen
fee-paying transactions confirm, a payout pays its estimate.

The federation has a bitcoind of its own: what its fee estimator has seen must not leak into the
chain other tests share, nor theirs into this one."""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest
from federation_cluster import Cluster
from regtest_node import mining_regtest

from frostfed.bitcoin.fee_estimate import FALLBACK_SAT_PER_VB
from frostfed.bitcoin.regtest import RegtestBitcoind
from frostfed.federation import commands
from frostfed.plugin.localcluster import LocalMember
from frostfed.plugin.rpcclient import RpcCallError

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def btc(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RegtestBitcoind]:
    with mining_regtest(tmp_path_factory.mktemp("feebitcoind")) as node:  # its own fee estimator
        yield node


@pytest.fixture(scope="module")
def fed(tmp_path_factory: pytest.TempPathFactory, btc: RegtestBitcoind) -> Iterator[Cluster]:
    cluster = Cluster(tmp_path_factory.mktemp("fees3"), btc, 3, 2)
    cluster.start()
    yield cluster
    cluster.stop()


def payout(member: LocalMember, address: str, sats: int, **kw: Any) -> dict[str, Any]:
    return member.call("frost-payout", {"outputs": [{"address": address, "sats": sats}], **kw})


def mempool(btc: RegtestBitcoind) -> set[str]:
    return set(btc.rpc("getrawmempool"))


def block_txids(btc: RegtestBitcoind) -> set[str]:
    return set(btc.rpc("getblock", btc.rpc("getbestblockhash"))["tx"])


def debt(member: LocalMember, address: str) -> dict[str, Any]:
    return member.call("frost-ledger", [address])["debts"][0]


def wait_for(probe: Any, what: str, timeout: float = 30) -> Any:
    deadline = time.monotonic() + timeout
    while not (value := probe()):
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {what}")
        time.sleep(0.1)
    return value


def recorded(member: LocalMember, rid: str) -> bool:
    """The member has its own record of the request (a signer may answer after the payout returned)."""
    try:
        return bool(member.call("frost-requests", [rid])["requests"])
    except RpcCallError:
        return False


def test_without_an_estimate_a_payout_pays_the_floor_and_says_so(fed: Cluster) -> None:
    assert "feerate" not in fed.btc.rpc("estimatesmartfee", 6)  # regtest: no data yet
    fed.fund(400_000)
    miner = fed.miner_address()
    fed.credit(miner, 10_000)
    r = payout(fed.members[0], miner, 10_000)
    assert r["status"] == "broadcast", r
    assert (r["feerate"], r["feerate_source"], r["feerate_estimate"]) == (2.0, "floor", None)
    assert "estimatesmartfee 6 gave no estimate" in r["feerate_detail"] and "Insufficient data" in r["feerate_detail"]
    assert r["fee_sats"] == math.ceil(2.0 * r["vsize"])
    fed.btc.mine(1)
    assert fed.received(miner) == 10_000


def test_a_stuck_payout_is_bumped_and_the_debt_is_paid_once(fed: Cluster) -> None:
    a, b, c = fed.members
    miner = fed.miner_address()
    fed.credit(miner, 25_000)
    stuck = payout(a, miner, 25_000, feerate=1)
    assert stuck["status"] == "broadcast" and stuck["txid"] in mempool(fed.btc)

    # the next payout waits for it, and says how to get it confirmed
    other = fed.miner_address()
    fed.credit(other, 5_000)
    with pytest.raises(RpcCallError) as e:
        payout(a, other, 5_000)
    assert "awaits confirmation" in e.value.message and f"frost-bumpfee {stuck['id']}" in e.value.message

    # a member that did not coordinate the payout bumps it: the least BIP 125 increment at least
    wait_for(lambda: recorded(b, stuck["id"]), "member 1 to record the payout")
    first = b.call("frost-bumpfee", [stuck["id"]])
    assert first["status"] == "broadcast", first
    assert (first["replaces"], first["replaced_txid"], first["original_fee_sats"]) == (
        stuck["id"],
        stuck["txid"],
        stuck["fee_sats"],
    )
    assert first["fee_sats"] >= stuck["fee_sats"] + first["vsize"] and first["vsize"] == stuck["vsize"]
    pool = mempool(fed.btc)
    assert first["txid"] in pool and stuck["txid"] not in pool

    # and the bump is bumped again, at a rate given with the command
    wait_for(lambda: recorded(c, first["id"]), "member 2 to record the bump")
    second = c.call("frost-bumpfee", {"id": first["id"], "feerate": 6})
    assert second["status"] == "broadcast", second
    assert second["feerate_source"] == "requested" and second["fee_sats"] == math.ceil(6 * second["vsize"])
    assert second["fee_sats"] >= first["fee_sats"] + second["vsize"]
    pool = mempool(fed.btc)
    assert second["txid"] in pool and first["txid"] not in pool

    # what is in the mempool pays exactly what the stuck payout paid, with less change
    was = fed.btc.rpc("decoderawtransaction", stuck["tx"])
    now = fed.btc.rpc("decoderawtransaction", second["tx"])
    assert [(i["txid"], i["vout"]) for i in now["vin"]] == [(i["txid"], i["vout"]) for i in was["vin"]]
    payee = [o for o in now["vout"] if o["scriptPubKey"].get("address") == miner]
    assert [o["value"] for o in payee] == [Decimal("0.00025")]
    change_was = sum(o["value"] for o in was["vout"]) - Decimal("0.00025")
    change_now = sum(o["value"] for o in now["vout"]) - Decimal("0.00025")
    assert change_was - change_now == Decimal(second["fee_sats"] - stuck["fee_sats"]) / 100_000_000

    # every member counts the debt reserved once, not once per replacement
    for m in fed.members:
        assert (debt(m, miner)["reserved"], debt(m, miner)["available"]) == (25_000, 0), m.index

    fed.btc.mine(1)
    assert second["txid"] in block_txids(fed.btc)
    assert not {stuck["txid"], first["txid"]} & (block_txids(fed.btc) | mempool(fed.btc))
    assert fed.received(miner) == 25_000
    for m in fed.members:  # paid once, by the replacement the chain shows; nothing reserved
        wait_for(lambda m=m: debt(m, miner)["paid"] == 25_000, f"member {m.index}'s ledger to see the bump")
        assert (debt(m, miner)["reserved"], debt(m, miner)["available"]) == (0, 0)
        history = m.call("frost-ledger-history", [miner])["payouts"]
        assert [(h["txid"], h["sats"]) for h in history] == [(second["txid"], 25_000)]
    wait_for(
        lambda: c.call("frost-requests", [second["id"]])["requests"][0]["status"] == "confirmed",
        "the coordinator to record the bump confirmed",
    )
    for member, rid in ((a, stuck["id"]), (b, first["id"])):  # what the bump replaced says so
        row = member.call("frost-requests", [rid])["requests"][0]
        assert (row["status"], row["replaced_by"]) == ("replaced", second["txid"]), row

    # the debt the replacement paid is not paid again, and nothing is left to bump
    with pytest.raises(RpcCallError) as e:
        payout(a, miner, 25_000)
    assert e.value.code == commands.POLICY_REJECTED and "already_paid" in str(e.value.data), e.value.data
    with pytest.raises(RpcCallError) as e:
        c.call("frost-bumpfee", [second["id"]])
    assert "confirmed already" in e.value.message
    with pytest.raises(RpcCallError) as e:
        a.call("frost-bumpfee", [stuck["id"]])
    assert f"spent by {second['txid']}" in e.value.message and "can never confirm" in e.value.message

    # the payout that waited goes through now
    assert payout(b, other, 5_000)["status"] == "broadcast"
    fed.btc.mine(1)
    assert fed.received(other) == 5_000


def test_bumpfee_refuses_what_it_cannot_do(fed: Cluster) -> None:
    a = fed.members[0]
    with pytest.raises(RpcCallError) as e:
        a.call("frost-bumpfee", ["no-such-request"])
    assert e.value.code == commands.NOT_FOUND
    miner = fed.miner_address()
    fed.credit(miner, 7_000)
    stuck = payout(a, miner, 7_000, feerate=1)
    with pytest.raises(RpcCallError) as e:  # below what BIP 125 lets replace it
        a.call("frost-bumpfee", [stuck["id"], 1.5])
    assert e.value.code == commands.INVALID_PARAMS and "below what a replacement" in e.value.message
    with pytest.raises(RpcCallError) as e:  # above the policy's bound (the cluster's max_feerate is 50)
        a.call("frost-bumpfee", [stuck["id"], 80])
    assert "max_feerate" in e.value.message
    assert mempool(fed.btc) >= {stuck["txid"]}  # nothing replaced it
    fed.btc.mine(1)
    assert fed.received(miner) == 7_000


def fee_history(btc: RegtestBitcoind, blocks: int = 20) -> float:
    """Mine blocks of transactions paying 10 to 16 sat/vB that sat in the mempool first, until
    bitcoind's estimator gives a figure for 6 blocks; returns it in sat/vB."""
    address = btc.rpc("getnewaddress", wallet="miner")
    for _ in range(blocks):
        for rate in (10, 12, 14, 16):
            btc.rpc(
                "sendtoaddress",
                address,
                Decimal("0.001"),
                "",
                "",
                False,
                True,
                None,
                "unset",
                False,
                rate,
                wallet="miner",
            )
        btc.mine(1)
        est = btc.rpc("estimatesmartfee", 6)
        if "feerate" in est:
            return float(Decimal(est["feerate"]) * 100_000)
    raise AssertionError(f"bitcoind gives no estimate after {blocks} blocks: {est}")


def test_a_payout_pays_bitcoinds_estimate_once_it_has_one(fed: Cluster) -> None:
    assert FALLBACK_SAT_PER_VB < fee_history(fed.btc) <= 16  # not the floor: what the transactions paid
    fed.fund(100_000)  # mines: the estimate moves with each block, so it is read again below
    miner = fed.miner_address()
    fed.credit(miner, 12_000)
    estimate = float(Decimal(fed.btc.rpc("estimatesmartfee", 6)["feerate"]) * 100_000)
    assert FALLBACK_SAT_PER_VB < estimate <= 16
    r = payout(fed.members[1], miner, 12_000)
    # the estimator only moves with a block, and none was mined around the payout
    assert float(Decimal(fed.btc.rpc("estimatesmartfee", 6)["feerate"]) * 100_000) == estimate
    assert r["status"] == "broadcast", r
    assert (r["feerate_source"], r["feerate_estimate"], r["feerate_clamped"]) == ("estimate", round(estimate, 3), False)
    assert r["feerate"] == round(estimate, 3) and abs(r["fee_sats"] - estimate * r["vsize"]) <= 1
    fed.btc.mine(1)
    assert fed.received(miner) == 12_000
