"""A 5-member federation (t = 3) as separate processes over Noise on 127.0.0.1 with a real regtest
bitcoind: DKG, addresses, payouts that confirm, crashed and malicious members, restarts."""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from faulty_member import start_faulty
from federation_cluster import Cluster, heard_from, nonces_used
from waiting import wait_for

from frostfed.bitcoin.regtest import RegtestBitcoind
from frostfed.plugin.rpcclient import RpcCallError

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def fed(tmp_path_factory: pytest.TempPathFactory, regtest: RegtestBitcoind) -> Iterator[Cluster]:
    cluster = Cluster(tmp_path_factory.mktemp("fed5"), regtest, 5, 3)
    cluster.start()
    yield cluster
    cluster.stop()


@pytest.fixture
def all_running(fed: Cluster) -> Iterator[Cluster]:
    """Each test starts and ends with all five members up (a test may kill some)."""
    yield fed
    for m in fed.members:
        if not m.running:
            m.start()
            m.wait_ready()


def payout(member: Any, outputs: list[dict[str, Any]], **kw: Any) -> dict[str, Any]:
    return member.call("frost-payout", {"outputs": outputs, **kw})


def test_dkg_gives_every_member_the_same_key_and_addresses(fed: Cluster) -> None:
    statuses = [m.call("frost-status") for m in fed.members]
    assert len({s["group_key"] for s in statuses}) == 1
    assert all(s["state"] == "active" and s["threshold"] == 3 and s["n"] == 5 for s in statuses)
    descs = {m.call("frost-descriptor")["descriptor"] for m in fed.members}
    assert len(descs) == 1
    # bitcoind derives the same first address from the descriptor as the members do
    desc = descs.pop()
    first = fed.btc.rpc("deriveaddresses", desc, [0, 0])[0]
    addr = fed.members[2].call("frost-newaddr")
    assert addr["index"] == 0 and addr["address"] == first


def test_payout_confirms(all_running: Cluster) -> None:
    fed = all_running
    fed.fund(200_000)
    miners = [fed.miner_address() for _ in range(3)]
    for i, a in enumerate(miners):
        fed.credit(a, 10_000 * (i + 1))
    result = payout(fed.members[0], [{"address": a, "sats": 10_000 * (i + 1)} for i, a in enumerate(miners)])
    assert result["status"] == "broadcast" and result["malicious"] == []
    assert len(result["signers"]) == 3
    fed.btc.mine(1)
    assert fed.confirmations(result["txid"]) == 1
    assert [fed.received(a) for a in miners] == [10_000, 20_000, 30_000]
    # every member recorded the request it signed or coordinated
    assert fed.members[0].call("frost-requests", [result["id"]])["requests"][0]["status"] == "broadcast"


def test_two_members_crashed_before_and_during_signing(all_running: Cluster) -> None:
    fed = all_running
    fed.fund(100_000)
    a = fed.miner_address()
    fed.credit(a, 25_000)
    fed.members[3].kill()  # before
    slow = fed.members[4]
    slow.stop()
    restarted = time.time()
    start_faulty(slow, "delay-psig")  # answers a session only after 3 s
    slow.wait_ready()
    wait_for(lambda: heard_from(fed.members[0], slow, restarted), 30, "the coordinator to hear from the slow member")
    box: dict[str, Any] = {}
    used = nonces_used(slow)
    worker = threading.Thread(target=lambda: box.update(r=payout(fed.members[0], [{"address": a, "sats": 25_000}])))
    worker.start()
    wait_for(lambda: not worker.is_alive() or nonces_used(slow) > used, 60, "the slow member to sign (or the payout)")
    slow.kill()  # during
    worker.join(120)
    result = box["r"]
    assert result["status"] == "broadcast"
    assert fed.members[3].id.hex() not in result["signers"] and slow.id.hex() not in result["signers"]
    fed.btc.mine(1)
    assert fed.confirmations(result["txid"]) == 1 and fed.received(a) == 25_000


def test_invalid_partial_signatures_are_excluded_and_named(all_running: Cluster) -> None:
    fed = all_running
    honest, bad, coordinator = fed.members[0], fed.members[1], fed.members[2]
    slow = fed.members[3:5]
    # the cheater answers fast and two honest members late, so ROAST's first session includes it
    restarted = time.time()
    for m, fault in [(bad, "bad-psig"), (slow[0], "slow-ready"), (slow[1], "slow-ready")]:
        m.stop()
        start_faulty(m, fault)
    for m in (bad, *slow):
        m.wait_ready()
    for m in (bad, *slow):
        wait_for(lambda m=m: heard_from(coordinator, m, restarted), 30, "the coordinator to hear from a restarted one")
    fed.fund(100_000)
    a = fed.miner_address()
    fed.credit(a, 15_000)
    r = payout(coordinator, [{"address": a, "sats": 5_000}])
    assert r["status"] == "broadcast"
    assert r["malicious"] == [bad.id.hex()]
    assert bad.id.hex() not in r["signers"] and honest.id.hex() in r["signers"]
    assert r["sessions"] >= 2
    fed.btc.mine(1)
    assert fed.confirmations(r["txid"]) == 1 and fed.received(a) == 5_000
    for m in (bad, *slow):
        m.stop()


