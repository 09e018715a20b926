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
    ntasks = len(out["presignatures"][victim.id.hex()])
    assert nonces_for(victim, body["id"]) == ["issued"]
    v = keys["members"].index(victim.id.hex())
    a, b, c = [i for i in range(5) if i != v][:3]
    agg = _point_pair() * ntasks  # well-formed aggregate nonces, one per task
    infinity_half = ("00" * 33 + "02" + "ff" * 32) * ntasks  # a zero half may be infinity; 02ff.. is no point
    sessions = [
        ([v, 99, a], agg),  # an id outside 0..n-1
        ([v, -1, a], agg),
        ([v, v, a], agg),  # a repeated id
        ([v, a], agg),  # fewer than t signers
        ([v, a, b, 0, 1, 2], agg),  # more than n
        ([a, b, c], agg),  # a session without the victim
        ([v, True, b], agg),
        ([v, a, b], agg + agg[:132]),  # one aggregate nonce too many
        ([v, a, b], agg[:-2]),  # a byte short
        ([v, a, b], "zz" + agg[2:]),  # not hex
        ([v, a, b], ("02" + "ff" * 32) * 2 * ntasks),  # 66 bytes, not points on the curve
        ([v, a, b], infinity_half),
        ([v, a, b], [agg]),  # the old list form
    ]
    for sid, (signers, aggnonces) in enumerate(sessions):
        fed.attacker.evil(
            "send",
            {
                "to": [victim.id.hex()],
                "kind": "sign_session",
                "body": {"id": body["id"], "sid": sid, "signers": signers, "aggnonces": aggnonces},
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


def test_aggregate_nonces_of_the_attackers_choice_never_make_a_nonce_sign_twice(fed: AdversaryCluster) -> None:
    """The attacker coordinates a fair payout and, as coordinator, picks the aggregate nonces itself
    (which BIP 445 allows an aggregator): the victim signs a session with its one presignature, then,
    asked again for the same session with other aggregate nonces, refuses; a new session is signed
    only with the next presignature. Every nonce of the victim's journal is used at most once."""
    fed.fund_coin(60_000)
    miner = fed.miner_address()
    fed.credit(miner, 5_000)
    keys = fed.attacker.evil("keys")
    body, coin = anchored_payout(fed, [(address_script(miner), 5_000)])
    victim = fed.honest[0]
    out = fed.attacker.evil("sign", {"request": body, "to": [victim.id.hex()], "hold": True})
    ntasks = len(out["presignatures"][victim.id.hex()])
    v = keys["members"].index(victim.id.hex())
    signers = [v, *[i for i in range(5) if i != v][:2]]

    def session(sid: int) -> None:
        body_s = {"id": body["id"], "sid": sid, "signers": signers, "aggnonces": _point_pair() * ntasks}
        fed.attacker.evil("send", {"to": [victim.id.hex()], "kind": "sign_session", "body": body_s})

    session(0)
    wait_for(lambda: nonces_for(victim, body["id"]) == ["used", "issued"], "the victim to sign session 0")
    session(0)  # the same session again, other aggregate nonces
    wait_for(lambda: log_count(victim, f"session {body['id']}/0") >= 1, "the victim to refuse the repeat")
    assert nonces_for(victim, body["id"]) == ["used", "issued"]
    session(1)  # a new session: the next presignature, never the spent one
    wait_for(lambda: nonces_for(victim, body["id"]) == ["used", "used", "issued"], "the victim to sign session 1")
    assert unspent(fed.btc, coin)  # the attacker alone holds no signature
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
