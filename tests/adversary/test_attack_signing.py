"""Attacks on the signers by one malicious member of a 5-member federation (t = 3), on member
processes and a regtest bitcoind. Each test asserts from the honest members' own stores and from
the chain that no honest partial signature was made, and that the federation keeps serving."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from adversary.harness import (
    AdversaryCluster,
    address_script,
    build_tx,
    nonces_for,
    request_body,
    unspent,
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


def honest_payout_succeeds(fed: AdversaryCluster, sats: int = 20_000) -> None:
    """The federation still pays a real debt, coordinated by an honest member."""
    miner = fed.miner_address()
    fed.credit(miner, sats)
    result = fed.honest[0].call("frost-payout", {"outputs": [{"address": miner, "sats": sats}]})
    assert result["status"] == "broadcast", result
    fed.btc.mine(1)
    assert fed.received(miner) == sats


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
    honest_payout_succeeds(fed)