def _nonce_rows(member: Any) -> list[tuple[bytes, str]]:
    db = sqlite3.connect(member.data_dir / "frostfed.sqlite")
    try:
        return db.execute("SELECT pubnonce, status FROM nonces").fetchall()
    finally:
        db.close()


def test_member_killed_mid_signing_restarts_and_carries_on(all_running: Cluster) -> None:
    fed = all_running
    victim = fed.members[2]
    victim.stop()
    start_faulty(victim, "delay-psig")
    victim.wait_ready()
    fed.fund(100_000)
    a = fed.miner_address()
    fed.credit(a, 40_000)
    others = [m for m in fed.members if m is not victim]
    box: dict[str, Any] = {}
    used = nonces_used(victim)
    worker = threading.Thread(target=lambda: box.update(r=payout(others[0], [{"address": a, "sats": 20_000}])))
    worker.start()
    wait_for(lambda: not worker.is_alive() or nonces_used(victim) > used, 60, "the victim to sign (or the payout)")
    victim.kill()  # SIGKILL while it holds (or has just journalled) a nonce
    worker.join(120)
    assert box["r"]["status"] == "broadcast"
    fed.btc.mine(1)  # the next payout spends this one's change (the anchor): it must confirm first
    before = _nonce_rows(victim)
    group_key = others[0].call("frost-status")["group_key"]

    victim.start()
    victim.wait_ready()
    status = victim.call("frost-status")
    assert status["state"] == "active" and status["group_key"] == group_key  # the share survived
    after = dict(_nonce_rows(victim))
    assert all(after[p] != "issued" for p, s in before if s == "issued")  # nothing from before is reusable
    assert len(after) == len(set(after))
    # it signs again
    def caught_up() -> bool:  # it hears every member and its chain index holds the payout it missed
        st = victim.call("frost-status")
        return st["online"] == len(fed.members) and st["anchor"].startswith(box["r"]["txid"])

    wait_for(caught_up, 30, "the victim to hear from all and index the last payout")
    # ROAST takes the first t presignatures, so with all up the victim may be left out; with two
    # others down, the three left (t = 3) must all sign, the victim among them
    for m in others[2:]:
        m.stop()
    r = payout(victim, [{"address": a, "sats": 20_000}])
    assert victim.id.hex() in r["signers"]
    fed.btc.mine(1)
    assert fed.confirmations(r["txid"]) == 1
    used = [p for p, s in _nonce_rows(victim) if s == "used"]
    assert len(used) == len(set(used))


def test_requests_the_policy_refuses_are_never_signed(all_running: Cluster) -> None:
    fed = all_running
    fed.fund(300_000)
    owed = fed.miner_address()
    fed.credit(owed, 50_000)
    stranger = fed.miner_address()
    mempool_before = set(fed.btc.rpc("getrawmempool"))
    bad_requests: list[dict[str, Any]] = []
    bad_requests += [{"outputs": [{"address": fed.miner_address(), "sats": 10_000 + i}]} for i in range(6)]
    bad_requests += [{"outputs": [{"address": owed, "sats": 50_001 + 1000 * i}]} for i in range(6)]
    bad_requests += [{"outputs": [{"address": owed, "sats": 1_000}], "feerate": 100 + 50 * i} for i in range(4)]
    bad_requests += [
        {"outputs": [{"address": owed, "sats": 30_000}, {"address": owed, "sats": 30_000}]},
        {"outputs": [{"address": owed, "sats": 10_000}, {"address": stranger, "sats": 1_000}]},
        {"outputs": [{"address": stranger, "sats": 100_000}]},
        {"outputs": [{"address": owed, "sats": 60_000}]},
    ]
    assert len(bad_requests) == 20
    for req in bad_requests:
        with pytest.raises(RpcCallError) as err:
            payout(fed.members[0], **req)
        assert err.value.code == 1402, err.value.message
        reasons = err.value.data["rejections"]
        assert reasons and all(isinstance(v, str) and v for v in reasons.values())
    assert set(fed.btc.rpc("getrawmempool")) == mempool_before


def test_every_members_reason_is_reported(tmp_path: Path, all_running: Cluster) -> None:
    fed = all_running
    fed.fund(100_000)
    a = fed.miner_address()
    # only two members' ledgers owe this miner: fewer than t = 3 accept
    fed.credit(a, 10_000, fed.members[:2])
    with pytest.raises(RpcCallError) as err:
        payout(fed.members[0], [{"address": a, "sats": 10_000}])
    reasons = err.value.data["rejections"]
    assert set(reasons) == {m.id.hex() for m in fed.members[2:]}
    assert all("unknown_output" in r for r in reasons.values())


