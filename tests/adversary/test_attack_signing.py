"""Attacks on the signers by one malicious member of a 5-member federation (t = 3), on member
processes and a regtest bitcoind. Each test asserts from the honest members' own stores and from
the chain that no honest partial signature was made, and that the federation keeps serving."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from coincurve import PrivateKey

from adversary.harness import (
    AdversaryCluster,
    address_script,
    anchored_payout,
    build_tx,
    log_count,
    nonce_used_for,
    nonces_for,
    request_body,
    unspent,
    wait_for,
    wait_for_refusals,
)
from frostfed.bitcoin.regtest import RegtestBitcoind

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def fed(tmp_path_factory: pytest.TempPathFactory, regtest: RegtestBitcoind) -> Iterator[AdversaryCluster]:
    cluster = AdversaryCluster(tmp_path_factory.mktemp("adv5"), regtest, 5, 3, attackers=(0,))
    cluster.start()
    yield cluster
    cluster.stop()



def test_payout_to_the_attackers_own_address_is_refused_by_every_honest_member(fed: AdversaryCluster) -> None:
    coin = fed.fund_coin(100_000)
    epoch = fed.attacker.evil("keys")["epoch"]
    thief = address_script(fed.miner_address())  # never credited in any ledger
    tx = build_tx([coin], [(thief, coin["sats"] - 300)])
    body = request_body(tx, [coin], epoch)
    asked = fed.honest[:3]
    out = fed.attacker.evil("sign", {"request": body, "to": [m.id.hex() for m in asked], "self": True})

    assert out["signed"] is False and out["shares"] == []
    assert out["ready"] == [fed.attacker.id.hex()]  # only the attacker itself agreed
    assert wait_for_refusals(asked, body["id"]) == {m.index: "unknown_output" for m in asked}
    for m in fed.honest:
        assert nonces_for(m, body["id"]) == []  # not even a presignature was made
    assert unspent(fed.btc, coin)
    fed.honest_payout_succeeds()


def _point_pair() -> str:
    return (PrivateKey().public_key.format() + PrivateKey().public_key.format()).hex()


def test_sessions_with_bad_signer_lists_are_refused_before_the_nonce_journal(fed: AdversaryCluster) -> None:
    fed.fund_coin(60_000)
    miner = fed.miner_address()
    fed.credit(miner, 5_000)
    keys = fed.attacker.evil("keys")
    body, coin = anchored_payout(fed, [(address_script(miner), 5_000)])
    victim = fed.honest[0]
    out = fed.attacker.evil("sign", {"request": body, "to": [victim.id.hex()], "hold": True})
    assert out["ready"] == [victim.id.hex()]  # a fair payout: the victim agreed and made a presignature
    mine = out["presignatures"][victim.id.hex()]
    assert nonces_for(victim, body["id"]) == ["issued"]
    v = keys["members"].index(victim.id.hex())
    a, b = [i for i in range(5) if i != v][:2]
    other = [_point_pair()]
    bad_point = ["02" + "ff" * 32 + "02" + "ff" * 32]  # 66 bytes, not points on the curve
    sessions = [
        ([v, 99, a], [mine, other, other]),  # an id outside 0..n-1
        ([v, -1, a], [mine, other, other]),
        ([v, v, a], [mine, mine, other]),  # a repeated id
        ([v, a], [mine, other]),  # fewer than t signers
        ([v, a, b, 0, 1, 2], [mine, *[other] * 5]),  # more than n
        ([v, a, b], [mine, other]),  # fewer pubnonce lists than signers
        ([v, a, b], [mine, other, [*other, *other]]),  # a pubnonce count that is not the task count
        ([v, a, b], [mine, bad_point, other]),  # another signer's nonce is not a point
        ([v, True, b], [mine, other, other]),
    ]
    for sid, (signers, pubnonces) in enumerate(sessions):
        fed.attacker.evil(
            "send",
            {
                "to": [victim.id.hex()],
                "kind": "sign_session",
                "body": {"id": body["id"], "sid": sid, "signers": signers, "pubnonces": pubnonces},
            },
        )
    marker = f"session {body['id']}/"
    wait_for(
        lambda: nonce_used_for(victim, body["id"]) or log_count(victim, marker) >= len(sessions),
        "the victim to refuse every crafted session",
    )
    assert nonces_for(victim, body["id"]) == ["issued"]  # the presignature is untouched, nothing signed
    assert unspent(fed.btc, coin)
    fed.honest_payout_succeeds()


@pytest.mark.parametrize(
    ("kind", "patch"),
    [
        ("sign_ready", {"pubnonces": ["02" + "00" * 65]}),  # one pubnonce, not a point
        ("sign_ready", {"pubnonces": []}),
        ("sign_share", {"sid": 2**40}),  # the share is dropped; ROAST starts a session without it
        ("sign_share", {"sid": 7}),  # a session it is not in
        ("sign_share", {"psigs": []}),
        ("sign_share", {"next": ["zz"]}),
    ],
)
def test_an_honest_coordinator_pays_out_whatever_the_attacker_answers(
    fed: AdversaryCluster, kind: str, patch: dict[str, Any]
) -> None:
    fed.fund_coin(60_000)
    fed.attacker.evil("tamper", {"kind": kind, "patch": patch})
    try:
        miner = fed.miner_address()
        fed.credit(miner, 15_000)
        result = fed.honest[0].call("frost-payout", {"outputs": [{"address": miner, "sats": 15_000}]})
    finally:
        fed.attacker.evil("tamper", {"kind": kind, "patch": None})
    assert result["status"] == "broadcast"
    assert fed.attacker.id.hex() not in result["signers"] and len(result["signers"]) == 3
    if kind == "sign_ready":  # a presignature that fails its checks names its sender at once
        assert result["malicious"] == [fed.attacker.id.hex()]
    fed.btc.mine(1)
    assert fed.received(miner) == 15_000