def test_a_double_payout_is_refused(all_running: Cluster) -> None:
    fed = all_running
    fed.fund(100_000)
    fed.fund(100_000)  # a second coin: still, the next payout must spend the first one's change
    a = fed.miner_address()
    fed.credit(a, 12_000)
    first = payout(fed.members[1], [{"address": a, "sats": 12_000}])
    assert first["status"] == "broadcast"
    with pytest.raises(RpcCallError) as err:  # not yet confirmed: the anchor is spent in the mempool
        payout(fed.members[2], [{"address": a, "sats": 12_000}])
    assert err.value.code == 1403 and f"payout {first['id']} awaits confirmation" in err.value.message
    fed.btc.mine(1)
    with pytest.raises(RpcCallError) as err:  # confirmed: paid, in every member's own ledger
        payout(fed.members[3], [{"address": a, "sats": 12_000}])
    reasons = err.value.data["rejections"]
    assert len(reasons) >= 3 and all("already_paid" in r for r in reasons.values())
    deadline = time.monotonic() + 30
    while fed.members[1].call("frost-requests", [first["id"]])["requests"][0]["status"] != "confirmed":
        assert time.monotonic() < deadline, "the coordinator never saw its payout confirm"
        time.sleep(0.2)
    assert fed.received(a) == 12_000


@pytest.mark.parametrize(
    ("method", "params", "code"),
    [
        ("frost-nope", [], -32601),
        ("frost-payout", [], -32602),
        ("frost-payout", ["not json"], -32602),
        ("frost-payout", [[{"address": "x", "sats": -1}]], -32602),
        ("frost-payout", {"outputs": [{"address": "bcrt1qxyz", "sats": 1000}]}, -32602),
        ("frost-payout", {"outputs": [], "bogus": 1}, -32602),
        ("frost-payout", [[{"address": "bcrt1q0000000000000000000000000000000000000", "sats": 1}], "fast"], -32602),
        ("frost-sign", ["bm90IGEgcHNidA=="], -32602),
        ("frost-sign", [42], -32602),
        ("frost-requests", ["nope"], 1405),
        ("frost-status", [1, 2, 3], -32602),
    ],
)
def test_bad_rpc_calls_get_errors_and_the_daemon_serves_on(fed: Cluster, method: str, params: Any, code: int) -> None:
    m = fed.members[0]
    with pytest.raises(RpcCallError) as err:
        m.call(method, params)
    assert err.value.code == code
    assert m.call("frost-status")["state"] == "active"


def test_a_psbt_from_a_watch_only_wallet_is_signed_and_finalized(all_running: Cluster) -> None:
    from frostfed.bitcoin.watchonly import create_watch_only_wallet

    fed = all_running
    fed.fund(150_000)
    desc = fed.members[0].call("frost-descriptor")
    watch = create_watch_only_wallet(fed.btc.rpc_client, "fed5-watch", desc["descriptor"], range_end=100)
    imported = watch.call(
        "importdescriptors",
        [{"desc": desc["change_descriptor"], "range": [0, 100], "timestamp": 0, "internal": True, "active": True}],
    )
    assert imported[0]["success"], imported
    miner = fed.miner_address()
    fed.credit(miner, 20_000)
    # the wallet adds inputs as it likes, but the anchor must be among them and the change must go to
    # the canonical change address every member computes
    status = fed.members[4].call("frost-status")
    anchor_txid, anchor_vout = status["anchor"].split(":")
    funded = watch.call(
        "walletcreatefundedpsbt",
        [{"txid": anchor_txid, "vout": int(anchor_vout)}],
        [{miner: Decimal("0.0002")}],
        0,
        {"fee_rate": 2, "changeAddress": status["change_address"], "add_inputs": True},
    )
    signed = fed.members[4].call("frost-sign", [funded["psbt"]])
    assert len(signed["signers"]) == 3
    final = fed.btc.rpc("finalizepsbt", signed["psbt"])
    assert final["complete"]
    assert fed.btc.rpc("testmempoolaccept", [final["hex"]])[0]["allowed"]
    # a PSBT paying a script no ledger knows is refused, and nothing is signed
    stranger = fed.miner_address()
    bad = watch.call(
        "walletcreatefundedpsbt",
        [{"txid": anchor_txid, "vout": int(anchor_vout)}],
        [{stranger: Decimal("0.0002")}],
        0,
        {"fee_rate": 2, "changeAddress": status["change_address"], "add_inputs": True},
    )
    with pytest.raises(RpcCallError) as err:
        fed.members[4].call("frost-sign", [bad["psbt"]])
    assert err.value.code == 1402 and "unknown_output" in str(err.value.data)
